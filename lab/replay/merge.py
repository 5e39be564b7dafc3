"""The streaming k-way merge behind replay: a capture's selected streams, read file by file, merged
in `(local_timestamp, venue, rec_id)` order in windows of bounded size.

Each stream (a recorder session's book or trades of one (venue, symbol)) is a `Source` that reads
its files in order and keeps a buffer of at least `window_rows` rows (one file at a time, each
file's Arrow table freed once its columns are out). A window's bound is the smallest "last key
loaded" over the sources that still have files to read: every entry with a key below it is
loaded already, in every source, so the entries below the bound, sorted (`merge_order`), are
exactly the next stretch of the whole capture's merged order. The window hands them to the
consumer and the sources drop them. Concatenated, the windows are the order a whole-capture sort
would give; memory is the sources' buffers, not the capture.

A stream's merge key is its entries' local time, as a running maximum over the stream: where a
session's clock stepped back, its later entries still come after its earlier ones (a book's
messages are applied in row order anyway). Events (the few that unsync a book) are loaded whole.

A book file that cannot be read (its footer or its data) is a hole in its stream:
the rows of the message it cut are dropped, and an `unreadable_file` event before the next
message unsyncs the book until its next CLEAR. Replay never bridges a hole.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lab.core.events import UNSYNC_EVENTS
from lab.core.model import Trade
from lab.datasets import schema as S
from lab.datasets.reader import CaptureError, by_session, find_files, load_book, mantissas, read_file, session_of, stream_precisions, streams_in

BOOK, TRADE, EVENT = 0, 1, 2  # kinds of merged entries
HOLE_EVENT = "unreadable_file"  # a book file replay could not read: its book is unsynced after it
WINDOW_ROWS = 1 << 16  # rows each source keeps loaded (at least one file's)
_INT64_MIN = np.iinfo(np.int64).min

# the columns of a book message's rows replay reads, as `OrderBook.apply_rows` and the driver take them
_BOOK_COLUMNS = ("sides", "prices", "amounts", "flags", "timestamp", "local_timestamp", "last_seq")
_TRADE_COLUMNS = ("timestamp", "local_timestamp", "ids", "sides", "prices", "amounts")


@dataclass
class BookChunk:
    """A window's messages of one book stream: whole messages, in row order."""
    sides: np.ndarray
    prices: np.ndarray
    amounts: np.ndarray
    flags: np.ndarray
    timestamp: np.ndarray
    local_timestamp: np.ndarray
    last_seq: np.ndarray
    message_ends: np.ndarray  # index of each message's LAST row


@dataclass
class TradeChunk:
    """A window's trades of one stream; `trade(i)` builds the i-th as the callbacks get it."""
    venue: str
    symbol: str
    price_precision: int
    amount_precision: int
    timestamp: np.ndarray
    local_timestamp: np.ndarray
    ids: np.ndarray  # object
    sides: np.ndarray  # object
    prices: np.ndarray  # ticks
    amounts: np.ndarray  # lots

    @property
    def num_rows(self) -> int:
        return len(self.ids)

    def trade(self, i: int) -> Trade:
        pp, ap = self.price_precision, self.amount_precision
        return Trade(self.venue, self.symbol, int(self.timestamp[i]), int(self.local_timestamp[i]), self.ids[i], self.sides[i],
                     Decimal(int(self.prices[i])).scaleb(-pp), Decimal(int(self.amounts[i])).scaleb(-ap))

    def id(self, i: int):
        return self.ids[i]


@dataclass
class StreamInfo:
    """What a book stream's footers say: enough to make its book before any row is read."""
    price_precision: int
    amount_precision: int
    depth: int


class _Source:
    """One stream's files, read in order into a buffer of numpy columns; entries leave the buffer
    in key order (`take`)."""

    def __init__(self, key: tuple[str, str, str], files: list[str], offset_ns: int, skipped: list[tuple[str, str]]):
        self.key = key
        self.files = files
        self.offset_ns = offset_ns
        self.skipped = skipped
        self.next_file = 0
        self.cols: dict[str, np.ndarray] = {}
        self.keys = np.empty(0, np.int64)  # merge key of each entry in the buffer
        self.rec = np.empty(0, np.int64)  # its rec_id
        self.running = _INT64_MIN  # the running maximum of the local times read so far
        self.rows_total = sum(_num_rows(f) for f in files)
        self.rows_taken = 0
        self.loaded_any = False

    @property
    def exhausted(self) -> bool:
        return self.next_file >= len(self.files)

    @property
    def rows(self) -> int:
        return len(next(iter(self.cols.values()))) if self.cols else 0

    @property
    def last_key(self) -> int:
        return int(self.keys[-1]) if len(self.keys) else _INT64_MIN

    def fill(self, target: int) -> None:
        """Read files until the buffer holds `target` rows and a whole entry, or none is left."""
        while not self.exhausted and (self.rows < target or not len(self.keys)):
            self.load_one()

    def load_one(self) -> None:
        path = self.files[self.next_file]
        self.next_file += 1
        part = self._read(path)
        if part is None:
            return
        cols, entry_rows, local = part
        offset = self.rows
        self.cols = {k: np.concatenate((self.cols[k], v)) if self.cols else v for k, v in cols.items()}
        keys = np.maximum.accumulate(np.maximum(local, self.running)) if len(local) else local
        if len(keys):
            self.running = int(keys[-1])
        self._add_entries(entry_rows + offset, keys)
        self.loaded_any = True

    def _cut(self, rows: int) -> dict[str, np.ndarray]:
        """The first `rows` rows of the buffer, which keeps the rest."""
        head = {k: v[:rows] for k, v in self.cols.items()}
        self.cols = {k: v[rows:] for k, v in self.cols.items()}
        self.rows_taken += rows
        return head


class BookSource(_Source):
    def __init__(self, key, files, offset_ns, skipped, unreadable: set[str] = frozenset()):
        super().__init__(key, files, offset_ns, skipped)
        self.unreadable = unreadable  # files known unreadable already (listed in `skipped`)
        self.file_messages: dict[str, int] = {}  # whole messages per file, where counted (MergePlan.message_count)
        self.lost_messages = 0  # counted messages of files found unreadable since the consumer last looked
        self.ends = np.empty(0, np.int64)  # buffer row of each whole message's LAST row
        self.holes: list[tuple] = []  # synthetic events not yet taken
        self._hole = False

    def _read(self, path: str):
        v, s, session = self.key
        try:
            if path in self.unreadable:
                raise CaptureError(path)
            b = load_book([path], v, s, self.skipped, checksums=False)
        except CaptureError as exc:
            # unreadable in any way (pages, a value that is no whole tick): a hole, listed
            if not any(path == bad for bad, _ in self.skipped):
                self.skipped.append((path, str(exc).split(": ", 1)[-1]))
            self.lost_messages += self.file_messages.get(path, 0)
            # a hole: the message it cut cannot be completed
            if self.rows:
                keep = int(self.ends[-1]) + 1 if len(self.ends) else 0
                self.cols = {k: c[:keep] for k, c in self.cols.items()}
            self._hole = True
            return None
        if self.offset_ns:
            b.local_timestamp = b.local_timestamp + self.offset_ns
        ends = b.message_ends
        cols = {k: getattr(b, k) for k in _BOOK_COLUMNS}
        cols["rec_id"] = b.rec_id
        return cols, ends, b.local_timestamp[ends]

    def _add_entries(self, ends, keys) -> None:
        rec = self.cols["rec_id"][ends]
        if self._hole and len(ends):
            self.holes.append((int(keys[0]), int(rec[0]), self.key[0], self.key[1], HOLE_EVENT, self.key[2]))
            self._hole = False
        self.ends = np.concatenate((self.ends, ends))
        self.keys = np.concatenate((self.keys, keys))
        self.rec = np.concatenate((self.rec, rec))

    def take(self, bound: int | None) -> tuple[BookChunk | None, np.ndarray, np.ndarray, list[tuple]]:
        """The whole messages keyed below `bound` (None: every whole message; the rows of a
        message the stream's data ends in the middle of are dropped): (chunk, keys, rec_ids,
        hole events)."""
        m = len(self.keys) if bound is None else int(np.searchsorted(self.keys, bound, side="left"))
        holes = [h for h in self.holes if bound is None or h[0] < bound]
        self.holes = [h for h in self.holes if h not in holes]
        if m == 0:
            if bound is None:
                self.cols = {}
            return None, self.keys[:0], self.rec[:0], holes
        rows = int(self.ends[m - 1]) + 1
        head = self._cut(rows)
        chunk = BookChunk(**{k: head[k] for k in _BOOK_COLUMNS}, message_ends=self.ends[:m])
        keys, rec = self.keys[:m], self.rec[:m]
        self.ends, self.keys, self.rec = self.ends[m:] - rows, self.keys[m:], self.rec[m:]
        if bound is None:
            self.cols = {}
        return chunk, keys, rec, holes


class TradeSource(_Source):
    def __init__(self, key, files, offset_ns, skipped):
        super().__init__(key, files, offset_ns, skipped)
        self.meta: dict[str, str] | None = None

    def _read(self, path: str):
        try:
            t = read_file(path, ["timestamp", "local_timestamp", "id", "side", "price", "amount", "rec_id"])
        except CaptureError as exc:
            self.skipped.append((path, str(exc).split("(", 1)[-1].rstrip(")")))
            return None
        if self.meta is None:
            self.meta = {k.decode(): v.decode() for k, v in (t.schema.metadata or {}).items()}
        pp, ap = self.precisions
        try:
            prices, amounts = mantissas(t.column("price"), pp), mantissas(t.column("amount"), ap)
        except ValueError as exc:  # damaged data (no whole tick): the file is skipped, listed
            self.skipped.append((path, str(exc)))
            return None
        local = t.column("local_timestamp").cast(pa.int64()).to_numpy() + self.offset_ns
        cols = {
            "timestamp": t.column("timestamp").cast(pa.int64()).to_numpy(),
            "local_timestamp": local,
            "ids": _objects(t.column("id").to_pylist()),
            "sides": _objects(t.column("side").to_pylist()),
            "prices": prices,
            "amounts": amounts,
            "rec_id": t.column("rec_id").to_numpy(),
        }
        return cols, np.arange(t.num_rows, dtype=np.int64), local

    @property
    def precisions(self) -> tuple[int, int]:
        m = self.meta or {}
        return int(m.get("lab.price_precision", 0)), int(m.get("lab.amount_precision", 0))

    def _add_entries(self, rows, keys) -> None:
        self.keys = np.concatenate((self.keys, keys))
        self.rec = np.concatenate((self.rec, self.cols["rec_id"][rows]))

    def take(self, bound: int | None) -> tuple[TradeChunk | None, np.ndarray, np.ndarray, list[tuple]]:
        m = len(self.keys) if bound is None else int(np.searchsorted(self.keys, bound, side="left"))
        if m == 0:
            return None, self.keys[:0], self.rec[:0], []
        head = self._cut(m)
        keys, rec = self.keys[:m], self.rec[:m]
        self.keys, self.rec = self.keys[m:], self.rec[m:]
        meta = self.meta or {}
        pp, ap = self.precisions
        chunk = TradeChunk(meta.get("lab.venue", "?"), meta.get("lab.symbol", "?"), pp, ap, **{k: head[k] for k in _TRADE_COLUMNS})
        return chunk, keys, rec, []


@dataclass
class Window:
    """One stretch of the merged order: `order[i]` (i = 0 local_ts, 3 kind, 4 stream index into
    `keys`, 5 row index into the stream's chunk, or into `events`) per entry, sorted by
    `merge_order`."""
    books: dict  # (venue, symbol, session) -> BookChunk
    trades: dict  # (venue, symbol, session) -> TradeChunk
    events: list  # (local_ts, rec_id, venue, symbol, kind, session)
    order: dict[int, np.ndarray]

    @property
    def entries(self) -> int:
        return len(self.order[0])


@dataclass
class MergePlan:
    """A capture's selected streams, ready to be merged: the books' footers (`book_info`), the
    sessions' message counts on request, and `windows()`, the merged order stretch by stretch."""
    book_sources: dict  # (venue, symbol, session) -> BookSource
    trade_sources: dict  # (venue, symbol, session) -> TradeSource
    book_info: dict  # (venue, symbol, session) -> StreamInfo
    events: list  # sorted by local time
    keys: list  # every stream, in stream-index order
    skipped: list = field(default_factory=list)

    @property
    def rows_total(self) -> int:
        return sum(s.rows_total for s in self.sources()) + len(self.events)

    @property
    def rows_taken(self) -> int:
        return sum(s.rows_taken for s in self.sources())

    def sources(self) -> list[_Source]:
        return [*self.book_sources.values(), *self.trade_sources.values()]

    def message_count(self, key: tuple[str, str, str]) -> int:
        """The whole messages of a book stream (its LAST rows; a flags-only read of its files)."""
        source, n = self.book_sources[key], 0
        for f in source.files:
            try:
                source.file_messages[f] = int(np.count_nonzero(read_file(f, ["flags"]).column("flags").to_numpy() & S.FLAG_LAST))
            except CaptureError:
                continue
            n += source.file_messages[f]
        return n

    def windows(self, window_rows: int = WINDOW_ROWS):
        """The merged order, window by window (see the module doc)."""
        sources = self.sources()
        index = {k: i for i, k in enumerate(self.keys)}
        venue_rank = {v: i for i, v in enumerate(sorted({k[0] for k in self.keys}))}
        session_rank = {x: i for i, x in enumerate(sorted({k[2] for k in self.keys}))}
        events, event_ts = self.events, [e[0] for e in self.events]
        event_pos = 0
        while True:
            for s in sources:
                s.fill(window_rows)
            open_keys = [s.last_key for s in sources if not s.exhausted]
            bound = min(open_keys) if open_keys else None
            cols: list[list[np.ndarray]] = [[] for _ in range(7)]
            books, trades = {}, {}
            taken_events = []
            for s in sources:
                chunk, keys, rec, holes = s.take(bound)
                taken_events.extend(holes)
                if chunk is None:
                    continue
                si, rank, srank = index[s.key], venue_rank[s.key[0]], session_rank[s.key[2]]
                if isinstance(s, BookSource):
                    books[s.key] = chunk
                    _index(cols, keys, rank, rec, BOOK, si, chunk.message_ends, srank)
                else:
                    trades[s.key] = chunk
                    _index(cols, keys, rank, rec, TRADE, si, np.arange(len(keys)), srank)
            stop = len(events) if bound is None else bisect.bisect_left(event_ts, bound, event_pos)
            taken_events[:0] = events[event_pos:stop]
            event_pos = stop
            for i, (local_ts, rec_id, venue, _, _, session) in enumerate(taken_events):
                _index(cols, np.array([local_ts]), venue_rank.get(venue, 0), np.array([rec_id]), EVENT, -1, np.array([i]),
                       session_rank.get(session, 0))
            if not cols[0]:
                if bound is None:
                    return
                # every entry loaded sits at the bound: read on where it is
                for s in sources:
                    if not s.exhausted and s.last_key == bound:
                        s.load_one()
                continue
            merged = [np.concatenate(c) for c in cols]
            perm = merge_order(merged)
            yield Window(books, trades, taken_events, {i: np.take(merged[i], perm) for i in (0, 3, 4, 5)})
            if bound is None:
                return


def plan_merge(path: str, root: str, streams: dict, trade_files: dict, offsets: dict[str, int],
               skipped: list[tuple[str, str]]) -> MergePlan | None:
    """The merge of the book streams `streams` and trades `trade_files` ({(venue, symbol): files})
    of the capture at `path` (events from `root`), each session its own stream, `offsets` (venue
    -> ns) added to local times; None when there is nothing to replay. Reads footers only (and the
    events); CaptureError when a stream's files disagree on its instrument."""
    book_sources, book_info, trade_sources = {}, {}, {}
    for (v, s), files in streams.items():
        # the stream's files whose footer does not even parse are holes too, where they sit
        every = by_session(find_files(path, "book", v, [s]))
        for session, session_files in by_session(files).items():
            metas, names = [], []
            for f in session_files:
                try:
                    metas.append({k.decode(): val.decode() for k, val in (pq.read_schema(f).metadata or {}).items()})
                    names.append(f)
                except (OSError, pa.ArrowInvalid):
                    continue
            if not metas:
                continue
            pp, ap = stream_precisions(metas, names, f"{v} {s}: files")
            key = (v, s, session)
            book_info[key] = StreamInfo(pp, ap, int(metas[0].get("lab.depth", "0")))
            readable = set(session_files)
            book_sources[key] = BookSource(key, every.get(session, session_files), offsets.get(v, 0), skipped,
                                           unreadable={f for f in every.get(session, ()) if f not in readable})
    for (v, s), files in trade_files.items():
        for session, session_files in by_session(files).items():
            key = (v, s, session)
            trade_sources[key] = TradeSource(key, session_files, offsets.get(v, 0), skipped)
    keys = sorted(set(book_sources) | set(trade_sources))
    if not keys:
        return None
    events = load_events(root, {(v, s) for v, s, _ in keys}, offsets, skipped)
    events.sort(key=lambda e: e[0])
    return MergePlan(book_sources, trade_sources, book_info, events, keys)


def load_events(root: str, keys: set[tuple[str, str]], offsets: dict[str, int],
                skipped: list[tuple[str, str]]) -> list[tuple[int, int, str, str | None, str, str]]:
    """(local_ts, rec_id, venue, symbol, kind, session) of the events that unsync a book of
    `keys` ((venue, symbol); local times moved by the venue's offset)."""
    venues = {v for v, _ in keys}
    out = []
    for (venue, _), files in streams_in(root, "events", None, None, skipped).items():
        if venue not in venues:
            continue
        for f in files:
            try:
                t = read_file(f)
            except CaptureError as exc:
                skipped.append((f, str(exc).split("(", 1)[-1].rstrip(")")))
                continue
            session = session_of(f)
            for ts, rec, kind, sym in zip(t.column("local_timestamp").cast(pa.int64()).to_pylist(), t.column("rec_id").to_pylist(), t.column("kind").to_pylist(), t.column("symbol").to_pylist()):
                if kind in UNSYNC_EVENTS and (sym is None or (venue, sym) in keys):
                    out.append((ts + offsets.get(venue, 0), rec, venue, sym, kind, session))
    return out


def merge_order(order) -> np.ndarray:
    """The permutation that sorts merged entries (columns: local_ts, venue rank, rec_id, kind,
    stream, row, session rank) by (local_ts, venue rank, rec_id, session rank, events first):
    events sort before the rows of the same frame, so a gap is known before the message after it."""
    return np.lexsort((order[3] != EVENT, order[6], order[2], order[1], order[0]))


# local_ts, venue rank, rec_id, kind, stream, row, session rank: what the driver reads is int64
_INDEX_TYPES = (np.int64, np.int16, np.int64, np.int64, np.int64, np.int64, np.int32)


def _index(cols: list[list[np.ndarray]], local_ts, rank, rec_id, kind, stream, rows, session_rank=0) -> None:
    """Append one part of the merged entries to their columns."""
    n = len(rows)
    for col, value, dtype in zip(cols, (local_ts, rank, rec_id, kind, stream, rows, session_rank), _INDEX_TYPES):
        col.append(np.asarray(value, dtype=dtype) if isinstance(value, np.ndarray) else np.full(n, value, dtype=dtype))


def _objects(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _num_rows(path: str) -> int:
    try:
        return pq.read_metadata(path).num_rows
    except (OSError, pa.ArrowInvalid):
        return 0
