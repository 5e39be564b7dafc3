"""`lab bench book`: the pinned book workload through our engine and the peers', side by side.

One core (the process pins itself, as `taskset -c 1` would, and the peers' process inherits it),
pyarrow's thread pools at 1. Every engine must end at the generator's best bid and ask (`ok`).
Peers run in their own venv (`--peers-python`), never as lab dependencies.

Times are CPU seconds of the process (`time.process_time`), the same clock for every engine: the
machine may be shared, and CPU time does not count waiting for a core.
"""
from __future__ import annotations

import gzip
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from decimal import Decimal

import numpy as np
import pyarrow as pa

from lab import rust_book as rb
from lab.datasets import schema as S
from lab.datasets.store import atomic_write, decimal_array, raw_table
from lab.core.model import RawRow

PEERS_SCRIPT = os.path.join(os.path.dirname(__file__), "book_peers.py")
FIELDS = ("sides", "prices", "amounts", "flags", "timestamps", "local_timestamps")


def pin_one_core() -> int:
    cpus = sorted(os.sched_getaffinity(0))
    cpu = 1 if 1 in cpus else cpus[0]
    os.sched_setaffinity(0, {cpu})
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    return cpu


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _arrays(w: dict) -> dict:
    dt = {"sides": np.int8, "flags": np.uint8}
    return {k: np.frombuffer(w[k], dtype=dt.get(k, np.int64)) for k in FIELDS}


def _price(ticks, pp: int) -> str | None:
    return None if ticks is None else str(Decimal(int(ticks)).scaleb(-pp))


def engine_line(engine, path, deltas, seconds, bid, ask, want, pp, **extra) -> dict:
    line = {
        "engine": engine, "path": path, "deltas": deltas, "seconds": seconds,
        "deltas_per_s": deltas / seconds if seconds else None,
        "best_bid": _price(bid, pp), "best_ask": _price(ask, pp),
        "ok": (bid, ask) == want,
    }
    line.update(extra)
    return line


def ours_bulk(w, want, repeat: int = 5) -> dict:
    args = [w[k] for k in FIELDS]
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        out = rb.rebuild_book(*args, depth=w["depth"])
        times.append(time.process_time() - t0)
    top = (out["best_bid"][0], out["best_ask"][0])
    return engine_line("lab rust_book.rebuild_book", "bulk", w["rows"], min(times), *top, want, 2,
                       runs=repeat, median_seconds=float(np.median(times)), quotes=out["quotes"])


def ours_per_message(w, want) -> dict:
    s, p, a, f = (w[k] for k in FIELDS[:4])
    book = rb.OrderBook("bench", "X", 2, 8, w["depth"])
    apply, top, n = book.apply_rows, book.top, w["rows"]
    pos = 0
    t0 = time.process_time()
    while pos < n:
        pos = apply(s, p, a, f, pos)
        top()
    seconds = time.process_time() - t0
    return engine_line("lab OrderBook.apply_rows", "per-message", n, seconds, book.best_bid_ticks()[0], book.best_ask_ticks()[0], want, 2)


def dict_baseline(w, want) -> dict:
    arr = _arrays(w)
    sides, prices, amounts, flags = (arr[k].tolist() for k in ("sides", "prices", "amounts", "flags"))
    ends = np.flatnonzero(arr["flags"] & 1)
    starts = np.concatenate([[0], ends[:-1] + 1]).tolist()
    ends = (ends + 1).tolist()
    bids: dict[int, int] = {}
    asks: dict[int, int] = {}
    best_bid = best_ask = None
    t0 = time.process_time()
    for s, e in zip(starts, ends):
        for i in range(s, e):
            if flags[i] & 2:
                bids, asks, best_bid, best_ask = {}, {}, None, None
            p, q = prices[i], amounts[i]
            if sides[i]:
                if q:
                    asks[p] = q
                    if best_ask is None or p < best_ask:
                        best_ask = p
                elif asks.pop(p, None) is not None and p == best_ask:
                    best_ask = min(asks) if asks else None
            else:
                if q:
                    bids[p] = q
                    if best_bid is None or p > best_bid:
                        best_bid = p
                elif bids.pop(p, None) is not None and p == best_bid:
                    best_bid = max(bids) if bids else None
    seconds = time.process_time() - t0
    return engine_line("python dict baseline", "per-message", w["rows"], seconds, best_bid, best_ask, want, 2)


def peers(w, peers_python: str | None, want, tmp: str, only: list[str] | None = None) -> list[dict]:
    if not peers_python:
        return [{"engine": "peers", "error": "not run: pass --peers-python PATH (a venv with hftbacktest, order-book, nautilus-trader, numpy)"}]
    if not os.path.exists(peers_python):
        return [{"engine": "peers", "error": f"not run: {peers_python} does not exist"}]
    path = os.path.join(tmp, "workload.npz")
    arr = _arrays(w)
    np.savez(path, **arr, price_precision=2, amount_precision=8, depth=w["depth"])
    proc = subprocess.run([peers_python, PEERS_SCRIPT, path, *(only or [])], capture_output=True, text=True, timeout=3600)
    out = []
    for line in proc.stdout.splitlines():
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "error" not in item:
            item = engine_line(item.pop("engine"), item.pop("path"), item.pop("deltas"), item.pop("seconds"),
                               item.pop("best_bid"), item.pop("best_ask"), want, 2,
                               **{k: v for k, v in item.items() if k != "deltas_per_s"})
        out.append(item)
    if proc.returncode != 0 or not out:
        out.append({"engine": "peers", "error": f"{peers_python} exited {proc.returncode}: {proc.stderr.strip()[-500:]}"})
    return out


def book_table(w, limit: int | None = None) -> pa.Table:
    """The workload as a `book` table with the recorder's schema (checksum on LAST rows)."""
    arr = _arrays(w)
    n = len(arr["flags"]) if limit is None else min(limit, len(arr["flags"]))
    flags = arr["flags"][:n]
    last = (flags & 1).astype(bool)
    msg = np.concatenate([[0], np.cumsum(last)[:-1]]).astype(np.int64)
    rng = np.random.default_rng(7)
    checksum = pa.array(rng.integers(0, 2**32, n, dtype=np.uint32), mask=~last)
    snap = np.zeros(n, dtype=bool)
    starts = np.flatnonzero(flags & 2)
    for s in starts:
        e = s + int(np.flatnonzero(flags[s:] & 1)[0]) + 1
        snap[s:e] = True
    return pa.table(
        [
            pa.array(arr["timestamps"][:n]).cast(S.TS),
            pa.array(arr["local_timestamps"][:n]).cast(S.TS),
            pa.array(snap),
            pa.array(np.where(arr["sides"][:n] == 1, "ask", "bid")),
            decimal_array(arr["prices"][:n], 2),
            decimal_array(arr["amounts"][:n], 8),
            pa.array(msg + 1),
            pa.array(msg + 1),
            checksum,
            pa.array(flags),
            pa.array(msg + 1000),
            pa.array(["BTC/USD"] * n),
        ],
        schema=S.book_schema(2, 8),
    )


def _book_meta() -> dict:
    return {S.META_TABLE: b"book", S.META_VENUE: b"bench", S.META_SYMBOL: b"BTC-USD", S.META_VENUE_SYMBOL: b"BTC/USD",
            S.META_PRICE_PRECISION: b"2", S.META_AMOUNT_PRECISION: b"8", S.META_DEPTH: b"1000", S.META_SESSION: b"bench"}


def parquet_to_quotes(w, tmp: str, repeat: int = 3) -> list[dict]:
    from lab.replay.rebuild import load_columns, quotes_table, rebuild_columns

    path = os.path.join(tmp, "book", "venue=bench", "symbol=BTC-USD", "date=2023-11-14", "bench-000001.parquet")
    atomic_write(book_table(w), path, _book_meta())
    size = os.path.getsize(path)
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        cols = load_columns([path])
        out = rebuild_columns(cols)
        quotes = quotes_table(out, cols.price_precision, cols.amount_precision)
        times.append(time.process_time() - t0)
    assert quotes.num_rows == out["quotes"]
    rows = w["rows"]
    return [
        {"metric": "parquet_to_quotes", "book_rows": rows, "quotes_rows": quotes.num_rows, "seconds": min(times),
         "book_rows_per_s": rows / min(times), "quotes_rows_per_s": quotes.num_rows / min(times)},
        {"metric": "book_bytes_per_row", "source": "pinned workload written by lab's book writer", "rows": rows,
         "bytes": size, "bytes_per_row": size / rows},
    ]


def _frame(t, bids, asks, seq) -> bytes:
    def lv(levels):
        return ",".join(f'["{p[:-2]}.{p[-2:]}","{a // 10**8}.{a % 10**8:08d}"]' for p, a in levels)
    return (f'{{"type":"book","symbol":"BTC-USD","seq":{seq},"timestamp":{t},"bids":[{lv(bids)}],'
            f'"asks":[{lv(asks)}],"checksum":{(seq * 2654435761) % 2**32}}}').encode()


def raw_vs_gzip(w, tmp: str, messages: int = 20_000) -> dict:
    """The workload's first messages rendered as mock-venue frames: lab's `raw` file against the
    same frames gzipped (default level 6, newline separated), as written live (zstd 3) and after
    `lab compact` (zstd 19)."""
    from lab.datasets.writer import compact_root

    arr = _arrays(w)
    ends = np.flatnonzero(arr["flags"] & 1)[:messages]
    starts = np.concatenate([[0], ends[:-1] + 1])
    sides, prices, amounts, lts = (arr[k].tolist() for k in ("sides", "prices", "amounts", "local_timestamps"))
    rows, frames = [], []
    for k, (s, e) in enumerate(zip(starts.tolist(), (ends + 1).tolist())):
        bids = [(str(prices[i]), amounts[i]) for i in range(s, e) if not sides[i]]
        asks = [(str(prices[i]), amounts[i]) for i in range(s, e) if sides[i]]
        payload = _frame(lts[s], bids, asks, k + 1)
        frames.append(payload)
        rows.append(RawRow(rec_id=k + 1, local_ts=lts[s], conn_id=1, conn_seq=k + 1, kind="recv", channel="ws", symbol=None, payload=payload))
    path = os.path.join(tmp, "raw", "venue=bench", "date=2023-11-14", "bench-000001.parquet")
    atomic_write(raw_table(rows, "bench"), path, {S.META_TABLE: b"raw", S.META_VENUE: b"bench", S.META_SESSION: b"bench"})
    raw_bytes = os.path.getsize(path)
    plain = b"\n".join(frames)
    gz = len(gzip.compress(plain))
    compact_root(tmp, venue="bench")
    compacted = os.path.getsize(path)
    return {"metric": "raw_vs_gzip", "frames": len(frames), "frame_bytes": len(plain), "raw_parquet_bytes": raw_bytes,
            "gzip_bytes": gz, "raw_over_gzip": raw_bytes / gz, "compacted_raw_parquet_bytes": compacted,
            "compacted_raw_over_gzip": compacted / gz}


def capture_lines(capture: str) -> list[dict]:
    """Our bulk rebuild and the `book` bytes per row on a capture given by path."""
    from lab.datasets.reader import streams_in
    from lab.replay.rebuild import load_columns, rebuild_columns

    out = []
    for (v, s), files in sorted(streams_in(capture, "book").items()):
        files = sorted(files, key=os.path.basename)
        t0 = time.process_time()
        cols = load_columns(files)
        t1 = time.process_time()
        res = rebuild_columns(cols)
        t2 = time.process_time()
        size = sum(os.path.getsize(f) for f in files)
        out.append({"engine": "lab rust_book.rebuild_book", "path": "bulk", "capture": f"{v}/{s}", "deltas": cols.rows,
                    "seconds": t2 - t1, "deltas_per_s": cols.rows / (t2 - t1) if t2 > t1 else None,
                    "parquet_to_quotes_rows_per_s": cols.rows / (t2 - t0) if t2 > t0 else None,
                    "best_bid": _price((res["best_bid"] or [None])[0], cols.price_precision),
                    "best_ask": _price((res["best_ask"] or [None])[0], cols.price_precision),
                    "book_bytes_per_row": size / max(cols.rows, 1)})
    return out


def ratios(engines: list[dict]) -> dict:
    """Our paths against the fastest peer on the same path, measured in this run (the dict
    baseline is not a peer)."""
    def fastest(path: str, ours: bool) -> dict | None:
        pool = [e for e in engines if e["path"] == path and e.get("deltas_per_s") and "baseline" not in e["engine"]
                and e["engine"].startswith("lab ") == ours]
        return max(pool, key=lambda e: e["deltas_per_s"], default=None)

    out = {"metric": "ratios"}
    for path, name in (("bulk", "bulk"), ("per-message", "per_message")):
        ours, peer = fastest(path, True), fastest(path, False)
        if ours and peer:
            out[f"{name}_vs_fastest_peer"] = ours["deltas_per_s"] / peer["deltas_per_s"]
            out[f"{name}_fastest_peer"] = peer["engine"]
    return out


def run(rows: int, peers_python: str | None, seed: int = 1, capture: str | None = None, only_peers: list[str] | None = None,
        progress=None):
    """Yields result dicts (engines first, then metrics). `progress(stage done, stages, name of
    the next stage)` before each stage (for a progress bar)."""
    stages = ["workload", "ours bulk", "ours per-message", "dict baseline", "peers", "parquet to quotes", "raw vs gzip"]
    if capture:
        stages.append("capture")
    step = iter(range(len(stages) + 1))

    def stage() -> None:
        if progress is not None:
            i = next(step)
            progress(i, len(stages), stages[i] if i < len(stages) else "done")

    stage()
    cpu = pin_one_core()
    model = cpu_model()
    w = dict(rb.bench_workload(rows, seed=seed))
    want = (w["best_bid"][0], w["best_ask"][0])
    yield {"metric": "workload", "rows": w["rows"], "messages": w["messages"], "seed": seed, "depth": w["depth"],
           "snapshot_every": 10_000, "best_bid": _price(want[0], 2), "best_ask": _price(want[1], 2), "cpu": model,
           "pinned_cpu": cpu, "python": sys.version.split()[0]}
    engines = []
    for fn in (ours_bulk, ours_per_message, dict_baseline):
        stage()
        engines.append({**fn(w, want), "cpu": model})
        yield engines[-1]
    with tempfile.TemporaryDirectory(prefix="lab-bench-") as tmp:
        stage()
        for line in peers(w, peers_python, want, tmp, only_peers):
            if "error" not in line:
                engines.append({**line, "cpu": model})
            yield engines[-1] if "error" not in line else line
        yield ratios(engines)
        stage()
        yield from parquet_to_quotes(w, tmp)
        stage()
        yield raw_vs_gzip(w, tmp)
    if capture:
        stage()
        yield from capture_lines(capture)
    stage()
