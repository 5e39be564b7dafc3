"""Live delivery: books delivered to a ~1 us callback against books applied (a benchmark).

    python bench/live_delivery.py [--rates 10000,50000,max] [--seconds 5] [--json]

For each rate, runs `lab simulate` (mock, pre-rendered frames) in its own process and
`get_connector("mock").start_stream("BTC-USD", cb)` here with a callback that only appends
`book.seq`. Reports, per rate: messages the stream applied, books delivered, books coalesced,
the seq span the callback saw against the books it got, and the achieved message rate.
"max" asks the simulator for 1,000,000 msg/s, i.e. as fast as it can send (400k frames rendered
before the start, so the run may end early when they run out). Exit 1 when a rate
up to 10,000 msg/s loses a book (the issue's "done means").
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lab import get_connector  # noqa: E402

MAX = 1_000_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(rate: float, seconds: float) -> dict:
    port = free_port()
    prerender = int(min(rate * seconds * 1.3, 400_000))
    sim = subprocess.Popen([sys.executable, "-m", "lab.venues.simulator", "--venue", "mock", "--port", str(port),
                            "--rate", str(rate), "--seed", "1", "--option", f"prerender={prerender}"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        sim.stdout.readline()  # "listening on ..."
        url = f"http://127.0.0.1:{port}"
        c = get_connector("mock", rest_url=url, ws_url=f"ws://127.0.0.1:{port}/ws")
        seqs: list[int] = []
        cb = seqs.append
        c.start_stream("BTC-USD", lambda book: cb(book.seq))
        t0 = time.perf_counter()
        time.sleep(seconds)
        c.stop_stream()
        elapsed = time.perf_counter() - t0
    finally:
        sim.terminate()
        try:
            sim.wait(10)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait()
    (stats,) = c.stats().values()
    gaps = sum(1 for a, b in zip(seqs, seqs[1:]) if b != a + 1)
    return {
        "rate": "max" if rate >= MAX else int(rate),
        "applied": stats["applied"], "delivered": stats["delivered"], "coalesced": stats["coalesced"],
        "delivered_ratio": round(stats["delivered"] / max(stats["applied"], 1), 6),
        "seq_span": (seqs[-1] - seqs[0] + 1) if seqs else 0, "seq_holes": gaps,
        "msgs_per_s": round(stats["applied"] / elapsed),
        "callback_us": round(stats["callback_ns"] / max(stats["delivered"], 1) / 1e3, 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="10000,50000,max")
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = [run(MAX if r == "max" else float(r), args.seconds) for r in args.rates.split(",")]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'rate':>8} {'applied':>9} {'delivered':>9} {'coalesced':>9} {'ratio':>8} {'seq span':>9} {'holes':>6} {'msg/s':>8} {'cb us':>6}")
        for r in rows:
            print(f"{r['rate']:>8} {r['applied']:>9} {r['delivered']:>9} {r['coalesced']:>9} {r['delivered_ratio']:>8.4f} "
                  f"{r['seq_span']:>9} {r['seq_holes']:>6} {r['msgs_per_s']:>8} {r['callback_us']:>6}")
    bad = [r for r in rows if r["rate"] != "max" and r["rate"] <= 10_000 and (r["coalesced"] or r["seq_holes"])]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
