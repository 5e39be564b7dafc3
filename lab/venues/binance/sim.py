"""Binance spot as a simulator plugin (lab.venues.simulator): a seeded market speaking the real
protocol (PROTOCOLS.md section 4).

REST: `GET /api/v3/exchangeInfo` (`?symbol=` / `?symbols=[...]`), `GET /api/v3/depth?symbol=&limit=`
with request weight per minute (250 for limit > 1000), 429 + `Retry-After` past the limit and 418
for a client that keeps asking after a 429. WebSocket: raw `/ws` (and `/ws/<stream>`), combined
`/stream?streams=a/b` (frames wrapped `{"stream":..,"data":..}`), live SUBSCRIBE / UNSUBSCRIBE /
LIST_SUBSCRIPTIONS answered `{"result":..,"id":N}`, a ping frame every `ping_interval` simulated
seconds, connections cut at `max_connection_age` (24 h; compress with --time-scale).

Faults: the framework's `drop_every` (a dropped diff: a gap), `disconnect_after`,
`malformed_every`, `rate_limit`; and the plugin's options `stale_snapshots=N` (the first N depth
answers are the book as of the start, older than any buffer) and `shutdown_after=S` (a
`serverShutdown` event, then a close, S simulated seconds into every connection;
`shutdown_grace=G`: the close G simulated seconds after the event, default 0, at once).
A time-compressed 24 h cut: `time_scale=K` (`--time-scale`) runs the simulated clock K times
faster, so `max_connection_age` (24 h simulated) cuts every connection after 86400/K wall seconds.

Memory is bounded whatever the rate and run time: `/control/book?symbol=S&seq=U` (the book right
after the diff with final id U) answers from a bounded window per symbol, option `book_history`
(default 131072 diffs; whole chunks of 4096 diffs, each a book checkpoint plus packed diffs, are
dropped from the front, so between `book_history` and `book_history + 4096` diffs are kept; an
older U is a 404 naming the oldest id kept); the stale snapshots keep one copy of the starting book;
a client more than `max_backlog` messages behind (default 100000, 0: off) is closed with 1008
"slow consumer", which frees the rendered frames it pinned. Each option goes through
`--option KEY=VALUE`.
"""
from __future__ import annotations

import random
import time
from array import array
from collections import deque
from urllib.parse import unquote

import orjson
from aiohttp import web

from lab.venues.binance import protocol as P
from lab.venues.simulator import Item, VenuePlugin, ws_frame

VENUE = P.VENUE
OP_PING = 0x9

# (symbol, base, quote, price precision, amount precision, mid price ticks)
DEFAULT_SYMBOLS = (
    ("BTCUSDT", "BTC", "USDT", 2, 5, 6168599),
    ("ETHUSDT", "ETH", "USDT", 2, 4, 345012),
    ("ETHBTC", "ETH", "BTC", 5, 4, 5593),
    ("BNBEUR", "BNB", "EUR", 1, 3, 5821),
)
# served only when asked for (`symbols=`): every default symbol shares the message rate
EXTRA_SYMBOLS = (
    ("SHIBUSDT", "SHIB", "USDT", 8, 0, 1234),  # tick 1e-8, whole lots: "0.00001234" x "1523.00000000"
)


#: diffs per history chunk: a chunk is a full copy of the book (its checkpoint) plus the diffs after it
HISTORY_CHUNK = 4096
#: default `book_history`: diffs kept per symbol for `/control/book?seq=` (older ids answer 404)
BOOK_HISTORY = 32 * HISTORY_CHUNK
#: default `max_backlog`: messages (all symbols) a client may fall behind before it is closed with
#: 1008 "slow consumer", as Binance cuts a client that does not read; the framework's own `max_lag`
#: (500000) let a stuck client pin ~600 MB of rendered frames at 60000 messages/s
MAX_BACKLOG = 100_000


def _flat(side: dict) -> array:
    out = array("q")
    for p, q in side.items():
        out.append(p)
        out.append(q)
    return out


def _unflat(flat: array) -> dict:
    it = iter(flat)
    return dict(zip(it, it))


class _Chunk:
    """The book right after update id `cp_u` (flat `price, qty` arrays) and the diffs that follow,
    packed in one int64 array as `u, n_bids, n_asks, price, qty, ...` records."""

    __slots__ = ("cp_u", "cp_bids", "cp_asks", "diffs", "n", "last_u")

    def __init__(self, u: int, bids: dict, asks: dict):
        self.cp_u = self.last_u = u
        self.cp_bids, self.cp_asks = _flat(bids), _flat(asks)
        self.diffs = array("q")
        self.n = 0


class _Book:
    """One symbol's book, with a bounded history for `at(u)`: the last `history` diffs (at least;
    whole chunks of HISTORY_CHUNK diffs are dropped from the front), not every diff since the start
    (at 60000 messages/s that was ~25 MB/s, without bound)."""

    def __init__(self, spec, rng: random.Random, levels: int = 30, history: int = BOOK_HISTORY):
        self.symbol, self.base, self.quote, self.pp, self.ap, mid = spec
        self.mid = mid
        # quantities up to 1 unit in lots (up to 10^6 units where the lot is a whole unit)
        self.max_lots = 10 ** self.ap if self.ap else 10 ** 6
        self.bids = {mid - i: rng.randint(1, self.max_lots) for i in range(levels)}
        self.asks = {mid + 1 + i: rng.randint(1, self.max_lots) for i in range(levels)}
        self.update_id = 1000 + rng.randint(0, 10 ** 6)
        self.trade_id = 1 + rng.randint(0, 10 ** 6)
        self.initial = (self.update_id, dict(self.bids), dict(self.asks))  # for stale_snapshots
        # chunks kept: enough that at least `history` diffs stay reachable, plus the one being filled
        self.max_chunks = max(1, -(-max(0, int(history)) // HISTORY_CHUNK)) + 1
        self.chunks: deque[_Chunk] = deque([_Chunk(self.update_id, self.bids, self.asks)])

    def record(self, u: int, bids: list, asks: list) -> None:
        """Append the diff that took the book (already updated) to final id `u`."""
        c = self.chunks[-1]
        rec = [u, len(bids), len(asks)]
        for p, q in bids:
            rec += (p, q)
        for p, q in asks:
            rec += (p, q)
        c.diffs.extend(rec)
        c.n += 1
        c.last_u = u
        if c.n >= HISTORY_CHUNK:
            self.chunks.append(_Chunk(u, self.bids, self.asks))
            while len(self.chunks) > self.max_chunks:
                self.chunks.popleft()

    @property
    def oldest_id(self) -> int:
        """The oldest update id `at()` still answers."""
        return self.chunks[0].cp_u

    def retained_diffs(self) -> int:
        return sum(c.n for c in self.chunks)

    def snapshot(self, limit: int = 5000):
        bids = sorted(self.bids.items(), reverse=True)[:limit]
        asks = sorted(self.asks.items())[:limit]
        return self.update_id, bids, asks

    def at(self, u: int):
        """The book right after the diff whose final id is `u` (LookupError when unknown or older
        than the retained window)."""
        if u < self.initial[0]:
            raise LookupError(f"{self.symbol}: id {u} is before the simulation")
        if u > self.update_id:
            raise LookupError(f"{self.symbol}: no diff ends at id {u} (last {self.update_id})")
        if u < self.chunks[0].cp_u:
            raise LookupError(f"{self.symbol}: id {u} is older than the retained history (ids from "
                              f"{self.chunks[0].cp_u} on, about the last {(self.max_chunks - 1) * HISTORY_CHUNK} diffs)")
        chunk = next(c for c in reversed(self.chunks) if c.cp_u <= u)
        bids, asks = _unflat(chunk.cp_bids), _unflat(chunk.cp_asks)
        lid = chunk.cp_u
        d = chunk.diffs
        i, end = 0, len(d)
        while i < end and lid != u:
            hu, nb, na = d[i], d[i + 1], d[i + 2]
            if hu > u:
                break
            i += 3
            for side, n in ((bids, nb), (asks, na)):
                for j in range(i, i + 2 * n, 2):
                    p, q = d[j], d[j + 1]
                    if q:
                        side[p] = q
                    else:
                        side.pop(p, None)
                i += 2 * n
            lid = hu
        if lid != u:
            raise LookupError(f"{self.symbol}: no diff ends at id {u} (last {self.update_id})")
        return lid, sorted(bids.items(), reverse=True), sorted(asks.items())


class BinanceVenue(VenuePlugin):
    name = VENUE
    # "/" too: `--ws-url ws://host:port` (the base URL) then works with SUBSCRIBE frames
    ws_paths = ("/ws", "/ws/{streams}", "/stream", "/")
    shared_frames = False  # raw and combined connections frame the same event differently
    heartbeat_interval = None

    def __init__(self, sim, symbols=None, *, trade_probability: float = 0.2, weight_limit: int = 6000,
                 ping_interval: float = 20.0, max_connection_age: float | None = P.MAX_CONNECTION_AGE,
                 stale_snapshots: int = 0, shutdown_after: float | None = None, shutdown_grace: float = 0.0,
                 ban_after: int = 3, book_history: int = BOOK_HISTORY, max_backlog: int = MAX_BACKLOG):
        super().__init__(sim)
        self.rng = random.Random(sim.seed)
        specs = [s for s in DEFAULT_SYMBOLS + EXTRA_SYMBOLS if s[0] in symbols] if symbols else list(DEFAULT_SYMBOLS)
        self.books = {s[0]: _Book(s, self.rng, history=book_history) for s in specs}
        self.order = list(self.books)
        self.trade_probability = trade_probability
        self.interval_ns = max(1, int(1e9 * sim.clock.time_scale / sim.rate))  # `rate` per wall second
        self.next_ns = sim.clock.now_ns() + self.interval_ns
        self.weight_limit = weight_limit
        self.ping_interval = ping_interval
        self.max_connection_age = max_connection_age
        self.stale_snapshots = stale_snapshots
        self.shutdown_after = shutdown_after
        self.shutdown_grace = float(shutdown_grace)  # simulated seconds from serverShutdown to the close
        self.ban_after = ban_after
        self.max_backlog = max_backlog  # messages a client may fall behind before it is cut (0: off)
        self.weight_used = 0
        self.weight_minute = -1
        self.after_429 = 0
        self.rest_stats = {"weight_429": 0, "banned_418": 0, "stale_served": 0}

    # ------------------------------------------------------------------ the market
    def next_due_ns(self) -> int | None:
        return self.next_ns

    def produce(self, until_ns: int, limit: int) -> list[Item]:
        out = []
        while self.next_ns <= until_ns and len(out) < limit:
            out.append(self._event(self.next_ns))
            self.next_ns += self.interval_ns
        self._service_connections()
        return out

    def _event(self, ts_ns: int) -> Item:
        rng = self.rng
        book = self.books[self.order[rng.randrange(len(self.order))]]
        E = ts_ns // 1_000_000
        if rng.random() < self.trade_probability and book.bids and book.asks:
            book.trade_id += 1
            maker_buyer = rng.random() < 0.5
            price = max(book.bids) if maker_buyer else min(book.asks)
            qty = rng.randint(1, book.max_lots)
            args = (book.symbol, E, book.trade_id, price, qty, maker_buyer, book.pp, book.ap)
            raw, comb = P.render_trade(*args), P.render_trade(*args, stream=True)
            return Item(ws_frame(raw), ("trade", book.symbol), "trade", book.symbol, None, (raw, comb))
        bids, asks = [], []
        if rng.random() < 0.05:  # the mid moves a tick; levels it crosses go
            step = rng.choice((-1, 1))
            book.mid += step
            if step > 0:
                if book.mid in book.asks:
                    asks.append((book.mid, 0))
            elif book.mid + 1 in book.bids:
                bids.append((book.mid + 1, 0))
        for _ in range(rng.randint(1, 3)):
            off = rng.randint(0, 40)
            qty = 0 if rng.random() < 0.3 else rng.randint(1, book.max_lots)
            if rng.random() < 0.5:
                bids.append((book.mid - off, qty))
            else:
                asks.append((book.mid + 1 + off, qty))
        for side, levels in ((book.bids, bids), (book.asks, asks)):
            for p, q in levels:
                if q:
                    side[p] = q
                else:
                    side.pop(p, None)
        U = book.update_id + 1
        u = U + rng.randint(0, 4)  # one event folds several updates
        book.update_id = u
        book.record(u, bids, asks)
        args = (book.symbol, E, U, u, bids, asks, book.pp, book.ap)
        raw, comb = P.render_diff(*args), P.render_diff(*args, stream=True)
        return Item(ws_frame(raw), ("depth", book.symbol), "book", book.symbol, u, (raw, comb))

    def seqs(self) -> dict[str, int]:
        return {s: b.update_id for s, b in self.books.items()}

    def _service_connections(self) -> None:
        """Ping frames and `serverShutdown` (the framework has no timer for either)."""
        now = time.monotonic()
        sim = self.sim
        wall = sim.clock.wall_seconds
        tape, base, produced = sim._tape, sim._tape_base, sim._produced
        for conn in list(sim.connections.values()):
            if conn.closing:
                continue
            if self.max_backlog and tape and conn.next_batch - base < len(tape):
                pending = produced - (tape[conn.next_batch - base].start + conn.offset)
                if pending > self.max_backlog:
                    conn.close(1008, "slow consumer")  # its backlog is trimmed off the tape
                    continue
            st = conn.state
            if self.ping_interval and now - st.get("last_ping", conn.opened_mono) >= max(0.05, wall(self.ping_interval)):
                st["last_ping"] = now
                if not conn.transport.is_closing():
                    conn.transport.write(ws_frame(b"%d" % int(now * 1000), OP_PING))
            if self.shutdown_after and not st.get("shutdown") and now - conn.opened_mono >= wall(self.shutdown_after):
                st["shutdown"] = now
                conn.send(orjson.dumps({"e": "serverShutdown", "E": self.sim.clock.now_ns() // 1_000_000}))
            if st.get("shutdown") and now - st["shutdown"] >= wall(self.shutdown_grace):
                conn.close(1000, "serverShutdown")

    def frame_for(self, conn, item: Item) -> bytes:
        raw, comb = item.event
        return ws_frame(comb) if conn.state.get("combined") else item.frame

    def malformed(self, item: Item) -> bytes:
        raw = item.event[0]
        return raw[: max(1, len(raw) // 2)]

    # ------------------------------------------------------------------ REST
    def routes(self):
        return [("GET", P.INSTRUMENTS_PATH, self._exchange_info), ("GET", P.DEPTH_PATH, self._depth)]

    def rate_limit_response(self, request: web.Request) -> web.Response:
        return _json(P.render_error(-1003, "Too many requests; current limit is 6000 request weight per 1 MINUTE."),
                     429, {"Retry-After": "1"})

    async def _exchange_info(self, request: web.Request) -> web.Response:
        q = request.query
        names = list(self.books)
        try:
            if "symbol" in q:
                names = [q["symbol"].upper()]
            elif "symbols" in q:
                names = [s.upper() for s in orjson.loads(unquote(q["symbols"]))]
        except (orjson.JSONDecodeError, TypeError, AttributeError):
            return _json(P.render_error(-1100, "Illegal characters found in parameter 'symbols'."), 400)
        if any(n not in self.books for n in names):
            return _json(P.render_error(-1121, "Invalid symbol."), 400)
        specs = [(b.symbol, b.base, b.quote, b.pp, b.ap) for b in (self.books[n] for n in names)]
        return _json(P.render_exchange_info(specs))

    def _charge(self, weight: int) -> web.Response | None:
        minute = int(self.sim.clock.now_ns() // 60_000_000_000)
        if minute != self.weight_minute:
            self.weight_minute, self.weight_used, self.after_429 = minute, 0, 0
        if self.weight_used + weight > self.weight_limit:
            retry = str(max(1, 60 - int(self.sim.clock.now_ns() // 1_000_000_000) % 60))
            self.after_429 += 1
            if self.after_429 > self.ban_after:
                self.rest_stats["banned_418"] += 1
                return _json(P.render_error(-1003, "Way too many requests; IP banned."), 418, {"Retry-After": retry})
            self.rest_stats["weight_429"] += 1
            return _json(P.render_error(-1003, "Too many requests."), 429, {"Retry-After": retry})
        self.weight_used += weight
        return None

    async def _depth(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            limit = int(q.get("limit", "100"))
        except ValueError:
            return _json(P.render_error(-1100, "Illegal characters found in parameter 'limit'."), 400)
        limit = max(1, min(limit, 5000))
        refused = self._charge(P.depth_weight(limit))
        if refused is not None:
            return refused
        book = self.books.get(q.get("symbol", "").upper())
        if book is None:
            return _json(P.render_error(-1121, "Invalid symbol."), 400)
        if self.stale_snapshots > 0:
            self.stale_snapshots -= 1
            self.rest_stats["stale_served"] += 1
            lid, bids, asks = self.initial_snapshot(book, limit)
        else:
            lid, bids, asks = book.snapshot(limit)
        headers = {"x-mbx-used-weight-1m": str(self.weight_used)}
        return _json(P.render_depth(lid, bids, asks, book.pp, book.ap), 200, headers)

    @staticmethod
    def initial_snapshot(book: _Book, limit: int):
        lid, bids, asks = book.initial
        return lid, sorted(bids.items(), reverse=True)[:limit], sorted(asks.items())[:limit]

    def control_book(self, request: web.Request) -> web.Response:
        book = self.books.get(request.query.get("symbol", "").upper())
        if book is None:
            return _json(P.render_error(-1121, "Invalid symbol."), 404)
        seq = request.query.get("seq")
        try:
            lid, bids, asks = book.snapshot() if seq is None else book.at(int(seq))
        except (ValueError, LookupError) as exc:
            return _json(P.render_error(-1, str(exc)), 404)
        return _json(P.render_depth(lid, bids, asks, book.pp, book.ap))

    # ------------------------------------------------------------------ WebSocket
    def _key(self, stream: str):
        name, _, kind = stream.partition("@")
        sym = name.upper()
        if sym not in self.books or kind not in ("depth", "depth@100ms", "trade"):
            return None
        return ("trade" if kind == "trade" else "depth", sym)

    async def on_open(self, conn) -> None:
        req = conn.request
        path = req.path
        conn.state["combined"] = path.startswith("/stream")
        names = []
        if conn.state["combined"]:
            names = [n for n in req.query.get("streams", "").split("/") if n]
        elif path.startswith("/ws/"):
            names = [n for n in path[4:].split("/") if n]
        keys = [self._key(n) for n in names]
        conn.subscribe(k for k in keys if k is not None)

    async def on_text(self, conn, data: str) -> None:
        try:
            msg = orjson.loads(data)
            method, req_id = msg["method"], msg.get("id")
        except (orjson.JSONDecodeError, KeyError, TypeError):
            conn.send(P.render_error(3, "Invalid JSON: expected {\"method\":...,\"params\":[...],\"id\":N}"))
            return
        params = msg.get("params") or []
        if method == "LIST_SUBSCRIPTIONS":
            subs = sorted(f"{s.lower()}@{'trade' if k == 'trade' else 'depth@100ms'}" for k, s in conn.subscriptions)
            conn.send(orjson.dumps({"result": subs, "id": req_id}))
            return
        if method not in ("SUBSCRIBE", "UNSUBSCRIBE") or not isinstance(params, list):
            conn.send(orjson.dumps({"error": {"code": 1, "msg": f"Unknown method {str(method)[:40]}"}, "id": req_id}))
            return
        keys = [self._key(p) if isinstance(p, str) else None for p in params]
        if any(k is None for k in keys):
            conn.send(orjson.dumps({"error": {"code": 2, "msg": "Invalid request: unknown stream"}, "id": req_id}))
            return
        (conn.subscribe if method == "SUBSCRIBE" else conn.unsubscribe)(keys)
        conn.send(orjson.dumps({"result": None, "id": req_id}))


def _json(body: bytes, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


__all__ = ["BinanceVenue", "VENUE"]
