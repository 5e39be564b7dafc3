"""`lab verify`: is a capture healthy, and is every anomaly in it explained?

Per venue and symbol: book messages, checksums recomputed from the stored rows (ok / bad), seq
holes, gaps and resyncs from `events`, and file health (every file readable, no leftover journal).
A seq hole not closed by a CLEAR snapshot, a checksum that does not recompute, an unreadable file,
a leftover journal of a dead session, a derived file whose `lab.source_raw` files are gone or a
trade-id hole (venues whose trade ids are sequential) are unexplained: the capture is unhealthy.
Journals of live sessions (marker flock-held by a running recorder) are listed, not problems.

Health is one of `healthy`, `degraded` (recovery skipped journal bytes: `journal_damage` events,
"degraded, N bytes unrecoverable"; nothing else wrong) and `unhealthy`. A torn journal tail
(the partial last record a kill leaves, within the flush-interval contract) is reported under
`torn_tails` and does not by itself make a capture non-healthy.
"""
from __future__ import annotations

import glob
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq

from lab.datasets import schema as S
from lab.datasets.journal import iter_journals
from lab.datasets.store import JOURNAL_DIR
from lab.core.events import DAMAGE_KIND, INTERRUPTION_EVENTS, TORN_KIND
from lab.datasets.files import normalize_path, unreadable
from lab.datasets.reader import CaptureError, load_book, read_file, streams_in
from lab.core.errors import UnknownVenue
from lab.datasets.venue_rules import rules
from lab.rust_book import OrderBook



def verify(root: str, strict: bool = False, repair: bool = False, progress=None) -> dict:
    """`progress(book rows done, total)` while streams are checked (for a progress bar)."""
    report: dict = {"root": root, "ok": True, "health": "healthy", "problems": [], "streams": {}, "files": 0, "bad_files": [],
                     "journals": [], "live_journals": [], "damage": [], "unrecoverable_bytes": 0, "torn_tails": [], "trades": {}}
    if not os.path.isdir(root):
        raise CaptureError(f"capture root {root!r} does not exist")
    # one spelling for every path compared below (a relative root once hid unreadable files)
    root = report["root"] = normalize_path(root)
    if repair:
        from lab.datasets.writer import recover

        report["repaired"] = recover(root)
    from lab.datasets.writer import journal_session_is_live

    for path in iter_journals(os.path.join(root, JOURNAL_DIR)):
        (report["live_journals"] if journal_session_is_live(root, path) else report["journals"]).append(path)
    if report["journals"]:
        report["problems"].append(f"{len(report['journals'])} leftover journal(s): run `lab verify --repair`")
    for path in sorted(glob.glob(os.path.join(root, "**", "*.parquet"), recursive=True)):
        report["files"] += 1
        why = unreadable(path)
        if why is not None:
            _bad_file(report, root, path, why)
    bad = set(report["bad_files"])
    listed: list = []  # the same unreadable files again: already in bad_files

    _check_sources(root, report, bad)

    events: dict[tuple[str, str | None], dict[str, int]] = {}
    for (venue, _), files in streams_in(root, "events", skipped=listed).items():
        for f in files:
            if f in bad:
                continue
            try:
                t = read_file(f)
            except CaptureError as exc:  # the footer parses, the data does not
                _bad_file(report, root, f, str(exc).split("(", 1)[-1].rstrip(")"))
                continue
            for kind, sym, detail in zip(t.column("kind").to_pylist(), t.column("symbol").to_pylist(), t.column("detail").to_pylist()):
                counts = events.setdefault((venue, sym), {})
                counts[kind] = counts.get(kind, 0) + 1
                if kind in (DAMAGE_KIND, TORN_KIND):
                    _journal_loss(report, kind, venue, f, detail)
                elif kind == "derive_failed":  # the recorder could not write a segment's derived files
                    report["problems"].append(f"{venue}: {detail}")

    book_streams = sorted(streams_in(root, "book", skipped=listed).items())
    rows_total = sum(pq.ParquetFile(f).metadata.num_rows for _, files in book_streams for f in files if f not in bad) if progress else 0
    rows_before = 0
    for (venue, symbol), files in book_streams:
        files = [f for f in files if f not in bad]
        tick = (lambda done, base=rows_before: progress(base + done, rows_total)) if progress else None
        while True:
            try:
                stream = _verify_stream(venue, symbol, files, tick)
                break
            except CaptureError as exc:  # a file whose footer parses but whose data does not
                named = [f for f in files if f in str(exc)]
                for f in named:
                    _bad_file(report, root, f, str(exc).split("(", 1)[-1].rstrip(")"))
                if not named:
                    report["problems"].append(f"{venue} {symbol}: {exc}")
                files = [f for f in files if f not in named] if named else []
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
    _check_trade_ids(root, report, bad, strict)
    report["ok"] = not report["problems"] and not report["damage"]
    if report["problems"]:
        report["health"] = "unhealthy"
    elif report["damage"]:
        report["health"] = "degraded"
    if report["damage"]:
        report["problems"].append(f"degraded, {report['unrecoverable_bytes']} bytes unrecoverable "
                                  f"({len(report['damage'])} damaged journal(s), see the {DAMAGE_KIND} events)")
    return report


def _journal_loss(report: dict, kind: str, venue: str, path: str, detail: str | None) -> None:
    try:
        info = json.loads(detail or "{}")
        nbytes = int(info.get("bytes", 0))
    except (ValueError, TypeError, AttributeError):
        info, nbytes = {"detail": detail}, 0
    entry = {"venue": venue, "file": path, "journal": info.get("journal"), "bytes": nbytes, "est_records": info.get("est_records")}
    if kind == DAMAGE_KIND:
        report["damage"].append(entry)
        report["unrecoverable_bytes"] += nbytes
    else:
        report["torn_tails"].append(entry)


def _check_sources(root: str, report: dict, bad: set) -> None:
    """Each derived file names the raw files it came from (`lab.source_raw`): they must exist."""
    missing = 0
    for table in ("book", "trades", "events", "instruments"):
        for path in glob.glob(os.path.join(root, table, "**", "*.parquet"), recursive=True):
            if path in bad:
                continue
            try:
                meta = pq.read_schema(path).metadata or {}
            except Exception:
                continue
            source = meta.get(b"lab.source_raw")
            if not source:
                continue
            gone = [s for s in source.decode().split(",") if s and not os.path.exists(os.path.join(root, s))]
            if gone:
                missing += 1
                report["problems"].append(f"{path}: its source raw file(s) {', '.join(gone)} are missing")




def _check_trade_ids(root: str, report: dict, bad: set, strict: bool = False) -> None:
    """Holes in trade ids, where the venue's ids are sequential (the venue adapter says so with
    `trade_ids_sequential(symbol, ids) -> bool`; ids are compared as integers within one
    session). A hole spanning an interruption (a disconnect, gap, resync... event of that
    venue, for that symbol or for all) is explained; any other hole is a problem."""
    interruptions: dict[tuple[str, str | None], list[int]] = {}
    damaged: dict[tuple[str, str], list[tuple[int, int]]] = {}  # (venue, session) -> (after, before) rec_ids
    for (venue, _), files in streams_in(root, "events", skipped=[]).items():
        for f in files:
            if f in bad:
                continue
            t = read_file(f)
            ts = t.column("local_timestamp").cast(pa.int64()).to_pylist()
            for kind, sym, when, detail in zip(t.column("kind").to_pylist(), t.column("symbol").to_pylist(), ts,
                                               t.column("detail").to_pylist()):
                if kind == DAMAGE_KIND:  # records lost in a journal: their rec_ids lie inside each range
                    session = os.path.basename(f).rsplit("-", 2)[0]
                    try:
                        ranges = json.loads(detail)["ranges"]
                    except (ValueError, KeyError, TypeError):
                        ranges = [{"after_rec_id": None, "before_rec_id": None}]
                    damaged.setdefault((venue, session), []).extend(
                        (-1 if r.get("after_rec_id") is None else r["after_rec_id"],
                         2**63 if r.get("before_rec_id") is None else r["before_rec_id"]) for r in ranges)
                elif kind in INTERRUPTION_EVENTS:
                    interruptions.setdefault((venue, sym), []).append(when)
    for v in interruptions.values():
        v.sort()
    import bisect

    def explained(venue: str, symbol: str, a: int, b: int) -> bool:
        for key in ((venue, symbol), (venue, None)):
            times = interruptions.get(key, [])
            i = bisect.bisect_left(times, a)
            if i < len(times) and times[i] <= b:
                return True
        return False

    for (venue, symbol), files in sorted(streams_in(root, "trades", skipped=[]).items()):
        try:
            sequential = rules(venue).trade_ids_sequential
        except UnknownVenue:
            continue
        files = [f for f in files if f not in bad]
        if not files:
            continue
        by_session: dict[str, list] = {}
        for f in files:
            t = read_file(f)
            session = os.path.basename(f).rsplit("-", 1)[0]
            by_session.setdefault(session, []).extend(
                zip(t.column("id").to_pylist(), t.column("local_timestamp").cast(pa.int64()).to_pylist(),
                    t.column("rec_id").to_pylist()))
        holes = missing = unexplained = 0
        for session, triples in by_session.items():
            ids = [str(i) for i, _, _ in triples if i is not None]
            if not ids or not sequential(symbol, ids) or not all(i.isdigit() for i in ids):
                continue
            seen = sorted({(int(i), ts, r) for i, ts, r in triples if i is not None})
            lost = damaged.get((venue, session), [])
            for (a, ta, ra), (b, tb, rb) in zip(seen, seen[1:]):
                if b > a + 1:
                    holes += 1
                    missing += b - a - 1
                    # a journal record lost between the two trades' frames can have held the missing ones
                    in_damage = any(max(after, min(ra, rb)) < min(before, max(ra, rb)) - 1 for after, before in lost)
                    if not in_damage and not explained(venue, symbol, min(ta, tb), max(ta, tb)):
                        unexplained += 1
        report["trades"][f"{venue}/{symbol}"] = {"trade_id_holes": holes, "missing_trade_ids": missing,
                                                 "unexplained_trade_id_holes": unexplained}
        if unexplained:
            report["problems"].append(f"{venue} {symbol}: {unexplained} trade-id holes without a disconnect, gap or resync"
                                      f" ({missing} trade ids missing in {holes} holes)")
        elif strict and holes:
            report["problems"].append(f"{venue} {symbol}: {holes} trade-id holes ({missing} trade ids missing, --strict)")
def _bad_file(report: dict, root: str, path: str, why: str) -> None:
    """List an unreadable file with what to do about it."""
    if path in report["bad_files"]:
        return
    report["bad_files"].append(path)
    table = os.path.relpath(path, root).split(os.sep)[0]
    hint = ("raw is the source of truth: restore this file from a copy if there is one; then run `lab normalize`"
            if table == "raw" else "run `lab normalize` to re-derive it from raw" if table in ("book", "trades", "events", "instruments")
            else "run `lab normalize` (book, trades, events) or `lab rebuild` (quotes, book snapshots) to re-derive it")
    report["problems"].append(f"{path}: unreadable ({why}): {hint}")


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
    """checksum(row) of the book as applied up to that row, as the venue computes it, or None."""
    try:
        return rules(venue).checksum_function(book, files)
    except UnknownVenue:
        return None


def _first_seqs(files: list[str]) -> list:
    return pa.concat_arrays([read_file(f).column("first_seq").combine_chunks() for f in files]).to_pylist()
