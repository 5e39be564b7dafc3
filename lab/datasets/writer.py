"""The capture writer: journal every raw row, derive, rotate segments into Parquet; recovery.

Segment `k` of session `s` is journaled to `ROOT/.journal/s-k.journal`. Rotation closes the
journal, writes every table's files for the segment (`s-k.parquet` in each partition, atomically),
and only then deletes the journal. A journal left behind by a crash is turned into the same files
by `recover()`, which re-derives the session from its raw files with the same normalizer.
"""
from __future__ import annotations

import errno
import fcntl
import glob
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from . import schema as S
from lab.core.events import DAMAGE_KIND, TORN_KIND
from lab.datasets.derived import Derived
from lab.datasets.venue_rules import rules

from .compactor import BackgroundCompactor, compact_file
from .journal import JournalWriter, RawRow, fsync_dir, iter_journals, read_journal
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
_TMP_NAME = re.compile(r"^\.(?P<session>.+)-(?P<seq>\d{6})(?:-journal_damage)?\.parquet\.tmp$")
# DAMAGE_KIND: bytes lost inside a journal (an intact record after them, or the header);
# TORN_KIND: only a partial last record, what a kill before the next fsync leaves


@dataclass
class WriterStats:
    rows: int = 0
    files: int = 0
    bytes: int = 0
    segments: int = 0
    paths: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _meta(table: str, session: str, venue: str, **extra) -> dict[bytes, bytes]:
    meta = {S.META_TABLE: table.encode(), S.META_SESSION: session.encode(), S.META_VENUE: venue.encode()}
    for key, value in extra.items():
        if value is not None:
            meta[f"lab.{key}".encode()] = str(value).encode()
    return meta


def write_segment(root: str, venue: str, session: str, seq: int, rows: list[RawRow], derived, instruments: dict, depth: int, stats: WriterStats,
                  compact_raw: bool = False, raw_paths: list[str] | None = None) -> list[str]:
    """All files of one segment. `instruments` maps canonical symbol -> Instrument. `compact_raw`:
    write the raw files as `lab compact` does. `raw_paths`: the segment's raw files exist
    already (a re-derivation): they are not rewritten, only named as the derived files' source."""
    name = file_name(session, seq)
    raw_names: list[str] = []
    new_raw = raw_paths is None
    if new_raw:
        raw_paths = []

    def put(table: pa.Table, path: str, meta: dict, **kw) -> None:
        atomic_write(table, path, meta, **kw)
        stats.files += 1
        stats.bytes += os.path.getsize(path)
        stats.paths.append(path)

    rows = sorted(rows, key=lambda r: r.rec_id)
    if not new_raw:
        raw_names = [os.path.relpath(p, root) for p in sorted(raw_paths)]
    for date, a, b in split_by_day([r.local_ts for r in rows]) if new_raw else ():
        path = os.path.join(partition_dir(root, "raw", venue, None, date), name)
        chunk = rows[a:b]
        meta = _meta("raw", session, venue, depth=depth, rec_id_range=f"{chunk[0].rec_id}-{chunk[-1].rec_id}")
        if compact_raw:
            meta[META_COMPACTED] = f"zstd-{COMPACT_LEVEL}".encode()
            put(raw_table(chunk, session), path, meta, compression_level=COMPACT_LEVEL, data_page_size=COMPACT_PAGE_SIZE)
        else:
            put(raw_table(chunk, session), path, meta)
        raw_names.append(os.path.relpath(path, root))
        raw_paths.append(path)  # type: ignore[union-attr]
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
        self.derive_failures = 0
        os.makedirs(os.path.join(root, JOURNAL_DIR), exist_ok=True)
        self.marker = _session_marker(root, session)
        # Held open and locked for the session's life, so recovery by another recorder sharing
        # this root never takes a live session's journal.
        self._marker_file = open(self.marker, "w")
        fcntl.flock(self._marker_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        json.dump({"venue": venue, "depth": depth}, self._marker_file)
        self._marker_file.flush()
        os.fsync(self._marker_file.fileno())
        # Room kept back for the last words on a full disk (the database trick): released on
        # ENOSPC so the `disk_full` note and the journal's buffered tail still reach the disk.
        self.reserve_path = _reserve_path(root, session)
        with open(self.reserve_path, "wb") as f:
            f.write(bytes(RESERVE_BYTES))
            os.fsync(f.fileno())
        self.journal = JournalWriter(self._journal_path(self.seq), self._journal_meta())
        self.last_sync = self.segment_started = time.monotonic()
        self.compactor = BackgroundCompactor() if compact else None

    def release_reserve(self) -> None:
        try:
            os.remove(self.reserve_path)
        except FileNotFoundError:
            pass

    def _journal_meta(self) -> dict:
        # In every journal's header, so recovery needs no marker to know what a journal holds.
        return {"venue": self.venue, "depth": self.depth, "session": self.session}

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
            raw_paths = write_segment(self.root, self.venue, self.session, self.seq, rows, Derived(), {}, self.depth, self.stats)
            self._write_derived(rows, derived, instruments, raw_paths)
            if self.compactor is not None:
                self.compactor.submit(raw_paths)
        os.remove(old_path)
        self.seq += 1
        self.segment_bytes = 0
        self.journal = JournalWriter(self._journal_path(self.seq), self._journal_meta())
        self.segment_started = self.last_sync = time.monotonic()

    def _write_derived(self, rows: list[RawRow], derived, instruments: dict, raw_paths: list[str]) -> None:
        """The segment's derived files, after its raw is durable. A failure other than a full
        disk (a normalizer's output that cannot be written, say) loses no data: raw holds it all
        and `lab normalize` re-derives the segment; it becomes a `derive_failed` event (which
        `lab verify` reports) instead of killing the writer thread."""
        try:
            write_segment(self.root, self.venue, self.session, self.seq, rows, derived, instruments, self.depth,
                          self.stats, raw_paths=raw_paths)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise
            self._derive_failed(rows, raw_paths, exc)
        except Exception as exc:  # noqa: BLE001 - whatever the cause, raw is kept and the loss named
            self._derive_failed(rows, raw_paths, exc)

    def _derive_failed(self, rows: list[RawRow], raw_paths: list[str], exc: BaseException) -> None:
        self.derive_failures += 1
        last = max(rows, key=lambda r: r.rec_id)
        detail = (f"segment {self.seq}: derived tables not written ({type(exc).__name__}: {str(exc)[:300]}); "
                  "raw is complete: run `lab normalize` to re-derive")
        print(f"lab: warning: {detail}", file=sys.stderr)
        events = Derived()
        events.events.append((last.local_ts, last.rec_id, "derive_failed", None, detail))
        try:
            write_segment(self.root, self.venue, self.session, self.seq, rows, events, {}, self.depth,
                          self.stats, raw_paths=raw_paths)
        except Exception:  # noqa: BLE001 - the warning above is then the only trace
            pass

    def close(self) -> None:
        if self.rows:
            self.rotate()
        if self.compactor is not None:
            self.compactor.close()
        self.journal.close()
        if os.path.exists(self.journal.path):
            os.remove(self.journal.path)
        self.release_reserve()
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


def _derived_seqs(root: str, venue: str, session: str) -> dict[int, list[str]]:
    """seq -> derived files (standard names only) of one session."""
    out: dict[int, list[str]] = {}
    for table in ("book", "trades", "events", "instruments"):
        for path in glob.glob(os.path.join(root, table, f"venue={venue}", "**", f"{session}-*.parquet"), recursive=True):
            m = _FILE_NAME.match(os.path.basename(path))
            if m and m.group("session") == session:  # not `-journal_damage` files: recovery's, not derived
                out.setdefault(int(m.group("seq")), []).append(path)
    return out


def renormalize_session(root: str, venue: str, session: str, progress=None) -> WriterStats:
    """Re-derive every derived table of one session from its raw files, segment by segment;
    `progress()` is called after each segment.

    Additive and atomic: raw is only read, never rewritten; each derived file is replaced
    atomically by the new derivation of its segment. The sync state runs across segments, so
    from the first segment that cannot be re-derived (raw file missing, raw unreadable, or the
    normalizer failing on it) on, nothing is replaced or removed: the old derived files of that
    segment and every later one stay, and `stats.problems` says which and why."""
    venue_rules = rules(venue)
    stats = WriterStats()
    files = session_raw_files(root, venue, session)
    old_by_seq = _derived_seqs(root, venue, session)
    depth = 0
    by_seq: dict[int, list[str]] = {}
    for seq, path in files:
        by_seq.setdefault(seq, []).append(path)
    stop_at: int | None = None
    why = ""
    for seq, paths in sorted(by_seq.items()):
        for path in paths:
            try:
                meta = pq.read_schema(path).metadata or {}
                depth = int(meta.get(b"lab.depth", b"0"))
                break
            except Exception:
                continue
        if depth:
            break
    # Derived files without their raw, or a hole in the segment numbers where the rec_ids of
    # the raw on both sides do not join up (rec_ids count up across segments), is raw gone.
    missing = [q for q in old_by_seq if q not in by_seq]
    seqs = sorted(by_seq)
    for a, b in zip(seqs, seqs[1:]):
        if b > a + 1 and not _rec_ids_join(by_seq[a], by_seq[b]):
            missing.append(a + 1)
    if seqs and seqs[0] > 0 and _first_rec_id(by_seq[seqs[0]]) not in (0, None):
        missing.append(0)
    if missing:
        stop_at = min(missing)
        why = f"raw segment {stop_at} is missing"
    normalizer = venue_rules.normalizer(depth=depth)
    for seq in sorted(by_seq):
        if stop_at is not None and seq >= stop_at:
            break
        rows: list[RawRow] = []
        try:
            for path in by_seq[seq]:
                rows.extend(raw_rows(pq.read_table(path)))
        except Exception as exc:
            stop_at, why = seq, f"raw segment {seq} unreadable ({_first_line(exc)})"
            break
        rows.sort(key=lambda r: r.rec_id)
        try:
            for row in rows:
                normalizer.feed(row)
            derived = normalizer.take()
            instruments = {i.symbol: i for i in normalizer.instruments.values()}
            segment_stats = WriterStats()
            write_segment(root, venue, session, seq, rows, derived, instruments, depth, segment_stats,
                          raw_paths=by_seq[seq])
        except Exception as exc:  # a normalizer or writer failure: what was there stays
            stop_at, why = seq, f"segment {seq} could not be re-derived ({type(exc).__name__}: {_first_line(exc)})"
            break
        stats.files += segment_stats.files
        stats.segments += 1
        for path in set(old_by_seq.get(seq, [])) - set(segment_stats.paths):
            os.remove(path)  # a derived file the new derivation of this segment no longer produces
        if progress is not None:
            progress()
    if stop_at is not None:
        kept = sum(len(v) for s, v in old_by_seq.items() if s >= stop_at)
        stats.problems.append(f"{venue} {session}: {why}; segments {stop_at}.. not re-derived, "
                              f"their {kept} old derived file(s) kept")
    return stats


def _rec_id_range(paths: list[str]) -> tuple[int, int] | None:
    lo = hi = None
    for path in paths:
        try:
            text = (pq.read_schema(path).metadata or {}).get(b"lab.rec_id_range", b"").decode()
            a, b = (int(x) for x in text.split("-"))
        except Exception:
            return None
        lo = a if lo is None else min(lo, a)
        hi = b if hi is None else max(hi, b)
    return None if lo is None else (lo, hi)


def _first_rec_id(paths: list[str]) -> int | None:
    r = _rec_id_range(paths)
    return None if r is None else r[0]


def _rec_ids_join(before: list[str], after: list[str]) -> bool:
    a, b = _rec_id_range(before), _rec_id_range(after)
    return a is not None and b is not None and b[0] == a[1] + 1


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _damage_path(root: str, venue: str, session: str, seq: int, local_ts: int) -> str:
    date = split_by_day([local_ts])[0][0]
    return os.path.join(partition_dir(root, "events", venue, None, date), f"{session}-{seq:06d}-{DAMAGE_KIND}.parquet")


def _write_damage_event(root: str, venue: str, session: str, seq: int, journal: str, scan, local_ts: int, source: str) -> str:
    """One `events` row (kind `journal_damage`) for what a journal lost, in a file of its own: it is
    not derived from raw (raw never held those bytes), so `lab normalize` keeps it."""
    kind = TORN_KIND if all(g["tail"] and not g["header"] for g in scan.skipped) else DAMAGE_KIND
    detail = json.dumps({"journal": os.path.basename(journal), "segment": seq, "bytes": scan.skipped_bytes,
                         "est_records": scan.est_lost_records, "file_bytes": scan.size, "ranges": scan.skipped})
    first = scan.skipped[0]
    rec_id = first["after_rec_id"] if first["after_rec_id"] is not None else (first["before_rec_id"] if first["before_rec_id"] is not None else -1)
    table = pa.table(
        [pa.array([local_ts], pa.int64()).cast(S.TS), pa.array([rec_id], pa.int64()), pa.array([kind]),
         pa.array([None], pa.string()), pa.array([detail])],
        schema=S.EVENTS,
    )
    path = _damage_path(root, venue, session, seq, local_ts)
    atomic_write(table, path, _meta("events", session, venue, source_raw=source or None, recovery=DAMAGE_KIND))
    return path


def _segment_raw(root: str, venue: str, session: str, seq: int) -> tuple[list[str], list[RawRow], bool]:
    """(paths, rows, compacted) of a segment's raw files already in the root (pq errors propagate)."""
    paths = [p for s, p in session_raw_files(root, venue, session) if s == seq]
    rows: list[RawRow] = []
    compacted = False
    for path in paths:
        pf = pq.ParquetFile(path)
        compacted |= META_COMPACTED in (pf.schema_arrow.metadata or {})
        rows.extend(raw_rows(pf.read()))
    return paths, rows, compacted


def _recover_journal(root: str, path: str, session: str, seq: int) -> tuple[dict, str | None]:
    """Make one dead session's journal durable in Parquet; delete it only once a re-read proves
    every row it holds is in the segment's raw files. (report, venue or None)."""
    scan = read_journal(path)
    report = {"journal": path, "session": session, "segment": seq, "rows": len(scan.rows),
              "torn_tail": any(g["tail"] for g in scan.skipped), "skipped_bytes": scan.skipped_bytes,
              "est_lost_records": scan.est_lost_records, "skipped": scan.skipped, "kept": None}
    venue, depth = _session_info(root, session, scan.header)
    if venue is None:
        if not scan.rows and scan.clean:
            os.remove(path)  # an empty journal (header only): holds nothing
            return report, None
        report["kept"] = "venue unknown (no session marker, no journal header, no raw files): journal kept"
        return report, None
    try:
        old_paths, old_rows, compacted = _segment_raw(root, venue, session, seq)
    except Exception as exc:
        report["kept"] = f"raw file of segment {seq} unreadable ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}): journal kept"
        return report, venue
    # Idempotent by rec_id: a crash after rotation wrote raw but before it removed the journal
    # leaves both; rows already in raw stay, journal rows not yet there are added.
    merged = {r.rec_id: r for r in old_rows}
    for r in scan.rows:
        merged.setdefault(r.rec_id, r)
    raw_paths: list[str] = []
    if merged:
        raw_paths = write_segment(root, venue, session, seq, list(merged.values()), Derived(), {}, depth, WriterStats(),
                                  compact_raw=compacted)
    if scan.skipped:
        local_ts = scan.rows[-1].local_ts if scan.rows else int(os.path.getmtime(path) * 1e9)
        source = ",".join(os.path.relpath(p, root) for p in raw_paths)
        report["event"] = _write_damage_event(root, venue, session, seq, path, scan, local_ts, source)
    _, back, _ = _segment_raw(root, venue, session, seq)
    have = {r.rec_id for r in back}
    missing = [r.rec_id for r in scan.rows if r.rec_id not in have]
    if missing:
        report["kept"] = f"{len(missing)} journal rows not found in raw after writing: journal kept"
        return report, venue
    os.remove(path)
    fsync_dir(os.path.dirname(path))
    return report, venue


def clean_stray_tmp(root: str) -> list[str]:
    """Remove `.<session>-<seq>.parquet.tmp` files (an atomic write cut short by a kill) of dead
    sessions. A live session's tmp is its writer's file in progress: never touched."""
    removed = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != JOURNAL_DIR]
        for name in filenames:
            m = _TMP_NAME.match(name)
            if m and not _session_is_live(root, m.group("session")):
                p = os.path.join(dirpath, name)
                try:
                    os.remove(p)
                except FileNotFoundError:
                    continue
                removed.append(p)
    return removed


def recover(root: str) -> list[dict]:
    """Turn leftover journals (a crash or kill) into Parquet; idempotent. Returns one report per
    journal (plus one for removed stray tmp files, one per session whose re-derivation failed)."""
    reports = []
    sessions: set[tuple[str, str]] = set()
    jdir = os.path.join(root, JOURNAL_DIR)
    kept_sessions: set[str] = set()
    for path in iter_journals(jdir):
        m = _JOURNAL_NAME.match(os.path.basename(path))
        if not m:
            continue
        session, seq = m.group("session"), int(m.group("seq"))
        if _session_is_live(root, session):
            continue
        report, venue = _recover_journal(root, path, session, seq)
        reports.append(report)
        if report["kept"]:
            kept_sessions.add(session)
        if venue and (report["rows"] or report["skipped"]):
            sessions.add((venue, session))
    for venue, session in sorted(sessions):
        try:
            for problem in renormalize_session(root, venue, session).problems:
                reports.append({"session": session, "venue": venue, "renormalize_error": problem,
                                "rows": 0, "journal": None, "skipped_bytes": 0, "kept": None})
        except Exception as exc:  # raw is durable; derived files of the session stay as they were
            reports.append({"session": session, "venue": venue, "renormalize_error": f"{type(exc).__name__}: {exc}",
                            "rows": 0, "journal": None, "skipped_bytes": 0, "kept": None})
    if os.path.isdir(jdir):
        for name in os.listdir(jdir):
            if name.endswith(RESERVE_SUFFIX) and not _session_is_live(root, name[: -len(RESERVE_SUFFIX)]):
                os.remove(os.path.join(jdir, name))  # a killed session's reserve
            elif name.endswith(".session.json"):
                session = name[: -len(".session.json")]
                # A dead session's marker with no journal left (recovered, or a stub) goes.
                if session not in kept_sessions and not _session_is_live(root, session) and not any(
                        _JOURNAL_NAME.match(j) and j.startswith(session + "-") for j in os.listdir(jdir)):
                    os.remove(os.path.join(jdir, name))
    removed = clean_stray_tmp(root)
    if removed:
        reports.append({"journal": None, "rows": 0, "skipped_bytes": 0, "kept": None, "removed_tmp": removed})
    return reports


RESERVE_SUFFIX = ".reserve"
# the journal's write buffer (1 MiB) plus room for the stop's note rows
RESERVE_BYTES = (1 << 20) + (256 << 10)


def _reserve_path(root: str, session: str) -> str:
    return os.path.join(root, JOURNAL_DIR, f"{session}{RESERVE_SUFFIX}")


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


def journal_session_is_live(root: str, journal: str) -> bool:
    m = _JOURNAL_NAME.match(os.path.basename(journal))
    return bool(m) and _session_is_live(root, m.group("session"))


def _session_info(root: str, session: str, header: dict | None = None) -> tuple[str | None, int]:
    """(venue, depth) of a session: from its marker beside the journals, else the journal's own
    header, else its raw files. A damaged marker is ignored, never fatal."""
    marker = _session_marker(root, session)
    if os.path.exists(marker):
        try:
            with open(marker) as f:
                info = json.load(f)
            return str(info["venue"]), int(info.get("depth", 0))
        except (ValueError, KeyError, TypeError, OSError):
            pass
    if header and isinstance(header.get("venue"), str):
        try:
            return header["venue"], int(header.get("depth", 0))
        except (TypeError, ValueError):
            return header["venue"], 0
    for path in glob.glob(os.path.join(root, "raw", "venue=*", "date=*", f"{session}-*.parquet")):
        try:
            meta = pq.read_schema(path).metadata or {}
            venue = _raw_venue_of(path)
        except Exception:
            continue
        if venue:
            return venue, int(meta.get(b"lab.depth", b"0"))
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


def recovery_line(r: dict) -> str:
    if r.get("removed_tmp"):
        return f"removed {len(r['removed_tmp'])} stray .tmp file(s) of dead sessions"
    if r.get("renormalize_error"):
        return f"PROBLEM: {r['venue']} {r['session']}: re-derivation incomplete: {r['renormalize_error']}"
    line = f"recovered journal {r['journal']}: {r['rows']} rows"
    if r.get("skipped_bytes"):
        line += f", DAMAGED: {r['skipped_bytes']} bytes unrecoverable (~{r['est_lost_records']} records), reported as an event"
    if r.get("kept"):
        line += f"; {r['kept']}"
    return line


def normalize_root(root: str, venue: str | None = None, session: str | None = None, progress=None) -> list[str]:
    """`progress(done, total)` counts segments re-derived (for a progress bar). Lines starting
    `PROBLEM:` say what could not be re-derived (its old derived files were kept)."""
    lines = [recovery_line(r) for r in recover(root)]
    chosen = [(v, s) for v, s in sessions_in(root, venue) if session is None or s == session]
    total = sum(len({seq for seq, _ in session_raw_files(root, v, s)}) for v, s in chosen) if progress else 0
    done = [0]

    def step() -> None:
        done[0] += 1
        progress(done[0], total)

    for v, s in chosen:
        try:
            stats = renormalize_session(root, v, s, progress=step if progress else None)
        except Exception as exc:
            lines.append(f"PROBLEM: {v} {s}: not re-derived ({type(exc).__name__}: {_first_line(exc)}); derived files kept")
            continue
        lines.append(f"{v} {s}: {stats.segments} segments, {stats.files} files re-derived")
        lines.extend(f"PROBLEM: {p}" for p in stats.problems)
    return lines


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
