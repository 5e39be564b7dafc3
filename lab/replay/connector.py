"""Replay a capture through the same callback interface live connectors offer.

Book messages and trades of every selected stream are merged in `(local_timestamp, venue, rec_id)`
order; each book message is applied in the Rust book (`OrderBook.apply_rows`, rows up to LAST)
and the callback receives the same reused `OrderBook` view a live connector gives. A CLEAR row
resets the book; a gap, checksum mismatch or disconnect in `events` marks the book unsynced until
the next CLEAR: replay never bridges a gap.
"""
from __future__ import annotations

import threading
import time
from decimal import Decimal
from typing import Callable

import numpy as np
import pyarrow as pa

from lab.datasets import schema as S
from lab.recorder.sync import Trade
from lab.rust_book import OrderBook
from lab.symbols import UnknownSymbol, canonical_list, key, resolve

from .reader import CaptureError, load_book, read_file, streams_in, mantissas

UNSYNC_EVENTS = {"gap", "checksum_mismatch", "disconnect", "resync", "overflow"}
_BOOK, _TRADE, _EVENT = 0, 1, 2


class ReplayConnector:
    """`start_stream(symbol, on_book, on_trade)` registers callbacks; `run()` replays (blocking),
    `start()` replays in a background thread (`wait()` joins it), like a live stream."""

    def __init__(self, path: str, venue: str | None = None, symbols: list[str] | None = None,
                 start_ns: int | None = None, end_ns: int | None = None, speed: float | None = None,
                 progress: Callable[[int, int], None] | None = None):
        self.path = path
        self.progress = progress  # progress(events done, total), about every 0.1 s
        self.venue = venue
        # venue (`XBT/USD`) or canonical (`XBT-USD`) spelling, any case: partitions are canonical
        symbols = canonical_list(symbols)
        self.symbols = symbols
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.speed = speed
        self._callbacks: dict[str, tuple[Callable, Callable | None]] = {}
        self._books: dict[tuple[str, str], OrderBook] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.summary: dict | None = None
        self._book_streams = streams_in(path, "book", venue, symbols)
        if not self._book_streams and not streams_in(path, "trades", venue, symbols):
            raise CaptureError(f"no book or trades files under {path}" + (f" for {venue}" if venue else "") + (f" {symbols}" if symbols else ""))

    def __repr__(self) -> str:
        opts = "".join(f", {k}={v!r}" for k, v in (("venue", self.venue), ("symbols", self.symbols), ("start_ns", self.start_ns),
                                                     ("end_ns", self.end_ns), ("speed", self.speed)) if v is not None)
        streams = ", ".join(f"{v}/{s}" for v, s in sorted(self._book_streams))
        state = "running" if self._thread is not None and self._thread.is_alive() else "done" if self.summary is not None else "ready"
        return f"<ReplayConnector {self.path!r}{opts}: {len(self._book_streams)} book streams [{streams}], {state}>"

    # -- the live interface -------------------------------------------------------------------
    def list_symbols(self) -> list[str]:
        return sorted({s for _, s in self._book_streams})

    def start_stream(self, symbol: str, on_book: Callable[[OrderBook], None], on_trade: Callable[[Trade], None] | None = None) -> None:
        """`on_book(book)` after every applied message: one `OrderBook` view per stream, reused
        between calls and valid during the call (as live); `book.copy()` keeps one."""
        if symbol != "*":
            try:
                symbol = resolve(symbol, self.list_symbols(), "the capture")
            except UnknownSymbol as exc:
                raise CaptureError(str(exc)) from None
        self._callbacks[symbol] = (on_book, on_trade)

    def latest_snapshot(self, symbol: str | None = None) -> OrderBook | None:
        for (v, s), book in self._books.items():
            if symbol is None or s == key(symbol):
                return book.copy()
        return None

    def stop_stream(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="lab-replay", daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> dict | None:
        if self._thread is None:
            self.start()
        self._thread.join(timeout)
        return self.summary

    # -- replay -------------------------------------------------------------------------------
    def run(self) -> dict:
        wanted = set(self._callbacks) if self._callbacks and "*" not in self._callbacks else None
        streams = {k: v for k, v in self._book_streams.items() if wanted is None or k[1] in wanted}
        books = {k: load_book(files, *k) for k, files in streams.items()}
        trade_files = streams_in(self.path, "trades", self.venue, sorted(wanted) if wanted else self.symbols)
        trades = {k: read_file_many(files) for k, files in trade_files.items()}
        events = self._load_events(set(streams) | set(trade_files))

        keys = sorted(set(books) | set(trades))
        venue_rank = {v: i for i, v in enumerate(sorted({v for v, _ in keys}))}
        parts = []  # (local_ts, venue_rank, rec_id, kind, stream index, row index)
        for si, key in enumerate(keys):
            rank = venue_rank[key[0]]
            if key in books:
                b = books[key]
                ends = b.message_ends
                parts.append(_index(b.local_timestamp[ends], rank, b.rec_id[ends], _BOOK, si, ends))
            if key in trades:
                t = trades[key]
                n = t["num_rows"]
                parts.append(_index(t["local_ns"], rank, t["rec_id"], _TRADE, si, np.arange(n)))
        for i, (local_ts, rec_id, venue, symbol, _) in enumerate(events):
            parts.append(_index(np.array([local_ts]), venue_rank.get(venue, 0), np.array([rec_id]), _EVENT, -1, np.array([i])))
        if not parts:
            self.summary = {"messages": 0, "trades": 0, "gaps": 0, "streams": {}}
            return self.summary
        order = np.concatenate(parts, axis=1)
        # Events sort before the rows of the same frame: a gap is known before the message after it.
        perm = np.lexsort((order[3] != _EVENT, order[2], order[1], order[0]))
        order = order[:, perm]
        if self.start_ns is not None or self.end_ns is not None:
            lo = self.start_ns if self.start_ns is not None else np.iinfo(np.int64).min
            hi = self.end_ns if self.end_ns is not None else np.iinfo(np.int64).max
            keep = (order[0] >= lo) & (order[0] < hi)
        else:
            keep = None

        for key, b in books.items():
            book = OrderBook(key[0], key[1], b.price_precision, b.amount_precision, b.depth)
            book.synced = False
            self._books[key] = book
        cursor = {key: 0 for key in books}
        # Whether each book was in sync at its last message: the disconnect that ends every
        # recording unsyncs the book afterwards, which says nothing about the data.
        synced_at_last: dict[tuple[str, str], bool] = {}
        messages = trade_count = gaps = 0
        t0_wall = time.monotonic()
        t0_data = None
        bufs = {key: (b.sides.tobytes(), b.prices.tobytes(), b.amounts.tobytes(), b.flags.tobytes()) for key, b in books.items()}
        progress, total, next_report = self.progress, order.shape[1], time.monotonic()
        for j in range(order.shape[1]):
            if self._stop.is_set():
                break
            if progress is not None and ((j & 1023) == 0 or self.speed) and time.monotonic() >= next_report:
                progress(j, total)
                next_report = time.monotonic() + 0.1
            local_ts, _, _, kind, si, row = (int(x) for x in order[:, j])
            if self.end_ns is not None and local_ts >= self.end_ns:
                break
            if kind == _EVENT:
                _, _, venue, symbol, ev_kind = events[row]
                if ev_kind == "gap":
                    gaps += 1
                for key, book in self._books.items():
                    if key[0] == venue and (symbol is None or key[1] == symbol):
                        book.synced = False
                continue
            key = keys[si]
            in_window = keep is None or keep[j]
            if self.speed and in_window:
                if t0_data is None:
                    t0_data = local_ts
                delay = (local_ts - t0_data) / 1e9 / self.speed - (time.monotonic() - t0_wall)
                if delay > 0:
                    time.sleep(delay)
            if kind == _BOOK:
                b = books[key]
                book = self._books[key]
                start = cursor[key]
                if b.flags[start] & S.FLAG_CLEAR:
                    book.synced = True
                sides, prices, amounts, flags = bufs[key]
                end = book.apply_rows(sides, prices, amounts, flags, start)
                cursor[key] = end
                book.timestamp = int(b.timestamp[row])
                book.local_timestamp = local_ts
                book.seq = int(b.last_seq[row])
                messages += 1
                synced_at_last[key] = book.synced
                if in_window:
                    cb = self._callbacks.get(key[1]) or self._callbacks.get("*")
                    if cb is not None:
                        cb[0](book)
            else:
                trade_count += 1
                if in_window:
                    cb = self._callbacks.get(key[1]) or self._callbacks.get("*")
                    if cb is not None and cb[1] is not None:
                        cb[1](trades[key]["trade"](row))
        if progress is not None:
            progress(total, total)
        self.summary = {
            "messages": messages,
            "trades": trade_count,
            "gaps": gaps,
            "streams": {
                f"{v}/{s}": {
                    "venue": v, "symbol": s, "seq": book.seq, "synced": synced_at_last.get((v, s), False),
                    "best_bid": _price(book.best_bid()),
                    "best_ask": _price(book.best_ask()),
                    "checksum": book.mock_checksum() if v == "mock" else book.kraken_checksum() if v == "kraken" else None,
                }
                for (v, s), book in self._books.items()
            },
        }
        return self.summary

    def _load_events(self, keys: set[tuple[str, str]]) -> list[tuple[int, int, str, str | None, str]]:
        venues = {v for v, _ in keys}
        out = []
        for (venue, _), files in streams_in(self.path if not _is_file(self.path) else _root_of(self.path), "events", None, None).items():
            if venue not in venues:
                continue
            for f in files:
                t = read_file(f)
                for ts, rec, kind, sym in zip(t.column("local_timestamp").cast(pa.int64()).to_pylist(), t.column("rec_id").to_pylist(), t.column("kind").to_pylist(), t.column("symbol").to_pylist()):
                    if kind in UNSYNC_EVENTS and (sym is None or (venue, sym) in keys):
                        out.append((ts, rec, venue, sym, kind))
        return out


def _is_file(path: str) -> bool:
    import os

    return os.path.isfile(path)


def _root_of(path: str) -> str:
    """A single book file has no events beside it unless it sits in a capture root."""
    import os

    parts = os.path.abspath(path).split(os.sep)
    for i, p in enumerate(parts):
        if p.startswith("venue=") and i > 1:
            return os.sep.join(parts[: i - 1]) or os.sep
    return os.path.dirname(path)


def _index(local_ts, rank, rec_id, kind, stream, rows) -> np.ndarray:
    n = len(rows)
    out = np.empty((6, n), dtype=np.int64)
    out[0] = local_ts
    out[1] = rank
    out[2] = rec_id
    out[3] = kind
    out[4] = stream
    out[5] = rows
    return out


def _price(level) -> Decimal | None:
    return None if level is None else level[0]


def read_file_many(files: list[str]) -> dict:
    tables = [read_file(f) for f in files]
    meta = {k.decode(): v.decode() for k, v in (tables[0].schema.metadata or {}).items()}
    table = pa.concat_tables([t.drop_columns([c for c in ("venue", "symbol", "date") if c in t.column_names]) for t in tables])
    pp, ap = int(meta.get("lab.price_precision", 0)), int(meta.get("lab.amount_precision", 0))
    venue, symbol = meta.get("lab.venue", "?"), meta.get("lab.symbol", "?")
    ts = table.column("timestamp").cast(pa.int64()).to_pylist()
    lts = table.column("local_timestamp").cast(pa.int64()).to_pylist()
    ids, sides = table.column("id").to_pylist(), table.column("side").to_pylist()
    prices, amounts = mantissas(table.column("price"), pp), mantissas(table.column("amount"), ap)

    def trade(i: int) -> Trade:
        return Trade(venue, symbol, ts[i], lts[i], ids[i], sides[i], Decimal(int(prices[i])).scaleb(-pp), Decimal(int(amounts[i])).scaleb(-ap))

    return {"num_rows": table.num_rows, "local_ns": np.asarray(lts, dtype=np.int64), "rec_id": table.column("rec_id").to_numpy(), "trade": trade}
