"""Derived tables rebuilt from `book` by the Rust engine in one call per stream (no per-delta
Python call): `quotes` (top of book after each message that changed it) and `book_snapshot_N` (top N levels per
side on a `local_timestamp` grid), in tardis's column names, written into the capture.

Decisions (see docs/DATASET.md, "Derived tables"):
- `quotes`: a row after a book message only when the top of book changed (tardis emits a quote
  only on change): best bid price or amount, best ask price or amount, or a side's presence
  differs from the previous quote row; the first message, the first after a reset (a message
  with a CLEAR row) and the first after a gap / resync event always get one. `timestamp`,
  `local_timestamp` of the message's LAST row, `bid_price`, `bid_amount`, `ask_price`,
  `ask_amount` (exact DECIMAL(38, 18), the dataset's one decimal type; null when the side is
  empty).
- `book_snapshot_N`: `timestamp` (exchange time of the last message applied), `local_timestamp`
  (the grid boundary, a multiple of the interval since the epoch), then per level k
  `asks[k].price`, `asks[k].amount`, `bids[k].price`, `bids[k].amount` (null past the book's
  depth). A boundary gets a snapshot when the first message past it arrives; empty intervals
  give no extra rows; no snapshot while the book is unsynced (before the first CLEAR, and from a
  gap / resync event to the next CLEAR).
- Files mirror the book files: `quotes/venue=V/symbol=S/date=D/<session>-<seq>.parquet`, rows
  grouped by the date of their own `local_timestamp`; a rebuild replaces the stream's previous
  derived files.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lab import rust_book
from lab.core.events import UNSYNC_EVENTS
from lab.datasets import schema as S
from lab.datasets.store import NS_PER_DAY, atomic_write, day_of, decimal_array, mantissas

from .footer import lean_metadata
from lab.datasets.reader import CaptureError, by_session, normalize_path, session_of, split_readable, stream_precisions, streams_in

_BOOK_COLUMNS = ["side", "price", "amount", "flags", "timestamp", "local_timestamp"]


def quotes_schema(pp: int, ap: int) -> pa.Schema:
    return pa.schema(
        [
            ("timestamp", S.TS),
            ("local_timestamp", S.TS),
            ("bid_price", S.DECIMAL),
            ("bid_amount", S.DECIMAL),
            ("ask_price", S.DECIMAL),
            ("ask_amount", S.DECIMAL),
        ]
    )


def snapshot_names(n: int) -> list[str]:
    out = []
    for k in range(n):
        out += [f"asks[{k}].price", f"asks[{k}].amount", f"bids[{k}].price", f"bids[{k}].amount"]
    return out


@dataclass
class Columns:
    """Book columns of one stream, ready for `rust_book.rebuild_book` (buffers, zero copy where
    pyarrow allows)."""

    sides: np.ndarray
    prices: object
    amounts: object
    flags: object
    timestamps: object
    local_timestamps: object
    price_width: int
    amount_width: int
    rows: int
    price_precision: int
    amount_precision: int
    depth: int
    file_rows: list[int]  # rows per source file, in order
    # decimal128 columns: digits the engine divides the mantissas by (exactly) to get ticks,
    # 18 - precision for DECIMAL(38, 18); 0 for int64 ticks and schema-1 DECIMAL(18, precision)
    price_scale: int = 0
    amount_scale: int = 0
    # decimal128 as Parquet stores FLBA(16) (big endian), read lean (`footer.lean_metadata`)
    price_big_endian: bool = False
    amount_big_endian: bool = False


def _buffer(arr: pa.Array, width: int) -> memoryview:
    """The array's data buffer as bytes of its own rows (no copy without an offset)."""
    buf = memoryview(arr.buffers()[1]) if len(arr) else memoryview(b"")
    return buf[arr.offset * width:(arr.offset + len(arr)) * width]


def _column(chunks: list[pa.Array], what: str, dtype) -> object:
    """One contiguous buffer for a column's chunks (zero copy for a single chunk)."""
    width = np.dtype(dtype).itemsize
    for c in chunks:
        if c.null_count:
            raise CaptureError(f"book column {what} has {c.null_count} nulls")
    if len(chunks) == 1:
        return _buffer(chunks[0], width)
    if not chunks:
        return b""
    return np.concatenate([np.frombuffer(_buffer(c, width), dtype=dtype) for c in chunks])


def _sides(chunks: list[pa.Array]) -> np.ndarray:
    """`side` (dictionary-decoded or plain strings) as int8: 0 = bid, 1 = ask, written in one pass
    over the dictionary indices."""
    out = np.empty(sum(len(c) for c in chunks), dtype=np.int8)
    pos = 0
    for chunk in chunks:
        if chunk.null_count:
            raise CaptureError("book column side has nulls")
        part = out[pos:pos + len(chunk)]
        pos += len(chunk)
        if pa.types.is_dictionary(chunk.type):
            words = chunk.dictionary.to_pylist()
            idx = np.frombuffer(_buffer(chunk.indices, chunk.indices.type.bit_width // 8), dtype=chunk.indices.type.to_pandas_dtype())
            if words == ["bid", "ask"]:
                np.copyto(part, idx, casting="unsafe")
            elif words == ["ask", "bid"]:
                np.equal(idx, 0, out=part.view(np.bool_))
            elif words in (["bid"], ["ask"], []):
                part[:] = 1 if words == ["ask"] else 0
            else:
                if any(w not in ("bid", "ask") for w in words) and np.isin(idx, [i for i, w in enumerate(words) if w not in ("bid", "ask")]).any():
                    raise CaptureError("book column side holds values other than 'bid' / 'ask'")
                part[:] = np.array([w == "ask" for w in words], dtype=np.int8)[idx]
        else:
            values = chunk.to_numpy(zero_copy_only=False)
            if not np.isin(values, ["bid", "ask"]).all():
                raise CaptureError("book column side holds values other than 'bid' / 'ask'")
            part[:] = values == "ask"
    return out


def _read_book(f: str) -> tuple[pa.Table, dict]:
    """The book columns of one file, decimals as int64 mantissas where the file allows (see
    `footer.lean_metadata`); {column: decimal type} of the columns read that way."""
    lean = lean_metadata(f, ("price", "amount"), tuple(_BOOK_COLUMNS))
    if lean is not None:
        try:
            t = pq.ParquetFile(f, memory_map=True, metadata=lean[0], read_dictionary=["side"]).read(columns=_BOOK_COLUMNS, use_threads=False)
            return t, {name: pa.decimal128(p, s) for name, (p, s) in lean[1].items()}
        except (OSError, pa.ArrowException):
            pass  # read it the ordinary way (and report the ordinary error)
    try:
        t = pq.ParquetFile(f, memory_map=True, read_dictionary=["side"]).read(columns=_BOOK_COLUMNS, use_threads=False)
    except (OSError, pa.ArrowInvalid) as exc:
        raise CaptureError(f"{f}: not a readable book file ({str(exc).splitlines()[0]})") from None
    return t, {}


def load_columns(files: list[str]) -> Columns:
    """Read the book files of one stream (single-threaded pyarrow) into rebuild buffers: prices and
    amounts as int64 mantissas when every file stores them so (width 8), else as decimal128."""
    tables, metas, decimals = [], [], []
    for f in files:
        t, lean = _read_book(f)
        metas.append({k.decode(): v.decode() for k, v in (t.schema.metadata or {}).items()})
        tables.append(t)
        decimals.append(lean)
    return _columns_of(tables, metas, decimals)


def _columns_of(tables: list[pa.Table], metas: list[dict], decimals: list[dict]) -> Columns:
    """Rebuild buffers of a stream's tables (one per file, in order; `metas` their lab.*
    metadata; `decimals` {column: decimal type} of the columns read as int64 mantissas)."""
    pp_, ap_ = stream_precisions(metas, [f"{m.get('lab.venue', '?')}/{m.get('lab.symbol', '?')} book file" for m in metas], "book files")
    # the logical types (a decimal read as int64 mantissas counts as its decimal type); a stream
    # whose files differ (schema version 1 and 2 files, say) is turned into int64 ticks file by file

    def values(name: str, precision: int) -> tuple[object, int, int, bool]:
        """(buffer, width, scale, big endian) of a column."""
        chunks, kinds = [], set()
        for t, lean in zip(tables, decimals):
            logical = lean.get(name)
            for c in t.column(name).chunks:
                typ = c.type
                if typ == pa.int64():
                    kinds.add((8, logical.scale if logical is not None else precision, False))  # else int64 ticks from Arrow input
                elif pa.types.is_decimal(typ) and typ.bit_width == 128:
                    kinds.add((16, typ.scale, False))
                elif logical is not None and typ == pa.binary(16):  # lean FLBA: big-endian decimal128
                    kinds.add((16, logical.scale, True))
                else:
                    raise CaptureError(f"book column {name} has type {typ}, expected decimal128 or int64")
                chunks.append(c)
        if len(kinds) == 1:
            width, scale, big_endian = kinds.pop()
            if scale < precision or scale - precision > S.SCALE or (width == 8 and scale != precision):
                raise CaptureError(f"book column {name} has scale {scale}, not a whole number of ticks at precision {precision}")
            if width == 16:
                return _column(chunks, name, np.dtype("V16")), 16, scale - precision, big_endian
            return _column(chunks, name, np.int64), 8, 0, False
        try:  # one exact int64 tick column out of files of different types
            ticks = []
            for c in chunks:
                if c.type == pa.int64():
                    ticks.append(c)
                elif c.type == pa.binary(16):
                    k = [kd[1] for kd in kinds if kd[2]][0] - precision
                    ticks.append(pa.array(np.frombuffer(rust_book.decimal128_to_ticks(_buffer(c, 16), k, big_endian=True), np.int64)))
                else:
                    ticks.append(pa.array(mantissas(c, precision), pa.int64()))
        except ValueError as exc:
            raise CaptureError(f"book column {name}: {exc}") from None
        return _column(ticks, name, np.int64), 8, 0, False

    def ints(name: str):
        chunks = [c for t in tables for c in t.column(name).chunks]
        for c in chunks:
            if not (c.type == pa.int64() or (pa.types.is_timestamp(c.type) and c.type.bit_width == 64)):
                raise CaptureError(f"book column {name} has type {c.type}, expected a 64-bit timestamp")
        return _column([c.view(pa.int64()) if pa.types.is_timestamp(c.type) else c for c in chunks], name, np.int64)

    prices, price_width, price_scale, price_be = values("price", pp_)
    amounts, amount_width, amount_scale, amount_be = values("amount", ap_)
    flags = [c for t in tables for c in t.column("flags").chunks]
    if any(c.type != pa.uint8() for c in flags):
        raise CaptureError(f"book column flags has type {flags[0].type if flags else None}, expected uint8")
    return Columns(
        sides=_sides([c for t in tables for c in t.column("side").chunks]),
        prices=prices,
        amounts=amounts,
        flags=_column(flags, "flags", np.uint8),
        timestamps=ints("timestamp"),
        local_timestamps=ints("local_timestamp"),
        price_width=price_width,
        amount_width=amount_width,
        rows=sum(t.num_rows for t in tables),
        price_precision=pp_,
        amount_precision=ap_,
        depth=int(metas[0].get("lab.depth", "0") or 0),
        file_rows=[t.num_rows for t in tables],
        price_scale=price_scale,
        amount_scale=amount_scale,
        price_big_endian=price_be,
        amount_big_endian=amount_be,
    )


def rebuild_columns(cols: Columns, snapshot_depth: int = 0, interval_ns: int = 0, gaps: np.ndarray | None = None, depth: int | None = None) -> dict:
    """Run the engine; returns the raw result dict of `rust_book.rebuild_book`."""
    return rust_book.rebuild_book(
        cols.sides, cols.prices, cols.amounts, cols.flags, cols.timestamps, cols.local_timestamps,
        price_width=cols.price_width, amount_width=cols.amount_width,
        depth=cols.depth if depth is None else depth, snapshot_depth=snapshot_depth, interval_ns=interval_ns,
        gaps=None if gaps is None or len(gaps) == 0 else np.ascontiguousarray(np.sort(np.asarray(gaps, dtype=np.int64))),
        price_scale=cols.price_scale, amount_scale=cols.amount_scale,
        price_big_endian=cols.price_big_endian, amount_big_endian=cols.amount_big_endian,
        # quotes out as DECIMAL(38, 18) mantissas
        out_price_scale=S.SCALE - cols.price_precision, out_amount_scale=S.SCALE - cols.amount_precision,
    )


def rebuild(source, *, depth: int | None = None, snapshot_depth: int = 0, interval_ns: int = 0, gaps=None,
            price_precision: int | None = None, amount_precision: int | None = None) -> dict[str, pa.Table]:
    """Rebuild one book stream in one engine call (GIL released, no per-delta Python call) and
    return the derived tables: {"quotes": ..., "book_snapshot_<snapshot_depth>": ...} (the
    snapshots only with `snapshot_depth > 0`; `interval_ns` 0 = a snapshot after every message).

    `source` is either
    - the path of a `book` Parquet file, or a list of them (one stream, in order), or
    - Arrow data with the book columns `side`, `price`, `amount`, `flags`, `timestamp`,
      `local_timestamp` (docs/DATASET.md): a pyarrow Table, RecordBatch or RecordBatchReader, or
      any object exporting the Arrow PyCapsule interface (`__arrow_c_stream__` or
      `__arrow_c_array__`: polars, DuckDB, nanoarrow, arro3...), imported through the Arrow C
      data interface without a copy (a column of several chunks is concatenated once).

    Precisions come from the decimal columns' scale (or the lab metadata of the files); int64
    mantissa columns need `price_precision` and `amount_precision`. `depth` (truncation after
    every message) defaults to the stream's `lab.depth`, else unbounded. `gaps`: local
    timestamps of events that unsync the book until the next CLEAR (no snapshots meanwhile).
    """
    if isinstance(source, (str, os.PathLike)) or (isinstance(source, (list, tuple)) and source and isinstance(source[0], (str, os.PathLike))):
        cols = load_columns([os.fspath(f) for f in ([source] if isinstance(source, (str, os.PathLike)) else source)])
    else:
        cols = _columns_of(*_arrow_input(source, price_precision, amount_precision))
    if snapshot_depth < 0:
        raise ValueError(f"snapshot_depth must be >= 0, got {snapshot_depth}")
    try:
        result = rebuild_columns(cols, snapshot_depth, interval_ns, None if gaps is None else np.asarray(gaps, dtype=np.int64), depth)
    except ValueError as exc:
        raise CaptureError(str(exc)) from None
    pp, ap = cols.price_precision, cols.amount_precision
    out = {"quotes": quotes_table(result, pp, ap)}
    if snapshot_depth:
        out[f"book_snapshot_{snapshot_depth}"] = snapshot_table(result, snapshot_depth, pp, ap)
    return out


def _arrow_input(source, price_precision: int | None, amount_precision: int | None) -> tuple[list, list, list]:
    """(tables, metas, decimals) for `_columns_of` from Arrow data (see `rebuild`)."""
    if isinstance(source, pa.RecordBatch):
        table = pa.Table.from_batches([source])
    elif isinstance(source, pa.RecordBatchReader):
        table = source.read_all()
    elif isinstance(source, pa.Table):
        table = source
    elif hasattr(source, "__arrow_c_stream__"):
        table = pa.RecordBatchReader.from_stream(source).read_all()
    elif hasattr(source, "__arrow_c_array__"):
        table = pa.Table.from_batches([pa.record_batch(source)])
    else:
        raise TypeError(f"rebuild source must be a path, a list of paths or Arrow data, got {type(source).__name__}")
    missing = [c for c in _BOOK_COLUMNS if c not in table.column_names]
    if missing:
        raise CaptureError(f"book data lacks the columns {missing} (has {table.column_names})")
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items() if k.startswith(b"lab.")}
    for key, given, column in (("lab.price_precision", price_precision, "price"), ("lab.amount_precision", amount_precision, "amount")):
        typ = table.schema.field(column).type
        if given is not None:
            if pa.types.is_decimal(typ) and typ.scale < given:
                raise CaptureError(f"{column} has scale {typ.scale}, fewer decimals than the given precision {given}")
            meta[key] = str(given)
        elif key in meta:
            pass
        elif pa.types.is_decimal(typ):
            meta[key] = str(_fewest_decimals(table.column(column), typ.scale))
        else:
            raise CaptureError(f"{column} is {typ}: pass {key[4:]} (decimal places of its int64 mantissas)")
    return [table.select(_BOOK_COLUMNS)], [meta], [{}]


def _fewest_decimals(column: pa.ChunkedArray, scale: int) -> int:
    """The smallest precision at which every value of a decimal column is a whole int64 tick
    count (the values, and so the derived tables, are the same at any such precision)."""
    for p in range(max(scale - S.SCALE, 0), scale + 1):
        try:
            mantissas(column, p)
            return p
        except ValueError:
            continue
    raise CaptureError(f"decimal values of scale {scale} do not fit int64 ticks at any precision")


def _ts(buf, n: int) -> pa.Array:
    return pa.Array.from_buffers(S.TS, n, [None, pa.py_buffer(buf)])


def quotes_table(result: dict, pp: int, ap: int) -> pa.Table:
    """The engine's quote buffers as an Arrow table (zero copy)."""
    n = result["quotes"]
    bid_valid, ask_valid = pa.py_buffer(result["bid_valid"]), pa.py_buffer(result["ask_valid"])

    def dec(name: str, precision: int, valid) -> pa.Array:
        # the engine wrote DECIMAL(38, 18) mantissas (`out_*_scale` of `rebuild_columns`)
        return pa.Array.from_buffers(S.DECIMAL, n, [valid, pa.py_buffer(result[name])])

    return pa.Table.from_arrays(
        [
            _ts(result["timestamp"], n),
            _ts(result["local_timestamp"], n),
            dec("bid_price", pp, bid_valid),
            dec("bid_amount", ap, bid_valid),
            dec("ask_price", pp, ask_valid),
            dec("ask_amount", ap, ask_valid),
        ],
        schema=quotes_schema(pp, ap),
    )


def _decimal_column(ticks: np.ndarray, valid: np.ndarray, precision: int) -> pa.Array:
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little")) if not valid.all() else None
    return decimal_array(ticks, precision, bitmap)


def snapshot_table(result: dict, n_levels: int, pp: int, ap: int) -> pa.Table:
    m = result["snapshots"]
    levels = np.frombuffer(result["snapshot_levels"], dtype=np.int64).reshape(m, n_levels, 4)
    counts = np.frombuffer(result["snapshot_counts"], dtype=np.uint32).reshape(m, 2)
    arrays = [_ts(result["snapshot_timestamp"], m), _ts(result["snapshot_local_timestamp"], m)]
    fields = [pa.field("timestamp", S.TS), pa.field("local_timestamp", S.TS)]
    for k in range(n_levels):
        ask_ok, bid_ok = counts[:, 0] > k, counts[:, 1] > k
        for j, (name, precision, ok) in enumerate(
            ((f"asks[{k}].price", pp, ask_ok), (f"asks[{k}].amount", ap, ask_ok), (f"bids[{k}].price", pp, bid_ok), (f"bids[{k}].amount", ap, bid_ok))
        ):
            arrays.append(_decimal_column(np.ascontiguousarray(levels[:, k, j]), ok, precision))
            fields.append(pa.field(name, S.DECIMAL))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def gap_times(root: str, venue: str, symbol: str, session: str | None = None, skipped: list | None = None) -> np.ndarray:
    """local timestamps of events that leave the symbol's book unsynced until the next CLEAR
    (of one recorder session's events when `session` is given)."""
    out = []
    files = glob.glob(os.path.join(root, "events", f"venue={venue}", "**", "*.parquet"), recursive=True)
    for f in split_readable(sorted(f for f in files if not os.path.basename(f).startswith(".")), skipped):
        if session is not None and session_of(f) != session:
            continue
        try:
            t = pq.read_table(f, columns=["local_timestamp", "kind", "symbol"], partitioning=None)
        except (OSError, pa.ArrowException) as exc:
            if skipped is None:
                raise CaptureError(f"{f}: not a readable events file ({str(exc).splitlines()[0]})") from None
            skipped.append((f, str(exc).splitlines()[0]))
            continue
        lts = t.column("local_timestamp").cast(pa.int64()).to_numpy(zero_copy_only=False)
        kinds = t.column("kind").to_pylist()
        syms = t.column("symbol").to_pylist()
        out += [ts for ts, k, s in zip(lts, kinds, syms) if k in UNSYNC_EVENTS and (s is None or s == symbol)]
    return np.sort(np.asarray(out, dtype=np.int64))


def _groups(local_ns: np.ndarray, names: np.ndarray) -> list[tuple[str, str, int, int]]:
    """(date, name, start, stop) runs of rows in order."""
    if len(local_ns) == 0:
        return []
    days = local_ns // NS_PER_DAY
    cut = np.flatnonzero((np.diff(days) != 0) | (names[1:] != names[:-1])) + 1
    bounds = [0, *cut.tolist(), len(local_ns)]
    return [(day_of(int(days[a]) * NS_PER_DAY), str(names[a]), a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def rebuild_root(root: str, depth: int = 25, interval_ns: int = 1_000_000_000, venue: str | None = None,
                 symbols: list[str] | None = None, progress=None, skipped: list[tuple[str, str]] | None = None) -> list[dict]:
    """Rebuild `quotes` and `book_snapshot_<depth>` for every book stream under `root`, one
    engine call per recorder session of a stream (overlapping sessions are separate books);
    `progress(book files done, total)` after each stream (for a progress bar).
    With `skipped`, unreadable files are left out and listed there as (path, reason); the
    derived files made from them earlier are kept."""
    if not os.path.isdir(root):
        raise CaptureError(f"capture root {root!r} does not exist")
    if depth < 1:
        raise CaptureError(f"--depth must be at least 1, got {depth}")
    root = normalize_path(root)
    snap_table = f"book_snapshot_{depth}"
    report = []
    streams = sorted(streams_in(root, "book", venue, symbols, skipped).items())
    total_files, files_done = sum(len(f) for _, f in streams), 0
    for (v, s), all_files in streams:
        keep = {"quotes": set(), snap_table: set()}
        for bad, _ in skipped or []:  # the derived files of an unreadable book file stay as they are
            if bad.startswith(os.path.join(root, "book", f"venue={v}", f"symbol={s}") + os.sep):
                for table_name in keep:
                    keep[table_name].update(os.path.abspath(p) for p in glob.glob(
                        os.path.join(root, table_name, f"venue={v}", f"symbol={s}", "date=*", os.path.basename(bad))))
        for session, files in by_session(all_files).items():
            try:
                cols = load_columns(files)
            except CaptureError as exc:
                if skipped is None:
                    raise
                skipped.append((files[0] if len(files) == 1 else f"{v}/{s} session {session}", str(exc)))
                for f in files:  # its derived files stay as they are
                    for table_name in keep:
                        keep[table_name].update(os.path.abspath(p) for p in glob.glob(
                            os.path.join(root, table_name, f"venue={v}", f"symbol={s}", "date=*", os.path.basename(f))))
                continue
            report.append(_rebuild_session(root, v, s, session, files, cols, depth, interval_ns, snap_table, keep, skipped))
        for table_name, kept in keep.items():
            for old in glob.glob(os.path.join(root, table_name, f"venue={v}", f"symbol={s}", "**", "*.parquet"), recursive=True):
                if os.path.abspath(old) not in kept:
                    os.remove(old)
        files_done += len(all_files)
        if progress is not None:
            progress(files_done, total_files)
    return report


def _rebuild_session(root: str, v: str, s: str, session: str, files: list[str], cols: Columns, depth: int, interval_ns: int,
                     snap_table: str, keep: dict[str, set], skipped: list | None) -> dict:
    """Rebuild one session's book files of one stream and write its derived files (their paths
    go into `keep`)."""
    meta = {k.decode(): val.decode() for k, val in (pq.read_schema(files[0]).metadata or {}).items()}
    try:
        result = rebuild_columns(cols, depth, interval_ns, gap_times(root, v, s, session, skipped))
    except ValueError as exc:
        raise CaptureError(f"{v}/{s}: {exc}") from None
    pp, ap = cols.price_precision, cols.amount_precision
    quotes = quotes_table(result, pp, ap)
    snaps = snapshot_table(result, depth, pp, ap)
    # which source file each quote came from (the engine names its message's LAST row), and each
    # snapshot (the file of the first message at or past its grid time, which emitted it)
    file_of_row = np.repeat(np.arange(len(files)), cols.file_rows)
    base = np.array([os.path.basename(f) for f in files], dtype=object)
    q_names = base[file_of_row[np.frombuffer(result["quote_rows"], dtype=np.int64)]]
    q_lts = np.frombuffer(result["local_timestamp"], dtype=np.int64)
    ends = np.flatnonzero(np.frombuffer(cols.flags, dtype=np.uint8) & S.FLAG_LAST)
    m_names = base[file_of_row[ends]]
    m_lts = np.frombuffer(cols.local_timestamps, dtype=np.int64)[ends]
    s_lts = np.frombuffer(result["snapshot_local_timestamp"], dtype=np.int64)
    trigger = np.minimum(np.searchsorted(m_lts, s_lts, side="left"), max(len(m_lts) - 1, 0))
    s_names = m_names[trigger] if len(m_names) else np.array([], dtype=object)
    common = {
        S.META_SESSION: meta.get("lab.session", "").encode(),
        S.META_VENUE: v.encode(),
        S.META_SYMBOL: s.encode(),
        S.META_VENUE_SYMBOL: meta.get("lab.venue_symbol", s).encode(),
        S.META_PRICE_PRECISION: str(pp).encode(),
        S.META_AMOUNT_PRECISION: str(ap).encode(),
        S.META_DEPTH: str(cols.depth).encode(),
        b"lab.source_book": ",".join(os.path.relpath(f, root) for f in files).encode(),
    }
    written = []
    for table_name, table, lts, names, extra in (
        ("quotes", quotes, q_lts, q_names, {}),
        (snap_table, snaps, s_lts, s_names, {b"lab.snapshot_depth": str(depth).encode(), b"lab.interval_ns": str(interval_ns).encode()}),
    ):
        for date, name, a, b in _groups(lts, names):
            path = os.path.join(root, table_name, f"venue={v}", f"symbol={s}", f"date={date}", name)
            atomic_write(table.slice(a, b - a), path, {S.META_TABLE: table_name.encode(), **common, **extra})
            keep[table_name].add(os.path.abspath(path))
            written.append(path)
    return {
        "venue": v, "symbol": s, "session": session, "rows": result["rows"], "quotes": result["quotes"], "snapshots": result["snapshots"],
        "files": len(written), "synced": result["synced"],
    }
