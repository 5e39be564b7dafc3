"""The mock venue as a simulator plugin: exactly the protocol of docs/ARCHITECTURE.md.

REST ``/api/instruments`` and ``/api/depth?symbol=S``; WebSocket ``/ws`` (hello, subscribe,
book deltas, trades, heartbeats); ``/control/book`` answers from the market's history.
Data messages come from a seeded ``Market`` whose event timestamps are simulated time, so the
stream's content depends only on the seed (and symbols), never on wall-clock timing.

Render-ahead: with ``lookahead=N`` the plugin generates and renders up to N messages before
they are due, in the pump's idle time, and ``prerender=N`` does so before the server starts
serving (the simulated clock starts after it). Due messages then cost only a ``transport.write``
(bursts go at wire speed). The REST depth is still the book as of the last *due* message: the
plugin keeps a "due book" per symbol, applying messages as they fall due.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence

from aiohttp import web

from lab.venues.mock import protocol as P
from lab.venues.mock.market import DEFAULT_SYMBOLS, BookEvent, BookSnapshot, Market, SymbolSpec
from lab.venues.simulator import Item, VenuePlugin, ws_frame

VENUE = "mock"


class _Fmt:
    """``format_fixed`` with a bounded cache (prices near the touch repeat a lot)."""

    __slots__ = ("precision", "cache", "limit")

    def __init__(self, precision: int, limit: int = 200_000):
        self.precision = precision
        self.cache: dict[int, str] = {}
        self.limit = limit

    def __call__(self, value: int) -> str:
        s = self.cache.get(value)
        if s is None:
            s = P.format_fixed(value, self.precision)
            if len(self.cache) >= self.limit:
                self.cache.clear()
            self.cache[value] = s
        return s


class _DueBook:
    """The book of one symbol as of the last message that fell due (render-ahead mode)."""

    __slots__ = ("symbol", "bids", "asks", "seq", "timestamp", "pp", "ap")

    def __init__(self, snap: BookSnapshot):
        self.symbol = snap.symbol
        self.bids = dict(snap.bids)
        self.asks = dict(snap.asks)
        self.seq = snap.seq
        self.timestamp = snap.timestamp
        self.pp = snap.price_precision
        self.ap = snap.amount_precision

    def apply(self, ev: BookEvent) -> None:
        for side, levels in ((self.bids, ev.bids), (self.asks, ev.asks)):
            for price, amount in levels:
                if amount:
                    side[price] = amount
                else:
                    side.pop(price, None)
        self.seq = ev.seq
        self.timestamp = ev.timestamp

    def snapshot(self) -> BookSnapshot:
        bids = tuple(sorted(self.bids.items(), reverse=True))
        asks = tuple(sorted(self.asks.items()))
        return BookSnapshot(self.symbol, self.seq, self.timestamp, bids, asks,
                            P.mock_checksum(bids, asks, self.pp, self.ap), self.pp, self.ap)


class MockVenue(VenuePlugin):
    name = VENUE
    heartbeat_interval = 1.0

    def __init__(
        self,
        sim,
        symbols: Sequence[SymbolSpec] | None = None,
        *,
        heartbeat_interval: float | None = 1.0,
        idle_timeout: float | None = None,
        max_connection_age: float | None = None,
        trade_probability: float = 0.15,
        lookahead: int = 8192,
        prerender: int = 0,
    ):
        super().__init__(sim)
        self.heartbeat_interval = heartbeat_interval
        self.idle_timeout = idle_timeout
        self.max_connection_age = max_connection_age
        clock = sim.clock
        self.market = Market(
            sim.seed,
            tuple(symbols) if symbols else DEFAULT_SYMBOLS,
            start_ns=clock.start_ns,
            mean_interval_ns=1e9 * clock.time_scale / sim.rate,
            trade_probability=trade_probability,
        )
        self.specs = {s.symbol: s for s in self.market.specs}
        self._instruments_body = P.render_instruments(self.market.instruments())
        self._fmt = {
            s.symbol: (_Fmt(s.price_precision), _Fmt(s.amount_precision)) for s in self.market.specs
        }
        self._sym_json = {s.symbol: P._dumps(s.symbol).decode() for s in self.market.specs}
        self._keys = {s: (("book", s), ("trades", s)) for s in self.specs}
        self.lookahead = max(int(lookahead), int(prerender))
        self._ahead: deque[Item] = deque()
        self._due: dict[str, _DueBook] | None = None
        if self.lookahead:
            self._due = {s: _DueBook(self.market.book(s)) for s in self.specs}
        if prerender:
            self._ahead.extend(self._render(self.market.take(int(prerender))))

    # ------------------------------------------------------------------ rendering

    def render_event(self, ev, checksum: int | None = None) -> bytes:
        """Exact bytes of a market event (identical to ``protocol.render_book/render_trade``)."""
        fp, fa = self._fmt[ev.symbol]
        sym = self._sym_json[ev.symbol]
        if type(ev) is BookEvent:
            texts = ev.texts
            if texts is not None:
                bids = ",".join([f'["{p}","{a}"]' for p, a in texts[0]])
                asks = ",".join([f'["{p}","{a}"]' for p, a in texts[1]])
            else:
                bids = ",".join([f'["{fp(p)}","{fa(a)}"]' for p, a in ev.bids])
                asks = ",".join([f'["{fp(p)}","{fa(a)}"]' for p, a in ev.asks])
            cs = ev.checksum if checksum is None else checksum
            return (f'{{"type":"book","symbol":{sym},"seq":{ev.seq},"timestamp":{ev.timestamp},'
                    f'"bids":[{bids}],"asks":[{asks}],"checksum":{cs}}}').encode()
        return (f'{{"type":"trade","symbol":{sym},"id":{ev.id},"timestamp":{ev.timestamp},'
                f'"side":"{ev.side}","price":"{fp(ev.price)}","amount":"{fa(ev.amount)}"}}').encode()

    def _render(self, events) -> list[Item]:
        """Events -> pre-rendered frames (the hot loop: ``render_event`` inlined)."""
        out = []
        append = out.append
        fmt = self._fmt
        sym_json = self._sym_json
        keys = self._keys
        render = self.render_event
        for ev in events:
            symbol = ev.symbol
            if type(ev) is BookEvent:
                texts = ev.texts
                if texts is None:
                    payload = render(ev)
                else:
                    bids = ",".join([f'["{p}","{a}"]' for p, a in texts[0]])
                    asks = ",".join([f'["{p}","{a}"]' for p, a in texts[1]])
                    payload = (f'{{"type":"book","symbol":{sym_json[symbol]},"seq":{ev.seq},'
                               f'"timestamp":{ev.timestamp},"bids":[{bids}],"asks":[{asks}],'
                               f'"checksum":{ev.checksum}}}').encode()
                append(Item(ws_frame(payload), keys[symbol][0], "book", symbol, ev.seq, ev))
            else:
                fp, fa = fmt[symbol]
                payload = (f'{{"type":"trade","symbol":{sym_json[symbol]},"id":{ev.id},'
                           f'"timestamp":{ev.timestamp},"side":"{ev.side}","price":"{fp(ev.price)}",'
                           f'"amount":"{fa(ev.amount)}"}}').encode()
                append(Item(ws_frame(payload), keys[symbol][1], "trade", symbol, None, ev))
        return out

    def next_due_ns(self) -> int | None:
        if self._ahead:
            return self._ahead[0].event.timestamp
        return self.market.next_timestamp

    def produce(self, until_ns: int, limit: int) -> list[Item]:
        ahead = self._ahead
        if ahead:
            out = []
            while ahead and len(out) < limit and ahead[0].event.timestamp <= until_ns:
                out.append(ahead.popleft())
            if not ahead and len(out) < limit:
                out.extend(self._render(self.market.take_until(until_ns, limit - len(out))))
        else:
            out = self._render(self.market.take_until(until_ns, limit))
        due = self._due
        if due is not None:
            for it in out:
                if it.seq is not None:
                    due[it.symbol].apply(it.event)
        return out

    def prepare(self, deadline: float) -> None:
        """Render ahead (``lookahead``) until the monotonic ``deadline``."""
        ahead = self._ahead
        room = self.lookahead - len(ahead)
        while room > 0 and time.monotonic() < deadline:
            chunk = self._render(self.market.take(min(room, 64)))
            ahead.extend(chunk)
            room -= len(chunk)

    def bad_checksum(self, item: Item) -> bytes:
        ev = item.event
        return self.render_event(ev, checksum=ev.checksum ^ 0xFFFFFFFF)

    # ------------------------------------------------------------------ books

    def current_book(self, symbol: str) -> BookSnapshot:
        """The book as of the last message that fell due."""
        if self._due is not None:
            return self._due[symbol].snapshot()
        return self.market.book(symbol)

    def book_at(self, symbol: str, seq: int) -> BookSnapshot:
        """The book right after book message ``seq`` (``LookupError`` if not due yet)."""
        if self._due is not None:
            due = self._due[symbol]
            if seq == due.seq:
                return due.snapshot()
            if seq > due.seq:
                raise LookupError(f"{symbol} seq {seq} not available (current seq {due.seq})")
        return self.market.book_at(symbol, seq)

    def seqs(self) -> dict[str, int]:
        if self._due is not None:
            return {s: d.seq for s, d in self._due.items()}
        return self.market.seqs()

    # ------------------------------------------------------------------ REST

    def routes(self):
        return [
            ("GET", "/api/instruments", self._instruments),
            ("GET", "/api/depth", self._depth),
        ]

    def rate_limit_response(self, request: web.Request) -> web.Response:
        return _json_bytes(P.render_rest_error("rate limit exceeded"), 429)

    async def _instruments(self, request: web.Request) -> web.Response:
        return _json_bytes(self._instruments_body)

    async def _depth(self, request: web.Request) -> web.Response:
        symbol = request.query.get("symbol")
        if symbol is None:
            return _json_bytes(P.render_rest_error("missing parameter: symbol"), 400)
        if symbol not in self.specs:
            return _json_bytes(P.render_rest_error(f"unknown symbol: {symbol}"), 404)
        return _json_bytes(self.render_depth(self.current_book(symbol)))

    @staticmethod
    def render_depth(book: BookSnapshot) -> bytes:
        return P.render_depth(book.symbol, book.seq, book.timestamp, book.bids, book.asks,
                              book.checksum, book.price_precision, book.amount_precision)

    def control_book(self, request: web.Request) -> web.Response:
        symbol = request.query.get("symbol")
        if symbol is None:
            return _json_bytes(P.render_rest_error("missing parameter: symbol"), 400)
        if symbol not in self.specs:
            return _json_bytes(P.render_rest_error(f"unknown symbol: {symbol}"), 404)
        seq_text = request.query.get("seq")
        if seq_text is None:
            return _json_bytes(self.render_depth(self.current_book(symbol)))
        try:
            seq = int(seq_text)
        except ValueError:
            return _json_bytes(P.render_rest_error(f"bad seq: {seq_text}"), 400)
        try:
            book = self.book_at(symbol, seq)
        except LookupError as exc:
            return _json_bytes(P.render_rest_error(str(exc)), 404)
        return _json_bytes(self.render_depth(book))

    # ------------------------------------------------------------------ WebSocket

    async def on_open(self, conn) -> None:
        conn.send(P.render_hello(self.sim.clock.now_ns()))

    async def on_text(self, conn, data: str) -> None:
        try:
            msg = P.parse_message(data)
        except ValueError as exc:
            conn.send(P.render_error(f"invalid request: {exc}"))
            return
        if not isinstance(msg, P.Subscribe):
            conn.send(P.render_error("invalid request: expected {\"op\":\"subscribe\",...}"))
            return
        for s in msg.symbols:
            if s not in self.specs:
                conn.send(P.render_error(f"unknown symbol: {s}"))
                return
        for c in msg.channels:
            if c not in P.CHANNELS:
                conn.send(P.render_error(f"unknown channel: {c}"))
                return
        conn.subscribe((c, s) for s in msg.symbols for c in msg.channels)
        conn.send(P.render_subscribed(msg.symbols, msg.channels))

    def heartbeat(self, conn) -> bytes:
        return P.render_heartbeat(self.sim.clock.now_ns())


def _json_bytes(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json")


__all__ = ["MockVenue", "VENUE"]
