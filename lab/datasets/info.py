"""`lab info ROOT`: what a capture holds, from Parquet footers (no data pages read except the
`kind` column of `events`): venues, symbols, tables with rows, files, bytes and time ranges,
sessions, the integrity events recorded, unreadable files and unfinished journals.

This is a summary, not a check: `lab verify` replays every book and recomputes every checksum.
"""
from __future__ import annotations

import collections
import os

import pyarrow.parquet as pq

from lab.core.events import DAMAGE_KIND, TORN_KIND
from lab.core.timeparse import format_time_ns
from lab.datasets import schema as S
from lab.datasets.files import CaptureError, normalize_path
from lab.datasets.journal import iter_journals
from lab.datasets.reader import session_of, streams_in
from lab.datasets.store import JOURNAL_DIR

# Events worth a count in the summary: what unsynced a book or lost records.
COUNTED_EVENTS = ("gap", "resync", "checksum_mismatch", "malformed", "stale_snapshot", "disconnect", "reconnect",
                  "stall", "overflow", DAMAGE_KIND, TORN_KIND, "precision_change")
DERIVED = ("quotes",)  # tables `lab rebuild` writes, beside book_snapshot_N


def _time_range(md) -> tuple[int | None, int | None]:
    """(min, max) local_timestamp in ns from the row groups' statistics."""
    schema = md.schema.to_arrow_schema()
    i = schema.get_field_index("local_timestamp")
    if i < 0:
        return None, None
    lo = hi = None
    for g in range(md.num_row_groups):
        st = md.row_group(g).column(i).statistics
        if st is None or not st.has_min_max:
            continue
        lo = st.min_raw if lo is None else min(lo, st.min_raw)
        hi = st.max_raw if hi is None else max(hi, st.max_raw)
    return lo, hi


def _tables(root: str) -> list[str]:
    names = list(S.TABLES) + list(DERIVED)
    if os.path.isdir(root):
        names += sorted(d for d in os.listdir(root) if d.startswith("book_snapshot_") and os.path.isdir(os.path.join(root, d)))
    return [t for t in names if os.path.isdir(os.path.join(root, t))]


def capture_info(root: str) -> dict:
    if not os.path.isdir(root):
        raise CaptureError(f"capture root {root!r} does not exist")
    root = normalize_path(root)
    skipped: list[tuple[str, str]] = []
    venues: dict[str, dict] = {}
    first = last = None
    sessions: set[str] = set()
    for table in _tables(root):
        for (venue, symbol), files in sorted(streams_in(root, table, skipped=skipped).items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
            rows = size = 0
            lo = hi = None
            for f in files:
                md = pq.ParquetFile(f).metadata
                rows += md.num_rows
                size += os.path.getsize(f)
                a, b = _time_range(md)
                lo = a if lo is None or (a is not None and a < lo) else lo
                hi = b if hi is None or (b is not None and b > hi) else hi
                sessions.add(session_of(f))
            v = venues.setdefault(str(venue), {"symbols": {}, "events": {}})
            entry = {"rows": rows, "files": len(files), "bytes": size, "from": _iso(lo), "to": _iso(hi)}
            if symbol is None:
                v.setdefault("tables", {})[table] = entry
            else:
                v["symbols"].setdefault(str(symbol), {})[table] = entry
            if lo is not None:
                first = lo if first is None else min(first, lo)
            if hi is not None:
                last = hi if last is None else max(last, hi)
    for (venue, _), files in streams_in(root, "events", skipped=[]).items():
        counts = venues.setdefault(str(venue), {"symbols": {}, "events": {}})["events"]
        tally: collections.Counter = collections.Counter()
        for f in files:
            try:
                tally.update(pq.read_table(f, columns=["kind"]).column("kind").to_pylist())
            except Exception:  # noqa: BLE001  (unreadable: listed below from split_readable)
                continue
        for kind in COUNTED_EVENTS:
            if tally.get(kind):
                counts[kind] = counts.get(kind, 0) + tally[kind]
    journals = list(iter_journals(os.path.join(root, JOURNAL_DIR)))
    return {
        "root": root,
        "venues": venues,
        "from": _iso(first),
        "to": _iso(last),
        "sessions": len(sessions),
        "unreadable_files": sorted({p for p, _ in skipped}),
        "journals": len(journals),
        "note": "a summary from file footers; `lab verify` checks every book and checksum",
    }


def _iso(ns: int | None) -> str | None:
    """An exact UTC ISO 8601 time with nanoseconds (never a float)."""
    return None if ns is None else format_time_ns(ns)
