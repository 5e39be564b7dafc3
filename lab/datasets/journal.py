"""The write-ahead journal of raw rows: one CRC-framed append-only file per rotation segment.

File layout: a header, then records `<u32 body_len><u32 crc32(body)><body>`, with body
`<i64 rec_id><i64 local_ts><i32 conn_id><i64 conn_seq><u8 kind><u16 len channel><channel>
<u16 len symbol | 0xFFFF for null><symbol><payload (rest of body)>`.
Headers: v1 `LABJ\\x00\\x01\\x00\\x00` (8 bytes, nothing else); v2 `LABJ\\x00\\x02`
`<u16 len><u32 crc32(json)><json>` where the JSON names the session's venue and depth, so a
journal whose `.session.json` marker is lost still says what it holds. Records are the same in
both versions (the Rust encoder writes them).

Reading resynchronises: a record whose length or CRC does not hold is skipped by scanning
forward one byte at a time for the next offset where a plausible (len, crc, body) validates
(LevelDB/Kafka recover the same way; here the CRC over the body is the frame marker: a false
match needs a 32-bit CRC collision on a structurally valid body). Scanning from pos+1 (never
from pos+len) means a corrupt length field cannot make the reader skip valid records. Every
skipped byte range is reported (`JournalScan.skipped`).
"""
from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from lab.core.model import RAW_KINDS, RawRow  # noqa: F401  (RawRow: the journal's record)
from lab.rust_book import journal_encode as _journal_encode

MAGIC = b"LABJ\x00\x01\x00\x00"
MAGIC_V2 = b"LABJ\x00\x02"
_HEADER_V2 = struct.Struct("<HI")
_FRAME = struct.Struct("<II")
_FIXED = struct.Struct("<qqiqBH")
_U16 = struct.Struct("<H")
_NULL = 0xFFFF
_MIN_BODY = _FIXED.size + 2
_KIND_OFFSET = 28  # the u8 kind inside the body

KINDS = RAW_KINDS
KIND_CODE = {k: i for i, k in enumerate(KINDS)}




def encode(row: RawRow) -> bytes:
    """One framed record (in Rust: this runs once per raw row on the writer thread)."""
    return _journal_encode(
        row.rec_id, row.local_ts, row.conn_id, row.conn_seq, KIND_CODE[row.kind], row.channel, row.symbol, row.payload
    )


def decode_body(body: bytes) -> RawRow:
    rec_id, local_ts, conn_id, conn_seq, kind, ch_len = _FIXED.unpack_from(body, 0)
    pos = _FIXED.size
    channel = body[pos : pos + ch_len].decode()
    pos += ch_len
    (sym_len,) = _U16.unpack_from(body, pos)
    pos += 2
    if sym_len == _NULL:
        symbol = None
    else:
        symbol = body[pos : pos + sym_len].decode()
        pos += sym_len
    return RawRow(rec_id, local_ts, conn_id, conn_seq, KINDS[kind], channel, symbol, bytes(body[pos:]))


class JournalWriter:
    """Appends rows; `sync()` makes everything appended so far durable (flush + fsync)."""

    def __init__(self, path: str, meta: dict | None = None):
        """`meta` (JSON-able: venue, depth, session) goes into a v2 header; without it a v1 header."""
        self.path = path
        fresh = not os.path.exists(path)
        self._f: BinaryIO = open(path, "ab", buffering=1 << 20)
        if fresh:
            self._f.write(MAGIC if meta is None else encode_header(meta))
            self.sync()
            _fsync_dir(os.path.dirname(path))
        self.rows = 0
        self._dirty = False

    def append(self, row: RawRow) -> None:
        self._f.write(encode(row))
        self.rows += 1
        self._dirty = True

    def sync(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())
        self._dirty = False

    def close(self) -> None:
        if not self._f.closed:
            self.sync()
            self._f.close()


def encode_header(meta: dict) -> bytes:
    text = json.dumps(meta, sort_keys=True).encode()
    return MAGIC_V2 + _HEADER_V2.pack(len(text), zlib.crc32(text)) + text


@dataclass(slots=True)
class JournalScan:
    """What a journal holds: every intact row, the header (v2: venue, depth), and every byte
    range that could not be read. Unpacks as `(rows, clean)` for older callers."""
    rows: list[RawRow]
    header: dict
    skipped: list[dict]
    size: int
    version: int  # 1, 2, or 0 when the header itself was unreadable

    @property
    def clean(self) -> bool:
        return not self.skipped

    @property
    def skipped_bytes(self) -> int:
        return sum(s["bytes"] for s in self.skipped)

    @property
    def est_lost_records(self) -> int:
        return sum(s["est_records"] for s in self.skipped)

    def __iter__(self):
        return iter((self.rows, self.clean))


def _record_at(data: memoryview, pos: int, end: int) -> tuple[RawRow, int] | None:
    if pos + _FRAME.size + _MIN_BODY > end:
        return None
    length, crc = _FRAME.unpack_from(data, pos)
    start = pos + _FRAME.size
    if length < _MIN_BODY or start + length > end or data[start + _KIND_OFFSET] >= len(KINDS):
        return None
    body = data[start : start + length]
    if zlib.crc32(body) != crc:
        return None
    try:
        row = decode_body(bytes(body))
    except Exception:  # CRC holds but the body does not parse: not a record of ours
        return None
    return row, start + length


def _header(data: bytes) -> tuple[int, int, dict]:
    """(version, offset of the first record, header dict); version 0 if the header is damaged."""
    if data.startswith(MAGIC):
        return 1, len(MAGIC), {}
    if data.startswith(MAGIC_V2) and len(data) >= len(MAGIC_V2) + _HEADER_V2.size:
        length, crc = _HEADER_V2.unpack_from(data, len(MAGIC_V2))
        at = len(MAGIC_V2) + _HEADER_V2.size
        text = data[at : at + length]
        if len(text) == length and zlib.crc32(text) == crc:
            try:
                meta = json.loads(text)
            except ValueError:
                meta = None
            if isinstance(meta, dict):
                return 2, at + length, meta
    return 0, 0, {}


def read_journal(path: str) -> JournalScan:
    """Every intact row of a journal and an exact account of the bytes that were skipped.

    Each `skipped` entry: `start`/`end` (byte offsets, end exclusive), `bytes`, `after_rec_id`
    / `before_rec_id` (the intact neighbours, None at the ends), `est_records` (from the rec_id
    gap when both neighbours exist, else from the bytes over the mean intact record size, at
    least 1 when any record bytes were lost), `tail` (ran to the end of the file: a torn write)
    and `header` (the range includes a damaged file header)."""
    with open(path, "rb") as f:
        data = f.read()
    end = len(data)
    version, pos, header = _header(data)
    rows: list[RawRow] = []
    gaps: list[tuple[int, int, int, bool]] = []  # (start, end, index of the next intact row, header)
    first = pos
    view = memoryview(data)
    if version == 0 and end:
        # Damaged (or torn) header: the records behind it are still findable.
        q = 1
        while q < end and _record_at(view, q, end) is None:
            q += 1
        gaps.append((0, q, 0, True))
        pos = q
    while pos < end:
        found = _record_at(view, pos, end)
        if found is not None:
            rows.append(found[0])
            pos = found[1]
            continue
        start = pos
        pos += 1
        while pos < end and _record_at(view, pos, end) is None:
            pos += 1
        gaps.append((start, pos, len(rows), False))
    record_bytes = end - first - sum(b - a for a, b, _, h in gaps if not h)
    mean = max(1, record_bytes // len(rows)) if rows else 0
    skipped = []
    for a, b, idx, is_header in gaps:  # a gap's intact neighbours are rows[idx - 1] and rows[idx]
        after = rows[idx - 1].rec_id if idx > 0 else None
        before = rows[idx].rec_id if idx < len(rows) else None
        nbytes = b - a
        body_bytes = nbytes - (8 if is_header else 0)  # a header is at least 8 bytes, none of them rows
        if after is not None and before is not None and before > after:
            est = before - after - 1
        elif body_bytes <= 0:
            est = 0
        else:
            est = max(1, round(body_bytes / mean)) if mean else 1
        skipped.append({"start": a, "end": b, "bytes": nbytes, "after_rec_id": after, "before_rec_id": before,
                        "est_records": est, "tail": b == end and before is None, "header": is_header})
    return JournalScan(rows, header, skipped, end, version)


def iter_journals(journal_dir: str) -> Iterator[str]:
    if not os.path.isdir(journal_dir):
        return
    for name in sorted(os.listdir(journal_dir)):
        if name.endswith(".journal"):
            yield os.path.join(journal_dir, name)


def _fsync_dir(path: str) -> None:
    fd = os.open(path or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


fsync_dir = _fsync_dir
