"""The sync state machine's shared half: raw rows in, derived rows (and resync requests) out.

A venue's normalizer subclasses `Normalizer`. The live recorder, the live connector and
`lab normalize` all run the same normalizer over the same raw rows, so a capture re-derived from
`raw` is identical to what was written live.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Callable

import orjson

from lab.core.events import REQUEST_RESUBSCRIBE, REQUEST_SNAPSHOT  # noqa: F401  (what a normalizer requests)
from lab.core.model import Instrument, RawRow, Trade
from lab.datasets.derived import Derived
from lab.datasets.store import BookColumns, TradeColumns
from lab.rust_book import OrderBook




class Normalizer:
    venue = "?"
    # the venue's book checksum algorithm, by the name the Rust book takes
    # (`OrderBook(..., checksum=NAME)`): chosen once per book in `add_instrument`; what
    # `apply_wire` verifies a message against and `book.checksum()` computes. None: the venue
    # sends no checksum.
    checksum_kind: str | None = None

    def __init__(
        self,
        on_book: Callable[[OrderBook], None] | None = None,
        on_trade: Callable[[Trade], None] | None = None,
        request: Callable[[str, str], None] | None = None,
        depth: int = 0,
    ):
        self.on_book = _wrap_callback(on_book)
        self.on_trade = _wrap_callback(on_trade)
        self.request = request or (lambda action, symbol: None)
        self.depth = depth
        self.instruments: dict[str, Instrument] = {}  # by venue symbol
        self.books: dict[str, OrderBook] = {}  # by venue symbol
        self.out = Derived()
        self.stats = {"messages": 0, "gaps": 0, "resyncs": 0, "checksum_mismatches": 0, "malformed": 0}

    # -- output -------------------------------------------------------------------------------
    def take(self) -> Derived:
        out, self.out = self.out, Derived()
        return out

    def event(self, row: RawRow, kind: str, symbol: str | None, detail: str = "") -> None:
        # Every field may come from the wire (a `note`'s JSON, a frame's symbol): the events
        # table takes strings only, so anything else is rendered, never raised on.
        if symbol is not None and not isinstance(symbol, str):
            symbol = None
        canonical = self.instruments[symbol].symbol if symbol in self.instruments else symbol
        kind = kind if isinstance(kind, str) else repr(kind)[:80]
        detail = detail if isinstance(detail, str) else repr(detail)[:400]
        self.out.events.append((row.local_ts, row.rec_id, kind, canonical, detail))

    def malformed(self, row: RawRow, symbol: str | None, what: str) -> None:
        """The `malformed` events row of a frame that cannot be normalized (docs/ARCHITECTURE.md,
        "Malformed frames"): where it is (conn, conn_seq; rec_id is the row's own column), what
        was wrong and an excerpt of the bytes. No unsync here: callers that touched a book do it."""
        self.stats["malformed"] += 1
        self.event(row, "malformed", symbol, f"{where(row)}: {what}; {excerpt(row.payload)}")

    def note_event(self, row: RawRow) -> None:
        """A `note` raw row (the recorder's own observation, JSON) becomes its `events` row."""
        try:
            note = orjson.loads(row.payload)
            self.event(row, note.get("kind", "note"), note.get("symbol"), note.get("detail", ""))
        except (orjson.JSONDecodeError, AttributeError):
            self.event(row, "note", None, row.payload.decode(errors="replace"))

    def add_instrument(self, inst: Instrument, row: RawRow) -> None:
        old = self.instruments.get(inst.venue_symbol)
        if old == inst:
            return
        if old is not None:
            self.event(row, "precision_change", inst.venue_symbol, f"{old} -> {inst}")
        self.instruments[inst.venue_symbol] = inst
        self.out.instruments.append((inst, row.local_ts, row.rec_id))
        book = OrderBook(
            self.venue, inst.symbol, inst.price_precision, inst.amount_precision, self.depth, checksum=self.checksum_kind
        )
        book.synced = False
        self.books[inst.venue_symbol] = book

    def add_instruments(self, row: RawRow, key: str, parse: Callable[[dict], Instrument], what: str) -> None:
        """An instruments answer `{key: [item, ...]}`: each item through `parse` (ValueError on a bad
        one); a malformed answer or item is a `malformed` event, and one bad item does not hide
        the others."""
        try:
            doc = orjson.loads(row.payload)
            items = doc.get(key) if isinstance(doc, dict) else None
            if not isinstance(items, list):
                raise ValueError(f"no list of {key}")
        except ValueError as exc:
            self.malformed(row, None, f"{what}: {exc}")
            return
        for item in items:
            try:
                inst = parse(item)
            except ValueError as exc:
                self.malformed(row, None, f"{what}: {exc}")
                continue
            self.add_instrument(inst, row)

    def book_columns(self, inst: Instrument) -> BookColumns:
        cols = self.out.book.get(inst.symbol)
        if cols is None:
            cols = self.out.book[inst.symbol] = BookColumns()
        return cols

    def trade_columns(self, inst: Instrument) -> TradeColumns:
        cols = self.out.trades.get(inst.symbol)
        if cols is None:
            cols = self.out.trades[inst.symbol] = TradeColumns()
        return cols

    def emit_trade(self, inst: Instrument, row: RawRow, ts: int, trade_id: str, side: str, price: int, amount: int) -> None:
        self.trade_columns(inst).push(ts, row.local_ts, trade_id, side, price, amount, row.rec_id)
        if self.on_trade is not None:
            self.on_trade(
                Trade(
                    self.venue, inst.symbol, ts, row.local_ts, trade_id, side,
                    Decimal(price).scaleb(-inst.price_precision), Decimal(amount).scaleb(-inst.amount_precision),
                )
            )

    def trades_appended(self, inst: Instrument, cols: TradeColumns, start: int) -> None:
        """`on_trade` for the rows a Rust parser appended to `cols` from row `start` on (the
        same Trade objects `emit_trade` gives, in the same order)."""
        if self.on_trade is None:
            return
        pp, ap = inst.price_precision, inst.amount_precision
        for ts, local_ts, trade_id, side, price, amount, _ in cols.rows(start):
            self.on_trade(Trade(self.venue, inst.symbol, ts, local_ts, trade_id, side,
                                Decimal(price).scaleb(-pp), Decimal(amount).scaleb(-ap)))

    def emit_levels(
        self,
        inst: Instrument,
        book: OrderBook,
        levels: list[tuple[int, int, int]],
        *,
        ts: int,
        local_ts: int,
        rec_id: int,
        first_seq: int,
        last_seq: int,
        checksum: int | None,
        snapshot: bool,
    ) -> None:
        """Book rows of one applied wire message: (side 0 bid / 1 ask, price ticks, amount lots).

        A snapshot starts with CLEAR; every message ends with LAST. An empty snapshot is one
        CLEAR|LAST row deleting the absent bid at price 0, so the reset is still in the table."""
        if not self.book_columns(inst).push_levels(levels, ts, local_ts, rec_id, first_seq, last_seq, checksum, snapshot):
            return  # an empty delta: no rows
        book.timestamp = ts
        book.local_timestamp = local_ts
        book.seq = last_seq
        self._book_message(book)

    def _book_message(self, book: OrderBook) -> None:
        """A message wrote book rows: count it, hand the book to `on_book` when synced."""
        self.stats["messages"] += 1
        if self.on_book is not None and book.synced:
            self.on_book(book)

    def apply_wire(
        self,
        inst: Instrument,
        book: OrderBook,
        bids: list,
        asks: list,
        ts: int,
        local_ts: int,
        rec_id: int,
        first_seq: int,
        last_seq: int,
        checksum: int | None,
        snapshot: bool,
    ) -> bool:
        """Parse, apply and emit one wire message in Rust (`OrderBook.apply_wire_message`):
        `bids` / `asks` are `[[price_str, amount_str], ...]`. The same rows, book metadata, stats
        and on_book call as parsing the levels, `book.apply` of each, `truncate` and
        `emit_levels`; the checksum is verified with the book's own algorithm (`checksum_kind`).
        False on a checksum mismatch (nothing emitted, the book stays as applied); ValueError /
        TypeError on a malformed level (the book is unchanged)."""
        cols = self.book_columns(inst)
        n = len(cols)
        if not book.apply_wire_message(
            bids, asks, cols, ts, local_ts, rec_id, first_seq, last_seq, checksum, snapshot
        ):
            return False
        if len(cols) == n:  # an empty delta writes no rows, but the sequence moves on
            book.seq = last_seq
            return True
        self._book_message(book)
        return True

    # -- input --------------------------------------------------------------------------------
    def feed(self, row: RawRow) -> None:
        """One raw row in. Never raises for anything in the row: the venue's `_feed` handles what
        it expects precisely; anything it did not foresee becomes a `malformed` event, and the
        book the row names (when it names a known one) is unsynced with a resync request, so a
        book is never left half-applied and marked synced. Exceptions raised by the user's
        `on_book` / `on_trade` callbacks are the caller's and propagate unchanged."""
        try:
            self._feed(row)
        except CallbackError as exc:
            raise exc.__cause__ from None
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001  (pyo3's PanicException is a BaseException)
            self._contain(row, exc)

    def _feed(self, row: RawRow) -> None:
        raise NotImplementedError

    def _contain(self, row: RawRow, exc: BaseException) -> None:
        try:
            symbol = self.symbol_of(row)
            if not isinstance(symbol, str) or symbol not in self.books:
                symbol = None
            self.malformed(row, symbol, f"{row.kind} {row.channel!r}: {type(exc).__name__}: {str(exc)[:200]}")
            if symbol is not None:
                self.resync_book(row, symbol)
        except Exception as inner:  # noqa: BLE001  (last resort: still one events row)
            self.out.events.append(
                (row.local_ts, row.rec_id, "malformed", None, f"{type(exc).__name__} then {type(inner).__name__}")
            )

    def symbol_of(self, row: RawRow) -> str | None:
        """Best effort: the venue symbol a row is about (the venue overrides), for the guard."""
        return row.symbol

    def resync_book(self, row: RawRow, symbol: str) -> None:
        """Unsync `symbol`'s book and ask the live side for a fresh snapshot (the venue overrides)."""
        self.books[symbol].synced = False
        self.stats["resyncs"] += 1


class CallbackError(Exception):
    """Wraps an exception of a user callback, so `feed`'s guard lets it through."""


def _wrap_callback(fn):
    if fn is None:
        return None

    def call(arg):
        try:
            fn(arg)
        except Exception as exc:
            raise CallbackError() from exc

    return call


def where(row: RawRow) -> str:
    return f"conn {row.conn_id} seq {row.conn_seq} rec {row.rec_id}"


def excerpt(payload, n: int = 80) -> str:
    """The first `n` bytes of a payload as a Python bytes literal (non-ASCII escaped)."""
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        return repr(payload)[:n]
    b = bytes(payload[:n])
    return repr(b) + ("..." if len(payload) > n else "")
