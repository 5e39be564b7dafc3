"""The venue contract: what a venue adapter declares and provides, in one place.

A venue is one folder under `lab/venues/<venue>/` holding an adapter class (a subclass of
`Venue`), its normalizer (a `lab.sync` strategy), its simulator and, where it has one, its
private API. The adapter is registered by one line in `lab/venues/registry.py`; every other part
of lab (recorder, live connectors, simulators, `lab verify`, replay, the CLI) asks the registry
for the adapter and reads only what is declared here. Nothing outside the venue's folder names a
venue. docs/ARCHITECTURE.md ("Add a venue") walks through writing one.

An adapter is a class with class-level declarations and methods; the registry hands out one
instance per (venue, options). Options (`lab record --opt KEY=VALUE`, or the API version through
`--api`) are validated by `with_options`, which returns the adapter that serves them (Kraken's
`api=v2` is another class).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from lab.core.errors import VenueError
from lab.core.model import Instrument
from lab.datasets.venue_rules import DatasetRules


@dataclass(frozen=True)
class Option:
    """A venue-specific option the CLI offers as `--opt KEY=VALUE` (and `lab venues --json` lists)."""

    key: str
    help: str
    choices: tuple[str, ...] = ()
    default: str | None = None


class Venue(DatasetRules):
    """A venue adapter. Subclasses set the declarations and implement the abstract methods."""

    # -- identity and endpoints ----------------------------------------------------------------
    name: ClassVar[str]  # the `venue=` partition value and the registry key
    api: ClassVar[str] = "v1"  # WebSocket API version this class speaks
    default_rest_url: ClassVar[str]
    default_ws_url: ClassVar[str]
    # `lab record --venue NAME` with no URL starts this venue's simulator in-process
    embedded: ClassVar[bool] = False
    # "module:Class" of the simulator plugin (lab.venues.simulator.VenuePlugin), or None
    simulator: ClassVar[str | None] = None
    # extra connectors: name -> "module:Mixin"; `get_connector(name)` builds the mixin over
    # the live connector of this venue (Kraken's `kraken_auth`: signed private calls)
    connectors: ClassVar[dict[str, str]] = {}
    # the connector `lab paper` routes validate-only orders through, or None
    paper_connector: ClassVar[str | None] = None
    options: ClassVar[tuple[Option, ...]] = ()
    # (maker, taker) fee fractions of the venue's public schedule at its entry tier: what a
    # backtest charges unless told otherwise (`lab backtest --fees`)
    fees: ClassVar[tuple[str, str]] = ("0", "0")

    # -- REST ----------------------------------------------------------------------------------
    instruments_path: ClassVar[str]
    default_depth: ClassVar[int] = 0

    # -- WebSocket behaviour -------------------------------------------------------------------
    ping_idle: ClassVar[float | None] = None  # app-level ping after this many idle seconds
    ping_timeout: ClassVar[float | None] = None  # then close when nothing came for this long
    stall_timeout: ClassVar[float] = 10.0  # no frame at all for this long = a stall, a reconnect
    max_message: ClassVar[int | None] = None  # one message's total size cap (None: the client's)
    # a venue closes connections older than this (seconds): the recorder reconnects before
    max_connection_age: ClassVar[float | None] = None
    # streams per WebSocket connection (None: every symbol on one connection)
    max_streams_per_connection: ClassVar[int | None] = None
    # replace an aging (or venue-announced closing) connection make-before-break: open and
    # subscribe the successor, let the normalizer dedupe the overlap by the venue's sequence, then
    # close the old one. Only safe where `seq` is venue-wide (the same update has the same id on
    # every connection) and the normalizer hands books over between connections.
    make_before_break: ClassVar[bool] = False

    # -- sequence model (replay and verify read these) -------------------------------------------
    # Where the venue counts the `seq` of book messages: "symbol" (one sequence per book),
    # "connection" (one per WebSocket), or "counter" (no venue sequence: lab counts applied
    # messages per book and per connection, so seqs are not comparable across sessions).
    sequence_scope: ClassVar[str] = "symbol"

    def __init__(self, **options: str):
        self.option_values = dict(options)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, api={self.api!r})"

    # -- options -------------------------------------------------------------------------------
    @classmethod
    def with_options(cls, options: dict[str, str]) -> "Venue":
        """The adapter for these options (VenueError with the valid choices on a bad one)."""
        cls.check_options(options)
        return cls(**options)

    @classmethod
    def check_options(cls, options: dict[str, str]) -> None:
        known = {o.key: o for o in cls.options}
        for key, value in options.items():
            opt = known.get(key)
            if opt is None:
                valid = ", ".join(sorted(known)) or "none"
                raise VenueError(f"{cls.name}: unknown option {key!r} (options: {valid})")
            if opt.choices and value not in opt.choices:
                raise VenueError(f"{cls.name}: option {key}={value!r} not supported (valid: {', '.join(opt.choices)})")

    # -- what a venue must provide ---------------------------------------------------------------
    # the venue's published REST request-weight limit per minute (None: none published); the
    # recorder spends `snapshot_weight` of it per book snapshot and waits rather than exceed it
    rest_weight_per_minute: ClassVar[int | None] = None

    def snapshot_weight(self, symbol: str) -> int:
        return 1

    def depth_path(self, symbol: str) -> str:
        """REST path (with query) of one symbol's book snapshot."""
        raise NotImplementedError

    def subscribe_frames(self, symbols: list[str], depth: int = 0) -> list[bytes]:
        """Frames sent after a WebSocket opens (for the symbols of that connection)."""
        raise NotImplementedError

    def parse_instruments(self, payload: bytes) -> list[Instrument]:
        """The instruments endpoint's answer; ValueError on anything but a well-formed answer."""
        raise NotImplementedError

    def normalizer(self, **kwargs: Any):
        """A fresh normalizer (a `lab.sync.normalizer.Normalizer`) of this venue."""
        raise NotImplementedError

    # -- what a venue may provide ------------------------------------------------------------------
    resubscribe_frames: ClassVar[Callable[[str, int], list[bytes]] | None] = None
    ping_frame: ClassVar[Callable[[int], bytes] | None] = None

    def retry_after(self, status: int, body: bytes) -> float | None:
        """Seconds to wait before retrying a REST answer the venue rate-limited (None: no retry).
        HTTP 429/418/503 with a `Retry-After` header are handled by the transport for every venue;
        this is for venues that say it in the body (Kraken's `EAPI:Rate limit exceeded`)."""
        return None

    def resolve_symbols(self, symbols: list[str], instruments: list[Instrument]) -> list[str]:
        """User spellings -> venue symbols (beyond the canonical spelling every venue accepts)."""
        return symbols

    def ws_connection(self, ws_url: str, symbols: list[str], depth: int = 0) -> tuple[str, list[bytes]]:
        """The URL one connection of the plan opens and the frames it sends once open, for the
        `--ws-url` the user gave: that URL and `subscribe_frames` unless the venue builds its
        own from a base URL (Binance: `ws://host:port` becomes a combined-stream URL)."""
        return ws_url, self.subscribe_frames(symbols, depth)

    def connection_plan(self, symbols: list[str]) -> list[list[str]]:
        """Symbols per WebSocket connection: one connection unless the venue caps streams."""
        cap = self.max_streams_per_connection
        if not cap or len(symbols) <= cap:
            return [list(symbols)]
        return [symbols[i:i + cap] for i in range(0, len(symbols), cap)]

    def describe(self) -> dict:
        """`lab venues --json`: what is recorded by default, without a network call."""
        return {"symbols": "fetched from the venue's instruments endpoint at record time"}

    def check_depth(self, depth: int) -> int:
        """The depth to subscribe (the venue's default for 0); VenueError on an unsupported one."""
        return depth or self.default_depth

    # -- wire-level replay (`lab serve-replay`, lab/replay/serve.py) -----------------------------
    # The replay server sends a captured frame to a client connection only while that connection
    # is subscribed to one of the frame's keys: tuples the venue chooses, ending with the venue
    # symbol (`(channel, symbol)`), so that a captured REST snapshot of a symbol is waited for only
    # by connections subscribed to it. A venue declares the module that answers these in
    # `replay_protocol` (lab/venues/<venue>/replay.py: functions frame_keys, url_keys,
    # request_keys, reply, rotate_notice, heartbeat, rest_missing, each optional); the defaults
    # treat every frame as connection-level and answer nothing themselves: right for a venue whose
    # URL names the streams, and a start for any other.
    replay_protocol: ClassVar[str | None] = None

    def _replay(self, name: str):
        """The venue's replay function `name`, or None."""
        if self.replay_protocol is None:
            return None
        import importlib

        return getattr(importlib.import_module(self.replay_protocol), name, None)

    def replay_frame_keys(self, payload: bytes) -> frozenset | None:
        """The subscription keys of a captured received frame; an empty set: connection-level
        (greeting, heartbeat, status: every client gets it); None: an answer to the original
        client's own request (a pong) that is not replayed."""
        fn = self._replay("frame_keys")
        return fn(payload) if fn else frozenset()

    # WebSocket paths (aiohttp route syntax) served besides `/ws` and the captured ones
    replay_ws_paths: ClassVar[tuple[str, ...]] = ()

    def replay_url_keys(self, path: str, query: dict[str, str]) -> frozenset:
        """The subscription keys a connection's URL names at connect time (a venue whose URL
        names its streams); an empty set: the URL names none."""
        fn = self._replay("url_keys")
        return fn(path, query) if fn else frozenset()

    def replay_request(self, payload: bytes) -> tuple[str, frozenset] | None:
        """A frame a replay client sent: ("subscribe" | "unsubscribe", keys), or None."""
        fn = self._replay("request_keys")
        return fn(payload) if fn else None

    def replay_reply(self, payload: bytes, served: frozenset, subscribed: frozenset = frozenset()) -> list[bytes]:
        """Frames the replay server itself answers a client frame with: a pong for a ping, the
        venue's error for keys the capture does not hold (`served`: every key it holds), the
        connection's subscriptions where the venue lists them (`subscribed`: its keys now)."""
        fn = self._replay("reply")
        return fn(payload, served, subscribed) if fn else []

    def replay_rotate_notice(self) -> bytes | None:
        """A frame that asks the client to replace its connection (make-before-break), sent where
        a captured connection's successor opened; None: a captured rotation plays as a disconnect."""
        fn = self._replay("rotate_notice")
        return fn() if fn else None

    def replay_heartbeat(self, ws_path: str) -> bytes | None:
        """The payload sent once a second after a connection's captured frames have run out
        (so the client sees a quiet venue, not a stall); None: nothing."""
        fn = self._replay("heartbeat")
        return fn(ws_path) if fn else None

    def replay_rest_missing(self, path: str, query: dict[str, str]) -> tuple[int, bytes]:
        """HTTP status and JSON body for a REST request the capture holds no body for."""
        fn = self._replay("rest_missing")
        if fn:
            return fn(path, query)
        import orjson

        return 404, orjson.dumps({"error": f"not in the capture: {path}"})
