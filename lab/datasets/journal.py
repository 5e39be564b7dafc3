"""The write-ahead journal of raw rows: one CRC-framed append-only file per rotation segment.

File layout: an 8-byte header `LABJ\\x00\\x01\\x00\\x00`, then records
`<u32 body_len><u32 crc32(body)><body>`, with body
`<i64 rec_id><i64 local_ts><i32 conn_id><i64 conn_seq><u8 kind><u16 len channel><channel>
<u16 len symbol | 0xFFFF for null><symbol><payload (rest of body)>`.
A reader stops at the first short or corrupt record: that is the torn tail a SIGKILL or power
loss can leave, and everything before it is intact.
"""
from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from lab.rust_book import journal_encode as _journal_encode

MAGIC = b"LABJ\x00\x01\x00\x00"
_FRAME = struct.Struct("<II")
_FIXED = struct.Struct("<qqiqBH")
_U16 = struct.Struct("<H")
_NULL = 0xFFFF

KINDS = ("open", "close", "recv", "send", "rest", "rest_error", "note")
KIND_CODE = {k: i for i, k in enumerate(KINDS)}


@dataclass(slots=True)
class RawRow:
    rec_id: int
    local_ts: int
    conn_id: int
    conn_seq: int
    kind: str
    channel: str
    symbol: str | None
    payload: bytes


def encode(row: RawRow) -> bytes:
    """One framed record (in Rust: this runs once per raw row on the writer thread)."""
    return _journal_encode(
        row.rec_id, row.local_ts, row.conn_id, row.conn_seq, KIND_CODE[row.kind], row.channel, row.symbol, row.payload
    )


def encode_py(row: RawRow) -> bytes:
    """Reference implementation of `encode` (tests)."""
    channel = row.channel.encode()
    if row.symbol is None:
        sym, sym_len = b"", _NULL
    else:
        sym = row.symbol.encode()
        sym_len = len(sym)
    body = b"".join(
        (
            _FIXED.pack(row.rec_id, row.local_ts, row.conn_id, row.conn_seq, KIND_CODE[row.kind], len(channel)),
            channel,
            _U16.pack(sym_len),
            sym,
            row.payload,
        )
    )
    return _FRAME.pack(len(body), zlib.crc32(body)) + body


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

    def __init__(self, path: str):
        self.path = path
        fresh = not os.path.exists(path)
        self._f: BinaryIO = open(path, "ab", buffering=1 << 20)
        if fresh:
            self._f.write(MAGIC)
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


def read_journal(path: str) -> tuple[list[RawRow], bool]:
    """Every intact row of a journal, and whether the file ended cleanly (no torn tail)."""
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(MAGIC):
        return [], len(data) == 0
    rows: list[RawRow] = []
    pos = len(MAGIC)
    end = len(data)
    while pos < end:
        if pos + _FRAME.size > end:
            return rows, False
        length, crc = _FRAME.unpack_from(data, pos)
        body = data[pos + _FRAME.size : pos + _FRAME.size + length]
        if len(body) < length or zlib.crc32(body) != crc:
            return rows, False
        rows.append(decode_body(body))
        pos += _FRAME.size + length
    return rows, True


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
