"""Recorder throughput on one core against the mock simulator (a benchmark, not a test).

    python bench/record_throughput.py [--rate 60000] [--seconds 10] [--cpu 1]

Runs `lab simulate` in its own process, `lab record` pinned to one core (taskset), then counts
what the simulator wrote against what the capture holds (raw and normalized) and prints the
figure. Nothing may be lost: the run fails if the capture is short.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

LAB = [sys.executable, "-m", "lab.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=60000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--cpu", type=int, default=1, help="core the recorder is pinned to")
    ap.add_argument("--no-compact", action="store_true", help="record without background compaction of finished segments")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    port = free_port()
    root = tempfile.mkdtemp(prefix="lab-bench-")
    # Frames rendered before the server starts, so the simulator (pure Python, ~50k msg/s when
    # generating live) is not what gets measured; it runs on the other core.
    prerender = int(args.rate * args.seconds * 1.2)
    sim_pin = ["taskset", "-c", str(1 - args.cpu)] if shutil.which("taskset") and args.cpu in (0, 1) else []
    sim = subprocess.Popen([*sim_pin, sys.executable, "-m", "lab.venues.simulator", "--venue", "mock", "--port", str(port),
                            "--rate", str(args.rate), "--seed", "1", "--option", f"prerender={prerender}"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        sim.stdout.readline()  # "listening on ..."
        url = f"http://127.0.0.1:{port}"
        pin = ["taskset", "-c", str(args.cpu)] if shutil.which("taskset") else []
        t0 = time.monotonic()
        rec = subprocess.run([*pin, *LAB, "record", "--venue", "mock", "--out", root, "--rest-url", url, "--ws-url", f"ws://127.0.0.1:{port}/ws",
                              "--duration", f"{args.seconds}s", "--json", *(["--no-compact"] if args.no_compact else [])],
                             capture_output=True, text=True)
        wall = time.monotonic() - t0
        if rec.returncode:
            print(rec.stderr, file=sys.stderr)
            return 1
        summary = json.loads(rec.stdout.strip().splitlines()[-1])
        sent = get(url + "/control/stats")["connections"][-1]
    finally:
        sim.terminate()
        sim.wait()
    from lab.benchmarks.book import cpu_model
    from lab.datasets.catalog import query

    [stats] = query(root, "select count(*) as n, (epoch_ns(max(local_timestamp)) - epoch_ns(min(local_timestamp))) / 1e9 as span from raw where kind = 'recv'").to_pylist()
    raw = stats["n"]
    span = stats["span"]
    book_msgs = query(root, "select count(distinct rec_id) as n from book").to_pylist()[0]["n"]
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs)
    result = {
        "bench": "record_throughput",
        "cpu": cpu_model(),
        "offered_rate": args.rate,
        "seconds": summary["seconds"],
        "sent": sent["messages"],
        "recorded_raw": raw,
        "recorded_book_messages": book_msgs,
        "lost": sent["messages"] - raw,
        "receive_rate_per_s": round(raw / span),
        "processed_rate_per_s": round(raw / summary["seconds"]),
        "drain_s": round(summary["seconds"] - args.seconds, 3),
        "gaps": summary["gaps"],
        "overflows": summary["overflows"],
        "bytes_on_disk": size,
        "wall_s": round(wall, 2),
    }
    shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result) if args.json else "\n".join(f"{k:>24}: {v}" for k, v in result.items()))
    return 0 if result["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
