"""The project's one paper broker: orders filled locally against a live or replayed `OrderBook`.

- A **market** order walks the opposite side's levels best first until it is filled or the
  visible book runs out (the rest is cancelled).
- A **limit** order takes what crosses its price at once, then rests; it fills, at the level
  prices, whenever a later book crosses it (no queue position, no market impact: every book
  update offers its whole visible liquidity again; fills are taker fills at the book's prices).
- An optional `validator(pair, side, ordertype, volume, price)` is called before an order is
  accepted (the Kraken paper command passes `place_order(..., validate=True)`: Kraken checks the
  order and executes nothing); its error rejects the order.
- `write()` puts `orders` and `fills` into the capture root, hive-partitioned like every other
  table (`orders/venue=V/symbol=S/date=D/<session>-<seq>.parquet`), so `lab query` sees them.
  Only sanitized order fields are stored: never keys, signatures or raw private responses.

Amounts and prices are exact: integers at the book's precisions, `Decimal` at the edges.
"""
from __future__ import annotations

import heapq
import itertools
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable

import pyarrow as pa

from lab.core.model import Trade
from lab.datasets import schema as S
from lab.datasets.store import atomic_write, day_of, decimal_array, file_name, new_session_id, partition_dir
from lab.replay.fills import Account, FeeSchedule, Latency, split_symbol
from lab.rust_book import OrderBook, parse_fixed


@dataclass
class PaperOrder:
    id: str
    venue: str
    symbol: str  # canonical
    venue_symbol: str
    side: str  # buy | sell
    ordertype: str  # market | limit
    volume: int  # lots
    price: int | None  # ticks
    price_precision: int
    amount_precision: int
    created_ns: int
    status: str = "open"  # pending | open | filled | cancelled | rejected
    filled: int = 0
    reason: str = ""
    validation: str = ""  # the venue's description of the validated order
    post_only: bool = False
    tif: str = "gtc"  # gtc | ioc | fok
    arrival_ns: int = 0  # when the venue sees it (created + entry latency)
    cancel_at: int | None = None  # when a requested cancel reaches the venue
    ahead: int | None = None  # lots displayed ahead of it at its level (queue models only)
    level_amount: int = 0  # its level's displayed amount when `ahead` was last updated
    traded: int = 0  # lots traded at its price since then
    reserved: Decimal = Decimal(0)  # what the account holds back for it

    @property
    def remaining(self) -> int:
        return self.volume - self.filled

    @property
    def live(self) -> bool:
        return self.status in ("pending", "open")

    def decimal_volume(self) -> Decimal:
        return Decimal(self.volume).scaleb(-self.amount_precision)


@dataclass(frozen=True)
class Fill:
    order_id: str
    timestamp: int  # exchange time of the book or trade that filled it
    local_timestamp: int  # local time of that book or trade (the backtest clock)
    side: str
    price: int
    amount: int
    fill_id: str
    liquidity: str = "taker"  # maker | taker
    fee: Decimal = Decimal(0)  # in the quote currency
    notify_ns: int = 0  # when the strategy hears of it (+ response latency)


@dataclass
class PaperBroker:
    """One venue's paper trading. Defaults keep the first broker's behaviour (no latency, no
    queue, no fees, no accounts: every book offers its whole crossing liquidity again); a
    backtest passes the models (lab/replay/fills.py). With a queue model a resting order fills
    as a maker at its own price: when trades at its price use up what was displayed ahead of it,
    or when the book or a trade goes through its price. Orders and fills are stamped with the
    book clock (`clock="book"`: the local time of the last book or trade seen) or wall time."""
    venue: str
    validator: Callable[..., dict] | None = None
    root: str | None = None
    session: str = field(default_factory=new_session_id)
    orders: list[PaperOrder] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)
    latency: Latency = field(default_factory=Latency)
    queue: object | None = None  # None, ConservativeQueue() or PowerProbQueue(n)
    fees: FeeSchedule = field(default_factory=FeeSchedule)
    account: Account | None = None  # None: no balance checks
    partial_fills: bool = True
    clock: str = "wall"  # wall | book
    id_prefix: str = ""  # set where several brokers share a session (a backtest: one per venue)

    def __post_init__(self):
        if self.clock not in ("wall", "book"):
            raise ValueError(f"clock must be wall or book, got {self.clock!r}")
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._fill_ids = itertools.count(1)
        self._segment = itertools.count()
        self._written_orders = 0
        self._written_fills = 0
        self._now = 0
        self._notices: list[tuple[int, int, Fill]] = []
        self._notice_seq = itertools.count()
        self._live: dict[str, list[PaperOrder]] = {}  # by canonical symbol: pending and open orders
        self._arrivals: list[tuple[int, int, PaperOrder]] = []  # heap of pending orders by arrival time

    def now(self) -> int:
        return self._now if self.clock == "book" and self._now else time.time_ns()

    def set_clock(self, now_ns: int) -> None:
        """A backtest's event time: what orders placed and cancels asked for now are stamped with."""
        self._now = now_ns

    def has_live(self, symbol: str) -> bool:
        """Pending or open orders on `symbol` (a cheap test before matching work)."""
        return bool(self._live.get(symbol))

    def next_notice_ns(self) -> int | None:
        """When the strategy hears of the next fill (None: no report in flight)."""
        return self._notices[0][0] if self._notices else None

    def next_arrival_ns(self) -> int | None:
        """When the next pending order reaches the venue (None: none in flight)."""
        arrivals = self._arrivals
        while arrivals and arrivals[0][2].status != "pending":
            heapq.heappop(arrivals)
        return arrivals[0][0] if arrivals else None

    # -- orders -------------------------------------------------------------------------------
    def submit(self, book: OrderBook, venue_symbol: str, side: str, ordertype: str, volume, price=None, *,
               post_only: bool = False, tif: str = "gtc") -> PaperOrder:
        """Place an order against `book` (the current live or replayed book of that symbol)."""
        if side not in ("buy", "sell"):
            raise ValueError(f"side must be buy or sell, got {side!r}")
        if ordertype not in ("market", "limit"):
            raise ValueError(f"ordertype must be market or limit, got {ordertype!r}")
        if ordertype == "limit" and price is None:
            raise ValueError("a limit order needs a price")
        if tif not in ("gtc", "ioc", "fok"):
            raise ValueError(f"tif must be gtc, ioc or fok, got {tif!r}")
        if post_only and (ordertype != "limit" or tif != "gtc"):
            raise ValueError("post_only needs a gtc limit order")
        pp, ap = book.price_precision, book.amount_precision
        created = self.now()
        order = PaperOrder(
            id=f"{self.id_prefix}P{self.session[-6:]}-{next(self._ids):06d}", venue=self.venue, symbol=book.symbol, venue_symbol=venue_symbol,
            side=side, ordertype=ordertype, volume=parse_fixed(str(volume), ap),
            price=None if price is None else parse_fixed(str(price), pp), price_precision=pp, amount_precision=ap,
            created_ns=created, post_only=post_only, tif=tif, arrival_ns=created + self.latency.entry(book),
        )
        if order.volume <= 0:
            raise ValueError("volume must be positive")
        if order.price is not None and order.price <= 0:
            raise ValueError("price must be positive")
        if self.validator is not None:
            try:
                result = self.validator(venue_symbol, side, ordertype, str(volume), None if price is None else str(price))
                order.validation = str((result or {}).get("descr", {}).get("order", ""))
            except Exception as exc:  # the venue said no: the order is rejected, and says why
                order.status = "rejected"
                order.reason = str(exc)
        with self._lock:
            self.orders.append(order)
            if order.status == "open" and not self._reserve(order, book):
                order.status = "rejected"
                order.reason = "insufficient balance"
            if order.status == "open":
                if order.arrival_ns > created:
                    order.status = "pending"
                    self._live.setdefault(order.symbol, []).append(order)
                    heapq.heappush(self._arrivals, (order.arrival_ns, next(self._notice_seq), order))
                else:
                    self._arrive(order, book)
        return order

    def cancel(self, order_id: str) -> bool:
        """Ask to cancel; with entry latency the cancel reaches the venue later and the order
        may still fill until then. False when the order is not live."""
        with self._lock:
            for o in self.orders:
                if o.id == order_id and o.live:
                    when = self.now() + self.latency.entry_ns
                    if self.latency.entry_ns == 0 or o.status == "pending" and o.arrival_ns >= when:
                        self._cancel(o, "cancelled by user")
                    else:
                        o.cancel_at = when
                    return True
        return False

    def on_book(self, book: OrderBook) -> list[Fill]:
        """Call after every applied book message: orders that arrived by now meet the book, and
        resting orders that the book crosses (or whose queue it moves) fill. An unsynced book
        matches nothing, and a queue position it may have moved is forgotten (rejoined behind
        the displayed amount at the next synced book)."""
        with self._lock:
            if self.clock == "book" and book.local_timestamp:
                self._now = book.local_timestamp
            orders = self._live.get(book.symbol)
            if not orders:
                return []
            if not book.synced:
                for o in orders:
                    o.ahead = None
                return []
            t = book.local_timestamp or time.time_ns()
            out: list[Fill] = []
            for o in list(orders):
                if o.venue != book.venue:
                    continue
                if o.cancel_at is not None and o.cancel_at <= t:
                    self._cancel(o, "cancelled by user")
                elif o.status == "pending":
                    if o.arrival_ns <= t:
                        out.extend(self._arrive(o, book))
                elif self.queue is None:
                    out.extend(self._take(o, book))
                else:
                    out.extend(self._rest(o, book))
            return out

    def on_trade(self, trade: Trade) -> list[Fill]:
        """A venue trade: with a queue model, trades at a resting order's price advance its queue
        and fill it once they pass it; a trade through its price fills all of it."""
        with self._lock:
            if self.clock == "book" and trade.local_timestamp:
                self._now = trade.local_timestamp
            if self.queue is None:
                return []
            out: list[Fill] = []
            for o in list(self._live.get(trade.symbol, ())):
                if o.status != "open" or o.ahead is None or o.venue != trade.venue or o.price is None:
                    continue
                if o.cancel_at is not None and o.cancel_at <= trade.local_timestamp:
                    self._cancel(o, "cancelled by user")
                    continue
                if trade.side == o.side:  # a taker on our side does not trade against us
                    continue
                price = int(trade.price.scaleb(o.price_precision))
                through = price < o.price if o.side == "buy" else price > o.price
                if through:
                    amount = o.remaining
                elif price == o.price:
                    lots = int(trade.amount.scaleb(o.amount_precision))
                    o.traded += lots
                    o.ahead = self.queue.on_trade(o.ahead, lots)
                    if o.ahead >= 0:
                        continue
                    amount = o.remaining if not self.partial_fills else min(-o.ahead, o.remaining)
                    o.ahead = 0
                else:
                    continue
                out.append(self._fill(o, trade.timestamp, trade.local_timestamp, o.price, amount, "maker"))
            return out

    def arrive_before(self, book: OrderBook, now_ns: int) -> list[Fill]:
        """A replay calls this before it applies a message of `book`'s stream stamped `now_ns`:
        orders that reached the venue before that message meet the book as it was then (not the
        book after the message, a look-ahead of one message). Live, orders arrive in on_book."""
        with self._lock:
            orders = self._live.get(book.symbol)
            if not orders or not book.synced:
                return []
            out: list[Fill] = []
            for o in list(orders):
                if o.status != "pending" or o.venue != book.venue or o.arrival_ns >= now_ns:
                    continue
                if o.cancel_at is not None and o.cancel_at <= o.arrival_ns:
                    self._cancel(o, "cancelled by user")
                else:
                    out.extend(self._arrive(o, book, o.arrival_ns))
            return out

    def due(self, now_ns: int) -> list[Fill]:
        """Fills the strategy hears of by `now_ns` (fill time + response latency), in order."""
        out = []
        with self._lock:
            while self._notices and self._notices[0][0] <= now_ns:
                out.append(heapq.heappop(self._notices)[2])
        return out

    # -- matching -----------------------------------------------------------------------------
    def _arrive(self, order: PaperOrder, book: OrderBook, at: int | None = None) -> list[Fill]:
        """The order reaches the venue and meets `book`: it takes what crosses, then rests,
        unless market, ioc, fok or post-only say otherwise."""
        order.status = "open"
        orders = self._live.setdefault(order.symbol, [])
        if order not in orders:
            orders.append(order)
        crossing = self._crossing(order, book)
        if order.post_only and crossing:
            self._cancel(order, "post-only order would take liquidity", status="rejected")
            return []
        if order.tif == "fok" and sum(a for _, a in crossing) < order.remaining:
            self._cancel(order, "fill-or-kill not fillable")
            return []
        out = self._take(order, book, crossing, at)
        if order.live and (order.ordertype == "market" or order.tif in ("ioc", "fok")):
            self._cancel(order, ("book exhausted" if order.filled else "empty book") if order.ordertype == "market"
                         else "immediate-or-cancel remainder")
        elif order.live and self.queue is not None:
            order.level_amount = self._level(order, book)
            order.ahead, order.traded = order.level_amount, 0
        return out

    def _crossing(self, order: PaperOrder, book: OrderBook) -> list[tuple[int, int]]:
        levels = book.asks_ticks(None) if order.side == "buy" else book.bids_ticks(None)
        out, need = [], order.remaining
        for price, amount in levels:
            if need <= 0 or order.price is not None and (price > order.price if order.side == "buy" else price < order.price):
                break
            out.append((price, amount))
            need -= amount
        return out

    def _take(self, order: PaperOrder, book: OrderBook, crossing=None, at: int | None = None) -> list[Fill]:
        out = []
        for price, amount in crossing if crossing is not None else self._crossing(order, book):
            if order.remaining <= 0:
                break
            take = min(amount, order.remaining)
            out.append(self._fill(order, book.timestamp, at or book.local_timestamp or time.time_ns(), price, take, "taker"))
        return out

    def _rest(self, order: PaperOrder, book: OrderBook) -> list[Fill]:
        """A resting order under a queue model, after a synced book message."""
        level = self._level(order, book)
        if order.ahead is None:  # first synced book after an unsync: rejoin at the back
            order.ahead, order.level_amount, order.traded = level, level, 0
        best = book.best_ask_ticks() if order.side == "buy" else book.best_bid_ticks()
        if best is not None and (best[0] <= order.price if order.side == "buy" else best[0] >= order.price):
            # the other side reached our price: we were there first, at our price
            return [self._fill(order, book.timestamp, book.local_timestamp or time.time_ns(), order.price, order.remaining, "maker")]
        if level != order.level_amount:
            order.ahead = self.queue.on_level(order.ahead, order.level_amount, level, order.traded)
            order.level_amount, order.traded = level, 0
        return []

    def _level(self, order: PaperOrder, book: OrderBook) -> int:
        for price, amount in book.levels_ticks(0 if order.side == "buy" else 1, None):
            if price == order.price:
                return amount
            if price < order.price if order.side == "buy" else price > order.price:
                break
        return 0

    def _fill(self, order: PaperOrder, ts: int, local_ts: int, price: int, amount: int, liquidity: str) -> Fill:
        order.filled += amount
        notional = Decimal(price * amount).scaleb(-(order.price_precision + order.amount_precision))
        fee = self.fees.fee(notional, liquidity)
        fill = Fill(order.id, ts, local_ts, order.side, price, amount, f"{order.id}-F{next(self._fill_ids)}",
                    liquidity, fee, local_ts + self.latency.response_ns)
        self.fills.append(fill)
        if self.account is not None:
            (base, d_base), (quote, d_quote) = fill_deltas(order, fill)
            self.account.add(base, d_base)
            self.account.add(quote, d_quote)
            if order.side == "buy":
                self._unreserve(order, quote, -d_quote if order.remaining else order.reserved)
            else:
                self._unreserve(order, base, -d_base if order.remaining else order.reserved)
        heapq.heappush(self._notices, (fill.notify_ns, next(self._notice_seq), fill))
        if order.remaining == 0:
            order.status = "filled"
            self._retire(order)
        return fill

    def _reserve(self, order: PaperOrder, book: OrderBook) -> bool:
        if self.account is None:
            return True
        base, quote = split_symbol(order.symbol)
        if order.side == "sell":
            need = order.decimal_volume()
            asset = base
        else:
            asset = quote
            if order.price is not None:
                notional = Decimal(order.price * order.volume).scaleb(-(order.price_precision + order.amount_precision))
            else:  # a market buy: what the visible asks would cost
                lots, cost = order.volume, 0
                for price, amount in book.asks_ticks(None):
                    take = min(lots, amount)
                    cost, lots = cost + take * price, lots - take
                    if lots == 0:
                        break
                notional = Decimal(cost).scaleb(-(order.price_precision + order.amount_precision))
            need = notional + notional * max(self.fees.taker, self.fees.maker, Decimal(0))
        if not self.account.reserve(asset, need):
            return False
        order.reserved = need
        return True

    def _unreserve(self, order: PaperOrder, asset: str, amount: Decimal) -> None:
        amount = min(amount, order.reserved)
        order.reserved -= amount
        self.account.release(asset, amount)

    def _cancel(self, order: PaperOrder, reason: str, status: str = "cancelled") -> None:
        order.status, order.reason = status, reason
        if self.account is not None and order.reserved:
            base, quote = split_symbol(order.symbol)
            self._unreserve(order, quote if order.side == "buy" else base, order.reserved)
        self._retire(order)

    def _retire(self, order: PaperOrder) -> None:
        orders = self._live.get(order.symbol)
        if orders and order in orders:
            orders.remove(order)

    def position(self, symbol: str) -> Decimal:
        with self._lock:
            total = Decimal(0)
            for o in self.orders:
                if o.symbol == symbol:
                    total += (1 if o.side == "buy" else -1) * Decimal(o.filled).scaleb(-o.amount_precision)
            return total

    # -- tables -------------------------------------------------------------------------------
    def write(self) -> list[str]:
        """Write the orders (their state now) and the fills not written yet; returns the paths.
        Call it once, when the session ends: each call writes every order again."""
        if self.root is None:
            return []
        with self._lock:
            orders = list(self.orders)
            fills = self.fills[self._written_fills:]
            self._written_fills = len(self.fills)
        seq = next(self._segment)
        by_id = {o.id: o for o in orders}
        paths = []
        for (symbol, date), group in _group(orders, lambda o: (o.symbol, day_of(o.created_ns))).items():
            o0 = group[0]
            pp, ap = o0.price_precision, o0.amount_precision
            table = pa.table({
                "local_timestamp": pa.array([o.created_ns for o in group], pa.timestamp("ns", tz="UTC")),
                "order_id": [o.id for o in group],
                "venue_symbol": [o.venue_symbol for o in group],
                "side": [o.side for o in group],
                "ordertype": [o.ordertype for o in group],
                "volume": decimal_array([o.volume for o in group], ap),
                "price": pa.array([None if o.price is None else Decimal(o.price).scaleb(-pp) for o in group], S.decimal(pp)),
                "filled": decimal_array([o.filled for o in group], ap),
                "status": [o.status for o in group],
                "reason": [o.reason for o in group],
                "validation": [o.validation for o in group],
            })
            path = f"{partition_dir(self.root, 'orders', self.venue, symbol, date)}/{file_name(self.session, seq)}"
            atomic_write(table, path, self._meta("orders", o0))
            paths.append(path)
        for (symbol, date), group in _group(fills, lambda f: (by_id[f.order_id].symbol, day_of(f.local_timestamp))).items():
            o0 = by_id[group[0].order_id]
            table = pa.table({
                "timestamp": pa.array([f.timestamp for f in group], pa.timestamp("ns", tz="UTC")),
                "local_timestamp": pa.array([f.local_timestamp for f in group], pa.timestamp("ns", tz="UTC")),
                "fill_id": [f.fill_id for f in group],
                "order_id": [f.order_id for f in group],
                "side": [f.side for f in group],
                "price": decimal_array([f.price for f in group], o0.price_precision),
                "amount": decimal_array([f.amount for f in group], o0.amount_precision),
                "liquidity": [f.liquidity for f in group],
                # exact in memory; 18 places on disk (a venue rounds fees far coarser)
                "fee": pa.array([f.fee.quantize(_FEE_PLACES) for f in group], pa.decimal128(38, 18)),
            })
            path = f"{partition_dir(self.root, 'fills', self.venue, symbol, date)}/{file_name(self.session, seq)}"
            atomic_write(table, path, self._meta("fills", o0))
            paths.append(path)
        return paths

    def _meta(self, table: str, o: PaperOrder) -> dict[bytes, bytes]:
        return {
            S.META_TABLE: table.encode(), S.META_SESSION: self.session.encode(), S.META_VENUE: self.venue.encode(),
            S.META_SYMBOL: o.symbol.encode(), S.META_VENUE_SYMBOL: o.venue_symbol.encode(),
            S.META_PRICE_PRECISION: str(o.price_precision).encode(), S.META_AMOUNT_PRECISION: str(o.amount_precision).encode(),
        }


_FEE_PLACES = Decimal(1).scaleb(-18)


def fill_deltas(order: PaperOrder, fill: Fill) -> tuple[tuple[str, Decimal], tuple[str, Decimal]]:
    """What a fill does to an account: ((base, change), (quote, change)), the fee in the quote."""
    base, quote = split_symbol(order.symbol)
    qty = Decimal(fill.amount).scaleb(-order.amount_precision)
    notional = Decimal(fill.price * fill.amount).scaleb(-(order.price_precision + order.amount_precision))
    sign = 1 if fill.side == "buy" else -1
    return (base, sign * qty), (quote, -sign * notional - fill.fee)


def _group(items, key) -> dict:
    out: dict = {}
    for it in items:
        out.setdefault(key(it), []).append(it)
    return out
