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
import zlib
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

    __slots__ = ("index", "timestamp", "symbol", "seq", "bids", "asks", "checksum")
    kind = "book"

    def __init__(self, index, timestamp, symbol, seq, bids, asks, checksum):
        self.index = index
        self.timestamp = timestamp
        self.symbol = symbol
        self.seq = seq
        self.bids = bids
        self.asks = asks
        self.checksum = checksum

    def __repr__(self) -> str:
        return (f"BookEvent(index={self.index}, ts={self.timestamp}, {self.symbol} seq={self.seq}, "
                f"bids={self.bids}, asks={self.asks}, checksum={self.checksum})")

    def __eq__(self, other) -> bool:
        return isinstance(other, BookEvent) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__)


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


class _Book:
    """One symbol's book plus what the generator needs (fair price, ids, cached checksum text)."""

    __slots__ = ("spec", "bid_prices", "ask_prices", "bids", "asks", "bid_seg", "ask_seg",
                 "bid_blob", "ask_blob", "seq", "trade_id", "fair", "timestamp", "pp", "ap")

    def __init__(self, spec: SymbolSpec):
        self.spec = spec
        self.pp = spec.price_precision
        self.ap = spec.amount_precision
        self.bid_prices: list[int] = []  # ascending; best bid is the last
        self.ask_prices: list[int] = []  # ascending; best ask is the first
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.bid_seg: dict[int, bytes] = {}
        self.ask_seg: dict[int, bytes] = {}
        self.bid_blob: bytes | None = b""
        self.ask_blob: bytes | None = b""
        self.seq = 0
        self.trade_id = 0
        self.fair = 0.0
        self.timestamp = 0

    def copy(self) -> "_Book":
        b = _Book.__new__(_Book)
        b.spec, b.pp, b.ap = self.spec, self.pp, self.ap
        b.bid_prices = self.bid_prices.copy()
        b.ask_prices = self.ask_prices.copy()
        b.bids = self.bids.copy()
        b.asks = self.asks.copy()
        b.bid_seg = self.bid_seg.copy()
        b.ask_seg = self.ask_seg.copy()
        b.bid_blob = self.bid_blob
        b.ask_blob = self.ask_blob
        b.seq, b.trade_id, b.fair, b.timestamp = self.seq, self.trade_id, self.fair, self.timestamp
        return b

    def set_bid(self, price: int, amount: int) -> None:
        if amount:
            if price not in self.bids:
                bisect.insort(self.bid_prices, price)
            self.bids[price] = amount
            self.bid_seg[price] = f"{format_fixed(price, self.pp)}:{format_fixed(amount, self.ap)};".encode()
        else:
            del self.bids[price]
            del self.bid_seg[price]
            self.bid_prices.pop(bisect.bisect_left(self.bid_prices, price))
        self.bid_blob = None

    def set_ask(self, price: int, amount: int) -> None:
        if amount:
            if price not in self.asks:
                bisect.insort(self.ask_prices, price)
            self.asks[price] = amount
            self.ask_seg[price] = f"{format_fixed(price, self.pp)}:{format_fixed(amount, self.ap)};".encode()
        else:
            del self.asks[price]
            del self.ask_seg[price]
            self.ask_prices.pop(bisect.bisect_left(self.ask_prices, price))
        self.ask_blob = None

    def checksum(self) -> int:
        ab = self.ask_blob
        if ab is None:
            seg = self.ask_seg
            ab = self.ask_blob = b"".join([seg[p] for p in self.ask_prices])
        bb = self.bid_blob
        if bb is None:
            seg = self.bid_seg
            bb = self.bid_blob = b"".join([seg[p] for p in reversed(self.bid_prices)])
        return zlib.crc32(bb, zlib.crc32(ab))

    def snapshot(self) -> BookSnapshot:
        return BookSnapshot(
            symbol=self.spec.symbol,
            seq=self.seq,
            timestamp=self.timestamp,
            bids=tuple((p, self.bids[p]) for p in reversed(self.bid_prices)),
            asks=tuple((p, self.asks[p]) for p in self.ask_prices),
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
        self._scale = [parse_fixed(s.amount_scale, s.amount_precision) for s in self.specs]
        self._books = [self._initial_book(s) for s in self.specs]
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
                        trade_probability=self.trade_probability, _checkpointing=False)
        if base is not None:
            replay._restore(base)
        rb = replay._books[i]
        while rb.seq < seq:
            replay.next_event()
        return rb.snapshot()

    def next_event(self) -> Event:
        if self._checkpointing and self.index % self._checkpoint_every == 0:
            self._checkpoint()
        ts = self._next_ts
        if self._pending:
            i, side, price, amount = self._pending.popleft()
            b = self._books[i]
            if side == "bid":
                b.set_bid(price, amount)
                ev = self._book_event(b, ts, [(price, amount)], [])
            else:
                b.set_ask(price, amount)
                ev = self._book_event(b, ts, [], [(price, amount)])
        else:
            r = self._rng.random()
            i = bisect.bisect_right(self._cum, r) if len(self._cum) > 1 else 0
            if i >= len(self._cum):
                i = len(self._cum) - 1
            b = self._books[i]
            if self._rng.random() < self.trade_probability and b.bid_prices and b.ask_prices:
                ev = self._trade(i, b, ts)
            else:
                ev = self._delta(i, b, ts)
        self.index += 1
        if not self._pending:  # a trade's book update shares the trade's timestamp
            self._advance_ts()
        return ev

    def take(self, n: int) -> list[Event]:
        nxt = self.next_event
        return [nxt() for _ in range(n)]

    def take_until(self, timestamp: int, limit: int | None = None) -> list[Event]:
        """Every event with ``timestamp <= timestamp`` (at most ``limit``)."""
        out = []
        nxt = self.next_event
        while self._next_ts <= timestamp and (limit is None or len(out) < limit):
            out.append(nxt())
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
        step = int(self._trng.expovariate(1.0) * self.mean_interval_ns)
        self._next_ts += step if step > 0 else 1

    def _initial_book(self, spec: SymbolSpec) -> _Book:
        b = _Book(spec)
        rng = self._rng
        mid = parse_fixed(spec.mid, spec.price_precision)
        b.fair = float(mid)
        b.timestamp = self.start_ns
        scale = parse_fixed(spec.amount_scale, spec.amount_precision)
        sp = max(1, spec.spacing_ticks)
        p = mid - 1
        for _ in range(MAX_LEVELS):
            b.set_bid(p, int(rng.expovariate(1.0) * scale) + 1)
            p -= 1 + int(rng.expovariate(1.0) * sp)
        p = mid + 1
        for _ in range(MAX_LEVELS):
            b.set_ask(p, int(rng.expovariate(1.0) * scale) + 1)
            p += 1 + int(rng.expovariate(1.0) * sp)
        return b

    def _book_event(self, b: _Book, ts: int, bids, asks) -> BookEvent:
        b.seq += 1
        b.timestamp = ts
        return BookEvent(self.index, ts, b.spec.symbol, b.seq, bids, asks, b.checksum())

    def _trade(self, i: int, b: _Book, ts: int) -> TradeEvent:
        rng = self._rng
        # takers lean with the fair price: buy when the fair price is above the mid
        mid = (b.bid_prices[-1] + b.ask_prices[0]) / 2.0
        buy = rng.random() < (0.7 if b.fair > mid else 0.3 if b.fair < mid else 0.5)
        if buy:
            price = b.ask_prices[0]
            level = b.asks[price]
        else:
            price = b.bid_prices[-1]
            level = b.bids[price]
        if rng.random() < 0.3 or level == 1:
            amount = level
        else:
            amount = 1 + int(rng.random() * (level - 1))
        b.trade_id += 1
        self._pending.append((i, "ask" if buy else "bid", price, level - amount))
        return TradeEvent(self.index, ts, b.spec.symbol, b.trade_id, "buy" if buy else "sell",
                          price, amount)

    def _delta(self, i: int, b: _Book, ts: int) -> BookEvent:
        rng = self._rng
        rnd = rng.random
        expo = rng.expovariate
        spec = b.spec
        b.fair += rng.gauss(0.0, spec.volatility_ticks)
        fair = b.fair
        sp = max(1, spec.spacing_ticks)
        scale = self._scale[i]
        r = rnd()
        n = 1 if r < 0.45 else 2 if r < 0.7 else 3 if r < 0.85 else 4 if r < 0.94 else 5
        bids: list[tuple[int, int]] = []
        asks: list[tuple[int, int]] = []
        touched_b: set[int] = set()
        touched_a: set[int] = set()
        k = 0
        while k < n:
            k += 1
            is_bid = rnd() < 0.5
            prices = b.bid_prices if is_bid else b.ask_prices
            touched = touched_b if is_bid else touched_a
            nlev = len(prices)
            r = rnd()
            # delete less often when the side is thin, so books hover around 40-50 levels
            p_del = 0.3 if nlev >= 40 else 0.3 * nlev / 40
            if r < p_del and nlev > MIN_LEVELS:
                # delete: the touch if it is on the wrong side of the fair price, else near it
                if is_bid and prices[-1] > fair + sp:
                    j = 0
                elif not is_bid and prices[0] < fair - sp:
                    j = 0
                else:
                    j = min(int(expo(0.35)), nlev - 1)
                price = prices[-1 - j] if is_bid else prices[j]
                if price in touched:
                    continue
                amount = 0
            elif r < p_del + 0.35 and nlev:
                j = min(int(expo(0.3)), nlev - 1)
                price = prices[-1 - j] if is_bid else prices[j]
                if price in touched:
                    continue
                amount = int(expo(1.0) * scale) + 1
            else:
                # insert near the fair price (sometimes deep), never crossing the other side
                if rnd() < 0.85:
                    gap = int(expo(1.0) * 3 * sp)
                else:
                    gap = int(rnd() * 60 * sp)
                if is_bid:
                    price = int(fair) - 1 - gap
                    if b.ask_prices and price >= b.ask_prices[0]:
                        price = b.ask_prices[0] - 1
                else:
                    price = int(fair) + 2 + gap
                    if b.bid_prices and price <= b.bid_prices[-1]:
                        price = b.bid_prices[-1] + 1
                if price <= 0 or price in touched:
                    continue
                amount = int(expo(1.0) * scale) + 1
                book_side = b.bids if is_bid else b.asks
                if price not in book_side and nlev >= MAX_LEVELS:
                    worst = prices[0] if is_bid else prices[-1]
                    if (k >= n or (is_bid and price < worst) or (not is_bid and price > worst)
                            or worst in touched):
                        continue
                    # the new level pushes the worst one out of the 50
                    touched.add(worst)
                    if is_bid:
                        b.set_bid(worst, 0)
                        bids.append((worst, 0))
                    else:
                        b.set_ask(worst, 0)
                        asks.append((worst, 0))
                    k += 1
            touched.add(price)
            if is_bid:
                b.set_bid(price, amount)
                bids.append((price, amount))
            else:
                b.set_ask(price, amount)
                asks.append((price, amount))
        if not bids and not asks:
            # every draw collided: refresh (or re-create) the best bid so no message is empty
            if b.bid_prices:
                price = b.bid_prices[-1]
            else:
                price = (b.ask_prices[0] - 1) if b.ask_prices else max(1, int(fair))
            amount = int(expo(1.0) * scale) + 1
            b.set_bid(price, amount)
            bids.append((price, amount))
        return self._book_event(b, ts, bids, asks)

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
