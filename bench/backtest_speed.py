"""Backtest speed (issue 14 item 6): the cross-venue arbitrage example over a two-venue capture,
matching included, in lab, in hftbacktest's plain-Python loop and in NautilusTrader's
`BacktestEngine`, on the same data in the same run. With `--strategy top`, the replay benchmark
(issue 12 item 3): every book message into a Python callback that reads the top of book, no
orders, in the same three engines.

    python bench/backtest_speed.py [--capture ROOT] [--seconds 280] [--peers-python /work/peers-venv/bin/python]
        [--strategy arbitrage|top] [--no-peers] [--json]

Without --capture it records `--seconds` of mock BTC-USD and binance BTC-USDT from their
simulators on loopback into a temporary root (280 s give ~10 M book rows here). The peers run in
their own venv (`python3 -m venv /work/peers-venv && /work/peers-venv/bin/pip install hftbacktest
nautilus_trader`, or $LAB_PEERS_PYTHON), never imported by lab.

The strategy is the same logic in the three engines (examples/arbitrage.py): on every book
update of either leg, outside a 50 ms cooldown, when both books are synced and two-sided, buy
where it is cheap and sell where it is dear with two ioc limit orders at the prices seen, only
when the edge beats both taker fees plus 2 bp; zero latency; taker fees mock 0.20 %, binance
0.10 %. What each engine wakes up for differs and is reported: lab and NautilusTrader once per
book message (all rows up to LAST) and per trade, hftbacktest once per feed row
(`wait_next_feed`), so its wake-ups outnumber the messages.

Timed: lab from the call of `run_backtest` to its return (Parquet reads, merge, replay, matching,
strategy; the "loop" figure starts at the first event), hftbacktest's `wait_next_feed` loop
(the npz export and the engine's construction are left out), NautilusTrader's `engine.run()`
(building its OrderBookDeltas objects is left out, reported as setup).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PEERS = "/work/peers-venv/bin/python"
LEGS = [("mock", "BTC-USD"), ("binance", "BTC-USDT")]
PARAMS = {"size": "0.05", "min_edge_bps": "2", "cooldown_ms": "50"}
BASE_BALANCE = "5"  # BTC held at each venue at the start (examples/arbitrage.py `balances`)

# Runs in the peer's interpreter: the arbitrage logic in hftbacktest's plain-Python loop.
HFT = r"""
import json, sys, time
import numpy as np
from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest
from hftbacktest.order import IOC, LIMIT

spec = json.loads(sys.argv[1])
assets, info, keep = [], [], []
for leg in spec["legs"]:
    data = np.concatenate([np.load(f)["data"] for f in leg["npz"]])
    keep.append(data)  # hftbacktest reads the array in place: it must outlive the backtest
    info.append(len(data))
    assets.append(BacktestAsset().data([data]).linear_asset(1.0).constant_order_latency(0, 0).risk_adverse_queue_model()
                  .no_partial_fill_exchange().trading_value_fee_model(0.0, leg["taker"])
                  .tick_size(leg["tick"]).lot_size(leg["lot"]).last_trades_capacity(0))
hbt = HashMapMarketDepthBacktest(assets)
edge = 1 + spec["min_edge"]
la, lb = spec["legs"]
a_buy, a_sell = la["tick"] * (1 + la["taker"]) * edge, la["tick"] * (1 - la["taker"])
b_buy, b_sell = lb["tick"] * (1 + lb["taker"]) * edge, lb["tick"] * (1 - lb["taker"])
lot = max(la["lot"], lb["lot"])
size, cooldown, base0 = spec["size"], spec["cooldown_ns"], spec["base_balance"]
wakes = signals = 0
last = -10**18
oid = 0
INVALID_BID, INVALID_ASK = -2147483647, 2147483647
t0, c0 = time.perf_counter(), time.process_time()
while spec["strategy"] == "top":  # the replay benchmark: read both tops on every wake-up
    r = hbt.wait_next_feed(False, 3_600_000_000_000)
    if r == 1:
        break
    if r == 2:
        wakes += 1
        da, db = hbt.depth(0), hbt.depth(1)
        da.best_bid_tick, da.best_ask_tick, db.best_bid_tick, db.best_ask_tick
while spec["strategy"] == "arbitrage":
    r = hbt.wait_next_feed(False, 3_600_000_000_000)
    if r == 1:
        break
    if r != 2:
        continue
    wakes += 1
    now = hbt.current_timestamp
    if now - last < cooldown:
        continue
    da, db = hbt.depth(0), hbt.depth(1)
    abid, aask, bbid, bask = da.best_bid_tick, da.best_ask_tick, db.best_bid_tick, db.best_ask_tick
    if abid <= INVALID_BID or aask >= INVALID_ASK or bbid <= INVALID_BID or bask >= INVALID_ASK:
        continue
    if bbid * b_sell > aask * a_buy:
        buy, bt, sell, st = 0, aask, 1, bbid
        qty = min(size, da.ask_qty_at_tick(aask), db.bid_qty_at_tick(bbid))
    elif abid * a_sell > bask * b_buy:
        buy, bt, sell, st = 1, bask, 0, abid
        qty = min(size, db.ask_qty_at_tick(bask), da.bid_qty_at_tick(abid))
    else:
        continue
    # the example's inventory rule: sell only what the sell venue holds (its starting base
    # balance plus what it bought there; hftbacktest keeps no balances, its position does)
    held = base0 + hbt.position(sell)
    if held <= 0:
        continue
    qty = int(qty / lot + 1e-9) * lot
    if qty <= 0 or held < qty - 1e-12:
        continue
    signals += 1
    oid += 1
    hbt.submit_buy_order(buy, oid, bt * spec["legs"][buy]["tick"], qty, IOC, LIMIT, False)
    oid += 1
    hbt.submit_sell_order(sell, oid, st * spec["legs"][sell]["tick"], qty, IOC, LIMIT, False)
    hbt.clear_inactive_orders(buy)
    hbt.clear_inactive_orders(sell)
    last = now
elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
fills = sum(int(hbt.state_values(i).num_trades) for i in range(2))
hbt.close()
print(json.dumps({"engine": "hftbacktest (plain-Python loop)", "events": sum(info), "wakeups": wakes, "signals": signals,
                  "orders": oid, "fills": fills, "run_seconds": elapsed, "cpu_seconds": cpu}))
"""


def record(root: str, seconds: float) -> None:
    """Both legs from their simulators (subprocesses: one core each for simulator and recorder)."""
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
    procs, recs = [], []
    try:
        for port, (venue, symbol) in zip((18931, 18932), LEGS):
            procs.append(subprocess.Popen([sys.executable, "-m", "lab", "simulate", "--venue", venue, "--port", str(port), "--rate", "60000"],
                                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(3)
        for port, (venue, symbol) in zip((18931, 18932), LEGS):
            ws = f"ws://127.0.0.1:{port}" + ("/ws" if venue == "mock" else "")
            recs.append(subprocess.Popen([sys.executable, "-m", "lab", "record", "--venue", venue, "--symbol", symbol, "--ws-url", ws,
                                          "--rest-url", f"http://127.0.0.1:{port}", "--duration", f"{seconds}s", "--out", root],
                                         env=env, stdout=subprocess.DEVNULL))
        for r in recs:
            if r.wait() != 0:
                raise SystemExit("recording failed")
    finally:
        for p in procs:
            p.terminate()


def counts(root: str) -> dict:
    from lab.datasets.catalog import query

    rows = {}
    for venue, symbol in LEGS:
        r = query(root, f"select count(*), count(*) filter (where flags & 1 = 1) from book where venue = '{venue}' and symbol = '{symbol}'").to_pylist()[0]
        t = query(root, f"select count(*) n from trades where venue = '{venue}' and symbol = '{symbol}'").to_pylist()[0]
        b, m = list(r.values())
        rows[f"{venue}/{symbol}"] = {"book_rows": int(b), "book_messages": int(m), "trades": int(t["n"])}
    return rows


def run_lab(root: str) -> dict:
    from lab.replay.backtest import load_strategy, run_backtest

    strategy = load_strategy(os.path.join(os.path.dirname(HERE), "examples", "arbitrage.py"), None,
                             {"a": ":".join(LEGS[0]), "b": ":".join(LEGS[1]), **PARAMS})
    first = []
    on_start = strategy.on_start
    strategy.on_start = lambda ctx: (first.append((time.perf_counter(), time.process_time())), on_start(ctx))[1]
    t0, c0 = time.perf_counter(), time.process_time()
    engine = run_backtest(strategy, root)
    t1, c1 = time.perf_counter(), time.process_time()
    s = engine.summary()
    return {"engine": "lab", "book_messages": engine.book_messages, "trades": engine.trades_seen, "signals": strategy.signals,
            "orders": s["orders"], "fills": s["fills"], "run_seconds": t1 - t0, "cpu_seconds": c1 - c0,
            "loop_seconds": t1 - first[0][0], "loop_cpu_seconds": c1 - first[0][1]}


def run_lab_top(root: str) -> dict:
    """The replay benchmark: every book message into a Python callback that reads `top()`."""
    from lab.replay.connector import ReplayConnector

    seen = [0]
    first = []

    def on_book(book):
        if not seen[0]:
            first.append((time.perf_counter(), time.process_time()))
        seen[0] += 1
        book.top()

    t0, c0 = time.perf_counter(), time.process_time()
    conn = ReplayConnector(root, venue=None, symbols=None)
    conn.start_stream("*", on_book)
    summary = conn.run()
    t1, c1 = time.perf_counter(), time.process_time()
    return {"engine": "lab (replay, on_book reads top())", "book_messages": summary["messages"], "callbacks": seen[0],
            "run_seconds": t1 - t0, "cpu_seconds": c1 - c0, "loop_seconds": t1 - first[0][0], "loop_cpu_seconds": c1 - first[0][1]}


def run_hftbacktest(root: str, peers: str, strategy: str = "arbitrage") -> dict:
    from lab.datasets.export import export
    from lab.venues.registry import adapter_class

    out = tempfile.mkdtemp(prefix="lab-speed-npz-")
    legs = []
    t0 = time.perf_counter()
    for venue, symbol in LEGS:
        d = os.path.join(out, venue)
        export(root, "hftbacktest", d, venue=venue, symbols=[symbol])
        pp, ap = _precisions(root, venue, symbol)
        legs.append({"npz": sorted(glob.glob(os.path.join(d, "*.npz"))), "tick": 10.0 ** -pp, "lot": 10.0 ** -ap,
                     "taker": float(adapter_class(venue).fees[1])})
    export_s = time.perf_counter() - t0
    spec = {"legs": legs, "min_edge": float(PARAMS["min_edge_bps"]) / 10000, "size": float(PARAMS["size"]),
            "cooldown_ns": int(PARAMS["cooldown_ms"]) * 1_000_000, "base_balance": float(BASE_BALANCE), "strategy": strategy}
    p = subprocess.run([peers, "-c", HFT, json.dumps(spec)], capture_output=True, text=True, timeout=3600)
    if p.returncode != 0:
        return {"engine": "hftbacktest", "error": p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"exit {p.returncode}"}
    r = json.loads(p.stdout.strip().splitlines()[-1])
    r["export_seconds"] = export_s
    return r


def run_nautilus(root: str, peers: str, strategy: str = "arbitrage") -> dict:
    from lab.venues.registry import adapter_class

    spec = {"root": root, "legs": [{"venue": v, "symbol": s} for v, s in LEGS],
            "taker_fee": {v: str(adapter_class(v).fees[1]) for v, _ in LEGS}, "min_edge_bps": PARAMS["min_edge_bps"],
            "size": PARAMS["size"], "cooldown_ms": int(PARAMS["cooldown_ms"]), "latency_ms": 0, "strategy": strategy}
    p = subprocess.run([peers, os.path.join(HERE, "peers", "nautilus_arbitrage.py"), json.dumps(spec)], capture_output=True, text=True,
                       timeout=7200)
    if p.returncode != 0:
        return {"engine": "nautilus_trader", "error": p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"exit {p.returncode}"}
    return json.loads(p.stdout.strip().splitlines()[-1])


def _precisions(root: str, venue: str, symbol: str) -> tuple[int, int]:
    from lab.datasets.export import _meta
    from lab.datasets.reader import stream_precisions, streams_in

    files = streams_in(root, "book", venue, [symbol], [])[(venue, symbol)]
    return stream_precisions([_meta(f) for f in files], files, "book")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--capture")
    ap.add_argument("--seconds", type=float, default=280.0)
    ap.add_argument("--peers-python", default=os.environ.get("LAB_PEERS_PYTHON", DEFAULT_PEERS))
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--strategy", choices=("arbitrage", "top"), default="arbitrage",
                    help="arbitrage: the backtest benchmark; top: the replay benchmark (a callback reading both tops, no orders)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    root = a.capture
    if root is None:
        root = tempfile.mkdtemp(prefix="lab-speed-")
        print(f"recording {a.seconds:g} s of {', '.join('/'.join(l) for l in LEGS)} into {root} ...", file=sys.stderr)
        record(root, a.seconds)
    data = counts(root)
    book_rows = sum(v["book_rows"] for v in data.values())
    messages = sum(v["book_messages"] for v in data.values())
    results = {"capture": root, "data": data, "book_rows": book_rows, "book_messages": messages,
               "rows_per_message": round(book_rows / max(messages, 1), 2), "engines": []}
    results["strategy"] = a.strategy
    results["engines"].append(run_lab(root) if a.strategy == "arbitrage" else run_lab_top(root))
    peers = not a.no_peers and os.path.exists(a.peers_python)
    if peers:
        results["engines"].append(run_hftbacktest(root, a.peers_python, a.strategy))
        results["engines"].append(run_nautilus(root, a.peers_python, a.strategy))
    # Rates on CPU time where the engine reports it (one thread each: robust to a busy machine),
    # else on wall time.
    for e in results["engines"]:
        if "error" in e:
            continue
        secs = e.get("cpu_seconds") or e["run_seconds"]
        e["book_messages_per_s"] = round(messages / secs)
        e["book_rows_per_s"] = round(book_rows / secs)
        if "wakeups" in e:
            e["wakeups_per_s"] = round(e["wakeups"] / secs)
        if "loop_cpu_seconds" in e:
            e["loop_book_messages_per_s"] = round(messages / e["loop_cpu_seconds"])
    lab = results["engines"][0]
    for e in results["engines"][1:]:
        if "error" not in e:
            e["lab_speedup"] = round((e.get("cpu_seconds") or e["run_seconds"]) / (lab.get("cpu_seconds") or lab["run_seconds"]), 2)
    if a.json:
        print(json.dumps(results, indent=1))
    else:
        print(f"capture {root}: {book_rows:,} book rows, {messages:,} book messages ({results['rows_per_message']} rows/message), "
              f"{sum(v['trades'] for v in data.values()):,} trades")
        for e in results["engines"]:
            if "error" in e:
                print(f"  {e['engine']:<32} error: {e['error']}")
                continue
            extra = f", from the first event {e['loop_book_messages_per_s']:,} msg/s" if "loop_book_messages_per_s" in e else ""
            extra += f", {e['wakeups_per_s']:,} wake-ups/s" if "wakeups_per_s" in e else ""
            ratio = f"  lab is {e['lab_speedup']}x faster" if "lab_speedup" in e else ""
            print(f"  {e['engine']:<32} {e.get('cpu_seconds') or e['run_seconds']:8.2f} s  {e['book_messages_per_s']:>10,} book msg/s  "
                  f"{e['book_rows_per_s']:>11,} rows/s{extra}  signals {e.get('signals')} orders {e.get('orders')} fills {e.get('fills')}{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
