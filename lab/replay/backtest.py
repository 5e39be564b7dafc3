"""Backtesting: one strategy class, run on a capture through the replay connector and the one
paper broker (lab/replay/paper.py) with its fill models (lab/replay/fills.py).

A strategy subclasses `Strategy` and overrides what it needs:

    class MyStrategy(Strategy):
        def on_start(self, ctx): ...          # ctx: Context (also self.ctx)
        def on_book(self, book): ...          # the replayed OrderBook (valid during the call)
        def on_trade(self, trade): ...        # lab.core.model.Trade
        def on_fill(self, fill): ...          # StrategyFill, after the response latency
        def on_timer(self, now_ns): ...       # every `timer_interval` of data time
        def on_stop(self): ...

The context (`place_order`, `cancel`, `position`, `balance`, `book`, `now`) is the same object
whether the clock is a capture's (`lab backtest`) or the wall's: the engine only decides where
books come from. Time is the capture's `local_timestamp` (what the recorder saw when), so an
order placed during `on_book` reaches the venue `entry` latency later and meets the book of
that moment, never the one the strategy was looking at.

Money is exact: `Decimal` balances, integer ticks and lots in the matching. The equity series
values every asset at the mid of the book pairing it with the venue's quote currency; equity is
per venue in that venue's quote currency, and the run's total adds them up (stated assumption:
the quote currencies of a cross-venue run are at par, e.g. USD and USDT).
"""
from __future__ import annotations

import importlib.util
import inspect
import math
import os
import sys
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from lab.core.model import Trade
from lab.core.timeparse import format_time_ns as format_ns
from lab.datasets.store import new_session_id
from lab.replay.fills import Account, FeeSchedule, Latency, queue_model, split_symbol
from lab.replay.paper import Fill, PaperBroker, PaperOrder, fill_deltas
from lab.rust_book import OrderBook
from lab.symbols import key as symbol_key

_MONEY = pa.decimal128(38, 18)
_PLACES = Decimal(1).scaleb(-18)
_YEAR_NS = 365 * 24 * 3600 * 10**9


class BacktestError(ValueError):
    """A backtest that cannot run as asked (a bad strategy file, option or capture): one line."""


@dataclass(frozen=True)
class StrategyFill:
    """A fill as the strategy hears of it (exact decimals)."""
    venue: str
    symbol: str
    order_id: str
    fill_id: str
    side: str
    price: Decimal
    amount: Decimal
    liquidity: str  # maker | taker
    fee: Decimal  # in the quote currency
    timestamp: int  # exchange time of the book or trade that filled it
    local_timestamp: int  # when it filled (capture clock)
    notify_ns: int  # when the strategy hears of it


class Strategy:
    """Base class of strategies; `params` (from `--param KEY=VALUE`) arrive as keyword arguments
    and are set as attributes. `balances` are the starting balances of every venue account
    (asset -> amount) unless the command line gives others; `timer_interval` (ns) enables
    `on_timer`."""
    balances: dict[str, str] = {}
    timer_interval: int | None = None

    def __init__(self, **params):
        for k, v in params.items():
            setattr(self, k, v)
        self.ctx: Context | None = None

    def on_start(self, ctx: "Context") -> None:
        pass

    def on_book(self, book: OrderBook) -> None:
        pass

    def on_trade(self, trade: Trade) -> None:
        pass

    def on_fill(self, fill: StrategyFill) -> None:
        pass

    def on_timer(self, now_ns: int) -> None:
        pass

    def on_stop(self) -> None:
        pass


_ZERO = Decimal(0)
_NEVER = 2**63 - 1  # a replay cue: nothing in flight, `before` has no work until a callback says so


class Context:
    """What a strategy may do and see. Venue and symbol are spelled as in the capture or in
    canonical form (`XBT/USD` or `XBT-USD`, any case)."""

    def __init__(self, engine: "Engine"):
        self._engine = engine
        self._keys: dict[str, str] = {}  # a strategy's spelling -> the canonical partition symbol

    def now(self) -> int:
        """The clock in ns: the capture's local time of the event being handled."""
        return self._engine.now

    def symbol(self, symbol: str) -> str:
        """The canonical spelling of `symbol` (what `book.symbol` says): `XBT/USD` -> `XBT-USD`,
        `BTCUSDT` -> `BTC-USDT` where the capture records that spelling."""
        return self._engine.symbol(symbol)

    def book(self, venue: str, symbol: str) -> OrderBook | None:
        """The current book of (venue, symbol), or None before its first message."""
        books = self._engine.books
        book = books.get((venue, symbol))  # spelled as the capture's partitions: no parsing
        if book is None:
            key = self._keys.get(symbol)
            if key is None:
                key = self._keys[symbol] = self._engine.symbol(symbol)
            book = books.get((venue, key))
        return book

    def place_order(self, venue: str, symbol: str, side: str, type: str, volume, price=None, post_only: bool = False,
                    tif: str = "gtc") -> str:
        """Send an order; returns its id. It reaches the venue after the entry latency; a
        rejected order (a bad price, no balance, post-only that would take) still gets an id,
        and `order(id).status` says why."""
        return self._engine.place(venue, symbol, side, type, volume, price, post_only, tif).id

    def cancel(self, order_id: str) -> bool:
        return self._engine.cancel(order_id)

    def order(self, order_id: str) -> PaperOrder | None:
        return self._engine.orders_by_id.get(order_id)

    def open_orders(self, venue: str | None = None, symbol: str | None = None) -> list[PaperOrder]:
        sym = self._engine.symbol(symbol) if symbol else None
        return [o for b in self._engine.brokers.values() for o in b.orders
                if o.live and (venue is None or o.venue == venue) and (sym is None or o.symbol == sym)]

    # Balances and positions are what the strategy has heard: a fill moves them when its report
    # arrives (fill time + response latency), as a venue's private feed would.
    def position(self, venue: str, symbol: str) -> Decimal:
        """The base-currency balance of `symbol`'s account at `venue`."""
        base, _ = split_symbol(self._engine.symbol(symbol))
        return self.balance(venue, base)

    def balance(self, venue: str, asset: str) -> Decimal:
        self._engine.broker(venue)
        return self._engine.heard[venue].get(asset, Decimal(0))

    def available(self, venue: str, asset: str) -> Decimal:
        """What is left of `asset` after open orders' reservations."""
        engine = self._engine
        broker = engine.brokers.get(venue) or engine.broker(venue)  # strategies ask on every message: no detours
        return engine.heard[venue].get(asset, _ZERO) - broker.account.reserved.get(asset, _ZERO)

    def balances(self, venue: str) -> dict[str, Decimal]:
        self._engine.broker(venue)
        return dict(self._engine.heard[venue])

    def fees(self, venue: str) -> FeeSchedule:
        """The maker/taker schedule this run charges at `venue`."""
        return self._engine.broker(venue).fees

    def log(self, message: str) -> None:
        self._engine.log.append((self._engine.now, str(message)))


@dataclass
class Models:
    """The fill models of a run (venue-agnostic; `fees` by venue, `None` = the venue's default)."""
    latency: Latency = field(default_factory=Latency)
    queue: object | None = None
    fees: dict[str, FeeSchedule] = field(default_factory=dict)
    default_fees: FeeSchedule | None = None  # one schedule for every venue
    partial_fills: bool = True
    margin: bool = False
    balances: dict[str, dict[str, Decimal]] = field(default_factory=dict)  # venue or "*" -> asset -> amount


class Engine:
    """The event loop shared by backtests: books and trades in, the broker's fills and the
    strategy's callbacks out, equity sampled every `sample_ns` of data time."""

    def __init__(self, strategy: Strategy, models: Models, fees_of: Callable[[str], FeeSchedule],
                 sample_ns: int = 10**9, results: str | None = None, session: str | None = None,
                 validator: Callable[..., dict] | None = None):
        self.strategy = strategy
        self.models = models
        self.fees_of = fees_of
        self.sample_ns = sample_ns
        self.results = results
        self.session = session or new_session_id()  # order and fill ids derive from it
        self.validator = validator  # live paper: the venue checks each order (validate=true)
        # live callbacks of several symbols come from several threads: one event at a time
        self.lock = threading.RLock()
        self.now = 0
        self.books: dict[tuple[str, str], OrderBook] = {}
        self.venue_symbols: dict[tuple[str, str], str] = {}
        # venue spellings whose canonical form is not derivable (`BTCUSDT` -> `BTC-USDT`), from the capture
        self.spellings: dict[str, str] = {}
        self.brokers: dict[str, PaperBroker] = {}
        self.orders_by_id: dict[str, PaperOrder] = {}
        self.heard: dict[str, dict[str, Decimal]] = {}  # venue -> balances as the strategy knows them
        self.starting: dict[str, dict[str, Decimal]] = {}  # venue -> starting balances
        self.log: list[tuple[int, str]] = []
        self.ctx = Context(self)
        self._next_sample: int | None = None
        self._next_timer: int | None = None
        self.equity_rows: list[tuple[int, str, Decimal]] = []  # (ns, venue, equity in its quote)
        self.position_rows: list[tuple[int, str, str, Decimal, Decimal | None]] = []  # (ns, venue, symbol, position, mid)
        self.fill_marks: list[StrategyFill] = []
        self.started = False
        # When `before` next has work (timers, order arrivals, fill reports; see `_refresh`):
        # recomputed after anything that can make it earlier (an order, a fill, a timer).
        self._dirty = True
        self._wake_at: int | None = None
        self._notice_at: int | None = None
        self.book_messages = 0
        self.trades_seen = 0
        self.unsynced_skips = 0

    def symbol(self, symbol: str) -> str:
        """The canonical symbol a strategy's spelling names (`XBT/USD`, `xbt-usd`, `BTCUSDT`)."""
        k = symbol_key(symbol)
        return self.spellings.get(k, k)

    # -- accounts and brokers -----------------------------------------------------------------
    def broker(self, venue: str) -> PaperBroker:
        b = self.brokers.get(venue)
        if b is None:
            m = self.models
            fees = m.fees.get(venue) or m.default_fees or self.fees_of(venue)
            start = dict(m.balances.get("*", {}))
            start.update(m.balances.get(venue, {}))
            if not start and not m.margin:
                start = {k: Decimal(v) for k, v in type(self.strategy).balances.items()}
            account = Account(balances=dict(start), margin=m.margin)
            b = PaperBroker(venue, validator=self.validator, root=None, session=self.session, latency=m.latency, queue=m.queue, fees=fees,
                            account=account, partial_fills=m.partial_fills, clock="book",
                            id_prefix=f"{venue}:")  # ids unique across the run's venues
            self.starting[venue] = dict(start)  # what "in the market" is measured from
            self.heard[venue] = dict(start)
            self.brokers[venue] = b
        return b

    def account(self, venue: str) -> Account:
        return self.broker(venue).account

    def place(self, venue, symbol, side, ordertype, volume, price, post_only, tif) -> PaperOrder:
        sym = self.symbol(symbol)
        book = self.books.get((venue, sym))
        if book is None:
            raise BacktestError(f"place_order: no {venue} {symbol} book yet (known: "
                                f"{', '.join(f'{v}:{s}' for v, s in sorted(self.books)) or 'none'})")
        broker = self.broker(venue)
        broker.set_clock(self.now)
        order = broker.submit(book, self.venue_symbols.get((venue, sym), sym), side, ordertype, volume, price,
                              post_only=post_only, tif=tif)
        self.orders_by_id[order.id] = order
        self._dirty = True
        return order

    def cancel(self, order_id: str) -> bool:
        order = self.orders_by_id.get(order_id)
        if order is None:
            return False
        broker = self.brokers[order.venue]
        broker.set_clock(self.now)
        self._dirty = True
        return broker.cancel(order_id)

    # -- the event loop -------------------------------------------------------------------------
    def _begin(self, now: int) -> None:
        self.started = True
        self._next_sample = now
        if self.strategy.timer_interval:
            self._next_timer = now + int(self.strategy.timer_interval)
        self.strategy.ctx = self.ctx
        self.strategy.on_start(self.ctx)

    def _refresh(self) -> None:
        """`_wake_at`: the earliest local time of a message `before` has work for (a timer due
        before it, an order that reached the venue before it, a fill report due by it);
        `_notice_at`: the earliest fill report. Both None when nothing is in flight. A value
        that is too early only costs a look; one too late would be a look-ahead, so every change
        that can make them earlier sets `_dirty`."""
        self._dirty = False
        wake = notice = None
        for b in self.brokers.values():
            n, a = b.next_notice_ns(), b.next_arrival_ns()
            if n is not None and (notice is None or n < notice):
                notice = n
            if a is not None and (wake is None or a + 1 < wake):
                wake = a + 1
        if self._next_timer is not None and (wake is None or self._next_timer + 1 < wake):
            wake = self._next_timer + 1
        if notice is not None and (wake is None or notice < wake):
            wake = notice
        self._wake_at, self._notice_at = wake, notice

    def wake_ns(self) -> int | None:
        """The earliest message time `before` must be called for (None: none until the next
        callback): what the replay driver is told after each call, so it skips the rest."""
        if self._dirty:
            self._refresh()
        return self._wake_at

    def _cue(self) -> int:
        """`wake_ns()` as the replay driver reads it (an int; `_NEVER`: nothing in flight)."""
        wake = self.wake_ns()
        return _NEVER if wake is None else wake

    def before(self, now: int, venue: str, symbol: str) -> int | None:
        """The replay is about to apply a message (or deliver a trade) of (venue, symbol) stamped
        `now`: what falls before it happens on the books as they are, i.e. timers due before
        `now` fire and orders that reached the venue before it arrive, before the message.
        Returns the replay's cue, as `replay_book`."""
        if not self.started:
            return None
        wake = self.wake_ns()
        if wake is None or now < wake:
            return _NEVER if wake is None else wake  # nothing falls before this message: the common case
        with self.lock:
            self._advance(now, strict=True)
            broker, book = self.brokers.get(venue), self.books.get((venue, symbol))
            if broker is not None and book is not None:
                if broker.arrive_before(book, now):
                    self._dirty = True
                self._deliver(now)
            self._dirty = True
            return self._cue()

    def _advance(self, now: int, strict: bool = False) -> None:
        """Time moves to `now`: timers that fell due fire (those at `now` too unless `strict`),
        each after the orders that reached the venue before it, then fills the strategy hears of."""
        if not self.started:
            self._begin(now)
        while self._next_timer is not None and (self._next_timer < now or not strict and self._next_timer == now):
            t = self._next_timer
            self._next_timer += int(self.strategy.timer_interval)
            self.now = t
            self._arrivals(t)
            self._deliver(t)
            self.strategy.on_timer(t)
            self._dirty = True
        self.now = now
        self._deliver(now)

    def _arrivals(self, t: int) -> None:
        for (venue, _), book in self.books.items():
            broker = self.brokers.get(venue)
            if broker is not None and broker.has_live(book.symbol):
                broker.arrive_before(book, t)
                self._dirty = True

    def _deliver(self, now: int) -> None:
        if self._dirty:
            self._refresh()
        if self._notice_at is None or now < self._notice_at:
            return
        self._dirty = True
        for venue, broker in self.brokers.items():
            for f in broker.due(now):
                self._hear(venue, f)
                sf = self._strategy_fill(venue, f)
                self.fill_marks.append(sf)
                self.strategy.on_fill(sf)

    def _hear(self, venue: str, f: Fill) -> None:
        """The strategy's view of its balances moves when it hears of a fill, not when it happens
        (the venue's account moved a response latency earlier)."""
        view = self.heard[venue]
        for asset, change in fill_deltas(self.orders_by_id[f.order_id], f):
            view[asset] = view.get(asset, Decimal(0)) + change

    def _strategy_fill(self, venue: str, f: Fill) -> StrategyFill:
        o = self.orders_by_id[f.order_id]
        return StrategyFill(venue, o.symbol, f.order_id, f.fill_id, f.side, Decimal(f.price).scaleb(-o.price_precision),
                            Decimal(f.amount).scaleb(-o.amount_precision), f.liquidity, f.fee, f.timestamp,
                            f.local_timestamp, f.notify_ns)

    def on_book(self, book: OrderBook) -> int:
        """The live callback (several threads: one event at a time)."""
        with self.lock:
            return self.replay_book(book)

    def replay_book(self, book: OrderBook) -> int:
        """`on_book` for a replay (one thread, so no lock). Returns the replay's cue, when to
        call `before` next (`ReplayConnector.before`; live connectors ignore it). The hot path
        of every backtest: one call per book message."""
        now = book.local_timestamp
        venue, symbol = book.venue, book.symbol
        self.books[(venue, symbol)] = book  # live may hand a new view per call
        if self.started and not self._dirty and (self._wake_at is None or now < self._wake_at) \
                and (self._next_timer is None or now < self._next_timer):
            self.now = now  # no timer due, no report due: _advance would do only this
        else:
            self._advance(now)
        self.book_messages += 1
        broker = self.brokers.get(venue)
        if broker is not None and broker.has_live(symbol):
            if broker.on_book(book):
                self._dirty = True
            self._deliver(now)  # zero response latency: heard at once
        if self._next_sample is not None and now >= self._next_sample:
            self.sample(now)
            self._next_sample = now - now % self.sample_ns + self.sample_ns
        self.strategy.on_book(book)
        return self._cue()

    def replay_trade(self, trade: Trade) -> int:
        self._on_trade(trade)
        return self._cue()

    def on_trade(self, trade: Trade) -> int:
        with self.lock:
            return self.replay_trade(trade)

    def _on_trade(self, trade: Trade) -> None:
        self._advance(trade.local_timestamp)
        self.trades_seen += 1
        broker = self.brokers.get(trade.venue)
        if broker is not None and broker.has_live(trade.symbol):
            if broker.on_trade(trade):
                self._dirty = True
            self._deliver(trade.local_timestamp)
        self.strategy.on_trade(trade)

    def finish(self) -> None:
        if self.started:
            self._deliver(self.now + max(self.models.latency.response_ns, 0))
            self.sample(self.now)
            self.strategy.on_stop()

    # -- valuation ------------------------------------------------------------------------------
    def mid(self, venue: str, symbol: str) -> Decimal | None:
        book = self.books.get((venue, symbol))
        if book is None:
            return None
        bid, ask = book.top_ticks()
        if bid is None or ask is None:
            return None
        return Decimal(bid + ask).scaleb(-book.price_precision) / 2

    def venue_equity(self, venue: str, balances: dict[str, Decimal]) -> Decimal | None:
        """Balances valued in the venue's quote currency at mid; None while an asset with a book
        has no mid yet. Assets the capture has no book of at this venue are left out: nothing in
        the run can change them."""
        symbols = [s for v, s in self.books if v == venue]
        quotes = {split_symbol(s)[1] for s in symbols}
        total = Decimal(0)
        for asset, amount in balances.items():
            if asset in quotes or amount == 0:
                total += amount
                continue
            pairs = [s for s in symbols if split_symbol(s)[0] == asset]
            if not pairs:
                continue  # no book of it at this venue: it cannot trade here, so it cannot change
            price = self.mid(venue, pairs[0])
            if price is None:
                return None
            total += amount * price
        return total

    def sample(self, now: int) -> None:
        for venue in sorted({v for v, _ in self.books}):
            account = self.account(venue)
            eq = self.venue_equity(venue, account.balances)
            if eq is not None:
                self.equity_rows.append((now, venue, eq))
            for v, s in sorted(self.books):
                if v == venue:
                    base, _ = split_symbol(s)
                    self.position_rows.append((now, v, s, account.balances.get(base, Decimal(0)), self.mid(v, s)))

    # -- results --------------------------------------------------------------------------------
    def totals(self) -> list[tuple[int, Decimal]]:
        """The total equity per sample time (the sum over venues, each at its last value), from
        the first sample at which every venue of the run has a value: a venue whose first book
        comes later must not enter the series as a jump of its whole account."""
        venues = {v for _, v, _ in self.equity_rows}
        last: dict[str, Decimal] = {}
        out: list[tuple[int, Decimal]] = []
        for ns, venue, eq in self.equity_rows:
            last[venue] = eq
            if len(last) < len(venues):
                continue
            total = sum(last.values(), Decimal(0))
            if out and out[-1][0] == ns:
                out[-1] = (ns, total)
            else:
                out.append((ns, total))
        return out

    def summary(self) -> dict:
        fills = [f for b in self.brokers.values() for f in b.fills]
        orders = [o for b in self.brokers.values() for o in b.orders]
        totals = self.totals()
        start_eq = totals[0][1] if totals else Decimal(0)
        end_eq = totals[-1][1] if totals else Decimal(0)
        pnl = end_eq - start_eq
        fees = sum((f.fee for f in fills), Decimal(0))
        turnover = sum((Decimal(f.price * f.amount).scaleb(-(self.orders_by_id[f.order_id].price_precision
                                                            + self.orders_by_id[f.order_id].amount_precision))
                        for f in fills), Decimal(0))
        returns = [float(b / a - 1) for (_, a), (_, b) in zip(totals, totals[1:]) if a > 0]
        per_year = _YEAR_NS / self.sample_ns
        sharpe = sortino = None
        if len(returns) > 1:
            mean = sum(returns) / len(returns)
            sd = math.sqrt(sum((r - mean) ** 2 for r in returns) / (len(returns) - 1))
            down = [min(r, 0.0) for r in returns]
            dd = math.sqrt(sum(r * r for r in down) / len(down))
            sharpe = mean / sd * math.sqrt(per_year) if sd > 0 else None
            sortino = mean / dd * math.sqrt(per_year) if dd > 0 else None
        peak, max_dd = None, Decimal(0)
        for _, eq in totals:
            peak = eq if peak is None or eq > peak else peak
            if peak and peak > 0:
                max_dd = max(max_dd, (peak - eq) / peak)
        in_market = _time_in_market(self.position_rows, self.starting)
        filled_orders = sum(1 for o in orders if o.filled > 0)
        return {
            "session": self.session,
            "start": format_ns(totals[0][0]) if totals else None,
            "end": format_ns(totals[-1][0]) if totals else None,
            "book_messages": self.book_messages,
            "trades_seen": self.trades_seen,
            "orders": len(orders),
            "orders_rejected": sum(1 for o in orders if o.status == "rejected"),
            "fills": len(fills),
            "fill_ratio": _ratio(filled_orders, len([o for o in orders if o.status != "rejected"])),
            "maker_fills": sum(1 for f in fills if f.liquidity == "maker"),
            "start_equity": _dec(start_eq),
            "end_equity": _dec(end_eq),
            "pnl": _dec(pnl),
            "return": _ratio(pnl, start_eq),
            "fees": _dec(fees),
            "turnover": _dec(turnover),
            "sharpe": _round(sharpe),
            "sortino": _round(sortino),
            "max_drawdown": _ratio(max_dd, 1),
            "time_in_market": _round(in_market),
            "sample_interval_ns": self.sample_ns,
            "balances": {v: {a: _dec(x) for a, x in sorted(b.account.balances.items())} for v, b in sorted(self.brokers.items())},
            "results": self.results,
        }

    def write(self) -> list[str]:
        """orders, fills (the broker's tables), equity and positions, hive-partitioned under the
        results folder like a capture, so `lab query --root RESULTS` reads them."""
        if self.results is None:
            return []
        paths = []
        for broker in self.brokers.values():
            broker.root = self.results
            paths += broker.write()
        by_venue: dict[str, list] = {}
        for row in self.equity_rows:
            by_venue.setdefault(row[1], []).append(row)
        for venue, rows in by_venue.items():
            table = pa.table({
                "local_timestamp": pa.array([r[0] for r in rows], pa.timestamp("ns", tz="UTC")),
                "equity": pa.array([r[2].quantize(_PLACES) for r in rows], _MONEY),
            })
            paths.append(_write(table, self.results, "equity", venue, None, self.session))
        by_stream: dict[tuple[str, str], list] = {}
        for row in self.position_rows:
            by_stream.setdefault((row[1], row[2]), []).append(row)
        for (venue, symbol), rows in by_stream.items():
            table = pa.table({
                "local_timestamp": pa.array([r[0] for r in rows], pa.timestamp("ns", tz="UTC")),
                "position": pa.array([r[3].quantize(_PLACES) for r in rows], _MONEY),
                "mid": pa.array([None if r[4] is None else r[4].quantize(_PLACES) for r in rows], _MONEY),
            })
            paths.append(_write(table, self.results, "positions", venue, symbol, self.session))
        return paths


def _write(table: pa.Table, root: str, name: str, venue: str, symbol: str | None, session: str) -> str:
    d = os.path.join(root, name, f"venue={venue}") + (f"/symbol={symbol}" if symbol else "")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, f"{session}.parquet")
    tmp = path + ".tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def _time_in_market(rows, starting: dict[str, dict[str, Decimal]]) -> float | None:
    """The share of samples at which some position differs from where it started."""
    if not rows:
        return None
    times: dict[int, bool] = {}
    for ns, venue, symbol, position, _ in rows:
        base, _ = split_symbol(symbol)
        times[ns] = times.get(ns, False) or position != starting.get(venue, {}).get(base, Decimal(0))
    return sum(times.values()) / len(times)


def _dec(d: Decimal) -> str:
    d = d.quantize(_PLACES).normalize()
    return format(d, "f")


def _ratio(a, b) -> float | None:
    return None if not b else round(float(Decimal(a) / Decimal(b)), 10)


def _round(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, 6)


# -- strategies from files ------------------------------------------------------------------------
def load_strategy(path: str, class_name: str | None = None, params: dict[str, str] | None = None) -> Strategy:
    """The strategy class defined in a Python file, instantiated with `params`."""
    if not os.path.isfile(path):
        raise BacktestError(f"strategy file {path!r} not found")
    name = f"lab_strategy_{abs(hash(os.path.realpath(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise BacktestError(f"{path}: {type(exc).__name__}: {exc}") from exc
    found = [c for _, c in inspect.getmembers(module, inspect.isclass)
             if issubclass(c, Strategy) and c is not Strategy and c.__module__ == name]
    if class_name:
        found = [c for c in found if c.__name__ == class_name]
    if len(found) != 1:
        names = ", ".join(c.__name__ for c in found) or "none"
        raise BacktestError(f"{path}: expected one Strategy subclass{f' named {class_name}' if class_name else ''}, found {names}"
                            + (" (pick one with --class)" if len(found) > 1 else ""))
    cls = found[0]
    try:
        return cls(**(params or {}))
    except TypeError as exc:
        raise BacktestError(f"{cls.__name__}: {exc}") from None


def parse_params(items) -> dict[str, str]:
    out = {}
    for item in items or ():
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise BacktestError(f"--param {item!r}: expected KEY=VALUE")
        out[k] = v
    return out


def parse_balances(items) -> dict[str, dict[str, Decimal]]:
    """`--balance USD=10000` (every venue) or `--balance kraken:XBT=1` (one venue)."""
    out: dict[str, dict[str, Decimal]] = {}
    for item in items or ():
        scope, sep, rest = item.partition(":")
        if not sep:
            scope, rest = "*", item
        asset, sep, amount = rest.partition("=")
        try:
            value = Decimal(amount)
            if not sep or not asset or not value.is_finite():
                raise ValueError
        except (ArithmeticError, ValueError):
            raise BacktestError(f"--balance {item!r}: expected [VENUE:]ASSET=AMOUNT") from None
        out.setdefault(scope, {})[asset.upper()] = value
    return out


def parse_fees(items) -> tuple[FeeSchedule | None, dict[str, FeeSchedule]]:
    """`--fees maker=0.0016,taker=0.0026` (every venue) or `--fees kraken:taker=0.004` (one)."""
    default, per = None, {}
    for item in items or ():
        scope, sep, rest = item.partition(":")
        if sep and "=" not in scope:
            per[scope] = FeeSchedule.parse(rest)
        else:
            default = FeeSchedule.parse(item)
    return default, per


def _strategy_error(strategy: Strategy, engine: "Engine", exc: BaseException) -> str:
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if f.filename == inspect.getsourcefile(type(strategy))] or frames[-1:]
    where = f" ({os.path.basename(mine[-1].filename)}:{mine[-1].lineno})" if mine else ""
    at = format_ns(engine.now) if engine.now else "the start"
    return f"{type(strategy).__name__} failed at {at}{where}: {type(exc).__name__}: {exc}"


def venue_fees(venue: str) -> FeeSchedule:
    """The venue's public schedule (its adapter's `fees`); zero for a venue lab does not know."""
    from lab.core.errors import UnknownVenue
    from lab.venues import registry

    try:
        maker, taker = registry.adapter_class(venue).fees
    except UnknownVenue:
        return FeeSchedule()
    return FeeSchedule(Decimal(maker), Decimal(taker))


def parse_models(latency: str = "0", queue: str = "none", fees=(), balances=(), partial_fills: bool = True,
                 margin: bool = False) -> Models:
    """The fill models from their command-line spellings (`lab backtest`, `lab paper --strategy`);
    ValueError, one line, on a bad one."""
    default_fees, venue_fees = parse_fees(fees)
    return Models(latency=Latency.parse(latency), queue=queue_model(queue), fees=venue_fees, default_fees=default_fees,
                  partial_fills=partial_fills, margin=margin, balances=parse_balances(balances))


def run_backtest(strategy: Strategy, root: str, *, venue: str | None = None, symbols: list[str] | None = None,
                 start_ns: int | None = None, end_ns: int | None = None, models: Models | None = None,
                 sample_ns: int = 10**9, results: str | None = None, progress=None,
                 offsets: dict[str, int] | None = None) -> Engine:
    """Replay `root` into `strategy` with `models` (`offsets`: venue -> ns of feed latency added
    to its local times, as `ReplayConnector`); returns the finished engine (summary(), write()
    for the tables)."""
    from lab.replay.connector import ReplayConnector

    engine = Engine(strategy, models or Models(), venue_fees, sample_ns, results)
    conn = ReplayConnector(root, venue=venue, symbols=symbols, start_ns=start_ns, end_ns=end_ns, progress=progress, offsets=offsets)
    for (v, s), files in conn._book_streams.items():
        engine.venue_symbols[(v, s)] = s
    engine.spellings = conn.spellings()
    conn.start_stream("*", engine.replay_book, engine.replay_trade)
    conn.before = engine.before
    try:
        conn.run()
    except BacktestError:
        raise
    except Exception as exc:  # the strategy's own error: where it was, in one line
        raise BacktestError(_strategy_error(strategy, engine, exc)) from exc
    engine.replay_summary = conn.summary
    engine.finish()
    return engine


def plot(engine: Engine, path: str) -> str:
    """Equity, mid prices with the fills marked, and positions, in one PNG."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BacktestError("--plot needs matplotlib: pip install 'lab[backtest]'") from None
    import datetime as dt

    def t(ns):
        return dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc)

    fig, axes = plt.subplots(3, 1, figsize=(11, 8), sharex=True, gridspec_kw={"height_ratios": [2, 3, 1.5]})
    totals = engine.totals()
    axes[0].plot([t(ns) for ns, _ in totals], [float(e) for _, e in totals], color="tab:blue", lw=1.2)
    axes[0].set_ylabel("equity")
    axes[0].set_title(f"backtest {engine.session}: {type(engine.strategy).__name__}")
    streams = sorted({(v, s) for _, v, s, _, _ in engine.position_rows})
    for v, s in streams:
        rows = [r for r in engine.position_rows if r[1] == v and r[2] == s and r[4] is not None]
        axes[1].plot([t(r[0]) for r in rows], [float(r[4]) for r in rows], lw=0.9, label=f"{v} {s} mid")
        pos = [r for r in engine.position_rows if r[1] == v and r[2] == s]
        axes[2].step([t(r[0]) for r in pos], [float(r[3]) for r in pos], where="post", lw=1, label=f"{v} {s}")
    for side, marker, color in (("buy", "^", "tab:green"), ("sell", "v", "tab:red")):
        fs = [f for f in engine.fill_marks if f.side == side]
        if fs:
            axes[1].scatter([t(f.local_timestamp) for f in fs], [float(f.price) for f in fs], marker=marker, color=color,
                            s=22, zorder=3, label=f"{side} fills")
    axes[1].set_ylabel("price")
    axes[1].legend(loc="upper left", fontsize=7)
    axes[2].set_ylabel("position")
    axes[2].legend(loc="upper left", fontsize=7)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
