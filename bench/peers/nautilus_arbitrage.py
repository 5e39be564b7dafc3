"""The cross-venue arbitrage of lab's examples/arbitrage.py in NautilusTrader's `BacktestEngine`.

    /work/peers-venv/bin/python bench/peers/nautilus_arbitrage.py SPEC_JSON

SPEC_JSON: {"root": ROOT, "legs": [{"venue": "mock", "symbol": "BTC-USD"}, {"venue": "binance", "symbol": "BTC-USDT"}],
            "taker_fee": {"mock": "0.002", "binance": "0.001"}, "min_edge_bps": "2", "size": "0.05",
            "cooldown_ms": 50, "latency_ms": 0}
Optional keys: "strategy": "top" (the replay benchmark: the strategy only reads the updated book's
best bid and ask on every update; no orders), "mode": "batches" (default: one `OrderBookDeltas` per capture message fed to the engine)
or "deltas" (one `OrderBookDelta` per row, `DataEngineConfig(buffer_deltas=True)` regroups them at
F_LAST, so the strategy still wakes once per message; the simulated exchange and the engine loop then
handle each row separately; ~1.4x slower run here, same results), "events": true (default; false =
ignore ROOT/events, see "synced" below), "starting_base": "5", "starting_quote": "1000000",
"dump_orders": PATH (writes one JSON line per order with its fills, for cross-checks).

Runs in the peers' venv (nautilus_trader, pyarrow, numpy), never imports lab. Prints ONE JSON line on
stdout; diagnostics go to stderr.

Reads ROOT/book/venue=V/symbol=S/date=D/*.parquet per leg (date dirs then file names in order, all
concatenated, so a message may span files); ROOT/trades is not used (fills come from the L2 book);
ROOT/events only for the "synced" state (below). Each row becomes
one delta: flags bit 2 (CLEAR) -> a `BookAction.CLEAR` delta first, then the row; amount 0 -> DELETE;
a row of a snapshot message (is_snapshot) -> ADD; any other row -> UPDATE (Nautilus's L2 book adds a
missing level on UPDATE). The row with flags bit 1 (LAST) carries exactly `RecordFlag.F_LAST`, the others
flags 0 (no F_SNAPSHOT: the data engine's buffering tests `flags == F_LAST`). ts_event = timestamp,
ts_init = local_timestamp (the engine orders by ts_init; the sort is stable so a message keeps its row
order), sequence = last_seq. Prices/amounts go in as exact fixed-point raws from the decimal128 columns
(no float rounding). Rows after the last LAST row of a leg (a truncated capture end) form one final
message (its last row gets F_LAST).

Engine: two venues MOCK and BINANCE, each a CASH account, OmsType.NETTING, BookType.L2_MBP, starting
balances 1,000,000 quote (USD on MOCK, USDT on BINANCE) + 5 BTC each (lab's example: 1,000,000 USD and
5 BTC); instruments CurrencyPair BTC/USD.MOCK and BTC/USDT.BINANCE, price/size precision from the files'
lab.price_precision / lab.amount_precision metadata, taker fee from the spec, maker fee 0; no latency
model when latency_ms is 0, otherwise a LatencyModel with base latency latency_ms (insert/update/cancel 0
on top); default FillModel (no slippage, fills against the L2 book built from the deltas: no trade ticks
needed); risk engine bypassed (RiskEngineConfig(bypass=True): no rate limits, no pre-trade checks);
logging bypassed (LoggingConfig(bypass_logging=True)); run_analysis=False. The cyclic GC is disabled
while the data is built and the built objects are gc.freeze()d before run() (a harness choice: the
millions of long-lived delta objects would otherwise be rescanned by every full collection).

Strategy (examples/arbitrage.py): subscribe_order_book_deltas on both instruments (managed books, the
data engine updates the cache book before the strategy's handler runs); in on_order_book_deltas:
skip within cooldown_ms of the last signal (clock = ts_init = capture's local time, like lab's
ctx.now()); skip unless both books are "synced" the way lab's replay defines it (unsynced from the start
until the leg's first CLEAR row, and from every gap / checksum_mismatch / disconnect / resync / overflow
event in ROOT/events of its venue, symbol null or this symbol, until its next CLEAR row; precomputed as
time intervals the strategy walks with the clock: Nautilus books carry no sync state) and both have a
best bid and ask; float
trigger on ticks exactly like lab (b_bid*b_sell > a_ask*a_buy, elif a_bid*a_sell > b_ask*b_buy, with
factors tick*(1+taker)*(1+edge) and tick*(1-taker)); then the exact Decimal check proceeds > cost;
size = min(size, best ask size, best bid size) rounded down to the coarser lot; size > 0 and the sell
venue's free BTC balance >= size (lab's ctx.available check); then two IOC limit orders (buy at the
ask seen, sell at the bid seen), remember the time. One signal per update.

Deviations from lab: (1) "synced" is emulated from ROOT/events and the CLEAR rows as above (it matters:
every capture ends with a "disconnect" event, after which lab ignores the stale book of the leg that
stopped first; without it Nautilus fires one extra signal on /tmp/bc2); (2) commissions are Nautilus's,
rounded to the quote currency's precision (USD 2 decimals, USDT 8), lab keeps them exact, so the USD
balance differs by cents; the strategy does not depend on fees paid; (3) the availability check uses
the Nautilus account's free base balance; (4) starting balances: lab's example gives every venue
1,000,000 USD + 5 BTC and no USDT, here BINANCE gets 1,000,000 USDT (a buy on BINANCE would be rejected
in lab, filled here; never happens on the bench captures, where binance is always the dear leg);
(5) latency_ms > 0 is Nautilus's LatencyModel (order arrival delayed, fills heard at once), not lab's
entry/response model: results then differ slightly (on /tmp/bc2 at 20 ms: 138 fills vs lab's 136).
With latency 0 the orders (time, venue, side, size, price, filled) are identical to lab's on /tmp/bc2
(162) and on a 10x time-shifted copy (270).

Timed: engine.run() only ("run_seconds"). "setup_seconds": reading Parquet, building the deltas, the
engine, venues, instruments and add_data (sorting) - everything before run().
"""
from __future__ import annotations

import gc
import glob
import json
import os
import sys
import time
from decimal import ROUND_DOWN, Decimal

T_START = time.perf_counter()

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

import nautilus_trader  # noqa: E402
from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig  # noqa: E402
from nautilus_trader.backtest.models import LatencyModel  # noqa: E402
from nautilus_trader.common.config import LoggingConfig  # noqa: E402
from nautilus_trader.config import StrategyConfig  # noqa: E402
from nautilus_trader.data.config import DataEngineConfig  # noqa: E402
from nautilus_trader.model.currencies import BTC, USD, USDT  # noqa: E402
from nautilus_trader.model.data import OrderBookDelta, OrderBookDeltas  # noqa: E402
from nautilus_trader.model.enums import (  # noqa: E402
    AccountType, BookAction, BookType, OmsType, OrderSide, RecordFlag, TimeInForce)
from nautilus_trader.model.identifiers import InstrumentId, Symbol, Venue  # noqa: E402
from nautilus_trader.model.instruments import CurrencyPair  # noqa: E402
from nautilus_trader.model.objects import FIXED_PRECISION, Money, Price, Quantity  # noqa: E402
from nautilus_trader.risk.config import RiskEngineConfig  # noqa: E402
from nautilus_trader.trading.strategy import Strategy  # noqa: E402

QUOTES = {"USD": USD, "USDT": USDT}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- data

def leg_files(root: str, venue: str, symbol: str) -> list[str]:
    base = os.path.join(root, "book", f"venue={venue}", f"symbol={symbol}")
    files = []
    for d in sorted(glob.glob(os.path.join(base, "date=*"))):
        files.extend(sorted(glob.glob(os.path.join(d, "*.parquet"))))
    return files


UNSYNC_EVENTS = frozenset({"gap", "checksum_mismatch", "disconnect", "resync", "overflow"})  # lab.core.events


def unsync_intervals(root: str, venue: str, symbol: str, clear_ts: np.ndarray) -> list[tuple[int, int]]:
    """lab's "synced": a book is unsynced from the start until its first CLEAR (snapshot) row and from each
    gap/checksum_mismatch/disconnect/resync/overflow event of its venue (symbol None or this symbol) until
    the next CLEAR row at or after it (events sort before rows of the same local time). Returns
    [start, end) intervals in local ns, sorted; end = 2**63 if no CLEAR follows."""
    evs = []
    for f in sorted(glob.glob(os.path.join(root, "events", f"venue={venue}", "**", "*.parquet"), recursive=True)):
        t = pq.read_table(f, columns=["local_timestamp", "kind", "symbol"])
        for ts, kind, sym in zip(t["local_timestamp"].cast(pa.int64()).to_pylist(), t["kind"].to_pylist(),
                                 t["symbol"].to_pylist()):
            if kind in UNSYNC_EVENTS and (sym is None or sym == symbol):
                evs.append(ts)
    starts = [-(2 ** 63)] + sorted(evs)
    clears = np.sort(clear_ts)
    out = []
    for st in starts:
        k = int(np.searchsorted(clears, st, side="left"))
        end = int(clears[k]) if k < len(clears) else 2 ** 63
        if out and st <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((st, end))
    return out


def _scaled_ints(col: pa.ChunkedArray, prec: int) -> np.ndarray:
    """decimal128(38,18) column -> int64 numpy array of value * 10**prec, exactly (raises if inexact)."""
    arr = pc.cast(col, pa.decimal128(38, prec)).combine_chunks()
    if arr.null_count:
        raise ValueError("null price/amount")
    words = np.frombuffer(arr.buffers()[1], dtype=np.int64)[2 * arr.offset: 2 * (arr.offset + len(arr))].reshape(-1, 2)
    lo, hi = words[:, 0], words[:, 1]
    if not ((hi == 0) & (lo >= 0)).all():
        raise ValueError("price/amount out of int64 range or negative")
    return lo


def read_leg(files: list[str]):
    tables, meta = [], None
    for f in files:
        t = pq.read_table(f, columns=["timestamp", "local_timestamp", "is_snapshot", "side", "price", "amount",
                                      "last_seq", "flags"])
        if meta is None:
            meta = t.schema.metadata or {}
        tables.append(t.replace_schema_metadata(None))
    t = pa.concat_tables(tables)
    pp = int(meta[b"lab.price_precision"])
    ap = int(meta[b"lab.amount_precision"])
    return t, pp, ap


def build_leg(t: pa.Table, iid: InstrumentId, pp: int, ap: int, mode: str):
    """Returns (data list for the engine, rows, messages, nautilus deltas incl. clears)."""
    n = t.num_rows
    ts_event = t["timestamp"].combine_chunks().cast(pa.int64()).to_numpy()
    ts_init = t["local_timestamp"].combine_chunks().cast(pa.int64()).to_numpy()
    is_snap = t["is_snapshot"].combine_chunks().to_numpy(zero_copy_only=False)
    is_bid = pc.equal(t["side"], "bid").combine_chunks().to_numpy(zero_copy_only=False)
    flags = t["flags"].combine_chunks().to_numpy()
    seq = t["last_seq"].combine_chunks().fill_null(0).to_numpy()
    price = _scaled_ints(t["price"], pp)
    amount = _scaled_ints(t["amount"], ap)
    is_last = (flags & 1) != 0
    if n and not is_last[-1]:
        log(f"{iid}: {n - 1 - int(np.flatnonzero(is_last)[-1]) if is_last.any() else n} trailing rows without LAST: "
            "treated as one final message")
        is_last = is_last.copy()
        is_last[-1] = True
    is_clear = (flags & 2) != 0

    action = np.where(amount == 0, int(BookAction.DELETE),
                      np.where(is_snap, int(BookAction.ADD), int(BookAction.UPDATE))).astype(np.int64)
    side = np.where(is_bid, int(OrderSide.BUY), int(OrderSide.SELL)).astype(np.int64)
    nflags = np.where(is_last, int(RecordFlag.F_LAST), 0).astype(np.int64)

    # expand: a CLEAR row is preceded by a CLEAR delta
    rep = 1 + is_clear.astype(np.int64)
    idx = np.repeat(np.arange(n), rep)
    first_of_pair = np.zeros(len(idx), dtype=bool)
    if is_clear.any():
        starts = np.cumsum(rep) - rep  # position of each row's first copy
        first_of_pair[starts[is_clear]] = True
    e_action = action[idx]
    e_action[first_of_pair] = int(BookAction.CLEAR)
    e_side = side[idx]
    e_side[first_of_pair] = int(OrderSide.NO_ORDER_SIDE)
    e_price = price[idx]
    e_price[first_of_pair] = 0
    e_size = amount[idx]
    e_size[first_of_pair] = 0
    e_flags = nflags[idx]
    e_flags[first_of_pair] = 0

    ps = 10 ** (FIXED_PRECISION - pp)
    ss = 10 ** (FIXED_PRECISION - ap)
    m = len(idx)
    actions = [BookAction(a) for a in (1, 2, 3, 4)]
    sides = {int(OrderSide.NO_ORDER_SIDE): OrderSide.NO_ORDER_SIDE, int(OrderSide.BUY): OrderSide.BUY,
             int(OrderSide.SELL): OrderSide.SELL}
    from_raw = OrderBookDelta.from_raw
    e_seq = seq[idx]
    e_ts_event = ts_event[idx]
    e_ts_init = ts_init[idx]
    ends_all = np.flatnonzero(e_flags) + 1  # one past each message's F_LAST delta
    out = []
    c0 = 0
    chunk = 262_144  # build in slices cut at message ends: bounds the temporary Python lists
    while c0 < m:
        k = int(np.searchsorted(ends_all, c0 + chunk, side="left"))
        c1 = int(ends_all[min(k, len(ends_all) - 1)])
        sl = slice(c0, c1)
        w = c1 - c0
        deltas = list(map(
            from_raw,
            [iid] * w,
            [actions[a - 1] for a in e_action[sl].tolist()],
            [sides[x] for x in e_side[sl].tolist()],
            [p * ps for p in e_price[sl].tolist()],
            [pp] * w,
            [x * ss for x in e_size[sl].tolist()],
            [ap] * w,
            [0] * w,
            e_flags[sl].tolist(),
            e_seq[sl].tolist(),
            e_ts_event[sl].tolist(),
            e_ts_init[sl].tolist(),
        ))
        if mode == "deltas":
            out.extend(deltas)
        else:
            ends = (ends_all[(ends_all > c0) & (ends_all <= c1)] - c0).tolist()
            starts = [0] + ends[:-1]
            out.extend([OrderBookDeltas(iid, deltas[a:b]) for a, b in zip(starts, ends)])
        c0 = c1
    messages = int(is_last.sum())
    clear_ts = ts_init[is_clear]
    return out, n, messages, m, clear_ts


# ---------------------------------------------------------------- strategy

class ArbConfig(StrategyConfig, frozen=True):
    a: str
    b: str
    size: str = "0.05"
    min_edge_bps: str = "2"
    cooldown_ms: int = 50
    unsync_a: list = []
    unsync_b: list = []
    top_only: bool = False  # the replay benchmark: read both books' best prices on every update, nothing else


class Arbitrage(Strategy):
    def __init__(self, config: ArbConfig):
        super().__init__(config)
        self.ia = InstrumentId.from_str(config.a)
        self.ib = InstrumentId.from_str(config.b)
        self.size = Decimal(config.size)
        self.min_edge = Decimal(config.min_edge_bps) / 10000
        self.cooldown_ns = int(config.cooldown_ms) * 1_000_000
        self.last_trade_ns = 0
        self.signals = 0
        self.orders_sent = 0
        self.fills = 0
        self.wakeups = 0
        self.unsynced_skips = 0
        # per leg: [start, end) intervals (local ns) where lab's book is not synced, walked with the clock
        self.unsync = [list(map(tuple, config.unsync_a)) + [(2 ** 63, 2 ** 63)],
                       list(map(tuple, config.unsync_b)) + [(2 ** 63, 2 ** 63)]]
        self.upos = [0, 0]
        self.top = config.top_only

    def on_start(self):
        self.inst_a = self.cache.instrument(self.ia)
        self.inst_b = self.cache.instrument(self.ib)
        self.subscribe_order_book_deltas(self.ia, BookType.L2_MBP)
        self.subscribe_order_book_deltas(self.ib, BookType.L2_MBP)
        self.book_a = self.cache.order_book(self.ia)
        self.book_b = self.cache.order_book(self.ib)
        self.acct_a = self.portfolio.account(self.ia.venue)
        self.acct_b = self.portfolio.account(self.ib.venue)
        self.fee_a = self.inst_a.taker_fee
        self.fee_b = self.inst_b.taker_fee
        # per leg: float factors turning a best price into cost / proceeds (lab uses ticks; same products)
        e = 1 + self.min_edge
        self.a_buy, self.a_sell = float((1 + self.fee_a) * e), float(1 - self.fee_a)
        self.b_buy, self.b_sell = float((1 + self.fee_b) * e), float(1 - self.fee_b)
        # exact Decimal factors for the commit check (same products as lab's ask*(1+taker)*(1+edge))
        self.cost_a, self.cost_b = (1 + self.fee_a) * e, (1 + self.fee_b) * e
        self.proc_a, self.proc_b = 1 - self.fee_a, 1 - self.fee_b
        self.lot = Decimal(1).scaleb(-min(self.inst_a.size_precision, self.inst_b.size_precision))

    def on_order_book_deltas(self, deltas):
        self.wakeups += 1
        if self.top:
            book = self.book_a if deltas.instrument_id == self.ia else self.book_b
            book.best_bid_price(), book.best_ask_price()
            return
        now = self.clock.timestamp_ns()
        if now - self.last_trade_ns < self.cooldown_ns:
            return
        for i in (0, 1):
            iv = self.unsync[i]
            k = self.upos[i]
            while now >= iv[k][1]:
                k += 1
            self.upos[i] = k
            if now >= iv[k][0]:
                self.unsynced_skips += 1
                return
        ba, bb = self.book_a, self.book_b
        a_bid, a_ask = ba.best_bid_price(), ba.best_ask_price()
        b_bid, b_ask = bb.best_bid_price(), bb.best_ask_price()
        if a_bid is None or a_ask is None or b_bid is None or b_ask is None:
            return
        if b_bid.as_double() * self.b_sell > a_ask.as_double() * self.a_buy:
            self._cross(now, self.inst_a, ba, a_ask, self.cost_a, self.inst_b, bb, b_bid, self.proc_b, self.acct_b)
        elif a_bid.as_double() * self.a_sell > b_ask.as_double() * self.b_buy:
            self._cross(now, self.inst_b, bb, b_ask, self.cost_b, self.inst_a, ba, a_bid, self.proc_a, self.acct_a)

    def _cross(self, now, buy_inst, buy_book, ask, cost_f, sell_inst, sell_book, bid, proc_f, sell_acct):
        """Buy at `buy_book`'s best ask and sell at `sell_book`'s best bid, both legs IOC."""
        # exactly, in Decimals, before committing: the float test is only the trigger
        if bid.as_decimal() * proc_f <= ask.as_decimal() * cost_f:
            return
        size = min(self.size, buy_book.best_ask_size().as_decimal(), sell_book.best_bid_size().as_decimal())
        size = size.quantize(self.lot, rounding=ROUND_DOWN)
        if size <= 0:
            return
        free = sell_acct.balance_free(sell_inst.base_currency)
        if free is None or free.as_decimal() < size:
            return
        self.signals += 1
        buy = self.order_factory.limit(buy_inst.id, OrderSide.BUY, buy_inst.make_qty(size), ask,
                                       time_in_force=TimeInForce.IOC)
        sell = self.order_factory.limit(sell_inst.id, OrderSide.SELL, sell_inst.make_qty(size), bid,
                                        time_in_force=TimeInForce.IOC)
        self.submit_order(buy)
        self.submit_order(sell)
        self.orders_sent += 2
        self.last_trade_ns = now

    def on_order_filled(self, event):
        self.fills += 1


# ---------------------------------------------------------------- main

def main():
    spec = json.loads(sys.argv[1])
    mode = spec.get("mode", "batches")
    root = spec["root"]
    legs = spec["legs"]
    if len(legs) != 2:
        raise SystemExit("need exactly two legs")
    base_bal = Decimal(spec.get("starting_base", "5"))
    quote_bal = Decimal(spec.get("starting_quote", "1000000"))
    latency_ms = int(spec.get("latency_ms", 0) or 0)

    t0 = time.perf_counter()
    loaded = []
    for leg in legs:
        files = leg_files(root, leg["venue"], leg["symbol"])
        if not files:
            raise SystemExit(f"no book files for {leg}")
        t, pp, ap = read_leg(files)
        loaded.append((leg, t, pp, ap))
    t_read = time.perf_counter() - t0
    log(f"read parquet: {t_read:.2f}s")

    engine = BacktestEngine(BacktestEngineConfig(
        trader_id="BACKTESTER-001",
        logging=LoggingConfig(bypass_logging=True),
        risk_engine=RiskEngineConfig(bypass=True),
        data_engine=DataEngineConfig(buffer_deltas=(mode == "deltas")),
        run_analysis=False,
    ))

    t1 = time.perf_counter()
    gc.disable()  # millions of new objects: the cyclic GC's full passes would dominate the build
    iids, datas, unsync = [], [], []
    use_events = bool(spec.get("events", True))
    rows = messages = ndeltas = 0
    for leg, t, pp, ap in loaded:
        venue = Venue(leg["venue"].upper())
        base, quote = leg["symbol"].split("-", 1)
        if base != "BTC":
            raise SystemExit(f"base currency {base}: only BTC wired")
        qcur = QUOTES[quote]
        iid = InstrumentId(Symbol(f"{base}/{quote}"), venue)
        inst = CurrencyPair(
            instrument_id=iid, raw_symbol=Symbol(leg["symbol"]), base_currency=BTC, quote_currency=qcur,
            price_precision=pp, size_precision=ap,
            price_increment=Price(Decimal(1).scaleb(-pp), pp), size_increment=Quantity(Decimal(1).scaleb(-ap), ap),
            ts_event=0, ts_init=0, maker_fee=Decimal(0), taker_fee=Decimal(spec["taker_fee"][leg["venue"]]),
        )
        kw = {}
        if latency_ms:
            kw["latency_model"] = LatencyModel(base_latency_nanos=latency_ms * 1_000_000, insert_latency_nanos=0,
                                               update_latency_nanos=0, cancel_latency_nanos=0)
        engine.add_venue(venue=venue, oms_type=OmsType.NETTING, account_type=AccountType.CASH,
                         starting_balances=[Money(quote_bal, qcur), Money(base_bal, BTC)],
                         book_type=BookType.L2_MBP, **kw)
        engine.add_instrument(inst)
        tb = time.perf_counter()
        data, n, msgs, m, clear_ts = build_leg(t, iid, pp, ap, mode)
        unsync.append(unsync_intervals(root, leg["venue"], leg["symbol"], clear_ts) if use_events
                      else [(-(2 ** 63), int(clear_ts.min()) if len(clear_ts) else 2 ** 63)])
        log(f"{iid}: unsynced intervals {unsync[-1]}")
        log(f"{iid}: {n} rows, {msgs} messages, {m} nautilus deltas (pp={pp}, ap={ap}) built in "
            f"{time.perf_counter() - tb:.2f}s ({n / max(time.perf_counter() - tb, 1e-9):,.0f} rows/s)")
        rows += n
        messages += msgs
        ndeltas += m
        iids.append(iid)
        datas.append(data)
    t_build = time.perf_counter() - t1
    del loaded
    t2 = time.perf_counter()
    for d in datas:
        engine.add_data(d, validate=False, sort=True)
    del datas
    t_add = time.perf_counter() - t2
    log(f"build {t_build:.2f}s ({rows / t_build:,.0f} rows/s), add_data {t_add:.2f}s")

    strat = Arbitrage(ArbConfig(a=str(iids[0]), b=str(iids[1]), size=str(spec.get("size", "0.05")),
                                min_edge_bps=str(spec.get("min_edge_bps", "2")),
                                cooldown_ms=int(spec.get("cooldown_ms", 50)), unsync_a=unsync[0], unsync_b=unsync[1],
                                top_only=spec.get("strategy") == "top"))
    engine.add_strategy(strat)
    # the deltas live until the end: park them (and everything else built so far) out of the cyclic GC,
    # which would otherwise rescan them at every full collection during run()
    gc.collect()
    gc.freeze()
    gc.enable()
    setup = time.perf_counter() - t0

    tr, cr = time.perf_counter(), time.process_time()
    engine.run()
    run, cpu = time.perf_counter() - tr, time.process_time() - cr

    # cross-check against the engine's own records
    orders_cache = len(engine.cache.orders())
    fills_cache = sum(len([e for e in o.events if type(e).__name__ == "OrderFilled"]) for o in engine.cache.orders())
    balances = {}
    for iid in iids:
        acct = engine.cache.account_for_venue(iid.venue)
        balances[str(iid.venue)] = {str(c): str(b.total.as_decimal()) for c, b in acct.balances().items()}
    log(f"orders in cache {orders_cache}, fill events {fills_cache}, strategy wakeups {strat.wakeups}, balances {balances}")
    out = {
        "engine": "nautilus_trader", "version": nautilus_trader.__version__, "mode": mode,
        "book_messages": messages, "deltas": rows, "nautilus_deltas": ndeltas,
        "run_seconds": round(run, 4), "cpu_seconds": round(cpu, 4), "setup_seconds": round(setup, 4),
        "read_seconds": round(t_read, 4), "build_seconds": round(t_build, 4), "add_data_seconds": round(t_add, 4),
        "import_seconds": round(t0 - T_START, 4),
        "messages_per_s": round(messages / run, 1) if run else None,
        "deltas_per_s": round(rows / run, 1) if run else None,
        "wakeups": strat.wakeups, "unsynced_skips": strat.unsynced_skips, "signals": strat.signals, "orders": strat.orders_sent, "fills": strat.fills,
        "final_balances": balances,
    }
    if spec.get("dump_orders"):
        with open(spec["dump_orders"], "w") as f:
            for o in engine.cache.orders():
                fl = [e for e in o.events if type(e).__name__ == "OrderFilled"]
                f.write(json.dumps({"ts_init": o.ts_init, "instrument": str(o.instrument_id), "side": str(o.side_string()),
                                    "qty": str(o.quantity), "price": str(o.price), "status": o.status_string(),
                                    "fills": [[str(e.last_qty), str(e.last_px), str(e.commission)] for e in fl]}) + "\n")
    engine.dispose()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
