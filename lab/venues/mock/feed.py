"""Mock venue, client side: endpoints, subscription and the sync state machine.

Sync is Binance-style (docs/ARCHITECTURE.md): deltas are buffered until a REST depth snapshot
arrives; deltas up to the snapshot's seq are dropped; the first kept delta must be seq + 1.
A seq gap, a checksum mismatch or a reconnect is an `events` row, then CLEAR and a fresh snapshot.

Book deltas and depth snapshots take the Rust hot path (rust_book/src/mock.rs, on the shared
`FrameParser` contract: `parse_mock_book`, `parse_mock_depth`, `MockBook.apply`); a frame it
refuses (or an unknown symbol, a level not exact at the precisions) goes through the Python
reference path below, which reports it as before (`rust_parsers = False`: the reference alone).
"""
from __future__ import annotations

from urllib.parse import quote

import orjson

from lab.core.model import RawRow
from lab.core.events import REQUEST_SNAPSHOT
from lab.core.model import Instrument, wire_instrument
from lab.sync.buffered import BufferedDiffNormalizer
from lab.rust_book import MockBook, parse_fixed, parse_mock_book, parse_mock_depth


VENUE = "mock"
DEFAULT_REST_URL = "http://127.0.0.1:8765"
DEFAULT_WS_URL = "ws://127.0.0.1:8765/ws"
STALL_TIMEOUT = 5.0  # heartbeats every second: 5 s of silence is a stall (event + reconnect)
INSTRUMENTS_PATH = "/api/instruments"


def depth_path(symbol: str) -> str:
    return f"/api/depth?symbol={quote(symbol)}"


def subscribe_frames(symbols: list[str], depth: int = 0) -> list[bytes]:
    return [orjson.dumps({"op": "subscribe", "symbols": symbols, "channels": ["book", "trades"]})]


def parse_instruments(payload: bytes) -> list[Instrument]:
    """ValueError (or JSONDecodeError, a ValueError) on anything but a well-formed list."""
    doc = orjson.loads(payload)
    items = doc.get("instruments") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise ValueError("instruments: no list of instruments")
    return [_instrument(i) for i in items]


def _instrument(i) -> Instrument:
    if not isinstance(i, dict) or not isinstance(i.get("symbol"), str) or not i["symbol"]:
        raise ValueError(f"instrument without a symbol: {str(i)[:80]}")
    precisions = []
    for key in ("price_precision", "amount_precision"):
        v = i.get(key)
        if not _is_int(v) or not 0 <= v <= 18:
            raise ValueError(f"instrument {i['symbol']!r}: {key} {v!r} is not an integer in 0..18")
        precisions.append(v)
    return wire_instrument(i["symbol"], i.get("base", ""), i.get("quote", ""), *precisions)


def _is_int(v) -> bool:
    return type(v) is int


def _int64(v) -> bool:
    return type(v) is int and -(1 << 63) <= v < (1 << 63)


def _check_levels(inst: Instrument, levels, what: str) -> None:
    """ValueError unless `levels` is a list of [price, amount] strings exact at the instrument's
    precisions with a non-negative amount."""
    if not isinstance(levels, list):
        raise ValueError(f"{what} is not a list")
    pp, ap = inst.price_precision, inst.amount_precision
    for level in levels:
        if not isinstance(level, list) or len(level) != 2:
            raise ValueError(f"{what} level {str(level)[:40]} is not [price, amount]")
        p, a = level
        if not isinstance(p, str) or not isinstance(a, str):
            raise ValueError(f"{what} level {str(level)[:40]}: price and amount must be strings")
        parse_fixed(p, pp)
        if parse_fixed(a, ap) < 0:
            raise ValueError(f"{what} level {str(level)[:40]}: negative amount")


def check_book_message(inst: Instrument, msg: dict, what: str = "delta") -> None:
    """ValueError unless a book message (delta or depth snapshot) can be applied exactly:
    int64 seq and timestamp, an unsigned 32-bit checksum, valid levels. Run before a
    delta is buffered, so a buffered delta never fails when its snapshot arrives."""
    for key in ("seq", "timestamp"):
        if not _int64(msg.get(key)):
            raise ValueError(f"{what} {key} {str(msg.get(key))[:40]!r} is not an integer")
    c = msg.get("checksum")  # required (the protocol's): without it a changed level would go unseen
    if not (_is_int(c) and 0 <= c < (1 << 32)):
        raise ValueError(f"{what} checksum {str(c)[:40]!r} is not an unsigned 32-bit integer")
    _check_levels(inst, msg.get("bids"), f"{what} bids")
    _check_levels(inst, msg.get("asks"), f"{what} asks")


class MockNormalizer(BufferedDiffNormalizer):
    """The shared buffered-diff strategy (lab/sync/buffered.py) with one seq per message
    (`first_seq == last_seq == seq`): Binance's rules then read "drop seq <= snapshot seq, the
    first kept delta is snapshot seq + 1, then seq + 1", the mock's own. Every delta carries a
    checksum, verified as it is applied; the mock's books are never checked for crossing."""

    venue = VENUE
    checksum_kind = "mock"
    check_crossed = False
    rust_parsers = True  # False: every frame through the Python reference path (tests)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.last_trade_id: dict[str, int] = {}

    # -- the events' texts, as the mock words them -------------------------------------------------
    def describe_gap(self, book, expected: str, first_seq: int, last_seq: int) -> str:
        return f"expected seq {book.seq + 1}, got {first_seq}"

    def describe_buffer_gap(self, prev_last: int, first_seq: int, dropped: int) -> str:
        return f"while buffering: expected seq {prev_last + 1}, got {first_seq}; {dropped} buffered deltas dropped"

    def describe_stale(self, snapshot_id: int, first_buffered: int) -> str:
        return f"snapshot seq {snapshot_id}, first buffered delta {first_buffered}"

    def describe_snapshot(self, snapshot_id: int, bids: list, asks: list, applied: int) -> str:
        return f"seq {snapshot_id}, {applied} buffered deltas applied"

    def describe_checksum(self, book, first_seq: int, last_seq: int, checksum, snapshot: bool) -> str:
        return f"{'snapshot seq' if snapshot else 'seq'} {last_seq}: venue {checksum}, local {book.checksum()}"

    def symbol_of(self, row: RawRow) -> str | None:
        if row.kind in ("recv", "rest"):
            try:
                msg = orjson.loads(row.payload)
            except orjson.JSONDecodeError:
                return row.symbol
            if isinstance(msg, dict) and isinstance(msg.get("symbol"), str):
                return msg["symbol"]
        return row.symbol

    def _unsync(self, row: RawRow, symbol: str, kind: str, detail: str) -> None:
        self.unsync(row, symbol, kind, detail)

    # -- input --------------------------------------------------------------------------------
    def _feed(self, row: RawRow) -> None:
        kind = row.kind
        if kind == "recv":
            self._on_frame(row)
        elif kind == "rest":
            if row.channel == INSTRUMENTS_PATH:
                self._on_instruments(row)
            elif row.channel.startswith("/api/depth"):
                self._on_snapshot(row)
        elif kind == "rest_error":
            self.event(row, "rest_error", row.symbol, f"{row.channel}: {row.payload[:200].decode(errors='replace')}")
            if row.symbol in self.books and row.channel.startswith("/api/depth"):
                self.request(REQUEST_SNAPSHOT, row.symbol)
        elif kind == "open":
            self.event(row, "connect", None, f"conn {row.conn_id} {row.payload.decode(errors='replace')}")
            self.reset_all()
        elif kind == "close":
            self.event(row, "disconnect", None, f"conn {row.conn_id} {row.payload.decode(errors='replace')}")
            self.reset_all()
        elif kind == "send":
            try:
                msg = orjson.loads(row.payload)
            except orjson.JSONDecodeError:
                return
            if isinstance(msg, dict) and msg.get("op") == "subscribe":
                self.event(row, "subscribe", None, row.payload.decode())
        elif kind == "note":
            self.note_event(row)

    def _on_instruments(self, row: RawRow) -> None:
        self.add_instruments(row, "instruments", _instrument, "instruments")

    def _on_frame(self, row: RawRow) -> None:
        if self.rust_parsers and b'"book"' in row.payload:
            try:
                msgs = parse_mock_book(row.payload)
            except ValueError:
                msgs = None
            if msgs and len(msgs) == 1 and self._on_delta_fast(row, msgs[0]):
                return
        self._on_frame_reference(row)

    def _on_delta_fast(self, row: RawRow, m: MockBook) -> bool:
        """A delta parsed by `parse_mock_book`: `_on_delta` with the message in place of the bids
        / asks lists (and the reference's handling of what applying it raises). False (nothing
        touched): an unknown symbol or a level not exact at the precisions."""
        symbol = m.symbol
        inst = self.instruments.get(symbol)
        if inst is None or m.check(inst.price_precision, inst.amount_precision) is not None:
            return False
        try:
            self.on_diff(row, inst, m.seq, m.seq, m.timestamp, m, None, m.checksum)
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            known = symbol if symbol in self.books else None
            self.malformed(row, known, f"book message: {type(exc).__name__}: {exc}")
            if known is not None:
                self._unsync(row, known, "", "")
        return True

    def apply_wire(self, inst, book, bids, asks, ts, local_ts, rec_id, first_seq, last_seq, checksum, snapshot) -> bool:
        """A Rust-parsed `MockBook` (as `bids`, `asks` None) is applied by its own `apply`, with
        the same rows, book metadata, stats and on_book call as `Normalizer.apply_wire`."""
        if asks is not None or not isinstance(bids, MockBook):
            return super().apply_wire(inst, book, bids, asks, ts, local_ts, rec_id, first_seq, last_seq, checksum, snapshot)
        status = bids.apply(book, self.book_columns(inst), ts, local_ts, rec_id)
        if status < 0:
            return False  # a checksum mismatch: nothing emitted, the book stays as applied
        if status == 0:  # an empty delta writes no rows, but the sequence moves on
            book.seq = last_seq
        else:
            self._book_message(book)
        return True

    def _on_frame_reference(self, row: RawRow) -> None:
        try:
            msg = orjson.loads(row.payload)
            mtype = msg["type"]
        except (orjson.JSONDecodeError, KeyError, TypeError, IndexError) as exc:
            self.malformed(row, None, f"{type(exc).__name__}: {exc}")
            return
        symbol = msg.get("symbol")
        if mtype in ("book", "trade") and not isinstance(symbol, str):
            self.malformed(row, None, f"{mtype} message: symbol {str(symbol)[:40]!r} is not a string")
            return
        try:
            if mtype == "book":
                self._on_delta(row, msg)
            elif mtype == "trade":
                self._on_trade(row, msg)
            elif mtype == "subscribed":
                symbols = msg.get("symbols", [])
                for s in symbols if isinstance(symbols, list) else ():
                    if isinstance(s, str) and s in self.books:
                        self.request(REQUEST_SNAPSHOT, s)
            elif mtype == "error":
                self.event(row, "venue_error", None, str(msg.get("message")))
            elif mtype not in ("heartbeat", "hello"):
                self.event(row, "unknown_message", None, row.payload[:200].decode(errors="replace"))
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            known = symbol if isinstance(symbol, str) and symbol in self.books else None
            self.malformed(row, known, f"{mtype} message: {type(exc).__name__}: {exc}")
            if known is not None and mtype == "book":
                self._unsync(row, known, "", "")

    def _on_delta(self, row: RawRow, msg: dict) -> None:
        symbol = msg["symbol"]
        inst = self.instruments.get(symbol)
        if inst is None:
            self.event(row, "unknown_symbol", None, f"book message for {symbol!r}")
            return
        # Checked before buffering, so a bad delta is a malformed event and a resync now (the
        # sequence is broken there) rather than a failure when the snapshot arrives.
        check_book_message(inst, msg)
        seq = msg["seq"]
        self.on_diff(row, inst, seq, seq, msg["timestamp"], msg["bids"], msg["asks"], msg.get("checksum"))

    def _on_snapshot(self, row: RawRow) -> None:
        if self.rust_parsers:
            try:
                m = parse_mock_depth(row.payload)
            except ValueError:
                m = None
            inst = self.instruments.get(m.symbol) if m is not None else None
            if inst is not None and m.check(inst.price_precision, inst.amount_precision) is None:
                self.on_snapshot(row, inst, m.seq, m.timestamp, m, None, m.checksum)
                return
        try:
            snap = orjson.loads(row.payload)
            if not isinstance(snap, dict):
                raise ValueError("not an object")
            symbol = snap["symbol"]
            if not isinstance(symbol, str):
                raise ValueError(f"symbol {str(symbol)[:40]!r} is not a string")
            inst = self.instruments[symbol]
            check_book_message(inst, snap, "snapshot")  # validate here: a bad snapshot is malformed
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            known = row.symbol if row.symbol in self.books else None
            self.malformed(row, known, f"depth snapshot: {type(exc).__name__}: {exc}")
            if known is not None:
                self.request(REQUEST_SNAPSHOT, known)
            return
        self.on_snapshot(row, inst, snap["seq"], snap["timestamp"], snap["bids"], snap["asks"], snap.get("checksum"))

    def _on_trade(self, row: RawRow, msg: dict) -> None:
        symbol = msg["symbol"]
        inst = self.instruments.get(symbol)
        if inst is None:
            self.event(row, "unknown_symbol", None, f"trade for {symbol!r}")
            return
        # everything checked before any state moves (the duplicate filter, the columns)
        trade_id, ts, side = msg.get("id"), msg.get("timestamp"), msg.get("side")
        if isinstance(trade_id, str) and trade_id.isascii() and trade_id.isdigit() and len(trade_id) < 20:
            trade_id = int(trade_id)
        if not _int64(trade_id) or not _int64(ts):
            raise ValueError(f"trade id {str(trade_id)[:40]!r} / timestamp {str(ts)[:40]!r} is not an integer")
        if side not in ("buy", "sell"):
            raise ValueError(f"trade side {str(side)[:40]!r}")
        price = parse_fixed(msg["price"], inst.price_precision)
        amount = parse_fixed(msg["amount"], inst.amount_precision)
        if amount < 0:
            raise ValueError("negative trade amount")
        if trade_id <= self.last_trade_id.get(symbol, -1):
            return  # a duplicate after a reconnect
        self.last_trade_id[symbol] = trade_id
        self.emit_trade(inst, row, ts, str(trade_id), side, price, amount)


Normalizer = MockNormalizer


def describe() -> dict:
    """`lab venues --json`: what is recorded by default, without a network call."""
    from lab.venues.mock.market import DEFAULT_SYMBOLS

    return {"embedded": True, "symbols": [s.symbol for s in DEFAULT_SYMBOLS],
            "note": "with no --rest-url/--ws-url, `lab record --venue mock` starts this simulator in-process"}
