"""Peer order-book engines on the `lab bench book` workload. Runs in the PEERS' venv (never a lab
dependency): `PEERS_PYTHON book_peers.py WORKLOAD.npz`. Imports nothing from lab.

Prints one JSON line per engine: engine, path (bulk | per-message), deltas, seconds,
deltas_per_s, best_bid, best_ask (tick integers), or `error` when the peer cannot run here.

- hftbacktest `HashMapMarketDepthBacktest` (bulk, native): the rows as an event array (LOCAL
  events only: the book a strategy sees; a snapshot is DEPTH_CLEAR up to its worst price, then
  DEPTH_SNAPSHOT rows, as hftbacktest's own tardis converter does), timed over one `elapse` to
  the end of the data. Construction of the event array and the backtest is not timed.
- cryptofeed `order-book` C extension (per-message, from Python): `book.bids[p] = q` /
  `del book.bids[p]`, max_depth = depth, best read with `.index(0)` after every message.
- NautilusTrader `OrderBook(L2_MBP)` (per-message, from Python): `apply_delta` per row; the
  `OrderBookDelta` objects of a message are built before its timer starts (only `apply_delta` and
  the best-price reads are timed), so this favours Nautilus.

Times are CPU seconds of the process (`time.process_time`), the same clock for every engine: the
machine may be shared, and CPU time does not count waiting for a core.
"""
from __future__ import annotations

import json
import sys
import time
import traceback

import numpy as np


def emit(engine: str, path: str, deltas: int, seconds: float | None, best_bid, best_ask, **extra) -> None:
    line = {"engine": engine, "path": path, "deltas": deltas, "seconds": seconds,
            "deltas_per_s": (deltas / seconds) if seconds else None, "best_bid": best_bid, "best_ask": best_ask}
    line.update(extra)
    print(json.dumps(line), flush=True)


def messages(flags: np.ndarray) -> list[tuple[int, int]]:
    ends = np.flatnonzero(flags & 1)
    starts = np.concatenate([[0], ends[:-1] + 1])
    return list(zip(starts.tolist(), (ends + 1).tolist()))


def run_hftbacktest(w) -> None:
    from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest
    from hftbacktest.types import (BUY_EVENT, DEPTH_CLEAR_EVENT, DEPTH_EVENT, DEPTH_SNAPSHOT_EVENT, LOCAL_EVENT,
                                   SELL_EVENT, event_dtype)

    sides, prices, amounts, flags = w["sides"], w["prices"], w["amounts"], w["flags"]
    ts, lts = w["timestamps"], w["local_timestamps"]
    tick = 10.0 ** -int(w["price_precision"])
    lot = 10.0 ** -int(w["amount_precision"])
    n = len(flags)
    clears = np.flatnonzero(flags & 2)
    out = np.zeros(n + 2 * len(clears), dtype=event_dtype)
    # positions: each CLEAR row gets two clear events (bid, ask) inserted before it
    shift = np.zeros(n, dtype=np.int64)
    shift[clears] = 2
    pos = np.arange(n) + np.cumsum(shift)
    snap = np.zeros(n, dtype=bool)
    for s, e in messages(flags):
        if flags[s] & 2:
            snap[s:e] = True
    side_ev = np.where(sides == 1, SELL_EVENT, BUY_EVENT).astype(np.uint64)
    kind = np.where(snap, DEPTH_SNAPSHOT_EVENT, DEPTH_EVENT).astype(np.uint64)
    out["ev"][pos] = LOCAL_EVENT | side_ev | kind
    out["exch_ts"][pos] = ts
    out["local_ts"][pos] = lts
    out["px"][pos] = prices * tick
    out["qty"][pos] = amounts * lot
    for c in clears:
        # the snapshot message: clear each side up to its worst price in the snapshot
        e = c + int(np.flatnonzero(flags[c:] & 1)[0]) + 1
        for j, (side, sev) in enumerate(((0, BUY_EVENT), (1, SELL_EVENT))):
            rows = np.flatnonzero(sides[c:e] == side) + c
            worst = (prices[rows].min() if side == 0 else prices[rows].max()) if len(rows) else 0
            k = pos[c] - 2 + j
            out[k]["ev"] = LOCAL_EVENT | DEPTH_CLEAR_EVENT | sev
            out[k]["exch_ts"], out[k]["local_ts"], out[k]["px"] = ts[c], lts[c], worst * tick
    def backtest(events):
        asset = (
            BacktestAsset().data([events]).linear_asset(1.0).constant_order_latency(0, 0).risk_adverse_queue_model()
            .no_partial_fill_exchange().trading_value_fee_model(0.0, 0.0).tick_size(tick).lot_size(lot).last_trades_capacity(0)
        )
        return HashMapMarketDepthBacktest([asset])

    warm = backtest(out[: min(len(out), 1000)].copy())  # numba compiles elapse on the first call
    warm.elapse(int(lts[min(n, 1000) - 1] - lts[0]) + 1)
    warm.close()
    asset = (
        BacktestAsset().data([out]).linear_asset(1.0).constant_order_latency(0, 0).risk_adverse_queue_model()
        .no_partial_fill_exchange().trading_value_fee_model(0.0, 0.0).tick_size(tick).lot_size(lot).last_trades_capacity(0)
    )
    hbt = HashMapMarketDepthBacktest([asset])
    span = int(lts[-1] - lts[0]) + 1_000_000_000
    t0 = time.process_time()
    hbt.elapse(span)
    seconds = time.process_time() - t0
    depth = hbt.depth(0)
    bid, ask = int(depth.best_bid_tick), int(depth.best_ask_tick)
    hbt.close()
    emit("hftbacktest HashMapMarketDepthBacktest", "bulk", n, seconds, bid, ask, events=len(out))


def run_cryptofeed(w) -> None:
    from order_book import OrderBook

    sides, prices, amounts, flags = (w[k].tolist() for k in ("sides", "prices", "amounts", "flags"))
    depth = int(w["depth"])
    msgs = messages(w["flags"])
    book = OrderBook(max_depth=depth)
    t0 = time.process_time()
    bid = ask = None
    for s, e in msgs:
        for i in range(s, e):
            if flags[i] & 2:
                book = OrderBook(max_depth=depth)
            levels = book.asks if sides[i] else book.bids
            if amounts[i]:
                levels[prices[i]] = amounts[i]
            else:
                try:
                    del levels[prices[i]]
                except KeyError:
                    pass
        bid = book.bids.index(0)[0] if len(book.bids) else None
        ask = book.asks.index(0)[0] if len(book.asks) else None
    seconds = time.process_time() - t0
    emit("cryptofeed order-book (C extension)", "per-message", len(flags), seconds, bid, ask)


def run_nautilus(w) -> None:
    from nautilus_trader.model.book import OrderBook
    from nautilus_trader.model.data import BookOrder, OrderBookDelta
    from nautilus_trader.model.enums import BookAction, BookType, OrderSide
    from nautilus_trader.model.identifiers import InstrumentId
    from nautilus_trader.model.objects import FIXED_PRECISION, Price, Quantity

    pp, ap = int(w["price_precision"]), int(w["amount_precision"])
    pscale, ascale = 10 ** (FIXED_PRECISION - pp), 10 ** (FIXED_PRECISION - ap)
    sides, prices, amounts, flags = (w[k].tolist() for k in ("sides", "prices", "amounts", "flags"))
    iid = InstrumentId.from_str("BTCUSD.SIM")
    book = OrderBook(iid, BookType.L2_MBP)
    apply = book.apply_delta
    seconds = 0.0
    bid = ask = None
    for s, e in messages(w["flags"]):
        deltas = []
        for i in range(s, e):
            if flags[i] & 2:
                deltas.append(OrderBookDelta.clear(iid, 0, 0, 0))
            side = OrderSide.SELL if sides[i] else OrderSide.BUY
            action = BookAction.UPDATE if amounts[i] else BookAction.DELETE
            order = BookOrder(side, Price.from_raw(prices[i] * pscale, pp), Quantity.from_raw(amounts[i] * ascale, ap), 0)
            deltas.append(OrderBookDelta(iid, action, order, 0, 0, 0, 0))
        t0 = time.process_time()
        for d in deltas:
            apply(d)
        b, a = book.best_bid_price(), book.best_ask_price()
        seconds += time.process_time() - t0
        bid = None if b is None else b.raw // pscale
        ask = None if a is None else a.raw // pscale
    emit("NautilusTrader OrderBook L2_MBP", "per-message", len(flags), seconds, bid, ask,
         note="OrderBookDelta objects built outside the timer")


def main() -> None:
    data = np.load(sys.argv[1])
    w = {k: data[k] for k in data.files}
    only = set(sys.argv[2:])
    for name, fn in (("hftbacktest", run_hftbacktest), ("cryptofeed", run_cryptofeed), ("nautilus", run_nautilus)):
        if only and name not in only:
            continue
        try:
            fn(w)
        except Exception as exc:  # a peer that cannot run here is reported, the others go on
            print(json.dumps({"engine": name, "error": f"{type(exc).__name__}: {exc}",
                              "trace": traceback.format_exc(limit=3)}), flush=True)


if __name__ == "__main__":
    main()
