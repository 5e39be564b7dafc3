"""Replay memory (issue 12 item 2): a capture of 50 M book rows across 4 streams replayed into a
Python `on_book` that reads the top of book, resident memory measured (peak RSS of the replaying
process: its own `VmHWM` from /proc, read as it ends; not `wait4`'s ru_maxrss, which on Linux
counts the forking parent's resident set too).

    python bench/replay_memory.py [--rows 50000000] [--streams 4] [--root /tmp/lab-replay-50m]
        [--window-rows N ...] [--json]

The capture is made once (and kept in --root): each stream is `lab bench book`'s seeded workload
(a seed per stream, 1 to 50 rows per message, a snapshot every 10,000 messages, local times 1 to 3
ms past exchange times, all four streams over the same stretch of time, so the merge interleaves
them), written as the recorder writes: files of 250,000 rows (its rotation), zstd, the dataset's
schema and metadata. Each --window-rows value is one replay in its own process: the default
(what `lab replay` uses) and, for comparison, one window as large as the capture, which is what
loading every stream whole costs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SYMBOLS = ["BTC-USD", "ETH-USD", "SOL-USD", "XRP-USD", "ADA-USD", "DOT-USD", "LTC-USD", "BCH-USD"]
FILE_ROWS = 250_000  # the recorder's rotate_rows
LIMIT_BYTES = 1.5 * 2**30

REPLAY = r"""
import json, sys, time
from lab.replay.connector import ReplayConnector
root, window_rows = sys.argv[1], int(sys.argv[2])
seen = [0, 0]
def on_book(book):
    top = book.top_ticks()
    if top is not None:
        seen[0] += 1
    seen[1] += 1
t0, c0 = time.perf_counter(), time.process_time()
conn = ReplayConnector(root, window_rows=window_rows)
conn.start_stream("*", on_book)
summary = conn.run()
hwm = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"peak_rss_bytes": hwm, "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0, "messages": summary["messages"],
                  "callbacks": seen[1], "two_sided": seen[0],
                  "final": {k: [str(v["best_bid"]), str(v["best_ask"])] for k, v in summary["streams"].items()}}))
"""


def make_capture(root: str, rows: int, streams: int) -> dict:
    """The capture (kept: a marker file says what it holds) and each stream's expected final top."""
    marker = os.path.join(root, "bench-capture.json")
    if os.path.exists(marker):
        with open(marker) as fh:
            made = json.load(fh)
        if made["rows"] == rows and made["streams"] == streams:
            return made
    import datetime

    import numpy as np

    from lab.benchmarks.book import book_table
    from lab.datasets import schema as S
    from lab.datasets.store import atomic_write
    from lab.rust_book import bench_workload

    per = rows // streams
    made = {"rows": per * streams, "streams": streams, "final": {}}
    for i in range(streams):
        symbol = SYMBOLS[i]
        w = bench_workload(per, seed=101 + i)
        table = book_table(w)
        first = np.frombuffer(w["timestamps"], dtype=np.int64)[0]
        day = datetime.datetime.fromtimestamp(first / 1e9, datetime.timezone.utc).strftime("%Y-%m-%d")
        session = f"20000101T000000Z-bench{i}"
        meta = {S.META_TABLE: b"book", S.META_VENUE: b"bench", S.META_SYMBOL: symbol.encode(),
                S.META_VENUE_SYMBOL: symbol.replace("-", "/").encode(), S.META_PRICE_PRECISION: b"2",
                S.META_AMOUNT_PRECISION: b"8", S.META_DEPTH: b"1000", S.META_SESSION: session.encode()}
        folder = os.path.join(root, "book", "venue=bench", f"symbol={symbol}", f"date={day}")
        start = 0
        part = 0
        flags = np.frombuffer(w["flags"], dtype=np.uint8)
        while start < table.num_rows:
            # cut after a whole message, as the recorder rotates
            end = min(start + FILE_ROWS, table.num_rows)
            if end < table.num_rows:
                end = start + FILE_ROWS + int(np.flatnonzero(flags[start + FILE_ROWS - 1:] & 1)[0])
            atomic_write(table.slice(start, end - start), os.path.join(folder, f"{session}-{part:06d}.parquet"), meta)
            start, part = end, part + 1
        bid, ask = w["best_bid"], w["best_ask"]
        made["final"][f"bench/{symbol}"] = [f"{bid[0] / 100:.2f}", f"{ask[0] / 100:.2f}"]
        print(f"  wrote {symbol}: {per:,} rows, {w['messages']:,} messages, {part} files", file=sys.stderr)
        del table, w
    with open(marker, "w") as fh:
        json.dump(made, fh)
    return made


def replay(root: str, window_rows: int) -> dict:
    proc = subprocess.Popen([sys.executable, "-c", REPLAY, root, str(window_rows)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))})
    out = proc.stdout.read()
    if proc.wait() != 0:
        return {"window_rows": window_rows, "error": f"exit status {proc.returncode}"}
    got = json.loads(out)
    got.update(window_rows=window_rows)
    return got


def main() -> None:
    from lab.replay.merge import WINDOW_ROWS

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=50_000_000)
    ap.add_argument("--streams", type=int, default=4)
    ap.add_argument("--root", default="/tmp/lab-replay-50m")
    ap.add_argument("--window-rows", type=int, action="append", default=None,
                    help=f"rows each stream keeps loaded (default: {WINDOW_ROWS:,}, lab's default; 0: the whole capture at once)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    t0 = time.perf_counter()
    made = make_capture(a.root, a.rows, a.streams)
    print(f"capture: {made['rows']:,} book rows in {made['streams']} streams under {a.root} ({time.perf_counter() - t0:.0f} s to make or find)",
          file=sys.stderr)
    results = []
    for window_rows in a.window_rows or [WINDOW_ROWS]:
        r = replay(a.root, window_rows or 1 << 40)
        r["final_matches_generator"] = r.get("final") == made["final"]
        results.append(r)
        if "error" in r:
            print(f"window {window_rows:,}: {r['error']}", file=sys.stderr)
            continue
        print(f"window {'whole capture' if not window_rows else f'{window_rows:,} rows'}: {r['messages']:,} messages in {r['seconds']:.1f} s "
              f"({r['messages'] / r['seconds'] / 1e3:,.0f}k msg/s, {r['cpu_seconds']:.1f} CPU s), peak RSS {r['peak_rss_bytes'] / 2**20:,.0f} MiB "
              f"({r['peak_rss_bytes'] / made['rows']:.1f} B per row; limit 1.5 GiB: {'under' if r['peak_rss_bytes'] < LIMIT_BYTES else 'OVER'}), "
              f"final books {'= the generator' if r['final_matches_generator'] else 'DIFFER from the generator'}")
    if a.json:
        print(json.dumps({"capture": {k: made[k] for k in ("rows", "streams")}, "results": results}))


if __name__ == "__main__":
    main()
