"""Files of the capture root: partition paths, atomic Parquet writes, column buffers."""
from __future__ import annotations

import datetime as dt
import inspect
import os
import secrets
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import schema as S
from .journal import RawRow, fsync_dir
from lab.rust_book import BookRows, TradeRows, decimal128_to_ticks, ticks_to_decimal128

NS_PER_DAY = 86_400_000_000_000
JOURNAL_DIR = ".journal"


def new_session_id() -> str:
    """Sortable and unique enough that several recorders can share one root."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def day_of(ns: int) -> str:
    return (dt.datetime(1970, 1, 1) + dt.timedelta(days=ns // NS_PER_DAY)).strftime("%Y-%m-%d")


def partition_dir(root: str, table: str, venue: str, symbol: str | None, date: str | None) -> str:
    parts = [root, table, f"venue={venue}"]
    if symbol is not None:
        parts.append(f"symbol={symbol}")
    if date is not None:
        parts.append(f"date={date}")
    return os.path.join(*parts)


def file_name(session: str, seq: int) -> str:
    return f"{session}-{seq:06d}.parquet"


# Few distinct values: dictionary pages (RLE / bit-packed indices). `price` too: its
# DECIMAL(38, 18) FIXED_LEN_BYTE_ARRAY(16) values cannot be BYTE_STREAM_SPLIT (DuckDB 1.x reads
# that encoding for FLOAT, DOUBLE, INT32 and INT64 only) nor DELTA_BYTE_ARRAY (polars cannot
# decode it on FLBA); of what every reader opens, a dictionary was smallest for prices (1.12
# bytes/row on the `lab bench book` workload against 1.66 PLAIN) and PLAIN for amounts (6.11 vs
# 6.18; a dictionary of amounts overflows to PLAIN anyway).
_DICTIONARY = ("side", "kind", "channel", "symbol", "session", "venue_symbol", "price")
# Columns that move in small steps from row to row: delta-encoded they take a byte or two.
_DELTA = ("timestamp", "local_timestamp", "rec_id", "conn_seq", "first_seq", "last_seq")
# BYTE_STREAM_SPLIT: each byte of the values in a stream of its own; the always-zero high bytes
# of `flags` (uint8 stored as INT32) are squeezed to nothing by zstd, and it decodes several
# times faster than a dictionary of mostly-zero runs. (Schema version 1 split its INT64 price
# and amount mantissas too; DECIMAL(38, 18) is FLBA, see _DICTIONARY.)
_SPLIT = ("amount", "price", "flags")
# Data pages v2 (levels outside the compressed values: `lab.replay.footer` reads a null-free
# column as REQUIRED, without decoding its levels) and pages bounded by their size (8 MiB)
# rather than by pyarrow's 20,000 rows: fewer pages, less per-page overhead on reading (and
# fewer page headers for `lab.replay.footer` to check), and a little better compression.
_PAGE_VERSION = "2.0"
_PAGE_SIZE = 8 << 20
_MAX_ROWS_PER_PAGE = 1 << 20
# One row group per file up to 8Mi rows (pyarrow's default cuts at 1Mi): a file is read whole
# (one chunk per column, no dictionary per row group to merge); recorder files are far smaller.
_MAX_ROW_GROUP = 8 << 20
_HAS_MAX_ROWS_PER_PAGE = "max_rows_per_page" in inspect.signature(pq.write_table).parameters


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """_DICTIONARY's columns of the schema; a decimal of at most 18 digits (schema version 1's
    INT64 mantissas, say in a test) is BYTE_STREAM_SPLIT instead."""
    def int64_decimal(name: str) -> bool:
        t = schema.field(name).type
        return pa.types.is_decimal(t) and t.precision <= 18
    return [c for c in _DICTIONARY if c in schema.names and not int64_decimal(c)]


def _delta_columns(schema: pa.Schema) -> dict[str, str]:
    out = {}
    for names, encoding in ((_DELTA, "DELTA_BINARY_PACKED"), (_SPLIT, "BYTE_STREAM_SPLIT")):
        for name in names:
            if name in schema.names and name not in _dictionary_columns(schema):
                t = schema.field(name).type
                if pa.types.is_int64(t) or pa.types.is_timestamp(t) or (pa.types.is_decimal(t) and t.precision <= 18):
                    out[name] = encoding
                elif encoding == "BYTE_STREAM_SPLIT" and pa.types.is_integer(t) and t.bit_width <= 32:
                    out[name] = encoding  # stored as INT32
    return out


# `lab compact`: raw files rewritten at zstd level 19 with large pages (live writing stays at 3).
COMPACT_LEVEL = 19
COMPACT_PAGE_SIZE = 8 << 20
META_COMPACTED = b"lab.compacted"


def atomic_write(table: pa.Table, path: str, metadata: dict[bytes, bytes], compression_level: int = 3,
                 data_page_size: int | None = None) -> None:
    """tmp (dot-prefixed so readers skip it) -> fsync -> rename -> fsync the directory."""
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, "." + os.path.basename(path) + ".tmp")
    meta = dict(table.schema.metadata or {})
    meta.update(metadata)
    meta[S.META_SCHEMA_VERSION] = S.SCHEMA_VERSION.encode()
    table = table.replace_schema_metadata(meta)
    try:
        _write_tmp(table, tmp, compression_level, data_page_size)
    except BaseException:
        # a full disk (or any failure) half way leaves no stray .tmp behind
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    os.replace(tmp, path)
    fsync_dir(directory)


def _write_tmp(table: pa.Table, tmp: str, compression_level: int, data_page_size: int | None) -> None:
    with open(tmp, "wb") as f:
        pq.write_table(
            table, f, compression="zstd", compression_level=compression_level, data_page_size=data_page_size or _PAGE_SIZE,
            row_group_size=min(max(table.num_rows, 1), _MAX_ROW_GROUP),
            use_dictionary=_dictionary_columns(table.schema),
            store_decimal_as_integer=True,  # (a DECIMAL(38, 18) is FLBA(16) either way)
            column_encoding=_delta_columns(table.schema),
            data_page_version=_PAGE_VERSION,
            **({"max_rows_per_page": _MAX_ROWS_PER_PAGE} if _HAS_MAX_ROWS_PER_PAGE else {}),
        )
        f.flush()
        os.fsync(f.fileno())


def decimal_array(ticks, precision: int, validity=None) -> pa.Array:
    """Exact DECIMAL(38, 18) from int64 ticks at the instrument's `precision` (mantissas
    ticks * 10^(18 - precision), no float, no value cast); `validity` an optional Arrow bitmap."""
    lo = np.ascontiguousarray(ticks, dtype=np.int64)
    k = S.SCALE - precision
    if not 0 <= k <= S.SCALE:
        raise ValueError(f"precision {precision} outside 0..{S.SCALE}")
    return pa.Array.from_buffers(S.DECIMAL, len(lo), [validity, pa.py_buffer(ticks_to_decimal128(lo, k))])


def mantissas(array: pa.Array | pa.ChunkedArray, precision: int | None = None) -> np.ndarray:
    """int64 ticks at the instrument's `precision` of a decimal128 column (any scale <=
    `precision`, exact; ValueError naming the row of a value that is not a whole tick or does not
    fit in int64). Without `precision`, the column's own scale (its int64 mantissas)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    typ = array.type
    if not pa.types.is_decimal(typ) or typ.bit_width != 128:
        raise ValueError(f"expected a decimal128 column, got {typ}")
    k = typ.scale - (typ.scale if precision is None else precision)
    if k < 0:
        array = array.cast(pa.decimal128(38, precision))  # fewer decimals than ticks: exact widening
        k = 0
    if k > S.SCALE:
        raise ValueError(f"decimal scale {typ.scale} is more than {S.SCALE} digits past precision {precision}")
    if len(array) == 0:
        return np.empty(0, dtype=np.int64)
    buf = memoryview(array.buffers()[1])[16 * array.offset:16 * (array.offset + len(array))]
    return np.frombuffer(decimal128_to_ticks(buf, k), dtype=np.int64)


def raw_table(rows: list[RawRow], session: str) -> pa.Table:
    return pa.table(
        [
            pa.array([r.local_ts for r in rows], S.TS),
            pa.array([r.rec_id for r in rows], pa.int64()),
            pa.array([session] * len(rows), pa.string()),
            pa.array([r.conn_id for r in rows], pa.int32()),
            pa.array([r.conn_seq for r in rows], pa.int64()),
            pa.array([r.kind for r in rows], pa.string()),
            pa.array([r.channel for r in rows], pa.string()),
            pa.array([r.symbol for r in rows], pa.string()),
            pa.array([r.payload for r in rows], pa.binary()),
        ],
        schema=S.RAW,
    )


def raw_rows(table: pa.Table) -> list[RawRow]:
    cols = table.drop_columns(["local_timestamp"]).to_pydict()
    local_ts = table.column("local_timestamp").cast(pa.int64()).to_pylist()
    return [
        RawRow(
            rec_id=cols["rec_id"][i],
            local_ts=local_ts[i],
            conn_id=cols["conn_id"][i],
            conn_seq=cols["conn_seq"][i],
            kind=cols["kind"][i],
            channel=cols["channel"][i],
            symbol=cols["symbol"][i],
            payload=cols["payload"][i],
        )
        for i in range(table.num_rows)
    ]


class _RustColumns:
    """What the Rust row accumulators share on the Python side."""

    @property
    def local_timestamp(self) -> np.ndarray:
        return np.frombuffer(self.local_timestamp_bytes(), dtype=np.int64)

    @staticmethod
    def _ints(b: dict, name: str, typ: pa.DataType = pa.int64()) -> pa.Array:
        return pa.Array.from_buffers(typ, b["n"], [None, pa.py_buffer(b[name])])


class BookColumns(_RustColumns, BookRows):
    """The `book` rows of one segment and symbol, held in Rust (`lab.rust_book.BookRows`).

    Filled by `OrderBook.apply_wire_message` or `push_levels` (see `Normalizer.emit_levels`)."""

    def to_table(self, pp: int, ap: int, venue_symbol: str) -> pa.Table:
        b = self.buffers()
        n = b["n"]

        def ints(name: str, typ: pa.DataType = pa.int64()) -> pa.Array:
            return self._ints(b, name, typ)

        def strings(data: bytes, width: int) -> pa.Array:
            offsets = np.arange(0, width * n + 1, width, dtype=np.int32)
            return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])

        validity = b["checksum_validity"]
        name = venue_symbol.encode()
        return pa.table(
            [
                ints("timestamp", S.TS),
                ints("local_timestamp", S.TS),
                pa.Array.from_buffers(pa.bool_(), n, [None, pa.py_buffer(b["is_snapshot"])]),
                strings(b["side"], 3),
                decimal_array(np.frombuffer(b["price"], dtype=np.int64), pp),
                decimal_array(np.frombuffer(b["amount"], dtype=np.int64), ap),
                ints("first_seq"),
                ints("last_seq"),
                pa.Array.from_buffers(
                    pa.uint32(), n, [None if validity is None else pa.py_buffer(validity), pa.py_buffer(b["checksum"])],
                    null_count=b["checksum_nulls"],
                ),
                ints("flags", pa.uint8()),
                ints("rec_id"),
                strings(name * n, len(name)),
            ],
            schema=S.book_schema(pp, ap),
        )


class TradeColumns(_RustColumns, TradeRows):
    """The `trades` rows of one segment and symbol, held in Rust (`lab.rust_book.TradeRows`).

    Filled by `push` (`Normalizer.emit_trade`, any venue) or by Kraken's frame parser
    (`KrakenTrades.apply`); `id`, `side`, `price`, ... read back as lists (tests)."""

    def to_table(self, pp: int, ap: int, venue_symbol: str) -> pa.Table:
        b = self.buffers()
        n = b["n"]

        def ints(name: str, typ: pa.DataType = pa.int64()) -> pa.Array:
            return self._ints(b, name, typ)

        def strings(name: str) -> pa.Array:
            return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(b[name + "_offsets"]), pa.py_buffer(b[name + "_data"])])

        name = venue_symbol.encode()
        return pa.table(
            [
                ints("timestamp", S.TS),
                ints("local_timestamp", S.TS),
                strings("id"),
                strings("side"),
                decimal_array(np.frombuffer(b["price"], dtype=np.int64), pp),
                decimal_array(np.frombuffer(b["amount"], dtype=np.int64), ap),
                ints("rec_id"),
                pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(np.arange(0, len(name) * n + 1, len(name), dtype=np.int32)),
                                                       pa.py_buffer(name * n)]),
            ],
            schema=S.trades_schema(pp, ap),
        )


def split_by_day(local_ts) -> list[tuple[str, int, int]]:
    """(date, start, stop) runs of a list or int64 array sorted by local time (book and raw rows are)."""
    if len(local_ts) == 0:
        return []
    days = np.asarray(local_ts, dtype=np.int64) // NS_PER_DAY
    cuts = np.flatnonzero(np.diff(days)) + 1
    bounds = [0, *cuts.tolist(), len(local_ts)]
    return [(day_of(int(days[a]) * NS_PER_DAY), a, b) for a, b in zip(bounds[:-1], bounds[1:])]
