"""The venue simulator framework: one aiohttp server on loopback that every venue reuses.

A venue plugs in as a ``VenuePlugin`` (REST routes, WebSocket greeting and subscribe handling,
the stream of data messages it produces, heartbeats, and how to corrupt a message for the
fault switches). The framework supplies:

* a simulated clock with time compression: ``time_scale = K`` runs simulated exchange time K
  times faster than wall time. Event timestamps, heartbeats (after ``heartbeat_interval``
  simulated seconds without traffic), stalls and the optional ``idle_timeout`` /
  ``max_connection_age`` all use simulated time, so "24 h" limits can be tested in seconds;
* a message ``rate`` (data messages per second of wall time, across all symbols);
* pre-rendered frames: the plugin renders each data message once into a complete unmasked
  WebSocket frame (header + payload); due messages are grouped into a ``Batch`` whose frames are
  joined once, and each connection gets the whole batch with a single ``transport.write``
  (connections with a partial subscription or active faults take a per-frame path). One
  rendering serves every connection;
* fault switches (same names as the ``lab simulate`` flags), counted per connection, where
  "data messages" are stream messages (not the greeting, replies or heartbeats):
  ``disconnect_after`` (close with 1001 after N data messages), ``drop_every`` (skip every Nth
  book message, ``Item.kind == "book"``: a seq gap), ``bad_checksum_every`` (every Nth book
  message with a wrong checksum; the levels stay right), ``malformed_every`` (every Nth data
  message is replaced by an invalid JSON frame, its first half: the message is lost, as if
  corrupted in transit), ``stall_after`` + ``stall_seconds`` (after N data messages send
  nothing at all, heartbeats included, for S *simulated* seconds, once per connection; the
  backlog follows), ``rate_limit`` (the next K REST requests get the venue's rate-limit reply;
  control endpoints are exempt). Switches can change at run time (``POST /control/faults``);
* the plugin may render ahead of time (``prepare``, called in the pump's idle time);
* control endpoints: ``GET /control/stats`` (what was really written to each connection),
  ``GET /control/book?symbol=S&seq=N`` (delegated to the plugin), ``GET|POST /control/faults``;
* flow control: a connection whose socket buffer is above ``high_water`` bytes is skipped
  until it drains; one that falls more than ``max_lag`` messages behind is closed (code 1008,
  "slow consumer"), like a real venue would;
* clean shutdown on SIGINT/SIGTERM (every WebSocket gets a 1001 close).

Entry points: ``run_simulator`` (async), ``SimulatorThread`` (background thread on a free
port, for tests), ``simulate_main`` (blocking, for ``lab simulate``).
"""
from __future__ import annotations

import asyncio
import importlib
import logging
import math
import signal
import struct
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from lab.core.errors import UnknownVenue
from lab.venues import registry

__all__ = [
    "SIMULATORS",
    "FAULT_NAMES",
    "Batch",
    "Connection",
    "Faults",
    "Item",
    "SimClock",
    "Simulator",
    "SimulatorThread",
    "UnknownVenueError",
    "VenuePlugin",
    "get_plugin_class",
    "json_response",
    "register_simulator",
    "run_simulator",
    "simulate_main",
    "ws_frame",
]

log = logging.getLogger("lab.simulator")

# Plugins registered at run time (tests, embedders), by name, on top of the venues' own
# simulators, which the venue registry names (`Venue.simulator`).
SIMULATORS: dict[str, Any] = {}


def register_simulator(name: str, plugin: Any) -> None:
    """Register a venue plugin class (or a ``"module:Class"`` string) under ``name``."""
    SIMULATORS[name] = plugin


class UnknownVenueError(KeyError, UnknownVenue):
    """No simulator is registered for this venue (a KeyError and a ValueError)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown venue"


def get_plugin_class(venue: str) -> type["VenuePlugin"]:
    entry = SIMULATORS.get(venue)
    if entry is None:
        try:
            return registry.simulator_class(venue)
        except UnknownVenue:
            known = sorted(set(registry.simulated()) | set(SIMULATORS))
            raise UnknownVenueError(f"no simulator for venue {venue!r} (known: {known})") from None
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = getattr(importlib.import_module(module), attr)
        SIMULATORS[venue] = entry
    return entry


# --------------------------------------------------------------------------- frames


def ws_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A complete, final, unmasked server WebSocket frame (text by default)."""
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, n) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, n) + payload


def json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type="application/json")


# --------------------------------------------------------------------------- clock


class SimClock:
    """Simulated exchange time: ``start_ns`` at creation, then ``time_scale`` x wall time."""

    def __init__(self, time_scale: float = 1.0, start_ns: int | None = None):
        if not time_scale > 0 or math.isinf(time_scale):
            raise ValueError(f"time_scale must be a positive finite number, got {time_scale}")
        self.time_scale = float(time_scale)
        self.start_ns = time.time_ns() if start_ns is None else int(start_ns)
        self.mono0 = time.monotonic()  # asyncio's loop.time() is time.monotonic()

    def now_ns(self, mono: float | None = None) -> int:
        if mono is None:
            mono = time.monotonic()
        return self.start_ns + int((mono - self.mono0) * self.time_scale * 1e9)

    def mono_at(self, sim_ns: int) -> float:
        """Wall (monotonic) time at which the simulated clock reads ``sim_ns``."""
        return self.mono0 + (sim_ns - self.start_ns) / (self.time_scale * 1e9)

    def wall_seconds(self, sim_seconds: float) -> float:
        return sim_seconds / self.time_scale


# --------------------------------------------------------------------------- faults

FAULT_NAMES = (
    "disconnect_after",
    "drop_every",
    "bad_checksum_every",
    "malformed_every",
    "stall_after",
    "stall_seconds",
    "rate_limit",
)


class Faults:
    """The fault switches. 0 or None turns a switch off. ``rate_limit`` counts down."""

    __slots__ = FAULT_NAMES

    def __init__(self, **values: Any):
        for name in FAULT_NAMES:
            setattr(self, name, 0)
        self.update(values)

    def update(self, values: dict[str, Any] | None) -> None:
        if not values:
            return
        if not isinstance(values, dict):
            raise ValueError("faults must be a JSON object")
        clean = {}
        for name, v in values.items():
            key = name.replace("-", "_")
            if key not in FAULT_NAMES:
                raise ValueError(f"unknown fault switch: {name} (known: {', '.join(FAULT_NAMES)})")
            if v is None or v is False:
                v = 0
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"fault {name} must be a number, got {v!r}")
            if v < 0 or (isinstance(v, float) and not math.isfinite(v)):
                raise ValueError(f"fault {name} must be >= 0, got {v!r}")
            if key != "stall_seconds":
                if int(v) != v:
                    raise ValueError(f"fault {name} must be an integer, got {v!r}")
                v = int(v)
            clean[key] = v
        for key, v in clean.items():
            setattr(self, key, v)

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FAULT_NAMES}

    @property
    def per_message(self) -> bool:
        return bool(self.drop_every or self.bad_checksum_every or self.malformed_every)


# --------------------------------------------------------------------------- stream


class Item:
    """One pre-rendered data message.

    ``key`` is the subscription key a connection must hold to receive it (for example
    ``("book", "BTC-USD")``); ``kind`` and ``symbol`` are for the stats, and ``drop_every`` /
    ``bad_checksum_every`` apply to ``kind == "book"`` only; ``seq`` (if any) is reported as the
    connection's ``last_seq``; ``event`` is whatever the plugin needs to re-render a copy.
    """

    __slots__ = ("frame", "key", "kind", "symbol", "seq", "event")

    def __init__(self, frame: bytes, key: Hashable, kind: str, symbol: str | None,
                 seq: int | None = None, event: Any = None):
        self.frame = frame
        self.key = key
        self.kind = kind
        self.symbol = symbol
        self.seq = seq
        self.event = event


class Batch:
    """Data messages that fell due together, with their frames joined once for all clients."""

    __slots__ = ("no", "start", "items", "joined", "keys", "counts", "last_seq", "n_book", "_sub_cache")

    def __init__(self, no: int, start: int, items: list[Item]):
        self.no = no
        self.start = start  # global index of the first item
        self.items = items
        self.joined = b"".join([it.frame for it in items])
        self.keys = frozenset(it.key for it in items)
        self.counts, self.last_seq, self.n_book = _tally(items)
        self._sub_cache: dict[frozenset, tuple] = {}

    def subset(self, subs: frozenset) -> tuple[bytes, int, int, dict, dict]:
        """Joined frames, message and book counts, stats for a subscription (cached per set)."""
        got = self._sub_cache.get(subs)
        if got is None:
            sel = [it for it in self.items if it.key in subs]
            counts, last_seq, n_book = _tally(sel)
            got = (b"".join([it.frame for it in sel]), len(sel), n_book, counts, last_seq)
            self._sub_cache[subs] = got
        return got


def _tally(items: list[Item]) -> tuple[dict, dict, int]:
    counts: dict[tuple[str, str | None], int] = {}
    last_seq: dict[str | None, int] = {}
    n_book = 0
    for it in items:
        k = (it.kind, it.symbol)
        counts[k] = counts.get(k, 0) + 1
        if it.seq is not None:
            last_seq[it.symbol] = it.seq
        if it.kind == "book":
            n_book += 1
    return counts, last_seq, n_book


# --------------------------------------------------------------------------- connections


class Connection:
    """One WebSocket client of the simulator, with what was written to it."""

    def __init__(self, sim: "Simulator", cid: int, ws: web.WebSocketResponse,
                 transport: asyncio.Transport, request: web.Request):
        self.sim = sim
        self.id = cid
        self.ws = ws
        self.transport = transport
        self.request = request
        self.opened_mono = time.monotonic()
        self.subscriptions: set[Hashable] = set()
        self._subs_frozen: frozenset = frozenset()
        self.next_batch = sim._next_batch_no
        self.offset = 0
        self.open = True
        self.closing = False
        self.close_reason: str | None = None
        self.last_write = self.opened_mono
        self.last_recv = self.opened_mono
        self.stall_until = 0.0
        self.stall_done = False
        self.messages = 0  # every frame written (greeting, replies, data, heartbeats)
        self.data_written = 0  # data messages written (disconnect_after / stall_after count these)
        self.data_seen = 0  # data messages due for this connection (malformed_every cadence)
        self.book_seen = 0  # book messages due (drop_every / bad_checksum_every cadence)
        self.counts: dict[tuple[str, str | None], int] = {}
        self.last_seq: dict[str | None, int] = {}
        self.dropped = 0
        self.bad_checksums = 0
        self.malformed = 0
        self.heartbeats = 0
        self.state: dict[str, Any] = {}  # free for the plugin

    # -- used by plugins
    def send(self, payload: bytes) -> None:
        """Write one text frame now (greeting, replies, heartbeats)."""
        if self.closing or self.transport.is_closing():
            return
        self.transport.write(ws_frame(payload))
        self.messages += 1
        self.last_write = time.monotonic()

    def subscribe(self, keys: Iterable[Hashable]) -> None:
        self.subscriptions.update(keys)
        self._subs_frozen = frozenset(self.subscriptions)

    def unsubscribe(self, keys: Iterable[Hashable]) -> None:
        self.subscriptions.difference_update(keys)
        self._subs_frozen = frozenset(self.subscriptions)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close this connection (asynchronously); nothing more is written to it."""
        if self.closing:
            return
        self.closing = True
        self.close_reason = reason or f"code {code}"
        self.sim._spawn(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(self.ws.close(code=code, message=reason.encode()[:120], drain=False),
                                   timeout=3)
        except Exception:
            pass
        finally:
            if not self.transport.is_closing():
                self.transport.close()

    def stats(self) -> dict[str, Any]:
        book: dict[str, int] = {}
        trades: dict[str, int] = {}
        other: dict[str, dict[str, int]] = {}
        for (kind, symbol), n in self.counts.items():
            if kind == "book":
                book[symbol] = n
            elif kind == "trade":
                trades[symbol] = n
            else:
                other.setdefault(f"{kind}_messages", {})[symbol] = n
        out = {
            "id": self.id,
            "messages": self.messages,
            "book_messages": book,
            "trades": trades,
            "last_seq": dict(self.last_seq),
            "open": self.open,
            "data_messages": self.data_written,
            "dropped": self.dropped,
            "bad_checksums": self.bad_checksums,
            "malformed": self.malformed,
            "heartbeats": self.heartbeats,
            "subscriptions": sorted(str(k) for k in self.subscriptions),
            "close_reason": self.close_reason,
        }
        out.update(other)
        return out


# --------------------------------------------------------------------------- plugin interface


class VenuePlugin:
    """What a venue provides to the framework. Subclass and register in ``SIMULATORS``.

    The plugin owns the market and the rendering; the framework owns sockets, timing, batching,
    faults and stats. Everything runs on the simulator's event loop thread.
    """

    name = "base"
    #: WebSocket paths (aiohttp route syntax); ``Simulator.ws_url`` uses the first one.
    #: The plugin can read ``conn.request`` (path, query) in ``on_open``, e.g. to subscribe.
    ws_paths: tuple[str, ...] = ("/ws",)
    #: False when a frame depends on the connection (a per-connection sequence number, a
    #: subscription id): every message then goes through ``frame_for(conn, item)``.
    shared_frames: bool = True
    #: simulated seconds without traffic on a connection before ``heartbeat()`` is sent
    heartbeat_interval: float | None = 1.0
    #: close a connection that sent nothing for this many simulated seconds (None: never)
    idle_timeout: float | None = None
    #: close every connection this many simulated seconds after it opened (None: never)
    max_connection_age: float | None = None

    def __init__(self, sim: "Simulator", **options: Any):
        self.sim = sim
        if options:
            raise TypeError(f"{type(self).__name__}: unknown options {sorted(options)}")

    # -- the stream
    def next_due_ns(self) -> int | None:
        """Simulated time of the next data message, or None if nothing is scheduled."""
        return None

    def produce(self, until_ns: int, limit: int) -> list[Item]:
        """Render the data messages due at or before ``until_ns`` (at most ``limit``)."""
        return []

    def prepare(self, deadline: float) -> None:
        """Idle time until the monotonic ``deadline``: render messages ahead if you like."""

    # -- REST
    def routes(self) -> list[tuple[str, str, Callable]]:
        """``(method, path, handler)`` for the venue's REST API; rate-limit faults apply."""
        return []

    def rate_limit_response(self, request: web.Request) -> web.Response:
        return json_response({"error": "rate limit exceeded"}, status=429)

    def control_book(self, request: web.Request) -> web.Response:
        return json_response({"error": "not supported by this venue"}, status=404)

    def seqs(self) -> dict[str, int]:
        """Current sequence number per symbol (for ``/control/stats``)."""
        return {}

    # -- WebSocket
    async def on_open(self, conn: Connection) -> None:
        """Greeting (``conn.send(...)``)."""

    async def on_text(self, conn: Connection, data: str) -> None:
        """A text frame from the client (subscribe, ping, ...)."""

    def heartbeat(self, conn: Connection) -> bytes | None:
        """Payload of a heartbeat frame, or None for no heartbeat."""
        return None

    def frame_for(self, conn: Connection, item: Item) -> bytes:
        """The frame to write for ``item`` on ``conn`` (used when ``shared_frames`` is False)."""
        return item.frame

    def bad_checksum(self, item: Item) -> bytes | None:
        """Payload of ``item`` with a wrong checksum (``bad_checksum_every``); None if the
        venue has no checksum (the message then goes out unchanged)."""
        return None

    def malformed(self, item: Item) -> bytes:
        """Payload that is not valid JSON (``malformed_every``); default: the first half."""
        payload = _payload_of(item.frame)
        return payload[: max(1, len(payload) // 2)]

    async def close(self) -> None:
        """Called on shutdown."""


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


def _payload_of(frame: bytes) -> bytes:
    n = frame[1] & 0x7F
    if n < 126:
        return frame[2:]
    if n == 126:
        return frame[4:]
    return frame[10:]


# --------------------------------------------------------------------------- the server


class Simulator:
    """One simulated venue on one port. Create, ``await start()``, ``await stop()``."""

    def __init__(
        self,
        venue: str = "mock",
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        rate: float = 1000.0,
        time_scale: float = 1.0,
        faults: dict[str, Any] | None = None,
        *,
        start_ns: int | None = None,
        max_batch: int = 4096,
        high_water: int = 4 << 20,
        max_lag: int = 500_000,
        tick: float = 0.001,
        plugin_class: type | None = None,
        **plugin_options: Any,
    ):
        if not rate > 0 or math.isinf(rate):
            raise ValueError(f"rate must be a positive finite number of messages/s, got {rate}")
        self.venue = venue
        self.host = host
        self.port = port
        self.seed = seed
        self.rate = float(rate)
        self.clock = SimClock(time_scale, start_ns)
        self.faults = Faults(**(faults or {}))
        self.max_batch = max_batch
        self.high_water = high_water
        self.max_lag = max_lag
        self.tick = tick
        self.connections: dict[int, Connection] = {}
        self.closed_connections: list[Connection] = []
        self._next_conn_id = 1
        self._tape: list[Batch] = []
        self._tape_base = 0  # batch number of self._tape[0]
        self._next_batch_no = 0
        self._produced = 0
        self._tasks: set[asyncio.Task] = set()
        self._runner: web.AppRunner | None = None
        self._pump_task: asyncio.Task | None = None
        self._stopping = False
        self._sleeper: asyncio.Future | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        # `plugin_class`: a plugin that is not the venue's simulator (`lab serve-replay`'s replay)
        self.plugin: VenuePlugin = _make_plugin(plugin_class or get_plugin_class(venue), self, plugin_options)

    # -- lifecycle
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}{self.plugin.ws_paths[0]}"

    def build_app(self) -> web.Application:
        app = web.Application()
        for method, path, handler in self.plugin.routes():
            app.router.add_route(method, path, self._rest(handler))
        for path in self.plugin.ws_paths:
            app.router.add_get(path, self._ws_handler)
        app.router.add_get("/control/stats", self._control_stats)
        app.router.add_get("/control/book", self._control_book)
        app.router.add_get("/control/faults", self._control_faults)
        app.router.add_post("/control/faults", self._control_faults)
        return app

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        # simulated time starts now (after any pre-rendering the plugin did when it was built)
        self.clock.mono0 = time.monotonic()
        self._runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        if not self.port:
            server = site._server  # the asyncio Server: learn the port the OS picked
            self.port = server.sockets[0].getsockname()[1]
        self._pump_task = asyncio.create_task(self._pump())

    async def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        self.wake()
        if self._pump_task is not None:
            self._pump_task.cancel()
            try:
                await self._pump_task
            except (asyncio.CancelledError, Exception):
                pass
        for conn in list(self.connections.values()):
            conn.close(1001, "simulator shutting down")
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        await self.plugin.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        self.faults.update(faults)
        self.wake()
        return self.faults.as_dict()

    # -- REST
    def _rest(self, handler: Callable) -> Callable:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            if self.faults.rate_limit > 0:
                self.faults.rate_limit -= 1
                return self.plugin.rate_limit_response(request)
            result = handler(request)
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return wrapped

    def stats(self) -> dict[str, Any]:
        conns = sorted(list(self.connections.values()) + self.closed_connections, key=lambda c: c.id)
        return {
            "connections": [c.stats() for c in conns],
            "seq": self.plugin.seqs(),
            "produced": self._produced,
            "sim_time": self.clock.now_ns(),
            "faults": self.faults.as_dict(),
        }

    async def _control_stats(self, request: web.Request) -> web.Response:
        return json_response(self.stats())

    async def _control_book(self, request: web.Request) -> web.StreamResponse:
        result = self.plugin.control_book(request)
        if asyncio.iscoroutine(result):
            result = await result
        return result

    async def _control_faults(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            try:
                body = await request.json(loads=orjson.loads)
                self.faults.update(body)
                self.wake()
            except ValueError as exc:
                return json_response({"error": str(exc)}, status=400)
        return json_response({"faults": self.faults.as_dict()})

    # -- WebSocket
    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(compress=False, autoping=True, timeout=3.0, max_msg_size=1 << 20)
        await ws.prepare(request)
        transport = request.transport
        if transport is None or self._stopping:
            await ws.close()
            return ws
        conn = Connection(self, self._next_conn_id, ws, transport, request)
        self._next_conn_id += 1
        self.connections[conn.id] = conn
        try:
            await self.plugin.on_open(conn)
            self.wake()
            async for msg in ws:
                conn.last_recv = time.monotonic()
                if msg.type == WSMsgType.TEXT:
                    await self.plugin.on_text(conn, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await self.plugin.on_text(conn, msg.data.decode("utf-8", "replace"))
                elif msg.type == WSMsgType.ERROR:
                    break
                self.wake()
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("simulator %s: connection %d failed", self.venue, conn.id)
        finally:
            conn.open = False
            conn.closing = True
            if conn.close_reason is None:
                conn.close_reason = "client closed"
            self.connections.pop(conn.id, None)
            self.closed_connections.append(conn)
            del self.closed_connections[:-1000]
        return ws

    # -- the pump: produce due messages, batch them, write them out
    def _append_batch(self, items: list[Item]) -> None:
        batch = Batch(self._next_batch_no, self._produced, items)
        self._tape.append(batch)
        self._next_batch_no += 1
        self._produced += len(items)

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        clock = self.clock
        plugin = self.plugin
        while not self._stopping:
            now = loop.time()
            try:
                # the market runs whether or not anybody is connected
                items = plugin.produce(clock.now_ns(now), self.max_batch)
                produced = len(items)
                if items:
                    self._append_batch(items)
                wake_at = self._service(now)
            except Exception:  # a plugin bug must not silently freeze every connection
                log.exception("simulator %s: pump failed", self.venue)
                await asyncio.sleep(0.1)
                continue
            if produced >= self.max_batch:
                await asyncio.sleep(0)  # behind schedule: catch up, but let requests in
                continue
            nxt = plugin.next_due_ns()
            if nxt is not None:
                wake_at = min(wake_at, clock.mono_at(nxt))
            if wake_at - loop.time() > 0.002:
                plugin.prepare(min(wake_at, loop.time() + 0.02) - 0.001)
            delay = min(max(wake_at - loop.time(), self.tick), 0.05)
            fut = self._sleeper = loop.create_future()
            handle = loop.call_later(delay, _resolve, fut)
            try:
                await fut
            finally:
                handle.cancel()
                self._sleeper = None

    def wake(self) -> None:
        """Run the pump now (a connection opened, subscribed or changed faults)."""
        fut = self._sleeper
        if fut is not None:
            _resolve(fut)

    def _service(self, now: float) -> float:
        """Write pending batches, heartbeats, fault timers; trim the tape. Returns next wake."""
        wake_at = now + 0.05
        plugin = self.plugin
        clock = self.clock
        hb = plugin.heartbeat_interval
        hb_wall = clock.wall_seconds(hb) if hb else None
        tape_end = self._next_batch_no
        for conn in list(self.connections.values()):
            if conn.closing:
                continue
            if conn.transport.is_closing():
                conn.closing = True
                continue
            if conn.stall_until:
                if now < conn.stall_until:
                    wake_at = min(wake_at, conn.stall_until)
                    continue
                conn.stall_until = 0.0
            if conn.next_batch < tape_end:
                self._flush(conn, now)
                if conn.closing:
                    continue
            if conn.stall_until:
                wake_at = min(wake_at, conn.stall_until)
                continue
            if conn.next_batch < tape_end:
                lag = self._produced - (self._tape[conn.next_batch - self._tape_base].start + conn.offset)
                if lag > self.max_lag:
                    conn.close(1008, "slow consumer")
                    continue
            if hb_wall is not None and conn.next_batch >= tape_end:  # no traffic pending
                due = conn.last_write + hb_wall
                if now >= due:
                    payload = plugin.heartbeat(conn)
                    if payload is not None:
                        conn.send(payload)
                        conn.heartbeats += 1
                    due = conn.last_write + hb_wall
                wake_at = min(wake_at, due)
            if self._limits_exceeded(conn, now):
                continue
        # trim batches every open connection has consumed
        low = tape_end
        for conn in self.connections.values():
            if not conn.closing and conn.next_batch < low:
                low = conn.next_batch
        drop = low - self._tape_base
        if drop > 0:
            del self._tape[:drop]
            self._tape_base = low
        return wake_at

    def _limits_exceeded(self, conn: Connection, now: float) -> bool:
        plugin = self.plugin
        if plugin.max_connection_age and now - conn.opened_mono >= self.clock.wall_seconds(plugin.max_connection_age):
            conn.close(1000, "maximum connection age reached")
            return True
        if plugin.idle_timeout and now - conn.last_recv >= self.clock.wall_seconds(plugin.idle_timeout):
            conn.close(1000, "idle timeout")
            return True
        return False

    def _flush(self, conn: Connection, now: float) -> None:
        transport = conn.transport
        tape = self._tape
        base = self._tape_base
        end = self._next_batch_no
        faults = self.faults
        shared = self.plugin.shared_frames
        while conn.next_batch < end and not conn.closing and not conn.stall_until:
            if transport.get_write_buffer_size() > self.high_water:
                return
            batch = tape[conn.next_batch - base]
            subs = conn._subs_frozen
            if (conn.offset == 0 and shared and not faults.per_message
                    and self._no_limit_in(conn, batch)):
                if batch.keys <= subs:
                    data, n, n_book, counts, last_seq = (batch.joined, len(batch.items), batch.n_book,
                                                         batch.counts, batch.last_seq)
                elif not subs:
                    data, n, n_book, counts, last_seq = b"", 0, 0, {}, {}
                else:
                    data, n, n_book, counts, last_seq = batch.subset(subs)
                if n:
                    transport.write(data)
                    conn.messages += n
                    conn.data_written += n
                    conn.data_seen += n
                    conn.book_seen += n_book
                    cc = conn.counts
                    for k, v in counts.items():
                        cc[k] = cc.get(k, 0) + v
                    conn.last_seq.update(last_seq)
                    conn.last_write = now
                conn.next_batch += 1
                continue
            self._flush_slow(conn, batch, now)

    def _no_limit_in(self, conn: Connection, batch: Batch) -> bool:
        f = self.faults
        n = len(batch.items)
        if f.disconnect_after and conn.data_written + n >= f.disconnect_after:
            return False
        if f.stall_after and not conn.stall_done and conn.data_written + n >= f.stall_after:
            return False
        return True

    def _flush_slow(self, conn: Connection, batch: Batch, now: float) -> None:
        f = self.faults
        plugin = self.plugin
        subs = conn.subscriptions
        items = batch.items
        out: list[bytes] = []
        counts = conn.counts
        i = conn.offset
        n_items = len(items)
        done = True
        shared = plugin.shared_frames
        while i < n_items:
            it = items[i]
            i += 1
            if it.key not in subs:
                continue
            conn.data_seen += 1
            frame = it.frame if shared else plugin.frame_for(conn, it)
            is_book = it.kind == "book"
            if is_book:
                conn.book_seen += 1
                if f.drop_every and conn.book_seen % f.drop_every == 0:
                    conn.dropped += 1
                    continue
            if f.malformed_every and conn.data_seen % f.malformed_every == 0:
                frame = ws_frame(plugin.malformed(it))
                conn.malformed += 1
            else:
                if is_book and f.bad_checksum_every and conn.book_seen % f.bad_checksum_every == 0:
                    bad = plugin.bad_checksum(it)
                    if bad is not None:
                        frame = ws_frame(bad)
                        conn.bad_checksums += 1
                k = (it.kind, it.symbol)
                counts[k] = counts.get(k, 0) + 1
                if it.seq is not None:
                    conn.last_seq[it.symbol] = it.seq
            out.append(frame)
            conn.data_written += 1
            if f.disconnect_after and conn.data_written >= f.disconnect_after:
                self._write(conn, out, now)
                out = []
                conn.close(1001, f"disconnect_after {f.disconnect_after} fault")
                done = False
                break
            if f.stall_after and not conn.stall_done and conn.data_written >= f.stall_after:
                conn.stall_done = True
                conn.stall_until = now + self.clock.wall_seconds(f.stall_seconds or 0.0)
                if i < n_items:
                    done = False
                break
        if out:
            self._write(conn, out, now)
        if done and i >= n_items:
            conn.next_batch += 1
            conn.offset = 0
        else:
            conn.offset = i

    def _write(self, conn: Connection, frames: list[bytes], now: float) -> None:
        if not frames:
            return
        conn.transport.write(b"".join(frames))
        conn.messages += len(frames)
        conn.last_write = now


def _make_plugin(cls, sim, options: dict[str, Any]):
    """The venue plugin; an option it does not take is a ValueError naming the ones it does."""
    import inspect

    params = inspect.signature(cls.__init__).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        known = sorted(n for n, p in params.items() if n not in ("self", "sim") and p.kind is not p.VAR_POSITIONAL)
        known += ["start_ns", "max_batch", "high_water", "max_lag", "tick"]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(f"unknown {sim.venue} simulator option {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    try:
        return cls(sim, **options)
    except TypeError as exc:  # a VenuePlugin that takes **options and rejects some
        raise ValueError(f"{sim.venue} simulator: {exc}") from None


# --------------------------------------------------------------------------- entry points


async def run_simulator(
    venue: str = "mock",
    host: str = "127.0.0.1",
    port: int = 0,
    seed: int = 0,
    rate: float = 1000.0,
    time_scale: float = 1.0,
    faults: dict[str, Any] | None = None,
    ready_callback: Callable[[Simulator], Any] | None = None,
    *,
    stop_event: asyncio.Event | None = None,
    **options: Any,
) -> None:
    """Run a simulator until SIGINT/SIGTERM (main thread) or ``stop_event`` is set.

    ``ready_callback(simulator)`` is called once the port is bound (``simulator.port``,
    ``simulator.url``, ``simulator.ws_url``). Extra keyword options go to the ``Simulator``
    (``start_ns``, ``max_batch``, ``high_water``, ``max_lag``, ``plugin_class`` to serve another
    plugin than the venue's simulator) and then to the venue plugin.
    """
    sim = Simulator(venue, host, port, seed, rate, time_scale, faults, **options)
    stop = stop_event or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
    try:
        await sim.start()
        if ready_callback is not None:
            ready_callback(sim)
        await stop.wait()
    finally:
        await sim.stop()
        for sig in installed:
            loop.remove_signal_handler(sig)


class SimulatorThread:
    """A simulator on a free loopback port in a background thread (tests, demos).

    >>> with SimulatorThread("mock", seed=1, rate=2000) as st:
    ...     st.url, st.ws_url        # "http://127.0.0.1:PORT", "ws://127.0.0.1:PORT/ws"
    ...     st.set_faults(drop_every=10)
    ...     st.stats()
    """

    def __init__(self, venue: str = "mock", *, host: str = "127.0.0.1", port: int = 0,
                 seed: int = 0, rate: float = 1000.0, time_scale: float = 1.0,
                 faults: dict[str, Any] | None = None, **options: Any):
        self._args = dict(venue=venue, host=host, port=port, seed=seed, rate=rate,
                          time_scale=time_scale, faults=faults, **options)
        self.simulator: Simulator | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        assert self.simulator is not None, "not started"
        return self.simulator.url

    @property
    def ws_url(self) -> str:
        assert self.simulator is not None, "not started"
        return self.simulator.ws_url

    @property
    def port(self) -> int:
        assert self.simulator is not None, "not started"
        return self.simulator.port

    def start(self, timeout: float = 10.0) -> str:
        self._thread = threading.Thread(target=self._main, name="simulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("simulator did not start")
        if self._error is not None:
            raise RuntimeError("simulator failed to start") from self._error
        return self.url

    def _main(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()

            def ready(sim: Simulator) -> None:
                self.simulator = sim
                self._ready.set()

            await run_simulator(ready_callback=ready, stop_event=self._stop, **self._args)

        try:
            asyncio.run(main())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
        finally:
            self._ready.set()

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = 10.0) -> Any:
        """Run ``fn(*args)`` on the simulator's loop thread and return its result."""
        assert self.loop is not None

        async def run():
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        return self.call(lambda: self.simulator.set_faults(**faults))

    def stats(self) -> dict[str, Any]:
        return self.call(lambda: self.simulator.stats())

    def stop(self, timeout: float = 10.0) -> None:
        if self.loop is not None and self._stop is not None and self._thread and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> "SimulatorThread":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def simulate_main(venue: str = "mock", port: int = 8765, seed: int = 0, rate: float = 1000.0,
                  time_scale: float = 1.0, *, host: str = "127.0.0.1",
                  options: dict[str, Any] | None = None, **faults: Any) -> None:
    """Run a simulator in the foreground until SIGINT/SIGTERM (``lab simulate``).

    ``faults`` are the fault switches (``disconnect_after=...``, ...); those with value None are
    ignored, so CLI defaults can be passed straight through. ``options`` go to the simulator and
    the venue plugin (for the mock venue: ``lookahead``, ``prerender``, ``heartbeat_interval``...).
    """
    faults = {k: v for k, v in faults.items() if v is not None}

    def ready(sim: Simulator) -> None:
        print(f"simulator {venue} listening on {sim.url} (ws {sim.ws_url})", flush=True)

    try:
        asyncio.run(run_simulator(venue, host, port, seed, rate, time_scale, faults, ready,
                                  **(options or {})))
    except KeyboardInterrupt:
        pass


def _cli(argv: list[str] | None = None) -> None:
    """``python -m lab.venues.simulator`` (the same flags as ``lab simulate``)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m lab.venues.simulator")
    p.add_argument("--venue", default="mock")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--time-scale", type=float, default=1.0)
    for name in FAULT_NAMES:
        p.add_argument("--" + name.replace("_", "-"), type=float if name == "stall_seconds" else int)
    p.add_argument("--option", action="append", default=[], metavar="KEY=JSON",
                   help="simulator/plugin option, e.g. --option prerender=100000")
    a = vars(p.parse_args(argv))
    options = {}
    for item in a.pop("option"):
        key, _, value = item.partition("=")
        options[key.replace("-", "_")] = orjson.loads(value)
    simulate_main(a.pop("venue"), a.pop("port"), a.pop("seed"), a.pop("rate"), a.pop("time_scale"),
                  host=a.pop("host"), options=options, **a)


if __name__ == "__main__":
    _cli()
