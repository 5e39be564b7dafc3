"""Kraken normalizer throughput over a recorded capture's raw rows (a benchmark, not a test).

    python bench/kraken_normalize.py --record ROOT [--seconds 20 --rate 3000 --depth 100 --api v1]
    python bench/kraken_normalize.py ROOT [--repeat 3] [--profile] [--reference] [--trades-only]

The first form records ROOT from the Kraken simulator (in-process, `lab record` code path). The
second feeds every raw row of every Kraken session in ROOT through a fresh normalizer, as
`lab normalize` (writer.renormalize_session) does, without writing Parquet, and prints rows/s
and book messages/s (best of --repeat). `--profile` prints the top cProfile entries.
`--trades-only` keeps, of the received frames, only the trade frames (a trades figure: us per
trade frame); `--reference` sends book (v1), trade and Depth frames through the Python
reference paths instead of Rust.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import time

import pyarrow.parquet as pq


def record(root: str, seconds: float, rate: float, depth: int, api: str, pad: bool) -> None:
    from lab.recorder.recorder import Recorder, RecordOptions
    from lab.venues.simulator import SimulatorThread

    options = {"wire_price_decimals": {"XBT/USD": 5}} if pad else {}
    with SimulatorThread("kraken", seed=5, rate=rate, **options) as sim:
        ws = sim.ws_url if api == "v1" else sim.ws_url.replace("/ws", "/v2")
        rec = Recorder(RecordOptions(venue="kraken", symbols=["XBT/USD", "ETH/USD"], root=root, rest_url=sim.url,
                                     ws_url=ws, depth=depth, duration=seconds, status=False, **({"api": api} if api != "v1" else {})))
        print(rec.run())


def load_rows(root: str):
    from lab.datasets.store import raw_rows
    from lab.datasets.writer import session_raw_files, sessions_in

    out = []
    for venue, session in sessions_in(root, "kraken"):
        rows = []
        depth = 0
        for _, path in session_raw_files(root, venue, session):
            rows.extend(raw_rows(pq.read_table(path)))
            depth = int((pq.read_schema(path).metadata or {}).get(b"lab.depth", b"0"))
        rows.sort(key=lambda r: r.rec_id)
        out.append((depth, rows))
    return out


def trades_only(sessions):
    """Every row but the received frames that are not trade frames."""
    return [(depth, [r for r in rows if r.kind != "recv" or b'"trade"' in r.payload]) for depth, rows in sessions]


def run(sessions) -> tuple[float, int, int, int]:
    from lab.venues.kraken.feed import Normalizer

    t0 = time.perf_counter()
    n_rows = n_msgs = n_trades = 0
    for depth, rows in sessions:
        norm = Normalizer(depth=depth)
        feed = norm.feed
        for row in rows:
            feed(row)
        norm.take()
        n_rows += len(rows)
        n_msgs += norm.stats["messages"]
        n_trades += norm.stats["trades"]
    return time.perf_counter() - t0, n_rows, n_msgs, n_trades


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--record", action="store_true")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--rate", type=float, default=3000)
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--api", default="v1")
    ap.add_argument("--pad", action="store_true", help="simulator pads XBT/USD prices to 5 decimals")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--reference", action="store_true",
                    help="book (v1 only: v2 books have no Python path), trade and Depth frames through the "
                         "Python reference paths instead of Rust")
    ap.add_argument("--trades-only", action="store_true", help="of the received frames, keep only trade frames")
    a = ap.parse_args()
    if a.reference:
        from lab.venues.kraken import feed

        def refuse(payload):
            raise ValueError("reference path")

        feed.parse_kraken_book = feed.parse_kraken_trades = feed.parse_kraken_depth = refuse
    if a.record:
        record(a.root, a.seconds, a.rate, a.depth, a.api, a.pad)
        return
    sessions = load_rows(a.root)
    if a.trades_only:
        sessions = trades_only(sessions)
    best = None
    for _ in range(a.repeat):
        r = run(sessions)
        best = r if best is None or r[0] < best[0] else best
    secs, n_rows, n_msgs, n_trades = best
    print(f"{n_rows:,} raw rows, {n_msgs:,} book messages, {n_trades:,} trades in {secs:.3f}s: {n_rows / secs:,.0f} rows/s, "
          f"{n_msgs / secs:,.0f} book msgs/s, {1e6 * secs / n_rows:.2f} us/row")
    if a.profile:
        prof = cProfile.Profile()
        prof.runcall(run, sessions)
        pstats.Stats(prof).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
