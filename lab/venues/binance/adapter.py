"""Binance spot's adapter (lab.venues.contract): endpoints, SUBSCRIBE frames, sync rules.

Symbols: `BTCUSDT` as Binance spells it, `BTC-USDT` canonical, both accepted case-insensitively
(`resolve_symbols`). The normalizer is `feed.BinanceNormalizer` on lab/sync/buffered.py.
"""
from __future__ import annotations

from lab.venues.binance import feed
from lab.venues.binance import protocol as P
from lab.venues.contract import Option, Venue


class BinanceSpot(Venue):
    name = P.VENUE
    default_rest_url = P.DEFAULT_REST_URL
    default_ws_url = P.DEFAULT_WS_URL
    simulator = "lab.venues.binance.sim:BinanceVenue"
    instruments_path = P.INSTRUMENTS_PATH
    # spot, regular user, entry tier: 0.10% maker and taker
    fees = ("0.0010", "0.0010")
    # the server pings every 20 s (answered by the WebSocket client); diffs every 100 ms
    stall_timeout = 30.0
    max_connection_age = P.MAX_CONNECTION_AGE
    max_streams_per_connection = P.MAX_STREAMS // 2  # two streams (depth, trade) per symbol
    # U/u and trade ids are venue-wide: a successor connection's overlap dedupes exactly
    make_before_break = True
    sequence_scope = "symbol"
    # REQUEST_WEIGHT 6000 a minute per IP (exchangeInfo's rateLimits); a 5000-level snapshot costs 250
    rest_weight_per_minute = P.WEIGHT_PER_MINUTE
    options = (Option("weight_per_minute", "REST request weight to spend a minute (below the venue's 6000 when "
                      "other clients share the IP)"),
               Option("streams_per_connection", f"streams per WebSocket connection (default {P.MAX_STREAMS}, the "
                      "venue's cap; two per symbol): more symbols open more connections"),
               Option("max_connection_age", f"seconds a connection may live (default {P.MAX_CONNECTION_AGE:g}, "
                      "the venue's 24 h): the recorder replaces it make-before-break before; for a "
                      "time-compressed simulator"))

    def snapshot_weight(self, symbol: str) -> int:
        return P.depth_weight(P.SNAPSHOT_LIMIT)

    def __init__(self, **options: str):
        super().__init__(**options)
        if "weight_per_minute" in options:
            try:
                self.rest_weight_per_minute = int(options["weight_per_minute"])
                if self.rest_weight_per_minute <= 0:
                    raise ValueError
            except ValueError:
                from lab.core.errors import VenueError
                raise VenueError(f"binance: option weight_per_minute={options['weight_per_minute']!r}: "
                                 "expected a positive integer") from None
        if "streams_per_connection" in options:
            from lab.core.errors import VenueError
            try:
                streams = int(options["streams_per_connection"])
            except ValueError:
                streams = 0
            if not 2 <= streams <= P.MAX_STREAMS:
                raise VenueError(f"binance: option streams_per_connection={options['streams_per_connection']!r}: "
                                 f"expected an integer from 2 (one symbol) to {P.MAX_STREAMS}") from None
            self.max_streams_per_connection = streams // 2
        if "max_connection_age" in options:
            from lab.core.errors import VenueError
            try:
                age = float(options["max_connection_age"])
            except ValueError:
                age = 0.0
            if not 0 < age < float("inf"):
                raise VenueError(f"binance: option max_connection_age={options['max_connection_age']!r}: "
                                 "expected a positive number of seconds") from None
            self.max_connection_age = age

    def depth_path(self, symbol: str) -> str:
        return f"{P.DEPTH_PATH}?symbol={P.venue_symbol(symbol)}&limit={P.SNAPSHOT_LIMIT}"

    def subscribe_frames(self, symbols: list[str], depth: int = 0) -> list[bytes]:
        return [P.subscribe_frame(symbols, 1)]

    def ws_connection(self, ws_url: str, symbols: list[str], depth: int = 0) -> tuple[str, list[bytes]]:
        """A base URL (`ws://host:port`, no path) gets the connection's streams in a combined-stream
        URL (`/stream?streams=btcusdt@depth@100ms/btcusdt@trade/...`, nothing to send); a URL
        with a path (`/ws`, the default, or `/stream`) is opened as given and SUBSCRIBEs."""
        return P.connection_url(ws_url, symbols), [] if P.is_base_url(ws_url) else self.subscribe_frames(symbols, depth)

    def parse_instruments(self, payload: bytes):
        return P.parse_exchange_info(payload)

    def normalizer(self, **kwargs):
        return feed.BinanceNormalizer(**kwargs)

    def retry_after(self, status: int, body: bytes) -> float | None:
        """429 (`-1003 TOO_MANY_REQUESTS`) and 418 (banned): back off (the transport reads
        `Retry-After` where it is sent; this is the fallback)."""
        if status in (429, 418):
            return 60.0 if status == 418 else 1.0
        if status >= 400 and b"-1003" in body[:200]:
            return 1.0
        return None

    def resolve_symbols(self, symbols: list[str], instruments) -> list[str]:
        """`BTC-USDT`, `btcusdt`, `BTC/USDT` -> `BTCUSDT` (when exchangeInfo lists it)."""
        known = {i.venue_symbol for i in instruments}
        by_canon = {i.symbol.upper(): i.venue_symbol for i in instruments}
        out = []
        for s in symbols:
            v = P.venue_symbol(s)
            out.append(v if v in known else by_canon.get(s.upper(), s))
        return list(dict.fromkeys(out))

    def trade_ids_sequential(self, symbol: str, ids: list[str]) -> bool:
        return all(i.isdigit() for i in ids)  # `t` counts up by one per symbol

    def describe(self) -> dict:
        return {"symbols": "fetched from exchangeInfo at record time",
                "streams": "<sym>@depth@100ms and <sym>@trade, SUBSCRIBE on /ws or /stream",
                "snapshot": f"{P.DEPTH_PATH}?limit={P.SNAPSHOT_LIMIT} (weight {P.depth_weight(P.SNAPSHOT_LIMIT)})"}


    # -- wire-level replay (lab/venues/binance/replay.py; raw and combined streams) -------------------
    replay_protocol = "lab.venues.binance.replay"
    replay_ws_paths = ("/ws", "/ws/{streams}", "/stream", "/")
