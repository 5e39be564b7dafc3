"""Finding and loading capture files for replay: one file, a folder, or a root with filters."""
from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lab.datasets import schema as S
from lab.datasets.files import CaptureError, normalize_path, skip_warning, split_readable, unreadable  # noqa: F401 (re-exported)
from lab.datasets.store import mantissas

_PART = re.compile(r"(venue|symbol|date)=([^/]+)")




def _partition(path: str) -> dict[str, str]:
    return dict(_PART.findall(path.replace(os.sep, "/")))


_SESSION_FILE = re.compile(r"^(?P<session>.+)-(?P<seq>\d{6})\.parquet$")
def session_of(path: str) -> str:
    """The recorder session a capture file belongs to: its name is `<session>-<seq>.parquet`."""
    m = _SESSION_FILE.match(os.path.basename(path))
    if m:
        return m.group("session")
    try:
        session = (pq.read_schema(path).metadata or {}).get(S.META_SESSION)
    except Exception:
        session = None
    return session.decode() if session else os.path.basename(path)


def find_files(path: str, table: str, venue: str | None = None, symbols: list[str] | None = None) -> list[str]:
    """Files of one table under `path` (a file of that table, a partition folder, or a root)."""
    given, path = path, normalize_path(path)
    if os.path.isfile(path):
        files = [path] if _table_of(path) == table else []
    elif os.path.isdir(path):
        here = glob.glob(os.path.join(os.path.abspath(path), "**", "*.parquet"), recursive=True)
        files = [f for f in here if _table_of(f) == table]
    else:
        raise CaptureError(f"no such file or folder: {given}")
    out = []
    for f in files:
        if os.path.basename(f).startswith("."):
            continue
        part = _partition(f)
        if venue and part.get("venue") not in (None, venue):
            continue
        if symbols and part.get("symbol") not in (None, *symbols):
            continue
        out.append(f)
    return sorted(out, key=lambda f: (os.path.basename(f), f))


def _table_of(path: str) -> str | None:
    parts = path.replace(os.sep, "/").split("/")
    for i, p in enumerate(parts):
        if p.startswith("venue=") and i > 0:
            return parts[i - 1]
    try:
        meta = pq.read_schema(path).metadata or {}
    except Exception:
        return None
    t = meta.get(S.META_TABLE)
    return t.decode() if t else None


def read_file(path: str, columns: list[str] | None = None) -> pa.Table:
    try:
        return pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowInvalid) as exc:
        raise CaptureError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None


def meta_of(table: pa.Table) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items() if k.startswith(b"lab.")}


@dataclass
class BookStream:
    """One (venue, symbol) book stream, columns ready for `OrderBook.apply_rows`."""

    venue: str
    symbol: str
    venue_symbol: str
    price_precision: int
    amount_precision: int
    depth: int
    sides: np.ndarray  # int8, 0 bid, 1 ask
    prices: np.ndarray  # int64 ticks
    amounts: np.ndarray  # int64 lots
    flags: np.ndarray  # uint8
    timestamp: np.ndarray  # int64 ns
    local_timestamp: np.ndarray
    last_seq: np.ndarray
    rec_id: np.ndarray
    checksum: list = field(default_factory=list)

    @property
    def message_ends(self) -> np.ndarray:
        """Index of each message's LAST row."""
        return np.flatnonzero(self.flags & S.FLAG_LAST)


def read_readable(files: list[str], skipped: list[tuple[str, str]] | None = None, columns: list[str] | None = None) -> list[pa.Table]:
    """`read_file` of each file in order (`columns` only, when given); with `skipped`, a file
    whose footer parses but whose data does not is left out and listed there as (path, why);
    without it, CaptureError."""
    tables = []
    for f in files:
        try:
            tables.append(read_file(f, columns))
        except CaptureError as exc:
            if skipped is None:
                raise
            skipped.append((f, str(exc).split("(", 1)[-1].rstrip(")")))
    return tables


def stream_precisions(metas: list[dict], names: list[str], what: str) -> tuple[int, int]:
    """The one (price, amount) precision pair of a stream's files (their lab.* metadata, `names`
    for messages), each file's schema version checked first. CaptureError on a version lab cannot
    read, or files that disagree on or lack the precisions (`what` names the files)."""
    for name, m in zip(names, metas):
        try:
            S.check_version(m, name)
        except ValueError as exc:
            raise CaptureError(str(exc)) from None
    pp = {m.get("lab.price_precision") for m in metas}
    ap = {m.get("lab.amount_precision") for m in metas}
    if len(pp) != 1 or len(ap) != 1 or None in pp or None in ap:
        raise CaptureError(f"{what} disagree on or lack instrument precisions: {sorted(map(str, pp))} / {sorted(map(str, ap))}")
    return int(pp.pop()), int(ap.pop())


_REPLAY_COLUMNS = ["timestamp", "local_timestamp", "side", "price", "amount", "flags", "last_seq", "rec_id"]


def load_book(files: list[str], venue: str, symbol: str, skipped: list[tuple[str, str]] | None = None,
              checksums: bool = True) -> BookStream:
    """One stream's book files (in order) as one BookStream; with `skipped`, a file whose
    footer parses but whose data does not is left out and listed there. `checksums=False`
    leaves the stored checksums out (replay recomputes them; a list of them per row costs)."""
    # file by file into numpy, each file's Arrow table freed before the next is read: the peak is
    # the stream's columns plus one file, not two copies of the stream
    parts: dict[str, list] = {k: [] for k in ("sides", "prices", "amounts", "flags", "timestamp", "local_timestamp", "last_seq",
                                              "rec_id", "checksum")}
    metas: list[dict] = []
    names: list[str] = []
    precisions = None
    for f in files:
        tables = read_readable([f], skipped, None if checksums else _REPLAY_COLUMNS)
        if not tables:
            continue
        t = tables.pop()
        metas.append(meta_of(t))
        names.append(f)
        if precisions is None:
            precisions = stream_precisions(metas, names, f"{venue} {symbol}: files")
        # ticks file by file: a stream may hold files of schema version 1 (DECIMAL(18, p)) and 2
        # (DECIMAL(38, 18)), both read exactly
        try:
            parts["prices"].append(mantissas(t.column("price"), precisions[0]))
            parts["amounts"].append(mantissas(t.column("amount"), precisions[1]))
        except ValueError as exc:
            raise CaptureError(f"{venue} {symbol}: {exc}") from None
        parts["sides"].append(pc.equal(t.column("side"), "ask").combine_chunks().cast(pa.int8()).to_numpy(zero_copy_only=False))
        parts["flags"].append(t.column("flags").combine_chunks().to_numpy(zero_copy_only=False).astype(np.uint8))
        for col in ("timestamp", "local_timestamp"):
            parts[col].append(t.column(col).combine_chunks().cast(pa.int64()).to_numpy(zero_copy_only=False))
        for col in ("last_seq", "rec_id"):
            parts[col].append(t.column(col).combine_chunks().to_numpy(zero_copy_only=False))
        if checksums:
            parts["checksum"].extend(t.column("checksum").to_pylist())
        del t
    if not metas:
        raise CaptureError(f"{venue} {symbol}: no readable book file")
    price_precision, amount_precision = stream_precisions(metas, names, f"{venue} {symbol}: files")  # every file agrees

    def joined(col: str, dtype) -> np.ndarray:
        out = np.concatenate(parts[col]) if parts[col] else np.empty(0, dtype)
        parts[col].clear()
        return out

    return BookStream(
        venue=venue,
        symbol=symbol,
        venue_symbol=metas[0].get("lab.venue_symbol", symbol),
        price_precision=price_precision,
        amount_precision=amount_precision,
        depth=int(metas[0].get("lab.depth", "0")),
        sides=joined("sides", np.int8),
        prices=joined("prices", np.int64),
        amounts=joined("amounts", np.int64),
        flags=joined("flags", np.uint8),
        timestamp=joined("timestamp", np.int64),
        local_timestamp=joined("local_timestamp", np.int64),
        last_seq=joined("last_seq", np.int64),
        rec_id=joined("rec_id", np.int64),
        checksum=parts["checksum"],
    )


def streams_in(path: str, table: str, venue: str | None = None, symbols: list[str] | None = None,
               skipped: list[tuple[str, str]] | None = None) -> dict[tuple[str, str], list[str]]:
    """{(venue, symbol): files} of one table; unreadable files go to `skipped` (see split_readable)."""
    by_stream: dict[tuple[str, str], list[str]] = {}
    for f in split_readable(find_files(path, table, venue, symbols), skipped):
        part = _partition(f)
        v, s = part.get("venue"), part.get("symbol")
        if v is None or s is None:
            meta = {k.decode(): val.decode() for k, val in (pq.read_schema(f).metadata or {}).items()}
            v, s = v or meta.get("lab.venue"), s or meta.get("lab.symbol")
        by_stream.setdefault((v, s), []).append(f)
    return by_stream


def venue_spellings(path: str, venue: str | None = None) -> dict[str, str]:
    """{the venue's own spelling of a symbol, in its shared form (`BTCUSDT`): the canonical
    partition symbol (`BTC-USDT`)} of the book and trades streams under `path`, from each stream's
    first file's `lab.venue_symbol` (a footer read per stream). Where the canonical form is not
    derivable from the venue's spelling (no separator), this is how the venue's spelling still
    finds its partition."""
    from lab.symbols import key

    out: dict[str, str] = {}
    for table in ("book", "trades"):
        for (_, symbol), files in streams_in(path, table, venue, None, []).items():
            try:
                meta = pq.read_schema(files[0]).metadata or {}
            except (OSError, pa.ArrowInvalid):
                continue
            spelled = meta.get(b"lab.venue_symbol")
            if spelled:
                out.setdefault(key(spelled.decode()), symbol)
    return out


def by_session(files: list[str]) -> dict[str, list[str]]:
    """A stream's files per recorder session, each session's files in order."""
    out: dict[str, list[str]] = {}
    for f in sorted(files, key=lambda f: (os.path.basename(f), f)):
        out.setdefault(session_of(f), []).append(f)
    return out


class SessionSelector:
    """Which recorder session's book the callbacks of one (venue, symbol) see, message by message
    (docs/DATASET.md, "Overlapping sessions"). Every session keeps its own book; the connector
    applies each session's rows to that session's book only and asks `deliver` after each message.

    The rule: the first session whose book is synced delivers; it keeps delivering while it is
    synced and has messages left. When it is unsynced (a gap, a resync, a disconnect) or has
    ended, the next synced message of another session takes over, at that message's boundary,
    provided its seq is past the last one delivered (when the venue's seq is a venue-wide
    sequence; a per-connection counter such as Kraken v1's is not comparable across sessions), so
    the delivered seq never goes backwards and every delivered book is its own session's book
    right after that seq."""

    def __init__(self, books: dict, messages: dict[str, int], comparable_seq: bool = True):
        self.books = books  # session -> book (has .synced, .seq)
        self.remaining = dict(messages)  # session -> messages not yet applied
        self.comparable_seq = comparable_seq
        self.active: str | None = None  # the session delivering now
        self.last_seq: int | None = None
        self.switches = 0

    def deliver(self, session: str) -> bool:
        """Called after a message of `session` was applied to its book: should it be delivered?"""
        self.remaining[session] -= 1
        active = self.active
        if active is not None and active != session and self.books[active].synced and self.remaining[active] > 0:
            return False
        book = self.books[session]
        if not book.synced:
            return False
        if active != session:
            if self.comparable_seq and self.last_seq is not None and book.seq <= self.last_seq:
                return False
            if active is not None:
                self.switches += 1
            self.active = session
        self.last_seq = book.seq
        return True
