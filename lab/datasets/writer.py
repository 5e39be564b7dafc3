"""The capture writer: journal every raw row, derive, rotate segments into Parquet; recovery.

Segment `k` of session `s` is journaled to `ROOT/.journal/s-k.journal`. Rotation closes the
journal, writes every table's files for the segment (`s-k.parquet` in each partition, atomically),
and only then deletes the journal. A journal left behind by a crash is turned into the same files
by `recover()`, which re-derives the session from its raw files with the same normalizer.
"""
from __future__ import annotations

import fcntl
import glob
import json
import os
import re
import time
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from . import schema as S
from lab.recorder.sync import Derived

from .compactor import BackgroundCompactor
from .journal import JournalWriter, RawRow, iter_journals, read_journal
from .store import (
    COMPACT_LEVEL,
    COMPACT_PAGE_SIZE,
    JOURNAL_DIR,
    META_COMPACTED,
    atomic_write,
    file_name,
    partition_dir,
    raw_rows,
    raw_table,
    split_by_day,
)

_JOURNAL_NAME = re.compile(r"^(?P<session>.+)-(?P<seq>\d{6})\.journal$")
_FILE_NAME = re.compile(r"^(?P<session>.+)-(?P<seq>\d{6})\.parquet$")


@dataclass
class WriterStats:
    rows: int = 0
    files: int = 0
    bytes: int = 0
    segments: int = 0
    paths: list[str] = field(default_factory=list)


def _meta(table: str, session: str, venue: str, **extra) -> dict[bytes, bytes]:
    meta = {S.META_TABLE: table.encode(), S.META_SESSION: session.encode(), S.META_VENUE: venue.encode()}
    for key, value in extra.items():
        if value is not None:
            meta[f"lab.{key}".encode()] = str(value).encode()
    return meta


def write_segment(root: str, venue: str, session: str, seq: int, rows: list[RawRow], derived, instruments: dict, depth: int, stats: WriterStats,
                  compact_raw: bool = False) -> list[str]:
    """All files of one segment. `instruments` maps canonical symbol -> Instrument. `compact_raw`:
    write the raw files as `lab compact` does (a re-derivation keeps a compacted segment compacted)."""
    name = file_name(session, seq)
    raw_names: list[str] = []
    raw_paths: list[str] = []

    def put(table: pa.Table, path: str, meta: dict, **kw) -> None:
        atomic_write(table, path, meta, **kw)
        stats.files += 1
        stats.bytes += os.path.getsize(path)
        stats.paths.append(path)

    rows = sorted(rows, key=lambda r: r.rec_id)
    for date, a, b in split_by_day([r.local_ts for r in rows]):
        path = os.path.join(partition_dir(root, "raw", venue, None, date), name)
        chunk = rows[a:b]
        meta = _meta("raw", session, venue, depth=depth, rec_id_range=f"{chunk[0].rec_id}-{chunk[-1].rec_id}")
        if compact_raw:
            meta[META_COMPACTED] = f"zstd-{COMPACT_LEVEL}".encode()
            put(raw_table(chunk, session), path, meta, compression_level=COMPACT_LEVEL, data_page_size=COMPACT_PAGE_SIZE)
        else:
            put(raw_table(chunk, session), path, meta)
        raw_names.append(os.path.relpath(path, root))
        raw_paths.append(path)
    source = ",".join(raw_names)

    for table_name, by_symbol in (("book", derived.book), ("trades", derived.trades)):
        for symbol, cols in by_symbol.items():
            if not len(cols):
                continue
            inst = instruments[symbol]
            pp, ap = inst.price_precision, inst.amount_precision
            table = cols.to_table(pp, ap, inst.venue_symbol)
            for date, a, b in split_by_day(cols.local_timestamp):
                path = os.path.join(partition_dir(root, table_name, venue, symbol, date), name)
                put(
                    table.slice(a, b - a),
                    path,
                    _meta(table_name, session, venue, symbol=symbol, venue_symbol=inst.venue_symbol,
                          price_precision=pp, amount_precision=ap, depth=depth, source_raw=source,
                          **(getattr(derived, "book_meta", {}).get(symbol, {}) if table_name == "book" else {})),
                )
    if derived.events:
        ev = derived.events
        table = pa.table(
            [
                pa.array([e[0] for e in ev], pa.int64()).cast(S.TS),
                pa.array([e[1] for e in ev], pa.int64()),
                pa.array([e[2] for e in ev], pa.string()),
                pa.array([e[3] for e in ev], pa.string()),
                pa.array([e[4] for e in ev], pa.string()),
            ],
            schema=S.EVENTS,
        )
        for date, a, b in split_by_day([e[0] for e in ev]):
            path = os.path.join(partition_dir(root, "events", venue, None, date), name)
            put(table.slice(a, b - a), path, _meta("events", session, venue, source_raw=source))
    if derived.instruments:
        ins = derived.instruments
        table = pa.table(
            [
                pa.array([i.venue_symbol for i, _, _ in ins]),
                pa.array([i.symbol for i, _, _ in ins]),
                pa.array([i.base for i, _, _ in ins]),
                pa.array([i.quote for i, _, _ in ins]),
                pa.array([i.price_precision for i, _, _ in ins], pa.int32()),
                pa.array([i.amount_precision for i, _, _ in ins], pa.int32()),
                pa.array([i.tick for i, _, _ in ins]),
                pa.array([i.lot for i, _, _ in ins]),
                pa.array([t for _, t, _ in ins], pa.int64()).cast(S.TS),
                pa.array([r for _, _, r in ins], pa.int64()),
            ],
            schema=S.INSTRUMENTS,
        )
        path = os.path.join(partition_dir(root, "instruments", venue, None, None), name)
        put(table, path, _meta("instruments", session, venue, source_raw=source))
    stats.segments += 1
    return raw_paths


class CaptureWriter:
    """Owns one session's journal and rotation. Used from one thread (the writer thread)."""

    def __init__(self, root: str, venue: str, session: str, normalizer, depth: int = 0,
                 flush_interval: float = 1.0, rotate_interval: float = 60.0, rotate_rows: int = 250_000,
                 compact: bool = False):
        self.root = root
        self.venue = venue
        self.session = session
        self.normalizer = normalizer
        self.depth = depth
        self.flush_interval = flush_interval
        self.rotate_interval = rotate_interval
        self.rotate_rows = rotate_rows
        self.stats = WriterStats()
        self.seq = 0
        self.rows: list[RawRow] = []
        # bytes journaled in the current segment: the room its rotation into Parquet needs at most
        # (Parquet is smaller than the journal), reserved above the disk watermark
        self.segment_bytes = 0
        os.makedirs(os.path.join(root, JOURNAL_DIR), exist_ok=True)
        self.marker = _session_marker(root, session)
        # Held open and locked for the session's life, so recovery by another recorder sharing
        # this root never takes a live session's journal.
        self._marker_file = open(self.marker, "w")
        fcntl.flock(self._marker_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        json.dump({"venue": venue, "depth": depth}, self._marker_file)
        self._marker_file.flush()
        os.fsync(self._marker_file.fileno())
        self.journal = JournalWriter(self._journal_path(self.seq))
        self.last_sync = self.segment_started = time.monotonic()
        self.compactor = BackgroundCompactor() if compact else None

    def _journal_path(self, seq: int) -> str:
        return os.path.join(self.root, JOURNAL_DIR, f"{self.session}-{seq:06d}.journal")

    def append(self, row: RawRow) -> None:
        self.journal.append(row)
        self.rows.append(row)
        self.segment_bytes += len(row.payload) + 64
        self.stats.rows += 1
        self.normalizer.feed(row)

    def tick(self) -> None:
        """Flush on the interval, rotate on age or size. Call often."""
        now = time.monotonic()
        if now - self.last_sync >= self.flush_interval:
            self.journal.sync()
            self.last_sync = now
        if self.rows and (len(self.rows) >= self.rotate_rows or now - self.segment_started >= self.rotate_interval):
            self.rotate()

    def rotate(self) -> None:
        old_path = self.journal.path
        self.journal.close()
        rows, self.rows = self.rows, []
        derived = self.normalizer.take()
        if rows:
            instruments = {i.symbol: i for i in self.normalizer.instruments.values()}
            # ENOSPC (or any I/O error) half way raises before the journal is removed: the closed
            # journal still holds every row durably and recovery converts it later (atomic_write
            # removes its half-written .tmp)
            raw_paths = write_segment(self.root, self.venue, self.session, self.seq, rows, derived, instruments, self.depth, self.stats)
            if self.compactor is not None:
                self.compactor.submit(raw_paths)
        os.remove(old_path)
        self.seq += 1
        self.segment_bytes = 0
        self.journal = JournalWriter(self._journal_path(self.seq))
        self.segment_started = self.last_sync = time.monotonic()

    def close(self) -> None:
        if self.rows:
            self.rotate()
        if self.compactor is not None:
            self.compactor.close()
        self.journal.close()
        if os.path.exists(self.journal.path):
            os.remove(self.journal.path)
        os.remove(self.marker)
        self._marker_file.close()


# -- recovery and re-derivation ----------------------------------------------------------------

def session_raw_files(root: str, venue: str, session: str) -> list[tuple[int, str]]:
    out = []
    for path in glob.glob(os.path.join(root, "raw", f"venue={venue}", "date=*", f"{session}-*.parquet")):
        m = _FILE_NAME.match(os.path.basename(path))
        if m and m.group("session") == session:
            out.append((int(m.group("seq")), path))
    return sorted(out)


def _raw_venue_of(path: str) -> str | None:
    meta = pq.read_schema(path).metadata or {}
    venue = meta.get(S.META_VENUE)
    return venue.decode() if venue else None


def renormalize_session(root: str, venue: str, session: str, progress=None) -> WriterStats:
    """Re-derive every derived table of one session from its raw files, segment by segment;
    `progress()` is called after each segment."""
    from lab.venues.registry import feed_module

    module = feed_module(venue)
    files = session_raw_files(root, venue, session)
    depth = 0
    by_seq: dict[int, list[str]] = {}
    compacted: set[int] = set()
    for seq, path in files:
        by_seq.setdefault(seq, []).append(path)
        meta = pq.read_schema(path).metadata or {}
        depth = int(meta.get(b"lab.depth", b"0"))
        if META_COMPACTED in meta:
            compacted.add(seq)
    normalizer = module.Normalizer(depth=depth)
    stats = WriterStats()
    old = set()
    for table in ("book", "trades", "events", "instruments"):
        old.update(glob.glob(os.path.join(root, table, f"venue={venue}", "**", f"{session}-*.parquet"), recursive=True))
    for seq in sorted(by_seq):
        rows: list[RawRow] = []
        for path in by_seq[seq]:
            rows.extend(raw_rows(pq.read_table(path)))
        rows.sort(key=lambda r: r.rec_id)
        for row in rows:
            normalizer.feed(row)
        derived = normalizer.take()
        instruments = {i.symbol: i for i in normalizer.instruments.values()}
        segment_stats = WriterStats()
        # Raw files are rewritten byte-identical in content; only derived tables change.
        write_segment(root, venue, session, seq, rows, derived, instruments, depth, segment_stats, compact_raw=seq in compacted)
        stats.files += segment_stats.files
        stats.segments += 1
        old.difference_update(segment_stats.paths)
        if progress is not None:
            progress()
    for path in old:  # derived files the new derivation no longer produces
        os.remove(path)
    return stats


def recover(root: str) -> list[dict]:
    """Turn leftover journals (a crash or kill) into Parquet; idempotent. Returns one report per journal."""
    reports = []
    sessions: set[tuple[str, str]] = set()
    for path in iter_journals(os.path.join(root, JOURNAL_DIR)):
        m = _JOURNAL_NAME.match(os.path.basename(path))
        if not m:
            continue
        session, seq = m.group("session"), int(m.group("seq"))
        if _session_is_live(root, session):
            continue
        rows, clean = read_journal(path)
        venue, depth = _session_info(root, session)
        if rows and venue:
            write_segment(root, venue, session, seq, rows, Derived(), {}, depth, WriterStats())
            sessions.add((venue, session))
        reports.append({"journal": path, "session": session, "segment": seq, "rows": len(rows), "torn_tail": not clean})
        os.remove(path)
    for venue, session in sorted(sessions):
        renormalize_session(root, venue, session)
    for venue, session in sorted(sessions):
        marker = _session_marker(root, session)
        if os.path.exists(marker):
            os.remove(marker)
    return reports


def _session_marker(root: str, session: str) -> str:
    return os.path.join(root, JOURNAL_DIR, f"{session}.session.json")


def _session_is_live(root: str, session: str) -> bool:
    marker = _session_marker(root, session)
    if not os.path.exists(marker):
        return False
    with open(marker) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def _session_info(root: str, session: str) -> tuple[str | None, int]:
    """(venue, depth) of a session: from its marker beside the journals, else its raw files."""
    marker = _session_marker(root, session)
    if os.path.exists(marker):
        with open(marker) as f:
            info = json.load(f)
        return info["venue"], int(info.get("depth", 0))
    for path in glob.glob(os.path.join(root, "raw", "venue=*", "date=*", f"{session}-*.parquet")):
        meta = pq.read_schema(path).metadata or {}
        return _raw_venue_of(path), int(meta.get(b"lab.depth", b"0"))
    return None, 0


def sessions_in(root: str, venue: str | None = None) -> list[tuple[str, str]]:
    """(venue, session) of every session with raw files under the root."""
    found = set()
    for path in glob.glob(os.path.join(root, "raw", "venue=*", "date=*", "*.parquet")):
        v = os.path.basename(os.path.dirname(os.path.dirname(path)))[len("venue="):]
        m = _FILE_NAME.match(os.path.basename(path))
        if m and (venue is None or v == venue):
            found.add((v, m.group("session")))
    return sorted(found)


def normalize_root(root: str, venue: str | None = None, session: str | None = None, progress=None) -> list[str]:
    """`progress(done, total)` counts segments re-derived (for a progress bar)."""
    lines = [f"recovered journal {r['journal']}: {r['rows']} rows" for r in recover(root)]
    chosen = [(v, s) for v, s in sessions_in(root, venue) if session is None or s == session]
    total = sum(len({seq for seq, _ in session_raw_files(root, v, s)}) for v, s in chosen) if progress else 0
    done = [0]

    def step() -> None:
        done[0] += 1
        progress(done[0], total)

    for v, s in chosen:
        stats = renormalize_session(root, v, s, progress=step if progress else None)
        lines.append(f"{v} {s}: {stats.segments} segments, {stats.files} files re-derived")
    return lines


def compact_file(path: str) -> tuple[int, int] | None:
    """Rewrite one raw file at zstd COMPACT_LEVEL, atomically and in place, content unchanged
    (same rows, schema and metadata, plus `lab.compacted`); (bytes before, bytes after), or None
    when it was compacted already."""
    size = os.path.getsize(path)
    pf = pq.ParquetFile(path)
    meta = dict(pf.schema_arrow.metadata or {})
    if META_COMPACTED in meta:
        return None
    table = pf.read()
    meta[META_COMPACTED] = f"zstd-{COMPACT_LEVEL}".encode()
    atomic_write(table, path, meta, compression_level=COMPACT_LEVEL, data_page_size=COMPACT_PAGE_SIZE)
    return size, os.path.getsize(path)


def compact_root(root: str, venue: str | None = None, session: str | None = None, progress=None) -> list[dict]:
    """`lab compact`: rewrite the raw files of finished sessions at zstd level 19 (live writing
    uses level 3 to stay cheap), atomically and in place, content unchanged (same rows, schema
    and metadata, plus `lab.compacted`). Live sessions (marker flock-ed) are skipped, and so are
    files already compacted, so the command is idempotent.

    Files are not merged: a segment's raw files name the derived files of that segment
    (`<session>-<seq>.parquet`, `lab.source_raw`), which `lab normalize` and recovery rebuild
    segment by segment; large pages (8 MiB) get most of what merging would give.

    `progress(bytes done, bytes total)` after each file (for a progress bar)."""
    reports = []
    total = sum(os.path.getsize(p) for v, s in sessions_in(root, venue) if session in (None, s)
                for _, p in session_raw_files(root, v, s)) if progress else 0
    seen = 0
    for v, s in sessions_in(root, venue):
        if session is not None and s != session:
            continue
        if _session_is_live(root, s):
            reports.append({"venue": v, "session": s, "skipped": "live session"})
            continue
        before = after = done = 0
        for _seq, path in session_raw_files(root, v, s):
            size = os.path.getsize(path)
            before += size
            sizes = compact_file(path)
            after += size if sizes is None else sizes[1]
            done += sizes is not None
            seen += size
            if progress is not None:
                progress(seen, total)
        reports.append({"venue": v, "session": s, "files": done, "bytes_before": before, "bytes_after": after})
    return reports
