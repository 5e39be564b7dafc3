"""A lean view of a Parquet file's footer, so pyarrow decodes the book columns without conversions.

pyarrow (no option in its Python API) turns a DECIMAL(18, p) column stored as INT64 into 16-byte
decimal128 values, and decodes the definition levels of every nullable column into a validity
bitmap; on the book columns that is a third of `load_columns`' time, for values the Rust engine
takes as int64 mantissas and that are never null. `lean_metadata` re-encodes the footer (Thrift
compact protocol) with, for the columns asked:

- the DECIMAL annotation dropped when the physical type is INT64 (schema version 1): pyarrow
  returns the int64 mantissas as they are stored, or FIXED_LEN_BYTE_ARRAY(16) (schema version 2's
  DECIMAL(38, 18)): pyarrow returns the big-endian two's complement bytes as they are stored, as
  fixed_size_binary(16), without its per-value conversion to decimal128 (measured: two thirds of
  the time of reading a price or amount column); the engine byte-swaps them while it divides
  them into ticks. The caller gets the precision and scale to check them;
- the column declared REQUIRED when it provably holds no null: every data page of the column is
  a DATA_PAGE_V2 whose header says `num_nulls = 0` (read from the file). A v2 page keeps its
  levels in their own byte range, which a reader of a REQUIRED column skips; a v1 page
  interleaves them with the values, so a column with any v1 page is left as it is. Its size
  statistics (level histograms) are dropped with it.

The pages are read as they are: only the reader's idea of their logical type and repetition
changes, so the values are bit-identical. Anything unexpected (encrypted footer, nested schema, a
Thrift type this walker does not know, a truncated file) gives None and the caller reads the file
the ordinary way.
"""
from __future__ import annotations

import os
import struct

import pyarrow as pa
import pyarrow.parquet as pq

# Thrift compact protocol wire types
_TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(1, 13)

# parquet.thrift field ids and enum values
_FMD_SCHEMA, _FMD_ROW_GROUPS = 2, 4
_SE_TYPE, _SE_REPETITION, _SE_NAME, _SE_CHILDREN, _SE_CONVERTED, _SE_SCALE, _SE_PRECISION, _SE_LOGICAL = 1, 3, 4, 5, 6, 7, 8, 10
_RG_COLUMNS = 1
_CC_FILE_PATH, _CC_META = 1, 3
_CMD_COMPRESSED_SIZE, _CMD_DATA_PAGE_OFFSET, _CMD_DICTIONARY_PAGE_OFFSET, _CMD_SIZE_STATS = 7, 9, 11, 16
_PH_TYPE, _PH_COMPRESSED_SIZE, _PH_DATA_V2 = 1, 3, 8
_V2_NUM_NULLS = 2
_INT64, _FLBA, _REQUIRED, _OPTIONAL, _CONVERTED_DECIMAL, _LOGICAL_DECIMAL = 2, 7, 0, 1, 5, 5
_SE_TYPE_LENGTH = 2
_DATA_PAGE, _DICTIONARY_PAGE, _DATA_PAGE_V2 = 0, 2, 3


class _Walk:
    """Reads Thrift compact values at a position of a buffer (or skips them)."""

    __slots__ = ("b", "p")

    def __init__(self, b, p: int = 0):
        self.b, self.p = b, p

    def varint(self) -> int:
        out, self.p = _varint_at(self.b, self.p)
        return out

    def int(self) -> int:
        v = self.varint()
        return (v >> 1) ^ -(v & 1)

    def list_header(self) -> tuple[int, int]:
        h = self.b[self.p]
        self.p += 1
        return (self.varint() if h >> 4 == 15 else h >> 4), h & 15

    def skip(self, t: int) -> None:
        self.p = _skip(self.b, self.p, t)
        if self.p > len(self.b):
            raise ValueError("truncated thrift")

    def fields(self):
        """Yields (field id, type) of the struct at the position; the caller reads or skips each
        value before asking for the next field."""
        fid = 0
        b = self.b
        while True:
            h = b[self.p]
            self.p += 1
            if h == 0:
                return
            fid = fid + (h >> 4) if h >> 4 else self.int()
            yield fid, h & 15

    def spans(self) -> list[tuple[int, int, int, int]]:
        """(field id, type, start, end) of every field value of the struct at the position."""
        b, p, fid, out = self.b, self.p, 0, []
        while True:
            h = b[p]
            p += 1
            if h == 0:
                break
            if h >> 4:
                fid += h >> 4
            else:
                self.p = p
                fid = self.int()
                p = self.p
            end = _skip(b, p, h & 15)
            out.append((fid, h & 15, p, end))
            p = end
        if p > len(b):
            raise ValueError("truncated thrift")
        self.p = p
        return out


def _varint_at(b, p: int) -> tuple[int, int]:
    """The unsigned varint at `p` and the position after it."""
    out = shift = 0
    while True:
        c = b[p]
        p += 1
        out |= (c & 0x7F) << shift
        if c < 0x80:
            return out, p
        shift += 7


def _skip(b, p: int, t: int) -> int:
    """The position after the value of type `t` at `p` (positions past the end are the caller's
    to check; reading past it raises IndexError)."""
    if t == _I32 or t == _I64 or t == _I16:
        while b[p] & 0x80:
            p += 1
        return p + 1
    if t == _STRUCT:
        while True:
            h = b[p]
            p += 1
            if h == 0:
                return p
            if not h >> 4:  # long-form field id
                while b[p] & 0x80:
                    p += 1
                p += 1
            p = _skip(b, p, h & 15)
    if t == _BINARY:
        n, p = _varint_at(b, p)
        return p + n
    if t == _LIST or t == _SET:
        h = b[p]
        p += 1
        n, et = h >> 4, h & 15
        if n == 15:
            n, p = _varint_at(b, p)
        if et == _TRUE or et == _FALSE or et == _BYTE:
            return p + n
        for _ in range(n):
            p = _skip(b, p, et)
        return p
    if t == _TRUE or t == _FALSE:
        return p
    if t == _BYTE:
        return p + 1
    if t == _DOUBLE:
        return p + 8
    if t == _MAP:
        n, p = _varint_at(b, p)
        if n:
            kv = b[p]
            p += 1
            for _ in range(n):
                p = _skip(b, p, kv >> 4)
                p = _skip(b, p, kv & 15)
        return p
    raise ValueError(f"unknown thrift compact type {t}")


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _encode(buf, spans, replace: dict) -> bytes:
    """The struct of `spans` (values taken from `buf`), with `replace`: field id -> new value bytes,
    or None to drop the field."""
    out = bytearray()
    last = 0
    for fid, t, start, end in spans:
        value = replace.get(fid, buf[start:end])
        if value is None:
            continue
        delta = fid - last
        if 0 < delta <= 15:
            out.append((delta << 4) | t)
        else:
            out.append(t)
            out += _varint((fid << 1) ^ (fid >> 63))
        out += value
        last = fid
    out.append(0)
    return bytes(out)


def _value(buf, spans, fid: int):
    """The integer value of field `fid` among `spans`, or None."""
    for f, t, start, _end in spans:
        if f == fid and t in (_BYTE, _I16, _I32, _I64):
            return buf[start] if t == _BYTE else _Walk(buf, start).int()
    return None


def _decimal_of(buf, spans) -> tuple[int, int] | None:
    """(precision, scale) of a DECIMAL schema element, else None."""
    if _value(buf, spans, _SE_CONVERTED) == _CONVERTED_DECIMAL and _value(buf, spans, _SE_PRECISION) is not None:
        return _value(buf, spans, _SE_PRECISION), _value(buf, spans, _SE_SCALE) or 0
    for fid, t, start, _end in spans:
        if fid == _SE_LOGICAL and t == _STRUCT:
            for lfid, lt, lstart, _lend in _Walk(buf, start).spans():
                if lfid == _LOGICAL_DECIMAL and lt == _STRUCT:
                    dec = _Walk(buf, lstart).spans()
                    return _value(buf, dec, 2) or 0, _value(buf, dec, 1) or 0
    return None


def _page_header(f, pos: int, size: int) -> tuple[int | None, int | None, int | None, int]:
    """(page type, compressed size, v2 num_nulls, end position) of the page header at `pos` of
    the open file."""
    for want in (512, 1 << 16, 1 << 20):
        f.seek(pos)
        data = f.read(min(want, size - pos))
        try:
            page_type, compressed, nulls, length = _read_page_header(data)
            return page_type, compressed, nulls, pos + length
        except IndexError:
            if pos + len(data) >= size:
                break
    raise ValueError("page header past the end of the file")


def _read_page_header(data) -> tuple:
    w = _Walk(data)
    page_type = compressed = nulls = None
    for fid, t in w.fields():
        if fid == _PH_TYPE and t == _I32:
            page_type = w.int()
        elif fid == _PH_COMPRESSED_SIZE and t == _I32:
            compressed = w.int()
        elif fid == _PH_DATA_V2 and t == _STRUCT:
            for vfid, vt in w.fields():
                if vfid == _V2_NUM_NULLS and vt == _I32:
                    nulls = w.int()
                else:
                    w.skip(vt)
        else:
            w.skip(t)
    if w.p > len(data):
        raise IndexError("truncated page header")
    return page_type, compressed, nulls, w.p


def _no_nulls_all_v2(buf, f, size: int, chunk, meta) -> bool:
    """Every data page of a column chunk (`chunk`, `meta`: its fields in the footer `buf`) is a
    DATA_PAGE_V2 without nulls, read from the page headers in the open file `f` of `size` bytes."""
    if any(fid == _CC_FILE_PATH for fid, *_ in chunk):
        return False  # column chunk in another file
    length = _value(buf, meta, _CMD_COMPRESSED_SIZE)
    first = [v for v in (_value(buf, meta, _CMD_DICTIONARY_PAGE_OFFSET), _value(buf, meta, _CMD_DATA_PAGE_OFFSET)) if v]
    if length is None or not first:
        return False
    pos, pages = min(first), 0
    end = pos + length
    if end > size:
        return False
    while pos < end:
        page_type, compressed, nulls, pos = _page_header(f, pos, end)
        if compressed is None or compressed < 0:
            return False
        if page_type == _DATA_PAGE_V2:
            if nulls != 0:
                return False
            pages += 1
        elif page_type == _DATA_PAGE:
            return False
        pos += compressed
    return pos == end and pages > 0


def lean_metadata(path: str, decimals: tuple[str, ...] = (), required: tuple[str, ...] = ()):
    """(FileMetaData for `pq.ParquetFile(path, metadata=...)`, {column: (precision, scale)} of the
    decimals it reads as int64 mantissas (INT64) or big-endian fixed_size_binary(16) (FLBA)), or
    None when there is nothing to change or the file is not one this walker handles."""
    try:
        with open(path, "rb") as f:
            return _lean(f, decimals, required)
    except (OSError, ValueError, IndexError, KeyError, OverflowError, RecursionError, struct.error, UnicodeDecodeError):
        return None


def _first_data_page_is_v2(f, size: int) -> bool:
    """The file's first data page (right after the magic, past a dictionary page) is v2: Arrow
    writes one page version per file, so a v1 file is known without walking its row groups."""
    pos = 4
    try:
        for _ in range(2):
            page_type, compressed, _nulls, pos = _page_header(f, pos, size)
            if page_type != _DICTIONARY_PAGE:
                return page_type == _DATA_PAGE_V2
            pos += compressed or 0
    except (ValueError, IndexError):
        pass  # not a page there: no claim, the decimals can still be read lean
    return False


def _schema_names(buf, leaves) -> list[str] | None:
    names = []
    for _start, spans, _end in leaves:
        if (_value(buf, spans, _SE_CHILDREN) or 0) != 0:
            return None  # nested schema
        name = [s for s in spans if s[0] == _SE_NAME]
        if not name:
            return None
        r = _Walk(buf, name[0][2])
        ln = r.varint()
        names.append(buf[r.p:r.p + ln].decode())
    return names


def _row_groups(w: _Walk, buf) -> list | None:
    """Per row group, per column: (column chunk fields, column metadata fields, start, end)."""
    count, et = w.list_header()
    if et != _STRUCT:
        return None
    row_groups = []
    for _ in range(count):
        chunks = []
        for rfid, rt in w.fields():
            if rfid != _RG_COLUMNS or rt != _LIST:
                w.skip(rt)
                continue
            n_cc, cet = w.list_header()
            if cet != _STRUCT:
                return None
            for _c in range(n_cc):
                cc, meta = [], (None, None, None)
                for cfid, ct in w.fields():
                    cstart = w.p
                    if cfid == _CC_META and ct == _STRUCT:
                        meta = (w.p, w.spans(), w.p)
                    else:
                        w.skip(ct)
                    cc.append((cfid, ct, cstart, w.p))
                chunks.append((cc, meta[1], meta[0], meta[2]))
        row_groups.append(chunks)
    return row_groups


def _lean(f, decimals, required):
    size = os.fstat(f.fileno()).st_size
    if size < 12 or f.read(4) != b"PAR1":
        return None
    f.seek(size - 8)
    tail = f.read(8)
    n = struct.unpack("<I", tail[:4])[0]
    if tail[4:] != b"PAR1" or n > size - 12:
        return None  # (an encrypted footer ends with PARE)
    f.seek(size - 8 - n)
    buf = f.read(n)
    w = _Walk(buf)
    leaves, names, row_groups, index = None, None, None, {}
    optional = []
    for fid, t in w.fields():
        if fid == _FMD_SCHEMA and t == _LIST:
            count, et = w.list_header()
            if et != _STRUCT or count < 2:
                return None
            leaves = [(w.p, w.spans(), w.p) for _ in range(count)][1:]  # (start, fields, end); [0] is the root
            names = _schema_names(buf, leaves)
            if names is None:
                return None
            index = {name: i for i, name in enumerate(names)}
            optional = [index[c] for c in required if c in index and _value(buf, leaves[index[c]][1], _SE_REPETITION) == _OPTIONAL]
        elif fid == _FMD_ROW_GROUPS and t == _LIST:
            if optional and _first_data_page_is_v2(f, size):
                row_groups = _row_groups(w, buf)
            break  # nothing needed past the row groups
        else:
            w.skip(t)
    if leaves is None:
        return None
    scales: dict[str, tuple[int, int]] = {}
    replace: dict[int, dict] = {}
    for name in decimals:
        i = index.get(name)
        physical = None if i is None else _value(buf, leaves[i][1], _SE_TYPE)
        if physical != _INT64 and not (physical == _FLBA and _value(buf, leaves[i][1], _SE_TYPE_LENGTH) == 16):
            continue
        dec = _decimal_of(buf, leaves[i][1])
        if dec is not None:
            scales[name] = dec
            replace.setdefault(i, {}).update({_SE_CONVERTED: None, _SE_SCALE: None, _SE_PRECISION: None, _SE_LOGICAL: None})
    claimed = []
    if row_groups:
        for i in optional:
            if all(len(chunks) == len(leaves) and chunks[i][1] is not None and _no_nulls_all_v2(buf, f, size, chunks[i][0], chunks[i][1])
                   for chunks in row_groups):
                claimed.append(i)
                replace.setdefault(i, {})[_SE_REPETITION] = _varint(_REQUIRED << 1)
    if not replace:
        return None
    edits: list[tuple[int, int, bytes]] = []  # (start, end, new bytes) over buf
    for i, rep in replace.items():
        start, spans, end = leaves[i]
        edits.append((start, end, _encode(buf, spans, rep)))
    for i in claimed:
        for chunks in row_groups:
            _cc, meta, start, end = chunks[i]
            edits.append((start, end, _encode(buf, meta, {_CMD_SIZE_STATS: None})))
    edits.sort()
    out, pos = bytearray(), 0
    for start, end, new in edits:
        out += buf[pos:start]
        out += new
        pos = end
    out += buf[pos:]
    footer = bytes(out)
    meta = pq.read_metadata(pa.BufferReader(b"PAR1" + footer + struct.pack("<I", len(footer)) + b"PAR1"))
    return meta, scales
