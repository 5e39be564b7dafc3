"""Deterministic market generator for the mock venue.

One ``Market`` is one global, reproducible stream of events across its symbols: book deltas
(``BookEvent``, per-symbol ``seq`` + 1 each) and trades (``TradeEvent``, per-symbol ``id``
increasing), interleaved. Everything comes from ``random.Random(seed)``: the content of the stream
depends only on the seed and the symbol specs, the event timestamps (simulated exchange time, a
Poisson process of mean interval ``mean_interval_ns`` starting at ``start_ns``) come from a second
generator seeded from the same seed, so changing the rate never changes the books.

Books are in integer ticks/lots, at most ``MAX_LEVELS`` per side, never crossed (spread >= 1
tick). A hidden fair price random-walks; inserts land near it, updates and deletes are
concentrated near the touch, levels pushed past 50 are deleted, and a trade (taker side, at the
touch) is followed by the book delta that takes its amount off the touched level.

``book_at(symbol, seq)`` answers "the book of S right after book message seq N" by replaying from
the nearest checkpoint (RNG state + books, kept every ``checkpoint_every`` events, thinned so
memory stays bounded on long runs).
"""
from __future__ import annotations

import bisect
import random
from math import log as _log
import zlib
from zlib import crc32 as _crc32
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from lab.venues.mock.protocol import Instrument, format_fixed, parse_fixed

MAX_LEVELS = 50
MIN_LEVELS = 5
DEFAULT_START_NS = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z


@dataclass(frozen=True)
class SymbolSpec:
    """One simulated instrument and the shape of its market."""

    symbol: str
    base: str
    quote: str
    price_precision: int
    amount_precision: int
    mid: str  # initial mid price, e.g. "60000.00"
    amount_scale: str = "0.5"  # mean level amount, in base units
    weight: float = 1.0  # relative share of the event stream
    volatility_ticks: float = 2.0  # std dev of the fair-price step per event of this symbol
    spacing_ticks: int = 1  # typical distance between levels near the touch

    @property
    def instrument(self) -> Instrument:
        return Instrument(self.symbol, self.base, self.quote, self.price_precision, self.amount_precision)


DEFAULT_SYMBOLS: tuple[SymbolSpec, ...] = (
    SymbolSpec("BTC-USD", "BTC", "USD", 2, 8, "60000.00", amount_scale="0.25", weight=2.0,
               volatility_ticks=3.0, spacing_ticks=2),
    SymbolSpec("ETH-USD", "ETH", "USD", 2, 8, "3000.00", amount_scale="4", weight=1.0,
               volatility_ticks=1.0, spacing_ticks=1),
)


class BookEvent:
    """A book delta: ``bids``/``asks`` are ``[(price_ticks, amount_lots)]`` in apply order."""

    __slots__ = ("index", "timestamp", "symbol", "seq", "bids", "asks", "checksum", "texts")
    kind = "book"

    def __init__(self, index, timestamp, symbol, seq, bids, asks, checksum, texts=None):
        self.index = index
        self.timestamp = timestamp
        self.symbol = symbol
        self.seq = seq
        self.bids = bids
        self.asks = asks
        self.checksum = checksum
        #: ``(bid_texts, ask_texts)``: the same levels as ``(price, amount)`` strings at the
        #: instrument's precisions (renderers use them instead of formatting again), or None
        self.texts = texts

    def __repr__(self) -> str:
        return (f"BookEvent(index={self.index}, ts={self.timestamp}, {self.symbol} seq={self.seq}, "
                f"bids={self.bids}, asks={self.asks}, checksum={self.checksum})")

    def __eq__(self, other) -> bool:
        return isinstance(other, BookEvent) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__ if k != "texts")


class TradeEvent:
    __slots__ = ("index", "timestamp", "symbol", "id", "side", "price", "amount")
    kind = "trade"

    def __init__(self, index, timestamp, symbol, id, side, price, amount):
        self.index = index
        self.timestamp = timestamp
        self.symbol = symbol
        self.id = id
        self.side = side
        self.price = price
        self.amount = amount

    def __repr__(self) -> str:
        return (f"TradeEvent(index={self.index}, ts={self.timestamp}, {self.symbol} id={self.id}, "
                f"{self.side} {self.amount}@{self.price})")

    def __eq__(self, other) -> bool:
        return isinstance(other, TradeEvent) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__)


Event = BookEvent | TradeEvent


@dataclass(frozen=True)
class BookSnapshot:
    """A whole book: ``bids`` best first (descending), ``asks`` ascending, integer levels."""

    symbol: str
    seq: int
    timestamp: int
    bids: tuple[tuple[int, int], ...]
    asks: tuple[tuple[int, int], ...]
    checksum: int
    price_precision: int
    amount_precision: int


class _Side:
    """One side of a book, best level first.

    ``keys`` is ascending: the price for asks, minus the price for bids, so index 0 is the
    touch on both sides. ``segs`` holds each level's checksum text ``"<price>:<amount>;"`` in
    the same order, so the side's part of the checksum is one ``"".join``.
    """

    __slots__ = ("sign", "keys", "segs", "amounts", "blob")

    def __init__(self, sign: int):
        self.sign = sign
        self.keys: list[int] = []
        self.segs: list[str] = []
        self.amounts: dict[int, int] = {}
        self.blob: bytes | None = b""

    def copy(self) -> "_Side":
        s = _Side.__new__(_Side)
        s.sign = self.sign
        s.keys = self.keys.copy()
        s.segs = self.segs.copy()
        s.amounts = self.amounts.copy()
        s.blob = self.blob
        return s

    def __len__(self) -> int:
        return len(self.keys)

    def price(self, j: int) -> int:
        """Price of the j-th level from the touch (negative j counts from the far end)."""
        return self.sign * self.keys[j]

    def set(self, price: int, amount: int, price_text: str, amount_text: str) -> None:
        keys = self.keys
        k = self.sign * price
        i = bisect.bisect_left(keys, k)
        if amount:
            seg = f"{price_text}:{amount_text};"
            if i < len(keys) and keys[i] == k:
                self.segs[i] = seg
            else:
                keys.insert(i, k)
                self.segs.insert(i, seg)
            self.amounts[price] = amount
        else:
            del keys[i]
            del self.segs[i]
            del self.amounts[price]
        self.blob = None

    def text(self) -> bytes:
        blob = self.blob
        if blob is None:
            blob = self.blob = "".join(self.segs).encode()
        return blob

    def levels(self) -> tuple[tuple[int, int], ...]:
        sign, amounts = self.sign, self.amounts
        return tuple((sign * k, amounts[sign * k]) for k in self.keys)


class _Book:
    """One symbol's book plus what the generator needs (fair price, ids, formatting caches)."""

    __slots__ = ("spec", "bids", "asks", "seq", "trade_id", "fair", "timestamp", "pp", "ap",
                 "ptext", "pool", "zero")

    def __init__(self, spec: SymbolSpec, pool: list[tuple[int, str]]):
        self.spec = spec
        self.pp = spec.price_precision
        self.ap = spec.amount_precision
        self.bids = _Side(-1)
        self.asks = _Side(1)
        self.seq = 0
        self.trade_id = 0
        self.fair = 0.0
        self.timestamp = 0
        self.ptext: dict[int, str] = {}  # price text cache (bounded)
        self.pool = pool  # shared, read-only: (amount_lots, amount_text)
        self.zero = format_fixed(0, self.ap)

    def copy(self) -> "_Book":
        b = _Book.__new__(_Book)
        b.spec, b.pp, b.ap, b.pool, b.zero = self.spec, self.pp, self.ap, self.pool, self.zero
        b.bids = self.bids.copy()
        b.asks = self.asks.copy()
        b.seq, b.trade_id, b.fair, b.timestamp = self.seq, self.trade_id, self.fair, self.timestamp
        b.ptext = {}
        return b

    def ptxt(self, price: int) -> str:
        t = self.ptext.get(price)
        if t is None:
            if len(self.ptext) > 100_000:
                self.ptext.clear()
            t = self.ptext[price] = format_fixed(price, self.pp)
        return t

    def checksum(self) -> int:
        return zlib.crc32(self.bids.text(), zlib.crc32(self.asks.text()))

    def snapshot(self) -> BookSnapshot:
        return BookSnapshot(
            symbol=self.spec.symbol,
            seq=self.seq,
            timestamp=self.timestamp,
            bids=self.bids.levels(),
            asks=self.asks.levels(),
            checksum=self.checksum(),
            price_precision=self.pp,
            amount_precision=self.ap,
        )


@dataclass
class _Checkpoint:
    index: int
    rng: object
    trng: object
    next_ts: int
    pending: list
    books: list
    seqs: list[int] = field(default_factory=list)


POOL_BITS = 13  # 8192 pre-drawn level amounts per symbol


class Market:
    """A seeded, deterministic multi-symbol market.

    >>> m = Market(seed=1)
    >>> ev = m.next_event()          # BookEvent or TradeEvent
    >>> m.book("BTC-USD")            # BookSnapshot, current
    >>> m.book_at("BTC-USD", 10)     # BookSnapshot right after BTC-USD book seq 10
    """

    def __init__(
        self,
        seed: int = 0,
        symbols: Sequence[SymbolSpec] = DEFAULT_SYMBOLS,
        *,
        start_ns: int = DEFAULT_START_NS,
        mean_interval_ns: float = 1_000_000.0,
        trade_probability: float = 0.15,
        checkpoint_every: int = 4096,
        max_checkpoints: int = 512,
        _checkpointing: bool = True,
        _pools: list | None = None,
    ):
        if not symbols:
            raise ValueError("a market needs at least one symbol")
        names = [s.symbol for s in symbols]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate symbols: {names}")
        self.seed = seed
        self.specs: tuple[SymbolSpec, ...] = tuple(symbols)
        self.symbols: tuple[str, ...] = tuple(names)
        self.start_ns = int(start_ns)
        self.mean_interval_ns = float(mean_interval_ns)
        self.trade_probability = float(trade_probability)
        self._by_symbol = {s.symbol: i for i, s in enumerate(self.specs)}
        self._rng = random.Random(seed)
        self._trng = random.Random(f"mock-timing-{seed}")
        total = sum(max(0.0, s.weight) for s in self.specs)
        if total <= 0:
            raise ValueError("symbol weights must not all be zero")
        acc, self._cum = 0.0, []
        for s in self.specs:
            acc += max(0.0, s.weight) / total
            self._cum.append(acc)
        self._cum[-1] = 1.0
        # level amounts are drawn from a per-symbol pool of random 8-decimal amounts (pre-formatted)
        if _pools is None:
            _pools = []
            for s in self.specs:
                scale = parse_fixed(s.amount_scale, s.amount_precision)
                prng = random.Random(f"mock-amounts-{seed}-{s.symbol}")
                lots = [int(prng.expovariate(1.0) * scale) + 1 for _ in range(1 << POOL_BITS)]
                _pools.append([(a, format_fixed(a, s.amount_precision)) for a in lots])
        self._pools = _pools
        self._books = [self._initial_book(s, p) for s, p in zip(self.specs, _pools)]
        self.index = 0  # events generated so far
        self._next_ts = self.start_ns
        self._pending: deque = deque()
        self._checkpointing = _checkpointing
        self._checkpoint_every = max(1, int(checkpoint_every))
        self._max_checkpoints = max(2, int(max_checkpoints))
        self._checkpoints: list[_Checkpoint] = []
        self._advance_ts()

    # ------------------------------------------------------------------ public

    def instruments(self) -> list[Instrument]:
        return [s.instrument for s in self.specs]

    def spec(self, symbol: str) -> SymbolSpec:
        return self.specs[self._index_of(symbol)]

    @property
    def next_timestamp(self) -> int:
        """Simulated timestamp (ns) of the event ``next_event()`` will return."""
        return self._next_ts

    def seq(self, symbol: str) -> int:
        return self._books[self._index_of(symbol)].seq

    def seqs(self) -> dict[str, int]:
        return {b.spec.symbol: b.seq for b in self._books}

    def book(self, symbol: str) -> BookSnapshot:
        """The current book of ``symbol`` (after every event generated so far)."""
        return self._books[self._index_of(symbol)].snapshot()

    def checksum(self, symbol: str) -> int:
        return self._books[self._index_of(symbol)].checksum()

    def book_at(self, symbol: str, seq: int) -> BookSnapshot:
        """The book of ``symbol`` right after its book message ``seq`` (0 = the initial book).

        Raises ``LookupError`` for a seq not generated yet (or negative).
        """
        i = self._index_of(symbol)
        cur = self._books[i]
        if seq == cur.seq:
            return cur.snapshot()
        if seq < 0 or seq > cur.seq:
            raise LookupError(f"{symbol} seq {seq} not available (current seq {cur.seq})")
        base = None
        for cp in reversed(self._checkpoints):
            if cp.seqs[i] <= seq:
                base = cp
                break
        replay = Market(self.seed, self.specs, start_ns=self.start_ns,
                        mean_interval_ns=self.mean_interval_ns,
                        trade_probability=self.trade_probability, _checkpointing=False,
                        _pools=self._pools)
        if base is not None:
            replay._restore(base)
        rb = replay._books[i]
        while rb.seq < seq:
            replay.next_event()
        return rb.snapshot()

    def next_event(self) -> Event:
        return self._run(self._next_ts, 1)[0]

    def take(self, n: int) -> list[Event]:
        return self._run(None, n)

    def take_until(self, timestamp: int, limit: int | None = None) -> list[Event]:
        """Every event with ``timestamp <= timestamp`` (at most ``limit``)."""
        if self._next_ts > timestamp:
            return []
        return self._run(timestamp, limit)

    def _run(self, until: int | None, limit: int | None) -> list[Event]:
        """The generator loop: events up to simulated time ``until``, at most ``limit``."""
        out: list[Event] = []
        append = out.append
        if until is None:
            until = 1 << 126
        if limit is None:
            limit = 1 << 62
        books = self._books
        cum = self._cum
        last = len(cum) - 1
        rnd = self._rng.random
        trnd = self._trng.random
        tp = self.trade_probability
        mean = self.mean_interval_ns
        pending = self._pending
        delta = self._delta
        ts = self._next_ts
        while ts <= until and len(out) < limit:
            if self._checkpointing and self.index % self._checkpoint_every == 0:
                self._next_ts = ts
                self._checkpoint()
            if pending:
                i, is_bid, price, amount = pending.popleft()
                b = books[i]
                at = format_fixed(amount, b.ap)
                pt = b.ptxt(price)
                if is_bid:
                    b.bids.set(price, amount, pt, at)
                    ev = self._book_event(b, ts, [(price, amount)], [], ([(pt, at)], []))
                else:
                    b.asks.set(price, amount, pt, at)
                    ev = self._book_event(b, ts, [], [(price, amount)], ([], [(pt, at)]))
            else:
                i = 0
                if last:
                    r = rnd()
                    while i < last and r > cum[i]:
                        i += 1
                b = books[i]
                if rnd() < tp and b.bids.keys and b.asks.keys:
                    ev = self._trade(i, b, ts)
                else:
                    ev = delta(b, ts)
            append(ev)
            self.index += 1
            if not pending:  # a trade's book update shares the trade's timestamp
                step = int(-_log(1.0 - trnd()) * mean)
                ts += step if step > 0 else 1
        self._next_ts = ts
        return out

    def __iter__(self) -> Iterator[Event]:
        while True:
            yield self.next_event()

    # ------------------------------------------------------------------ internals

    def _index_of(self, symbol: str) -> int:
        try:
            return self._by_symbol[symbol]
        except KeyError:
            raise KeyError(f"unknown symbol: {symbol}") from None

    def _advance_ts(self) -> None:
        step = int(-_log(1.0 - self._trng.random()) * self.mean_interval_ns)
        self._next_ts += step if step > 0 else 1

    def _initial_book(self, spec: SymbolSpec, pool) -> _Book:
        b = _Book(spec, pool)
        rng = self._rng
        mid = parse_fixed(spec.mid, spec.price_precision)
        b.fair = float(mid)
        b.timestamp = self.start_ns
        sp = max(1, spec.spacing_ticks)
        mask = (1 << POOL_BITS) - 1
        for side, step in ((b.bids, -1), (b.asks, 1)):
            p = mid + step
            for _ in range(MAX_LEVELS):
                a, at = pool[rng.getrandbits(POOL_BITS) & mask]
                side.set(p, a, b.ptxt(p), at)
                p += step * (1 + int(rng.expovariate(1.0) * sp))
        return b

    def _book_event(self, b: _Book, ts: int, bids, asks, texts=None) -> BookEvent:
        b.seq += 1
        b.timestamp = ts
        return BookEvent(self.index, ts, b.spec.symbol, b.seq, bids, asks, b.checksum(), texts)

    def _trade(self, i: int, b: _Book, ts: int) -> TradeEvent:
        rnd = self._rng.random
        # takers lean with the fair price: buy when the fair price is above the mid
        best_bid, best_ask = b.bids.price(0), b.asks.price(0)
        mid2 = best_bid + best_ask
        fair2 = 2 * b.fair
        buy = rnd() < (0.7 if fair2 > mid2 else 0.3 if fair2 < mid2 else 0.5)
        if buy:
            price = best_ask
            level = b.asks.amounts[price]
        else:
            price = best_bid
            level = b.bids.amounts[price]
        if level == 1 or rnd() < 0.3:
            amount = level
        else:
            amount = 1 + int(rnd() * (level - 1))
        b.trade_id += 1
        self._pending.append((i, not buy, price, level - amount))
        return TradeEvent(self.index, ts, b.spec.symbol, b.trade_id, "buy" if buy else "sell",
                          price, amount)

    def _delta(self, b: _Book, ts: int) -> BookEvent:
        rng = self._rng
        rnd = rng.random
        getbits = rng.getrandbits
        spec = b.spec
        # fair-price step: uniform with the configured standard deviation (cheaper than gauss)
        b.fair += (rnd() - 0.5) * spec.volatility_ticks * 3.4641016151377544
        fair = b.fair
        ifair = int(fair)
        sp = spec.spacing_ticks if spec.spacing_ticks > 1 else 1
        pool = b.pool
        ptxt = b.ptxt
        r = rnd()
        n = 1 if r < 0.45 else 2 if r < 0.7 else 3 if r < 0.85 else 4 if r < 0.94 else 5
        bids: list[tuple[int, int]] = []
        asks: list[tuple[int, int]] = []
        bid_t: list[tuple[str, str]] = []
        ask_t: list[tuple[str, str]] = []
        zero = b.zero
        touched: list[int] = []  # sign * price of the levels this message already changed
        bside, aside = b.bids, b.asks
        k = 0
        while k < n:
            k += 1
            r = rnd() * 2.0  # one draw: the side (integer part) and the operation (fraction)
            if r < 1.0:
                is_bid = True
                side, other, out, out_t = bside, aside, bids, bid_t
            else:
                r -= 1.0
                is_bid = False
                side, other, out, out_t = aside, bside, asks, ask_t
            keys = side.keys
            sign = side.sign
            nlev = len(keys)
            # delete less often when the side is thin, so books hover around 40-50 levels
            p_del = 0.3 if nlev >= 40 else 0.0075 * nlev
            if r < p_del and nlev > MIN_LEVELS:
                # delete: the touch if it is on the wrong side of the fair price, else near it
                if sign * (fair - sign * keys[0]) > sp:
                    j = 0
                else:
                    j = int(-_log(1.0 - rnd()) * 2.857)
                    if j >= nlev:
                        j = nlev - 1
                key = keys[j]
                if key in touched:
                    continue
                touched.append(key)
                price = sign * key
                side.set(price, 0, "", "")
                out.append((price, 0))
                out_t.append((ptxt(price), zero))
                continue
            if r < p_del + 0.35 and nlev:
                j = int(-_log(1.0 - rnd()) * 3.333)
                if j >= nlev:
                    j = nlev - 1
                key = keys[j]
                if key in touched:
                    continue
                price = sign * key
            else:
                # insert near the fair price (sometimes deep), never crossing the other side
                u = rnd()
                if u < 0.85:
                    gap = int(-_log(1.0 - u / 0.85) * 3 * sp)
                else:
                    gap = int((u - 0.85) / 0.15 * 60 * sp)
                okeys = other.keys
                if is_bid:
                    price = ifair - 1 - gap
                    if okeys and price >= okeys[0]:
                        price = okeys[0] - 1
                else:
                    price = ifair + 2 + gap
                    if okeys and price <= -okeys[0]:
                        price = 1 - okeys[0]
                key = sign * price
                if price <= 0 or key in touched:
                    continue
                if nlev >= MAX_LEVELS and price not in side.amounts:
                    worst = keys[-1]
                    if k >= n or key > worst or worst in touched:
                        continue
                    # the new level pushes the worst one out of the 50
                    touched.append(worst)
                    side.set(sign * worst, 0, "", "")
                    out.append((sign * worst, 0))
                    out_t.append((ptxt(sign * worst), zero))
                    k += 1
            touched.append(key)
            amount, at = pool[getbits(POOL_BITS)]
            pt = ptxt(price)
            side.set(price, amount, pt, at)
            out.append((price, amount))
            out_t.append((pt, at))
        if not bids and not asks:
            # every draw collided: refresh (or re-create) the best bid so no message is empty
            if bside.keys:
                price = bside.price(0)
            else:
                price = (aside.price(0) - 1) if aside.keys else max(1, ifair)
            amount, at = pool[getbits(POOL_BITS)]
            bside.set(price, amount, ptxt(price), at)
            bids.append((price, amount))
            bid_t.append((ptxt(price), at))
        b.seq += 1
        b.timestamp = ts
        return BookEvent(self.index, ts, spec.symbol, b.seq, bids, asks,
                         _crc32(bside.text(), _crc32(aside.text())), (bid_t, ask_t))

    def _checkpoint(self) -> None:
        cps = self._checkpoints
        cps.append(_Checkpoint(
            index=self.index,
            rng=self._rng.getstate(),
            trng=self._trng.getstate(),
            next_ts=self._next_ts,
            pending=list(self._pending),
            books=[bk.copy() for bk in self._books],
            seqs=[bk.seq for bk in self._books],
        ))
        if len(cps) > self._max_checkpoints:
            # keep every other checkpoint and space future ones twice as far apart
            self._checkpoints = cps[::2]
            self._checkpoint_every *= 2

    def _restore(self, cp: _Checkpoint) -> None:
        self.index = cp.index
        self._rng.setstate(cp.rng)
        self._trng.setstate(cp.trng)
        self._next_ts = cp.next_ts
        self._pending = deque(cp.pending)
        self._books = [bk.copy() for bk in cp.books]
