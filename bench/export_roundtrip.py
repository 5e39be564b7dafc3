"""Round trip through a peer: `lab export --format tardis`, then hftbacktest's own tardis
converter (`hftbacktest.data.utils.tardis.convert`) on those CSV files, then hftbacktest's own
backtester (`ROIVectorMarketDepthBacktest`, local processor) run to the end of the data; its final
book is compared level by level with lab's (`ReplayConnector`). hftbacktest runs in its own venv
(default /work/peers), never imported by lab.

    python bench/export_roundtrip.py [--capture ROOT] [--peers-python /work/peers/bin/python] [--json]

Without --capture it records 3 s from the embedded mock simulator. Exit 0 when every stream agrees.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Runs in the peer's interpreter: convert, replay with hftbacktest, print the final book (ticks).
PEER = r"""
import json, sys, io, contextlib
import numpy as np
from hftbacktest import BacktestAsset, ROIVectorMarketDepthBacktest
from hftbacktest.data.utils import tardis
spec = json.loads(sys.argv[1])
with contextlib.redirect_stdout(io.StringIO()):  # the converter prints progress lines
    data = tardis.convert(spec["files"], buffer_size=max(1000, 4 * spec["rows"]), ss_buffer_size=max(1000, 2 * spec["rows"]))
tick, lot = spec["tick"], spec["lot"]
depth_rows = data[(data["ev"] & 0xFF) != 2]
lb = int(np.floor(np.nanmin(depth_rows["px"][depth_rows["px"] > 0]) / tick)) - 10 if len(depth_rows) else 0
ub = int(np.ceil(np.nanmax(depth_rows["px"]) / tick)) + 10 if len(depth_rows) else 10
asset = (BacktestAsset().data([data]).linear_asset(1.0).constant_order_latency(0, 0).risk_adverse_queue_model()
         .no_partial_fill_exchange().trading_value_fee_model(0.0, 0.0).tick_size(tick).lot_size(lot)
         .roi_lb(lb * tick).roi_ub(ub * tick))
hbt = ROIVectorMarketDepthBacktest([asset])
while hbt.elapse(60_000_000_000) == 0:
    pass
d = hbt.depth(0)
def levels(arr, best_first_desc):
    idx = np.flatnonzero(arr > 0)
    lv = [[int(i + d.roi_lb_tick), int(round(arr[i] / lot))] for i in idx]
    return sorted(lv, reverse=best_first_desc)
out = {"converted_events": int(len(data)), "bids": levels(np.array(d.bid_depth), True), "asks": levels(np.array(d.ask_depth), False)}
hbt.close()
print(json.dumps(out))
"""


def record(root: str) -> None:
    from lab.recorder.recorder import Recorder, RecordOptions
    from lab.venues.simulator import SimulatorThread

    venue = "mock"  # the embedded default simulator
    with SimulatorThread(venue, seed=3, rate=400) as sim:
        Recorder(RecordOptions(venue=venue, symbols=[], root=root, rest_url=sim.url, ws_url=sim.ws_url,
                               duration=3.0, status=False, compact=False, rotate_interval=1.0)).run()


def lab_books(root: str) -> dict:
    """{(venue, symbol): (bids, asks, pp, ap, venue_symbol)} as lab replays them, in ticks."""
    from lab.replay.connector import ReplayConnector

    conn = ReplayConnector(root)
    conn.start_stream("*", lambda book: None)
    conn.run()
    out = {}
    for (v, s, _session), book in conn._books.items():
        out[(v, s)] = ([list(x) for x in book.levels_ticks(0)], [list(x) for x in book.levels_ticks(1)],
                       book.price_precision, book.amount_precision)
    return out


def run(capture: str, peers_python: str) -> dict:
    from lab.datasets.export import export, file_symbol

    out = tempfile.mkdtemp(prefix="lab-export-rt-")
    report = export(capture, "tardis", out)
    results = {}
    for (v, s), (bids, asks, pp, ap) in sorted(lab_books(capture).items()):
        sym = file_symbol(s)
        files = sorted(glob.glob(os.path.join(out, f"{v}_trades_*_{sym}.csv.gz"))) + \
            sorted(glob.glob(os.path.join(out, f"{v}_incremental_book_L2_*_{sym}.csv.gz")))
        rows = sum(1 for f in files for _ in __import__("gzip").open(f))
        spec = {"files": files, "rows": rows, "tick": 10.0 ** -pp, "lot": 10.0 ** -ap}
        proc = subprocess.run([peers_python, "-c", PEER, json.dumps(spec)], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            results[f"{v}/{s}"] = {"agree": False, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
            continue
        peer = json.loads(proc.stdout.strip().splitlines()[-1])
        agree = peer["bids"] == bids and peer["asks"] == asks
        results[f"{v}/{s}"] = {"agree": agree, "levels": [len(bids), len(asks)], "peer_levels": [len(peer["bids"]), len(peer["asks"])],
                               "converted_events": peer["converted_events"], "lab_best": [bids[0][0] if bids else None, asks[0][0] if asks else None],
                               "peer_best": [peer["bids"][0][0] if peer["bids"] else None, peer["asks"][0][0] if peer["asks"] else None]}
    return {"export": report.as_dict()["rows"], "out": out, "streams": results,
            "agree": bool(results) and all(r["agree"] for r in results.values())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--capture")
    ap.add_argument("--peers-python", default="/work/peers/bin/python")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    capture = a.capture
    if capture is None:
        capture = os.path.join(tempfile.mkdtemp(prefix="lab-rt-cap-"), "c")
        record(capture)
    result = run(capture, a.peers_python)
    if a.json:
        print(json.dumps(result))
    else:
        print(f"exported {result['export']} to {result['out']}")
        for name, r in result["streams"].items():
            print(f"  {name}: {'AGREE' if r['agree'] else 'DIFFER'} {r}")
        print("peer round trip:", "final books agree" if result["agree"] else "final books DIFFER")
    return 0 if result["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
