"""`lab export`: a capture in the formats peers read (docs/EXPORT.md).

- `tardis`: tardis.dev's normalized CSV layout ("downloadable CSV files"): one gzip file per
  exchange, data type, day (UTC date of `local_timestamp`) and symbol, named
  `<exchange>_<data_type>_<YYYY-MM-DD>_<symbol>.csv.gz`, columns in tardis's order, timestamps in
  µs since the epoch, prices and amounts as exact decimal strings. Data types: `incremental_book_L2`
  and `trades` from `book` / `trades`; `quotes` and `book_snapshot_<N>` from what `lab rebuild`
  wrote under the root (they are not computed here).
- `hftbacktest`: hftbacktest's event arrays, one `.npz` per symbol and day holding `data` (its
  `event_dtype`), with the flags its own tardis converter sets (DEPTH / DEPTH_CLEAR /
  DEPTH_SNAPSHOT / TRADE, BUY / SELL, EXCH / LOCAL after its event-order correction).

Both stream: book and trades files are read row group by row group and written as they come (the
hftbacktest writer holds one symbol-day of events, because an npz array is written whole). The
`exchange` column is the capture's venue name; nothing here knows a venue.

The exported book stream is self-contained: where a stream is truncated to a depth (`lab.depth`
> 0), the levels the engine drops after a message are written as deletes (amount 0) at the end of
that message, so a reader that does not know the depth rebuilds the book lab replays.
"""
from __future__ import annotations

import gzip
import os
import re
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from lab.datasets import schema as S
from lab.datasets.files import CaptureError, normalize_path
from lab.datasets.reader import _partition, by_session, session_of, stream_precisions, streams_in
from lab.datasets.store import mantissas

FORMATS = ("tardis", "hftbacktest")

# tardis column order per data type ("downloadable CSV files", data types)
BOOK_COLUMNS = ["exchange", "symbol", "timestamp", "local_timestamp", "is_snapshot", "side", "price", "amount"]
TRADE_COLUMNS = ["exchange", "symbol", "timestamp", "local_timestamp", "id", "side", "price", "amount"]
QUOTE_COLUMNS = ["exchange", "symbol", "timestamp", "local_timestamp", "ask_amount", "ask_price", "bid_price", "bid_amount"]

# hftbacktest's event layout and flags (py-hftbacktest/hftbacktest/types.py, v2)
EVENT_DTYPE = np.dtype([("ev", "u8"), ("exch_ts", "i8"), ("local_ts", "i8"), ("px", "f8"), ("qty", "f8"),
                        ("order_id", "u8"), ("ival", "i8"), ("fval", "f8")], align=True)
DEPTH_EVENT, TRADE_EVENT, DEPTH_CLEAR_EVENT, DEPTH_SNAPSHOT_EVENT = 1, 2, 3, 4
EXCH_EVENT, LOCAL_EVENT, BUY_EVENT, SELL_EVENT = 1 << 31, 1 << 30, 1 << 29, 1 << 28


@dataclass
class BookChunk:
    """Book rows as exported (source rows plus truncation deletes), in ticks at the stream's precision."""

    side: np.ndarray  # int8: 0 bid, 1 ask
    price: np.ndarray  # int64 ticks
    amount: np.ndarray  # int64 lots
    timestamp: np.ndarray  # int64 ns
    local_timestamp: np.ndarray
    snapshot: np.ndarray  # bool: row of a snapshot (from a CLEAR row to its message's LAST row)
    clear: np.ndarray  # bool: the row a snapshot starts with (the book is reset before it)
    venue_symbol: str


@dataclass
class Report:
    files: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # data type -> rows written
    left_out: list[str] = field(default_factory=list)  # what was not exported, one line each
    local_ts_shift_ns: dict[str, int] = field(default_factory=dict)  # hftbacktest: latency correction per file

    def as_dict(self) -> dict:
        return {"files": self.files, "rows": self.rows, "left_out": self.left_out, "local_ts_shift_ns": self.local_ts_shift_ns}


def file_symbol(symbol: str) -> str:
    """A symbol as it appears in a tardis file name (`XBT/USD` -> `XBT-USD`, like tardis's client)."""
    return symbol.replace("/", "-").replace(":", "-")


def decimal_strings(ticks: np.ndarray, precision: int) -> pa.Array:
    """Exact decimal text of int64 ticks at `precision`, without trailing zeros (`59999.3`, `0`)."""
    ticks = np.asarray(ticks, dtype=np.int64)
    neg = ticks < 0
    mag = np.abs(ticks)
    if precision == 0:
        text = pc.cast(pa.array(mag), pa.string())
    else:
        scale = 10 ** precision
        whole = pc.cast(pa.array(mag // scale), pa.string())
        frac = pc.utf8_lpad(pc.cast(pa.array(mag % scale), pa.string()), precision, "0")
        text = pc.binary_join_element_wise(whole, frac, ".")
        text = pc.replace_substring_regex(pc.replace_substring_regex(text, r"0+$", ""), r"\.$", "")
    if neg.any():
        text = pc.if_else(pa.array(neg), pc.binary_join_element_wise("-", text, ""), text)
    return text


def _us(ns: np.ndarray) -> pa.Array:
    # floor division: a µs timestamp never lies after the ns one (the day of a row does not change)
    return pa.array(np.floor_divide(ns, 1000), pa.int64())


def _ns(col) -> np.ndarray:
    return pc.cast(col, pa.int64()).to_numpy(zero_copy_only=False)


def _meta(path: str) -> dict[str, str]:
    md = pq.read_schema(path).metadata or {}
    return {k.decode(): v.decode() for k, v in md.items() if k.startswith(b"lab.")}


def _time_span(path: str) -> tuple[int, int] | None:
    md = pq.ParquetFile(path).metadata
    i = md.schema.to_arrow_schema().get_field_index("local_timestamp")
    lo = hi = None
    for g in range(md.num_row_groups):
        st = md.row_group(g).column(i).statistics
        if st is not None and st.has_min_max:
            lo = st.min_raw if lo is None else min(lo, st.min_raw)
            hi = st.max_raw if hi is None else max(hi, st.max_raw)
    return None if lo is None else (lo, hi)


def _sessions_in_turn(files: list[str], what: str, report: Report) -> list[str]:
    """A stream's files, one session after another. A session overlapping the time of one
    already taken (redundant recording) is left out and reported: two books interleaved in one
    file would be neither."""
    spans = []
    for session, sfiles in by_session(files).items():
        ranges = [r for r in map(_time_span, sfiles) if r is not None]
        if ranges:
            spans.append((min(r[0] for r in ranges), max(r[1] for r in ranges), session, sfiles))
    out, end = [], None
    for lo, hi, session, sfiles in sorted(spans):
        if end is not None and lo <= end:
            report.left_out.append(f"{what}: session {session} overlaps an earlier session's time and was left out")
            continue
        out += sfiles
        end = hi
    return out


def _by_date(files: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in files:
        out.setdefault(_partition(f).get("date", "unknown"), []).append(f)
    return dict(sorted(out.items()))


class _BookExporter:
    """Turns one session-ordered stream of book row groups into exported chunks, carrying a
    message split across row groups to the next one and, when the stream is truncated to a
    depth, keeping an untruncated shadow book to find the levels the engine drops."""

    def __init__(self, price_precision: int, amount_precision: int, depth: int):
        self.pp, self.ap, self.depth = price_precision, amount_precision, depth
        self.carry: pa.Table | None = None
        self.book = None
        if depth > 0:
            from lab.rust_book import OrderBook

            self.book = OrderBook("", "", price_precision, amount_precision, 0)

    def feed(self, table: pa.Table, final: bool = False) -> BookChunk | None:
        if self.carry is not None:
            table = pa.concat_tables([self.carry, table.select(self.carry.column_names)])
            self.carry = None
        flags = table.column("flags").to_numpy(zero_copy_only=False).astype(np.uint8)
        ends = np.flatnonzero(flags & S.FLAG_LAST)
        cut = len(flags) if final or not len(flags) else (int(ends[-1]) + 1 if len(ends) else 0)
        if cut < table.num_rows:
            self.carry = table.slice(cut)
            table, flags = table.slice(0, cut), flags[:cut]
        if table.num_rows == 0:
            return None
        n = table.num_rows
        side = pc.equal(table.column("side"), "ask").to_numpy(zero_copy_only=False).astype(np.int8)
        price = mantissas(table.column("price"), self.pp)
        amount = mantissas(table.column("amount"), self.ap)
        ts, lts = _ns(table.column("timestamp")), _ns(table.column("local_timestamp"))
        idx = np.arange(n)
        # message start of each row; a row is a snapshot row when a CLEAR row of its message comes at or before it
        is_end = (flags & S.FLAG_LAST) != 0
        starts = np.concatenate(([0], np.flatnonzero(is_end[:-1]) + 1))
        msg_start = np.maximum.accumulate(np.where(np.isin(idx, starts), idx, 0))
        clear = (flags & S.FLAG_CLEAR) != 0
        last_clear = np.maximum.accumulate(np.where(clear, idx, -1))
        snapshot = last_clear >= msg_start
        vsym = table.column("venue_symbol")[0].as_py() if "venue_symbol" in table.column_names else None
        chunk = BookChunk(side, price, amount, ts, lts, snapshot, clear, vsym or "")
        if self.book is not None:
            chunk = self._with_truncation(chunk, flags)
        return chunk

    def _with_truncation(self, c: BookChunk, flags: np.ndarray) -> BookChunk:
        book, depth = self.book, self.depth
        bufs = (c.side.tobytes(), c.price.tobytes(), c.amount.tobytes(), flags.tobytes())
        extra: list[tuple[int, int, int]] = []  # (after row, side, price ticks)
        start, n = 0, len(flags)
        while start < n:
            end = book.apply_rows(*bufs, start)
            for s, count in ((0, book.bid_count), (1, book.ask_count)):
                if count > depth:
                    for price, _ in book.levels_ticks(s)[depth:]:
                        book.apply(s, price, 0)
                        extra.append((end - 1, s, price))
            start = end
        if not extra:
            return c
        at = np.array([e[0] for e in extra], dtype=np.int64)
        order = np.argsort(np.concatenate((np.arange(n) * 2, at * 2 + 1)), kind="stable")

        def cat(a, b):
            return np.concatenate((a, b))[order]

        return BookChunk(cat(c.side, np.array([e[1] for e in extra], np.int8)), cat(c.price, np.array([e[2] for e in extra], np.int64)),
                         cat(c.amount, np.zeros(len(extra), np.int64)), cat(c.timestamp, c.timestamp[at]),
                         cat(c.local_timestamp, c.local_timestamp[at]), cat(c.snapshot, c.snapshot[at]),
                         cat(c.clear, np.zeros(len(extra), bool)), c.venue_symbol)


def _book_chunks(files: list[str], ex: "_BookExporter", advance: Callable[[int], None]) -> Iterator[BookChunk]:
    cols = ["timestamp", "local_timestamp", "side", "price", "amount", "flags", "venue_symbol"]
    for f in files:
        pf = pq.ParquetFile(f)
        names = [c for c in cols if c in pf.schema_arrow.names]
        for g in range(pf.num_row_groups):
            t = pf.read_row_group(g, columns=names)
            chunk = ex.feed(t)
            advance(t.num_rows)
            if chunk is not None:
                yield chunk
    if ex.carry is not None:  # a file ending inside a message (should not happen): its rows as they are
        chunk = ex.feed(ex.carry.slice(0, 0), final=True)
        if chunk is not None:
            yield chunk


class _GzipCsv:
    """One tardis file, written batch by batch."""

    def __init__(self, path: str, columns: list[str]):
        self.path, self.columns = path, columns
        self.tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
        self.raw = gzip.open(self.tmp, "wb", compresslevel=6)
        # the header unquoted, as tardis writes it (pyarrow would quote the names)
        self.raw.write((",".join(columns) + "\n").encode())
        self.writer = None
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        table = table.select(self.columns)
        if self.writer is None:
            self.writer = pacsv.CSVWriter(self.raw, table.schema, write_options=pacsv.WriteOptions(include_header=False, quoting_style="none"))
        self.writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.raw.close()
        os.replace(self.tmp, self.path)


def _symbol_of(files: list[str], fallback: str) -> str:
    return _meta(files[0]).get("lab.venue_symbol", fallback) if files else fallback


def _precisions(files: list[str], what: str) -> tuple[int, int, int]:
    metas = [_meta(f) for f in files]
    pp, ap = stream_precisions(metas, files, f"{what}: files")
    return pp, ap, max(int(m.get("lab.depth", "0")) for m in metas)


def _tardis_book_table(c: BookChunk, venue: str, pp: int, ap: int) -> pa.Table:
    n = len(c.side)
    return pa.table({
        "exchange": pa.array([venue] * n, pa.string()),
        "symbol": pa.array([c.venue_symbol] * n, pa.string()),
        "timestamp": _us(c.timestamp),
        "local_timestamp": _us(c.local_timestamp),
        "is_snapshot": pa.array(c.snapshot),
        "side": pc.if_else(pa.array(c.side == 1), "ask", "bid"),
        "price": decimal_strings(c.price, pp),
        "amount": decimal_strings(c.amount, ap),
    })


def _trade_batches(files: list[str], pp: int, ap: int, advance) -> Iterator[dict]:
    for f in files:
        pf = pq.ParquetFile(f)
        for g in range(pf.num_row_groups):
            t = pf.read_row_group(g, columns=["timestamp", "local_timestamp", "id", "side", "price", "amount"])
            advance(t.num_rows)
            yield {"timestamp": _ns(t.column("timestamp")), "local_timestamp": _ns(t.column("local_timestamp")),
                   "id": t.column("id"), "side": t.column("side"), "price": mantissas(t.column("price"), pp),
                   "amount": mantissas(t.column("amount"), ap)}


def _tardis_trades_table(b: dict, venue: str, symbol: str, pp: int, ap: int) -> pa.Table:
    n = len(b["timestamp"])
    return pa.table({"exchange": pa.array([venue] * n, pa.string()), "symbol": pa.array([symbol] * n, pa.string()),
                     "timestamp": _us(b["timestamp"]), "local_timestamp": _us(b["local_timestamp"]),
                     "id": pc.cast(b["id"], pa.string()), "side": pc.cast(b["side"], pa.string()),
                     "price": decimal_strings(b["price"], pp), "amount": decimal_strings(b["amount"], ap)})


def _derived_table(t: pa.Table, venue: str, symbol: str, pp: int, ap: int, columns: list[str]) -> pa.Table:
    out = {"exchange": pa.array([venue] * t.num_rows, pa.string()), "symbol": pa.array([symbol] * t.num_rows, pa.string()),
           "timestamp": _us(_ns(t.column("timestamp"))), "local_timestamp": _us(_ns(t.column("local_timestamp")))}
    for name in columns[4:]:
        col = t.column(name)
        precision = pp if name.endswith("price") else ap
        valid = pc.is_valid(col).to_numpy(zero_copy_only=False)
        ticks = mantissas(pc.fill_null(col, pa.scalar(0, col.type)), precision)
        out[name] = pc.if_else(pa.array(valid), decimal_strings(ticks, precision), pa.scalar(None, pa.string()))
    return pa.table(out)


def _check_out(out: str) -> str:
    try:
        os.makedirs(out, exist_ok=True)
        probe = os.path.join(out, ".lab-export-probe")
        with open(probe, "wb"):
            pass
        os.remove(probe)
    except OSError as exc:
        raise CaptureError(f"cannot write to {out}: {exc.strerror or exc}") from None
    return out


def export(root: str, fmt: str, out: str, venue: str | None = None, symbols: list[str] | None = None,
           progress: Callable[[int, int], None] | None = None, skipped: list[tuple[str, str]] | None = None) -> Report:
    """Export the capture under `root` (optionally one venue / canonical symbols) to `out`."""
    if fmt not in FORMATS:
        raise CaptureError(f"unknown format {fmt!r} (one of: {', '.join(FORMATS)})")
    if not os.path.isdir(root):
        raise CaptureError(f"capture root {root!r} does not exist")
    root = normalize_path(root)
    skipped = [] if skipped is None else skipped
    books = streams_in(root, "book", venue, symbols, skipped)
    trades = streams_in(root, "trades", venue, symbols, skipped)
    if not books and not trades:
        everything = set(streams_in(root, "book", skipped=[])) | set(streams_in(root, "trades", skipped=[]))
        venues = sorted({v for v, _ in everything})
        if not everything:
            raise CaptureError(f"no book or trades files under {root}: nothing to export")
        if venue is not None and venue not in venues:
            raise CaptureError(f"venue {venue!r} is not in the capture (it holds: {', '.join(venues)})")
        held = sorted({s for v, s in everything if venue is None or v == venue})
        raise CaptureError(f"symbol {', '.join(symbols or [])} is not in the capture" + (f" for {venue}" if venue else "")
                           + f" (it holds: {', '.join(held)})")
    _check_out(out)
    report = Report()
    total = sum(pq.ParquetFile(f).metadata.num_rows for fs in (*books.values(), *trades.values()) for f in fs)
    done = [0]

    def advance(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(done[0], total)

    for key in sorted(set(books) | set(trades), key=lambda k: (str(k[0]), str(k[1]))):
        v, s = key
        what = f"{v}/{s}"
        bfiles = _sessions_in_turn(books.get(key, []), what + " book", report)
        tfiles = _sessions_in_turn(trades.get(key, []), what + " trades", report)
        if fmt == "tardis":
            _export_tardis(root, v, s, bfiles, tfiles, out, report, advance, skipped)
        else:
            _export_hftbacktest(v, s, bfiles, tfiles, out, report, advance)
    return report


def _export_tardis(root, venue, symbol, bfiles, tfiles, out, report, advance, skipped) -> None:
    def open_file(data_type: str, date: str, vsym: str, columns: list[str]) -> _GzipCsv:
        return _GzipCsv(os.path.join(out, f"{venue}_{data_type}_{date}_{file_symbol(vsym)}.csv.gz"), columns)

    def finish(w: _GzipCsv, data_type: str) -> None:
        w.close()
        report.files.append(w.path)
        report.rows[data_type] = report.rows.get(data_type, 0) + w.rows

    if bfiles:
        pp, ap, depth = _precisions(bfiles, f"{venue}/{symbol} book")
        vsym = _symbol_of(bfiles, symbol)
        ex = _BookExporter(pp, ap, depth)  # one per stream: its shadow book runs across days
        for date, files in _by_date(bfiles).items():
            w = open_file("incremental_book_L2", date, vsym, BOOK_COLUMNS)
            for chunk in _book_chunks(files, ex, advance):
                w.write(_tardis_book_table(chunk, venue, pp, ap))
            finish(w, "incremental_book_L2")
    if tfiles:
        pp, ap, _ = _precisions(tfiles, f"{venue}/{symbol} trades")
        vsym = _symbol_of(tfiles, symbol)
        for date, files in _by_date(tfiles).items():
            w = open_file("trades", date, vsym, TRADE_COLUMNS)
            for b in _trade_batches(files, pp, ap, advance):
                w.write(_tardis_trades_table(b, venue, vsym, pp, ap))
            finish(w, "trades")
    derived = ["quotes"] + sorted(d for d in os.listdir(root) if re.fullmatch(r"book_snapshot_\d+", d))
    for table in derived:
        files = streams_in(root, table, venue, [symbol], skipped).get((venue, symbol), [])
        files = _sessions_in_turn(files, f"{venue}/{symbol} {table}", report)
        if not files:
            report.left_out.append(f"{venue}/{symbol}: no {table} (run `lab rebuild` first to export quotes and book_snapshot_N)"
                                   if table == "quotes" else f"{venue}/{symbol}: no {table}")
            continue
        pp, ap, _ = _precisions(files, f"{venue}/{symbol} {table}")
        vsym = _symbol_of(files, symbol)
        for date, dfiles in _by_date(files).items():
            first = pq.read_schema(dfiles[0]).names
            columns = QUOTE_COLUMNS if table == "quotes" else BOOK_COLUMNS[:4] + [c for c in first if c.startswith(("asks[", "bids["))]
            w = open_file(table, date, vsym, columns)
            for f in dfiles:
                pf = pq.ParquetFile(f)
                for g in range(pf.num_row_groups):
                    w.write(_derived_table(pf.read_row_group(g, columns=["timestamp", "local_timestamp", *columns[4:]]), venue, vsym, pp, ap, columns))
            finish(w, table)


def _book_events(c: BookChunk, pp: int, ap: int) -> np.ndarray:
    """hftbacktest events of exported book rows: DEPTH_EVENT per update row; a snapshot becomes one
    DEPTH_CLEAR_EVENT without a side (hftbacktest clears both sides: our CLEAR resets the whole
    book) followed by DEPTH_SNAPSHOT_EVENT rows."""
    n = len(c.side)
    nclear = int(c.clear.sum())
    ev = np.zeros(n + nclear, EVENT_DTYPE)
    # each clear event goes right before its CLEAR row
    pos = np.arange(n) + np.cumsum(c.clear)
    side_flag = np.where(c.side == 1, SELL_EVENT, BUY_EVENT).astype(np.uint64)
    kind = np.where(c.snapshot, DEPTH_SNAPSHOT_EVENT, DEPTH_EVENT).astype(np.uint64)
    ev["ev"][pos] = kind | side_flag
    ev["exch_ts"][pos], ev["local_ts"][pos] = c.timestamp, c.local_timestamp
    ev["px"][pos] = c.price / 10.0 ** pp
    ev["qty"][pos] = c.amount / 10.0 ** ap
    cpos = pos[c.clear] - 1
    ev["ev"][cpos] = DEPTH_CLEAR_EVENT
    ev["exch_ts"][cpos], ev["local_ts"][cpos] = c.timestamp[c.clear], c.local_timestamp[c.clear]
    return ev


def _trade_events(b: dict, pp: int, ap: int) -> np.ndarray:
    n = len(b["timestamp"])
    ev = np.zeros(n, EVENT_DTYPE)
    side = b["side"].to_numpy(zero_copy_only=False) if hasattr(b["side"], "to_numpy") else np.asarray(b["side"])
    flag = np.where(side == "buy", BUY_EVENT, np.where(side == "sell", SELL_EVENT, 0)).astype(np.uint64)
    ev["ev"] = TRADE_EVENT | flag
    ev["exch_ts"], ev["local_ts"] = b["timestamp"], b["local_timestamp"]
    ev["px"], ev["qty"] = b["price"] / 10.0 ** pp, b["amount"] / 10.0 ** ap
    return ev


def correct_local_timestamp(data: np.ndarray) -> int:
    """hftbacktest's `correct_local_timestamp(data, 0)`, in place: when some event's local time is
    before its exchange time, every local time moves by that amount. Returns the shift (ns)."""
    if not len(data):
        return 0
    latency = int((data["local_ts"] - data["exch_ts"]).min())
    if latency < 0:
        data["local_ts"] += -latency
        return -latency
    return 0


def correct_event_order(data: np.ndarray) -> np.ndarray:
    """hftbacktest's `correct_event_order` (data/validation.py), same algorithm and result: events
    in exchange and local order, an event in the same place in both carrying EXCH|LOCAL, the others
    duplicated, one copy with EXCH in exchange order and one with LOCAL in local order."""
    n = len(data)
    ex = np.argsort(data["exch_ts"], kind="mergesort")
    lo = np.argsort(data["local_ts"], kind="mergesort")
    if n == 0:
        return data.copy()
    if np.array_equal(ex, lo):  # the usual case: one order for both clocks
        out = data[ex].copy()
        out["ev"] |= np.uint64(EXCH_EVENT | LOCAL_EVENT)
        return out
    ets, lts = data["exch_ts"].tolist(), data["local_ts"].tolist()
    ex_l, lo_l = ex.tolist(), lo.tolist()
    pick, flag = [], []
    e = l = 0
    while e < n or l < n:
        se = ex_l[e] if e < n else None
        sl = lo_l[l] if l < n else None
        if se is not None and sl is not None and ets[se] == ets[sl] and lts[se] == lts[sl]:
            pick.append(se); flag.append(EXCH_EVENT | LOCAL_EVENT); e += 1; l += 1
        elif se is not None and (sl is None or ets[se] < ets[sl] or (ets[se] == ets[sl] and lts[se] < lts[sl])):
            pick.append(se); flag.append(EXCH_EVENT); e += 1
        else:
            pick.append(sl); flag.append(LOCAL_EVENT); l += 1
    out = data[np.array(pick, dtype=np.int64)].copy()
    out["ev"] |= np.array(flag, dtype=np.uint64)
    return out


def _export_hftbacktest(venue, symbol, bfiles, tfiles, out, report, advance) -> None:
    bdates, tdates = _by_date(bfiles), _by_date(tfiles)
    bp = _precisions(bfiles, f"{venue}/{symbol} book") if bfiles else None
    tp = _precisions(tfiles, f"{venue}/{symbol} trades") if tfiles else None
    vsym = _symbol_of(bfiles or tfiles, symbol)
    ex = _BookExporter(*bp) if bp else None
    for date in sorted(set(bdates) | set(tdates)):
        parts, keys = [], []
        for chunk in (_book_chunks(bdates[date], ex, advance) if date in bdates else ()):
            ev = _book_events(chunk, bp[0], bp[1])
            parts.append(ev)
            keys.append(np.ones(len(ev), np.int8))
        for b in (_trade_batches(tdates[date], tp[0], tp[1], advance) if date in tdates else ()):
            ev = _trade_events(b, tp[0], tp[1])
            parts.append(ev)
            keys.append(np.zeros(len(ev), np.int8))
        data = np.concatenate(parts) if parts else np.zeros(0, EVENT_DTYPE)
        # local order; at one local time trades before depth, as hftbacktest's converter asks
        # (trades files first), each stream in its own order
        order = np.lexsort((np.arange(len(data)), np.concatenate(keys) if keys else np.zeros(0, np.int8), data["local_ts"]))
        data = data[order]
        shift = correct_local_timestamp(data)
        data = correct_event_order(data)
        path = os.path.join(out, f"{venue}_{file_symbol(vsym)}_{date.replace('-', '')}.npz")
        tmp = os.path.join(out, "." + os.path.basename(path) + ".tmp")
        with open(tmp, "wb") as f:
            np.savez_compressed(f, data=data)
        os.replace(tmp, path)
        report.files.append(path)
        report.rows["events"] = report.rows.get("events", 0) + len(data)
        if shift:
            report.local_ts_shift_ns[os.path.basename(path)] = shift
