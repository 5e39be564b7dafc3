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

import itertools
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable

import pyarrow as pa

from lab.datasets import schema as S
from lab.datasets.store import atomic_write, day_of, decimal_array, file_name, new_session_id, partition_dir
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
    status: str = "open"  # open | filled | cancelled | rejected
    filled: int = 0
    reason: str = ""
    validation: str = ""  # the venue's description of the validated order

    @property
    def remaining(self) -> int:
        return self.volume - self.filled

    def decimal_volume(self) -> Decimal:
        return Decimal(self.volume).scaleb(-self.amount_precision)


@dataclass(frozen=True)
class Fill:
    order_id: str
    timestamp: int  # exchange time of the book that filled it
    local_timestamp: int
    side: str
    price: int
    amount: int
    fill_id: str


@dataclass
class PaperBroker:
    venue: str
    validator: Callable[..., dict] | None = None
    root: str | None = None
    session: str = field(default_factory=new_session_id)
    orders: list[PaperOrder] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)

    def __post_init__(self):
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._fill_ids = itertools.count(1)
        self._segment = itertools.count()
        self._written_orders = 0
        self._written_fills = 0

    # -- orders -------------------------------------------------------------------------------
    def submit(self, book: OrderBook, venue_symbol: str, side: str, ordertype: str, volume, price=None) -> PaperOrder:
        """Place an order against `book` (the current live or replayed book of that symbol)."""
        if side not in ("buy", "sell"):
            raise ValueError(f"side must be buy or sell, got {side!r}")
        if ordertype not in ("market", "limit"):
            raise ValueError(f"ordertype must be market or limit, got {ordertype!r}")
        if ordertype == "limit" and price is None:
            raise ValueError("a limit order needs a price")
        pp, ap = book.price_precision, book.amount_precision
        order = PaperOrder(
            id=f"P{self.session[-6:]}-{next(self._ids):06d}", venue=self.venue, symbol=book.symbol, venue_symbol=venue_symbol,
            side=side, ordertype=ordertype, volume=parse_fixed(str(volume), ap),
            price=None if price is None else parse_fixed(str(price), pp), price_precision=pp, amount_precision=ap,
            created_ns=time.time_ns(),
        )
        if order.volume <= 0:
            raise ValueError("volume must be positive")
        if self.validator is not None:
            try:
                result = self.validator(venue_symbol, side, ordertype, str(volume), None if price is None else str(price))
                order.validation = str((result or {}).get("descr", {}).get("order", ""))
            except Exception as exc:  # the venue said no: the order is rejected, and says why
                order.status = "rejected"
                order.reason = str(exc)
        with self._lock:
            self.orders.append(order)
            if order.status == "open":
                self._match(order, book)
                if order.status == "open" and ordertype == "market":
                    order.status = "cancelled"
                    order.reason = "book exhausted" if order.filled else "empty book"
        return order

    def cancel(self, order_id: str) -> bool:
        with self._lock:
            for o in self.orders:
                if o.id == order_id and o.status == "open":
                    o.status = "cancelled"
                    o.reason = "cancelled by user"
                    return True
        return False

    def on_book(self, book: OrderBook) -> list[Fill]:
        """Call after every applied book message: resting limit orders that the book crosses fill."""
        if not book.synced:
            return []
        out: list[Fill] = []
        with self._lock:
            for o in self.orders:
                if o.status == "open" and o.symbol == book.symbol and o.venue == book.venue:
                    out.extend(self._match(o, book))
        return out

    def _match(self, order: PaperOrder, book: OrderBook) -> list[Fill]:
        levels = book.asks_ticks() if order.side == "buy" else book.bids_ticks()
        out = []
        for price, amount in levels:
            if order.remaining <= 0:
                break
            if order.price is not None and (price > order.price if order.side == "buy" else price < order.price):
                break
            take = min(amount, order.remaining)
            order.filled += take
            fill = Fill(order.id, book.timestamp, book.local_timestamp or time.time_ns(), order.side, price, take,
                        f"{order.id}-F{next(self._fill_ids)}")
            self.fills.append(fill)
            out.append(fill)
        if order.remaining == 0:
            order.status = "filled"
        return out

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
                "liquidity": ["taker"] * len(group),
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


def _group(items, key) -> dict:
    out: dict = {}
    for it in items:
        out.setdefault(key(it), []).append(it)
    return out
