"""`lab verify`: is a capture healthy, and is every anomaly in it explained?

Per venue and symbol: book messages, checksums recomputed from the stored rows (ok / bad), seq
holes, gaps and resyncs from `events`, and file health (every file readable, no leftover journal).
A seq hole not closed by a CLEAR snapshot, a checksum that does not recompute, an unreadable file
or a leftover journal are unexplained: the capture is unhealthy.
"""
from __future__ import annotations

import glob
import os

import pyarrow as pa
import pyarrow.parquet as pq

from lab.datasets import schema as S
from lab.datasets.journal import iter_journals
from lab.datasets.store import JOURNAL_DIR
from lab.replay.reader import CaptureError, load_book, read_file, streams_in
from lab.rust_book import OrderBook, kraken_wire_checksum

CHECKSUMS = {"mock": "mock_checksum", "kraken": "kraken_checksum"}


def verify(root: str, strict: bool = False, repair: bool = False, progress=None) -> dict:
    """`progress(book rows done, total)` while streams are checked (for a progress bar)."""
    report: dict = {"root": root, "ok": True, "problems": [], "streams": {}, "files": 0, "bad_files": [], "journals": []}
    if not os.path.isdir(root):
        raise CaptureError(f"capture root {root!r} does not exist")
    if repair:
        from lab.datasets.writer import recover

        report["repaired"] = recover(root)
    report["journals"] = list(iter_journals(os.path.join(root, JOURNAL_DIR)))
    if report["journals"]:
        report["problems"].append(f"{len(report['journals'])} leftover journal(s): run `lab verify --repair`")
    for path in glob.glob(os.path.join(root, "**", "*.parquet"), recursive=True):
        report["files"] += 1
        try:
            pq.ParquetFile(path).metadata
        except Exception as exc:
            report["bad_files"].append(path)
            report["problems"].append(f"{path}: unreadable ({str(exc).splitlines()[0]})")
    bad = set(report["bad_files"])

    events: dict[tuple[str, str | None], dict[str, int]] = {}
    for (venue, _), files in streams_in(root, "events").items():
        for f in files:
            if f in bad:
                continue
            t = read_file(f)
            for kind, sym in zip(t.column("kind").to_pylist(), t.column("symbol").to_pylist()):
                counts = events.setdefault((venue, sym), {})
                counts[kind] = counts.get(kind, 0) + 1

    book_streams = sorted(streams_in(root, "book").items())
    rows_total = sum(pq.ParquetFile(f).metadata.num_rows for _, files in book_streams for f in files if f not in bad) if progress else 0
    rows_before = 0
    for (venue, symbol), files in book_streams:
        files = [f for f in files if f not in bad]
        tick = (lambda done, base=rows_before: progress(base + done, rows_total)) if progress else None
        stream = _verify_stream(venue, symbol, files, tick)
        rows_before += stream.pop("rows", 0)
        ev = events.get((venue, symbol), {})
        stream["gaps"] = ev.get("gap", 0)
        stream["resyncs"] = ev.get("resync", 0)
        stream["checksum_events"] = ev.get("checksum_mismatch", 0)
        stream["files"] = len(files)
        if stream["checksums_bad"]:
            report["problems"].append(f"{venue} {symbol}: {stream['checksums_bad']} stored checksums do not recompute")
        if stream["unexplained_holes"]:
            report["problems"].append(f"{venue} {symbol}: {stream['unexplained_holes']} seq holes without a resync")
        if strict and stream["gaps"]:
            report["problems"].append(f"{venue} {symbol}: {stream['gaps']} gaps (--strict)")
        report["streams"][f"{venue}/{symbol}"] = stream
    report["ok"] = not report["problems"]
    return report


def _verify_stream(venue: str, symbol: str, files: list[str], progress=None) -> dict:
    out = {"venue": venue, "symbol": symbol, "messages": 0, "snapshots": 0, "checksums_ok": 0, "checksums_bad": 0, "unexplained_holes": 0}
    if not files:
        return out
    b = load_book(files, venue, symbol)
    book = OrderBook(venue, symbol, b.price_precision, b.amount_precision, b.depth)
    checksum_of = _checksum_function(venue, book, files)
    sides, prices, amounts, flags = b.sides.tobytes(), b.prices.tobytes(), b.amounts.tobytes(), b.flags.tobytes()
    start = 0
    prev_last = None
    n = len(b.flags)
    firsts = _first_seqs(files)
    while start < n:
        snapshot = bool(b.flags[start] & S.FLAG_CLEAR)
        end = book.apply_rows(sides, prices, amounts, flags, start)
        last = end - 1
        out["messages"] += 1
        if snapshot:
            out["snapshots"] += 1
        elif prev_last is not None and firsts[start] is not None and firsts[start] != prev_last + 1:
            out["unexplained_holes"] += 1
        prev_last = int(b.last_seq[last])
        stored = b.checksum[last]
        if stored is not None and checksum_of is not None:
            if checksum_of(last) == stored:
                out["checksums_ok"] += 1
            else:
                out["checksums_bad"] += 1
        start = end
        if progress is not None and out["messages"] % 8192 == 0:
            progress(start)
    if progress is not None:
        progress(n)
    out["rows"] = n
    out["best_bid"] = book.best_bid()  # (price, amount) Decimals, or None
    out["best_ask"] = book.best_ask()
    return out


def _checksum_function(venue: str, book: OrderBook, files: list[str]):
    """checksum(row) of the book as applied up to that row, as the venue computes it, or None.

    Kraken computes its CRC over the wire strings: when the venue pads them beyond the pair's
    precisions (real XBT/USD prices carry 5 decimals, pair_decimals 1), the stored checksum is
    the venue's and the book file's `lab.wire_price_decimals` / `lab.wire_amount_decimals`
    say which decimals to recompute it with (per file: rows map to their file)."""
    method = getattr(book, CHECKSUMS.get(venue, ""), None)
    if method is None:
        return None
    if venue != "kraken":
        return lambda row: method()
    ends, wire = [], []
    total = 0
    for f in files:
        md = pq.ParquetFile(f).metadata
        meta = md.metadata or {}
        total += md.num_rows
        ends.append(total)
        pd_, ad_ = meta.get(b"lab.wire_price_decimals"), meta.get(b"lab.wire_amount_decimals")
        wire.append((int(pd_), int(ad_)) if pd_ is not None and ad_ is not None else None)
    if not any(wire):
        return lambda row: method()
    import bisect

    def checksum(row: int) -> int:
        w = wire[min(bisect.bisect_right(ends, row), len(wire) - 1)]
        if w is None or w == (book.price_precision, book.amount_precision):
            return method()
        return kraken_wire_checksum(book, w[0], w[1])

    return checksum


def _first_seqs(files: list[str]) -> list:
    return pa.concat_arrays([read_file(f).column("first_seq").combine_chunks() for f in files]).to_pylist()
