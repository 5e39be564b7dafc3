"""Kraken as a simulator plugin (lab/venues/simulator.py): REST `AssetPairs`, `Depth`, the private
`Balance` and `AddOrder`, WebSocket v1 (`/ws`): systemStatus, subscriptionStatus acks and
errors, ping/pong, heartbeats, `book-<depth>` snapshots and updates, `trade`; and WebSocket v2
(`/v2`): the `status` greeting, `subscribe`/`unsubscribe` acks and errors per symbol, `ping` /
`pong`, `{"channel":"heartbeat"}`, `book` snapshots and updates that both carry the checksum
(prices and quantities as JSON numbers written at the pair's precisions, symbols `BTC/USD`),
and `trade` (with a `trade_id` per pair).

The market is seeded per pair: every book event changes 1-3 levels on one side or on both sides
(a 5-element message, asks dict first, the checksum in the last dict), sometimes the same price
twice in one message. For every subscribed depth D the plugin keeps the book a D-deep client
holds and renders what Kraken sends such a client: changes inside the top D, deletes of levels
the client holds, and `r` republish entries for the level a delete pulls into scope. Levels
pushed out of scope get no delete (the client truncates). The checksum is CRC32 of the top 10
per side as wire strings padded to pair_decimals / lot_decimals (PROTOCOLS.md), the same for
every depth >= 10.

`wire_price_decimals={"XBT/USD": 5}` makes v1 and REST write that pair's prices with more
decimals than pair_decimals, as real Kraken does for XBT/USD ("30384.10000"); the v1 checksum is
then over those padded strings (as Kraken's is). v2 always writes the pair's precisions.

`/control/book?symbol=XBT/USD[&seq=N]` gives the book (top 10 per side, checksum) right after
book event N of that pair (or now); `/control/stats` `last_seq` says which event a connection saw
last (an event outside a client's depth changes nothing it holds).
"""
from __future__ import annotations

import base64
import bisect
import hashlib
import hmac
import random
import zlib
from collections import deque
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from lab.venues.kraken import protocol as P
from lab.venues.simulator import Item, VenuePlugin, ws_frame

VENUE = "kraken"

# Simulator-only credentials (documented; they open nothing but this simulator).
SIM_API_KEY = "labsim" + hashlib.sha256(b"lab kraken simulator key").hexdigest()[:50]
SIM_API_SECRET = base64.b64encode(hashlib.sha512(b"lab kraken simulator secret").digest()).decode()

START_PRICES = {"XBT/USD": "30000.0", "ETH/USD": "2000.00", "XBT/EUR": "28000.0", "XBT/USDT": "30010.0", "ETH/USDT": "2001.00"}
BALANCE = {"ZUSD": "171288.6158", "ZEUR": "504861.8946", "XXBT": "1011.1908877900", "XETH": "818.5500000000", "USDT": "500000.00000000"}
HISTORY = 200_000  # book states remembered per pair for /control/book?seq=


def _fmt(value: int, decimals: int) -> str:
    if decimals == 0:
        return str(value)
    q, r = divmod(value, 10 ** decimals)
    return f"{q}.{r:0{decimals}d}"


def _ts(ns: int) -> str:
    return f"{ns // 1_000_000_000}.{(ns // 1000) % 1_000_000:06d}"


def _iso(ns: int) -> str:
    """RFC 3339 UTC with microseconds, as v2 writes its timestamps."""
    import time as _time

    return _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(ns // 1_000_000_000)) + f".{(ns // 1000) % 1_000_000:06d}Z"


def _iso_now() -> str:
    import time as _time

    return _iso(_time.time_ns())


class _Side:
    """One side of a book: price -> amount plus the prices sorted ascending."""

    __slots__ = ("ask", "levels", "prices")

    def __init__(self, ask: bool):
        self.ask = ask
        self.levels: dict[int, int] = {}
        self.prices: list[int] = []

    def __len__(self) -> int:
        return len(self.prices)

    def pos(self, price: int) -> int | None:
        """0-based rank from the best, or None when absent."""
        if price not in self.levels:
            return None
        i = bisect.bisect_left(self.prices, price)
        return i if self.ask else len(self.prices) - 1 - i

    def at(self, k: int) -> tuple[int, int] | None:
        n = len(self.prices)
        if k >= n:
            return None
        p = self.prices[k] if self.ask else self.prices[n - 1 - k]
        return p, self.levels[p]

    def best(self) -> int | None:
        lv = self.at(0)
        return None if lv is None else lv[0]

    def set(self, price: int, amount: int) -> None:
        if amount:
            if price not in self.levels:
                bisect.insort(self.prices, price)
            self.levels[price] = amount
        elif price in self.levels:
            del self.levels[price]
            self.prices.pop(bisect.bisect_left(self.prices, price))

    def top(self, n: int) -> list[tuple[int, int]]:
        ps = self.prices[:n] if self.ask else self.prices[::-1][:n]
        return [(p, self.levels[p]) for p in ps]

    def truncate(self, n: int) -> None:
        while len(self.prices) > n:
            p = self.prices.pop() if self.ask else self.prices.pop(0)
            del self.levels[p]


class _Pair:
    def __init__(self, spec: P.PairSpec, index: int, rng: random.Random, levels: int, price_pad: int = 0):
        self.spec = spec
        self.index = index
        self.v2name = P.v2_symbol(spec.wsname)
        self.pd, self.ld = spec.pair_decimals, spec.lot_decimals
        self.price_pad = price_pad  # v1/REST price decimals beyond pair_decimals (trailing zeros)
        self.asks, self.bids = _Side(True), _Side(False)
        self.views: dict[int, tuple[_Side, _Side]] = {}  # depth -> what a client of that depth holds
        self.apis: dict[int, set[str]] = {}  # depth -> the APIs ("v1", "v2") that subscribed it
        self.trade_id = 0
        self.seq = 0
        self.timestamp = 0
        self.history: deque = deque(maxlen=HISTORY)  # (seq, checksum, top10 asks, top10 bids)
        mid = int(Decimal(START_PRICES.get(spec.wsname, "100")) * 10 ** self.pd)
        p = mid
        for _ in range(levels):
            p += rng.randint(1, 4)
            self.asks.set(p, self.lot(rng))
        p = mid
        for _ in range(levels):
            p -= rng.randint(1, 4)
            self.bids.set(p, self.lot(rng))
        self.record()

    def lot(self, rng: random.Random) -> int:
        return rng.randint(1, 500_000) * 10 ** (self.ld - 5) if self.ld >= 5 else rng.randint(1, 10**self.ld)

    def side(self, ask: bool) -> _Side:
        return self.asks if ask else self.bids

    def checksum(self, pad: int | None = None) -> int:
        """CRC32 of the top 10 per side as Kraken computes it over its wire strings: v1 (the
        default) with this pair's price padding, v2 (`pad=0`) at the pair's precisions."""
        pad = self.price_pad if pad is None else pad
        zeros = "0" * pad
        parts = []
        for p, a in self.asks.top(10) + self.bids.top(10):
            parts.append(f"{p}{zeros}" if p else "")
            parts.append(str(a) if a else "")
        return zlib.crc32("".join(parts).encode())

    def price(self, p: int) -> str:
        """v1 / REST price text (padded like the venue)."""
        return _fmt(p * 10 ** self.price_pad, self.pd + self.price_pad)

    def record(self) -> None:
        self.history.append((self.seq, self.checksum(), self.asks.top(10), self.bids.top(10)))

    def activate(self, depth: int, api: str = "v1") -> None:
        self.apis.setdefault(depth, set()).add(api)
        if depth not in self.views:
            va, vb = _Side(True), _Side(False)
            for p, a in self.asks.top(depth):
                va.set(p, a)
            for p, a in self.bids.top(depth):
                vb.set(p, a)
            self.views[depth] = (va, vb)

    def channel_id(self, name: str, depth: int = 0) -> int:
        return 1000 * (self.index + 1) + (P.VALID_DEPTHS.index(depth) + 1 if name == "book" else 0)


class KrakenVenue(VenuePlugin):
    name = VENUE
    heartbeat_interval = 1.0

    def __init__(self, sim, pairs=None, *, levels: int = 40, heartbeat_interval: float | None = 1.0,
                 idle_timeout: float | None = None, max_connection_age: float | None = None,
                 trade_probability: float = 0.12, both_sides_probability: float = 0.25,
                 repeat_probability: float = 0.05, api_keys: dict[str, str] | None = None,
                 wire_price_decimals: dict[str, int] | None = None):
        super().__init__(sim)
        self.heartbeat_interval = heartbeat_interval
        self.idle_timeout = idle_timeout
        self.max_connection_age = max_connection_age
        self.rng = random.Random(sim.seed)
        self.specs = tuple(pairs) if pairs else P.PAIRS
        pads = {}
        for name, decimals in (wire_price_decimals or {}).items():
            spec = next((s for s in self.specs if name in (s.wsname, s.altname, s.internal)), None)
            if spec is None or int(decimals) < spec.pair_decimals:
                raise ValueError(f"wire_price_decimals: {name}={decimals} (unknown pair or below pair_decimals)")
            pads[spec.wsname] = int(decimals) - spec.pair_decimals
        self.pairs = {s.wsname: _Pair(s, i, self.rng, levels, pads.get(s.wsname, 0)) for i, s in enumerate(self.specs)}
        self.v2_pairs = {p.v2name: p for p in self.pairs.values()}
        self.v2_trades = False  # some v2 connection subscribed trades: render them too
        self._by_name = {}
        for p in self.pairs.values():
            for n in (p.spec.internal, p.spec.altname, p.spec.wsname):
                self._by_name[n] = p
        self.levels = levels
        self.trade_probability = trade_probability
        self.both_sides_probability = both_sides_probability
        self.repeat_probability = repeat_probability
        self.interval_ns = 1e9 * sim.clock.time_scale / sim.rate
        self.next_ns = sim.clock.start_ns + int(self.rng.expovariate(1.0) * self.interval_ns)
        self.api_keys = dict(api_keys) if api_keys is not None else {SIM_API_KEY: SIM_API_SECRET}
        self.last_nonce: dict[str, int] = {}
        self.orders = 0
        self._asset_pairs = orjson.dumps({"error": [], "result": {s.internal: s.asset_pair() for s in self.specs}})
        self._connections = 0

    # ------------------------------------------------------------------ the market

    def next_due_ns(self) -> int | None:
        return self.next_ns

    def produce(self, until_ns: int, limit: int) -> list[Item]:
        out: list[Item] = []
        while self.next_ns <= until_ns and len(out) < limit:
            ts = self.next_ns
            self.next_ns += max(1, int(self.rng.expovariate(1.0) * self.interval_ns))
            pair = self.pairs[self.specs[self.rng.randrange(len(self.specs))].wsname]
            if self.rng.random() < self.trade_probability:
                out.extend(self._trade(pair, ts))
            else:
                out.extend(self._book_event(pair, ts))
        return out

    def _changes(self, pair: _Pair, ask: bool) -> list[tuple[int, int]]:
        rng = self.rng
        side = pair.side(ask)
        other = pair.side(not ask)
        out = []
        for _ in range(rng.randint(1, 3)):
            n = len(side)
            r = rng.random()
            if n <= 2 or (n < self.levels and r < 0.45) or r < 0.3:
                # a new level near the touch (never crossing the other side)
                ref = side.best()
                step = rng.randint(-3, 12)
                price = (ref + step if ask else ref - step) if ref is not None else None
                ob = other.best()
                if price is None:
                    price = (ob + 1) if ask else (ob - 1)
                if ob is not None and (price <= ob if ask else price >= ob):
                    price = ob + 1 if ask else ob - 1
                if price <= 0:
                    continue
                out.append((price, pair.lot(rng)))
            elif r < 0.7 or n > self.levels + 5:
                k = min(int(rng.expovariate(0.25)), n - 1)
                price, _ = side.at(k)
                out.append((price, 0))
            else:
                k = min(int(rng.expovariate(0.2)), n - 1)
                price, _ = side.at(k)
                out.append((price, pair.lot(rng)))
            if rng.random() < self.repeat_probability:
                price, amount = out[-1]
                out.insert(len(out) - 1, (price, pair.lot(rng)))  # the same price twice, in order
        return out

    def _book_event(self, pair: _Pair, ts: int) -> list[Item]:
        rng = self.rng
        r = rng.random()
        if r < self.both_sides_probability:
            sides = (True, False)
        else:
            sides = (rng.random() < 0.5,)
        sent: dict[int, dict[bool, list]] = {d: {True: [], False: []} for d in pair.views}
        for ask in sides:
            side = pair.side(ask)
            for price, amount in self._changes(pair, ask):
                before = side.pos(price)
                side.set(price, amount)
                after = side.pos(price)
                for depth, views in pair.views.items():
                    view = views[0] if ask else views[1]
                    entries = sent[depth][ask]
                    if amount:
                        if after < depth or price in view.levels:
                            entries.append((price, amount, False))
                            view.set(price, amount)
                    elif price in view.levels:
                        entries.append((price, 0, False))
                        view.set(price, 0)
                        if before is not None and before < depth:
                            lv = side.at(depth - 1)
                            if lv is not None and view.levels.get(lv[0]) != lv[1]:
                                entries.append((lv[0], lv[1], True))
                                view.set(lv[0], lv[1])
        pair.seq += 1
        pair.timestamp = ts
        pair.record()
        checksum = pair.history[-1][1]
        items = []
        tstext = None
        for depth, views in pair.views.items():
            views[0].truncate(depth)
            views[1].truncate(depth)
            ent = sent[depth]
            if not ent[True] and not ent[False]:
                continue
            apis = pair.apis.get(depth, ())
            if "v1" in apis:
                tstext = tstext or _ts(ts)
                texts = {ask: ",".join(self._level(pair, p, a, tstext, rflag) for p, a, rflag in ent[ask]) for ask in (True, False)}
                event = (pair.spec.wsname, depth, texts[True] if ent[True] else None, texts[False] if ent[False] else None, checksum)
                items.append(Item(ws_frame(self.render_book(pair, event)), ("book", pair.spec.wsname, depth), "book",
                                  pair.spec.wsname, pair.seq, event))
            if "v2" in apis:
                texts = {ask: ",".join(self._level2(pair, p, a) for p, a, _ in ent[ask]) for ask in (True, False)}
                cs2 = checksum if not pair.price_pad else pair.checksum(0)
                event = ("v2", pair.spec.wsname, texts[True], texts[False], cs2, _iso(ts))
                items.append(Item(ws_frame(self.render_book(pair, event)), ("book2", pair.spec.wsname, depth), "book",
                                  pair.spec.wsname, pair.seq, event))
        return items

    @staticmethod
    def _level(pair: _Pair, p: int, a: int, ts: str, republish: bool = False) -> str:
        r = ',"r"' if republish else ""
        return f'["{pair.price(p)}","{_fmt(a, pair.ld)}","{ts}"{r}]'

    @staticmethod
    def _level2(pair: _Pair, p: int, a: int) -> str:
        """v2 level: JSON numbers written at the pair's precisions (trailing zeros kept)."""
        return f'{{"price":{_fmt(p, pair.pd)},"qty":{_fmt(a, pair.ld)}}}'

    def render_book(self, pair: _Pair, event: tuple, checksum: int | None = None) -> bytes:
        if event[0] == "v2":
            _, _, asks, bids, cs, iso = event
            cs = cs if checksum is None else checksum
            return (f'{{"channel":"book","type":"update","data":[{{"symbol":"{pair.v2name}","bids":[{bids}],'
                    f'"asks":[{asks}],"checksum":{cs},"timestamp":"{iso}"}}]}}').encode()
        wsname, depth, asks, bids, cs = event
        cs = cs if checksum is None else checksum
        chan = pair.channel_id("book", depth)
        dicts = []
        if asks is not None and bids is not None:
            dicts = [f'{{"a":[{asks}]}}', f'{{"b":[{bids}],"c":"{cs}"}}']
        elif asks is not None:
            dicts = [f'{{"a":[{asks}],"c":"{cs}"}}']
        else:
            dicts = [f'{{"b":[{bids}],"c":"{cs}"}}']
        return f'[{chan},{",".join(dicts)},"book-{depth}","{wsname}"]'.encode()

    def bad_checksum(self, item: Item) -> bytes:
        pair = self.pairs[item.symbol]
        return self.render_book(pair, item.event, checksum=(item.event[4] + 1) & 0xFFFFFFFF)

    def _trade(self, pair: _Pair, ts: int) -> Item:
        rng = self.rng
        trades = []
        trades2 = []
        tstext = _ts(ts)
        iso = _iso(ts) if self.v2_trades else ""
        for _ in range(1 if rng.random() < 0.8 else rng.randint(2, 4)):
            buy = rng.random() < 0.5
            touch = pair.asks.best() if buy else pair.bids.best()
            price = touch if touch is not None else 1
            amount = max(1, pair.lot(rng) // 10)
            kind = rng.choice("ml")
            pair.trade_id += 1
            trades.append(f'["{pair.price(price)}","{_fmt(amount, pair.ld)}","{tstext}","{"b" if buy else "s"}","{kind}",""]')
            if self.v2_trades:
                trades2.append(f'{{"symbol":"{pair.v2name}","side":"{"buy" if buy else "sell"}","price":{_fmt(price, pair.pd)},'
                               f'"qty":{_fmt(amount, pair.ld)},"ord_type":"{"market" if kind == "m" else "limit"}",'
                               f'"trade_id":{pair.trade_id},"timestamp":"{iso}"}}')
        payload = f'[{pair.channel_id("trade")},[{",".join(trades)}],"trade","{pair.spec.wsname}"]'.encode()
        items = [Item(ws_frame(payload), ("trade", pair.spec.wsname), "trade", pair.spec.wsname, None, None)]
        if trades2:
            payload = f'{{"channel":"trade","type":"update","data":[{",".join(trades2)}]}}'.encode()
            items.append(Item(ws_frame(payload), ("trade2", pair.spec.wsname), "trade", pair.spec.wsname, None, None))
        return items

    def seqs(self) -> dict[str, int]:
        return {w: p.seq for w, p in self.pairs.items()}

    # ------------------------------------------------------------------ REST

    def routes(self):
        return [
            ("GET", "/0/public/AssetPairs", self._asset_pairs_handler),
            ("GET", "/0/public/Depth", self._depth),
            ("GET", "/0/public/Time", self._time),
            ("POST", "/0/private/Balance", self._balance),
            ("POST", "/0/private/AddOrder", self._add_order),
        ]

    def rate_limit_response(self, request: web.Request) -> web.Response:
        return _json({"error": [P.E_RATE_LIMIT]})

    async def _asset_pairs_handler(self, request: web.Request) -> web.Response:
        wanted = request.query.get("pair")
        if wanted:
            result = {}
            for name in wanted.split(","):
                p = self._by_name.get(name)
                if p is None:
                    return _json({"error": [P.E_UNKNOWN_PAIR]})
                result[p.spec.internal] = p.spec.asset_pair()
            return _json({"error": [], "result": result})
        return web.Response(body=self._asset_pairs, content_type="application/json")

    async def _time(self, request: web.Request) -> web.Response:
        now = self.sim.clock.now_ns()
        return _json({"error": [], "result": {"unixtime": now // 1_000_000_000}})

    async def _depth(self, request: web.Request) -> web.Response:
        name = request.query.get("pair")
        if not name:
            return _json({"error": [P.E_INVALID_ARGUMENTS + ":pair"]})
        pair = self._by_name.get(name)
        if pair is None:
            return _json({"error": [P.E_UNKNOWN_PAIR]})
        try:
            count = int(request.query.get("count", P.DEFAULT_DEPTH_COUNT))
        except ValueError:
            return _json({"error": [P.E_INVALID_ARGUMENTS + ":count"]})
        if not 1 <= count <= 500:
            return _json({"error": [P.E_INVALID_ARGUMENTS + ":count"]})
        sec = (pair.timestamp or self.sim.clock.now_ns()) // 1_000_000_000

        def levels(side):
            return [[pair.price(p), _fmt(a, pair.ld), sec] for p, a in side.top(count)]

        return _json({"error": [], "result": {pair.spec.internal: {"asks": levels(pair.asks), "bids": levels(pair.bids)}}})

    def control_book(self, request: web.Request) -> web.Response:
        pair = self._by_name.get(request.query.get("symbol", ""))
        if pair is None:
            return _json({"error": [P.E_UNKNOWN_PAIR]}, 404)
        seq_text = request.query.get("seq")
        entry = pair.history[-1]
        if seq_text is not None:
            seq = int(seq_text)
            first = pair.history[0][0]
            if not first <= seq <= entry[0]:
                return _json({"error": [f"seq {seq} not available ({first}..{entry[0]})"]}, 404)
            entry = pair.history[seq - first]
        seq, checksum, asks, bids = entry
        return _json({
            "symbol": pair.spec.wsname, "seq": seq, "checksum": checksum,
            "asks": [[pair.price(p), _fmt(a, pair.ld)] for p, a in asks],
            "bids": [[pair.price(p), _fmt(a, pair.ld)] for p, a in bids],
        })

    # -- private
    async def _private(self, request: web.Request, path: str) -> tuple[dict | None, web.Response | None]:
        body = await request.read()
        key = request.headers.get("API-Key", "")
        secret = self.api_keys.get(key)
        if secret is None:
            return None, _json({"error": [P.E_INVALID_KEY]})
        try:
            fields = dict(parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=True))
        except (UnicodeDecodeError, ValueError):
            return None, _json({"error": [P.E_INVALID_ARGUMENTS]})
        nonce_text = fields.get("nonce", "")
        expected = P.sign(path, body.decode(), nonce_text, secret)
        if not hmac.compare_digest(expected, request.headers.get("API-Sign", "")):
            return None, _json({"error": [P.E_INVALID_SIGNATURE]})
        if not nonce_text.isdigit() or int(nonce_text) >= 1 << 64:
            return None, _json({"error": [P.E_INVALID_NONCE]})
        nonce = int(nonce_text)
        if nonce <= self.last_nonce.get(key, 0):
            return None, _json({"error": [P.E_INVALID_NONCE]})
        self.last_nonce[key] = nonce
        return fields, None

    async def _balance(self, request: web.Request) -> web.Response:
        fields, error = await self._private(request, "/0/private/Balance")
        if error is not None:
            return error
        return _json({"error": [], "result": BALANCE})

    async def _add_order(self, request: web.Request) -> web.Response:
        fields, error = await self._private(request, "/0/private/AddOrder")
        if error is not None:
            return error
        for name in ("pair", "type", "ordertype", "volume"):
            if not fields.get(name):
                return _json({"error": [f"{P.E_INVALID_ARGUMENTS}:{name}"]})
        pair = self._by_name.get(fields["pair"])
        if pair is None:
            return _json({"error": [P.E_UNKNOWN_PAIR]})
        if fields["type"] not in ("buy", "sell"):
            return _json({"error": [f"{P.E_INVALID_ARGUMENTS}:type"]})
        if fields["ordertype"] not in ("market", "limit"):
            return _json({"error": [f"{P.E_INVALID_ARGUMENTS}:ordertype"]})
        try:
            volume = Decimal(fields["volume"])
            if not volume.is_finite() or volume <= 0 or -volume.as_tuple().exponent > pair.ld:
                raise InvalidOperation
        except InvalidOperation:
            return _json({"error": [f"{P.E_INVALID_ARGUMENTS}:volume"]})
        if volume < Decimal(pair.spec.ordermin):
            return _json({"error": [P.E_ORDER_MINIMUM]})
        descr = f"{fields['type']} {volume:.{pair.ld}f} {pair.spec.altname} @ {fields['ordertype']}"
        if fields["ordertype"] == "limit":
            try:
                price = Decimal(fields.get("price", ""))
                if not price.is_finite() or price <= 0 or -price.as_tuple().exponent > pair.pd:
                    raise InvalidOperation
            except InvalidOperation:
                return _json({"error": [P.E_INVALID_PRICE]})
            descr += f" {price:.{pair.pd}f}"
        result: dict = {"descr": {"order": descr}}
        if fields.get("validate", "").lower() not in ("true", "1"):
            self.orders += 1
            h = hashlib.sha256(f"{self.sim.seed}-{self.orders}".encode()).hexdigest().upper()
            result["txid"] = [f"O{h[:5]}-{h[5:10]}-{h[10:16]}"]
        return _json({"error": [], "result": result})

    # ------------------------------------------------------------------ WebSocket

    ws_paths = ("/ws", "/v2")

    async def on_open(self, conn) -> None:
        self._connections += 1
        conn.state["connection_id"] = (self.sim.seed << 32) + self._connections
        if conn.request.path.rstrip("/").endswith("/v2"):
            conn.state["api"] = "v2"
            conn.send(orjson.dumps({"channel": "status", "type": "update", "data": [{
                "api_version": "v2", "connection_id": conn.state["connection_id"], "system": "online", "version": "2.0.0"}]}))
            return
        conn.state["api"] = "v1"
        conn.send(orjson.dumps({"connectionID": conn.state["connection_id"], "event": "systemStatus", "status": "online", "version": "1.9.1"}))

    async def on_text(self, conn, data: str) -> None:
        if conn.state.get("api") == "v2":
            self._on_text_v2(conn, data)
            return
        try:
            msg = orjson.loads(data)
            if not isinstance(msg, dict):
                raise ValueError
        except ValueError:
            conn.send(orjson.dumps({"errorMessage": "Malformed request", "event": "error"}))
            return
        event = msg.get("event")
        reqid = msg.get("reqid")
        extra = {"reqid": reqid} if reqid is not None else {}
        if event == "ping":
            conn.send(orjson.dumps({"event": "pong", **extra}))
        elif event in ("subscribe", "unsubscribe"):
            self._subscription(conn, msg, event, extra)
        else:
            conn.send(orjson.dumps({"errorMessage": f"Unsupported event {event}", "event": "error", **extra}))

    def _subscription(self, conn, msg: dict, event: str, extra: dict) -> None:
        sub = msg.get("subscription")
        pairs = msg.get("pair")
        if not isinstance(sub, dict) or not isinstance(pairs, list) or not pairs:
            conn.send(orjson.dumps({"errorMessage": "Malformed request", "event": "subscriptionStatus", "status": "error", **extra}))
            return
        name = sub.get("name")
        depth = sub.get("depth", P.DEFAULT_DEPTH) if name == "book" else 0
        echo = {"depth": depth, "name": "book"} if name == "book" else {"name": name}

        def error(pair, message):
            conn.send(orjson.dumps({"errorMessage": message, "event": "subscriptionStatus", "pair": pair,
                                    "status": "error", "subscription": echo, **extra}))

        for pair_name in pairs:
            if name not in ("book", "trade"):
                error(pair_name, "Subscription name invalid")
                continue
            if name == "book" and depth not in P.VALID_DEPTHS:
                error(pair_name, P.WS_DEPTH_NOT_SUPPORTED)
                continue
            pair = self.pairs.get(pair_name)
            if pair is None:
                error(pair_name, f"{P.WS_PAIR_NOT_SUPPORTED} {pair_name}")
                continue
            key = ("book", pair_name, depth) if name == "book" else ("trade", pair_name)
            chan = pair.channel_id(name, depth)
            channel_name = f"book-{depth}" if name == "book" else "trade"
            ack = {"channelID": chan, "channelName": channel_name, "event": "subscriptionStatus", "pair": pair_name,
                   "status": "subscribed" if event == "subscribe" else "unsubscribed", "subscription": echo, **extra}
            if event == "unsubscribe":
                if key not in conn.subscriptions:
                    error(pair_name, "Subscription Not Found")
                    continue
                conn.unsubscribe([key])
                conn.send(orjson.dumps(ack))
                continue
            if key in conn.subscriptions:
                error(pair_name, "Already subscribed")
                continue
            if conn.next_batch < self.sim._next_batch_no and not conn.closing:
                # what this connection still has to receive predates the snapshot
                import time as _time

                self.sim._flush(conn, _time.monotonic())
            conn.subscribe([key])
            conn.send(orjson.dumps(ack))
            if name == "book":
                pair.activate(depth)
                conn.send(self.render_snapshot(pair, depth))

    # -- v2
    def _on_text_v2(self, conn, data: str) -> None:
        time_in = _iso_now()
        try:
            msg = orjson.loads(data)
            if not isinstance(msg, dict):
                raise ValueError
        except ValueError:
            conn.send(orjson.dumps({"error": "Malformed request", "success": False, "time_in": time_in, "time_out": _iso_now()}))
            return
        method = msg.get("method")
        extra = {"req_id": msg["req_id"]} if msg.get("req_id") is not None else {}
        if method == "ping":
            conn.send(orjson.dumps({"method": "pong", **extra, "time_in": time_in, "time_out": _iso_now()}))
            return
        if method not in ("subscribe", "unsubscribe"):
            conn.send(orjson.dumps({"error": f"Unsupported method {method}", "method": method, "success": False,
                                    **extra, "time_in": time_in, "time_out": _iso_now()}))
            return
        params = msg.get("params")
        symbols = params.get("symbol") if isinstance(params, dict) else None
        channel = params.get("channel") if isinstance(params, dict) else None
        if not isinstance(symbols, list) or not symbols:
            conn.send(orjson.dumps({"error": "Missing or invalid symbol", "method": method, "success": False,
                                    **extra, "time_in": time_in, "time_out": _iso_now()}))
            return
        depth = params.get("depth", P.DEFAULT_DEPTH) if channel == "book" else 0
        snapshot = bool(params.get("snapshot", channel == "book"))

        def reply(symbol, error=None):
            if error is not None:
                conn.send(orjson.dumps({"error": error, "method": method, "success": False, "symbol": symbol,
                                        **extra, "time_in": time_in, "time_out": _iso_now()}))
                return
            result = {"channel": channel, "symbol": symbol}
            if channel == "book":
                result["depth"] = depth
            if method == "subscribe":
                result["snapshot"] = snapshot
            conn.send(orjson.dumps({"method": method, "result": result, "success": True, **extra,
                                    "time_in": time_in, "time_out": _iso_now()}))

        for symbol in symbols:
            if channel not in ("book", "trade"):
                reply(symbol, f"Channel {channel} not supported")
                continue
            if channel == "book" and depth not in P.VALID_DEPTHS:
                reply(symbol, P.WS_DEPTH_NOT_SUPPORTED)
                continue
            pair = self.v2_pairs.get(symbol)
            if pair is None:
                reply(symbol, f"{P.WS_PAIR_NOT_SUPPORTED} {symbol}")
                continue
            key = ("book2", pair.spec.wsname, depth) if channel == "book" else ("trade2", pair.spec.wsname)
            if method == "unsubscribe":
                if key not in conn.subscriptions:
                    reply(symbol, "Subscription Not Found")
                    continue
                conn.unsubscribe([key])
                reply(symbol)
                continue
            if key in conn.subscriptions:
                reply(symbol, "Already subscribed")
                continue
            if conn.next_batch < self.sim._next_batch_no and not conn.closing:
                import time as _time

                self.sim._flush(conn, _time.monotonic())
            conn.subscribe([key])
            reply(symbol)
            if channel == "book":
                pair.activate(depth, "v2")
                if snapshot:
                    conn.send(self.render_snapshot_v2(pair, depth))
            else:
                self.v2_trades = True

    def render_snapshot_v2(self, pair: _Pair, depth: int) -> bytes:
        asks = ",".join(self._level2(pair, p, a) for p, a in pair.asks.top(depth))
        bids = ",".join(self._level2(pair, p, a) for p, a in pair.bids.top(depth))
        return (f'{{"channel":"book","type":"snapshot","data":[{{"symbol":"{pair.v2name}","bids":[{bids}],'
                f'"asks":[{asks}],"checksum":{pair.checksum(0)}}}]}}').encode()

    def render_snapshot(self, pair: _Pair, depth: int) -> bytes:
        ts = _ts(pair.timestamp or self.sim.clock.now_ns())
        asks = ",".join(self._level(pair, p, a, ts) for p, a in pair.asks.top(depth))
        bids = ",".join(self._level(pair, p, a, ts) for p, a in pair.bids.top(depth))
        return f'[{pair.channel_id("book", depth)},{{"as":[{asks}],"bs":[{bids}]}},"book-{depth}","{pair.spec.wsname}"]'.encode()

    def heartbeat(self, conn) -> bytes | None:
        if not conn.subscriptions:
            return None
        return b'{"channel":"heartbeat"}' if conn.state.get("api") == "v2" else b'{"event":"heartbeat"}'



def _json(obj, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type="application/json")


__all__ = ["KrakenVenue", "SIM_API_KEY", "SIM_API_SECRET", "VENUE"]
