"""Mock venue, client side: endpoints, subscription and the sync state machine.

Sync is Binance-style (docs/ARCHITECTURE.md): deltas are buffered until a REST depth snapshot
arrives; deltas up to the snapshot's seq are dropped; the first kept delta must be seq + 1.
A seq gap, a checksum mismatch or a reconnect is an `events` row, then CLEAR and a fresh snapshot.
"""
from __future__ import annotations

from urllib.parse import quote

import orjson

from lab.datasets.journal import RawRow
from lab.recorder.sync import REQUEST_SNAPSHOT, Instrument, Normalizer
from lab.rust_book import parse_fixed

from lab.datasets.schema import canonical_symbol

VENUE = "mock"
DEFAULT_REST_URL = "http://127.0.0.1:8765"
DEFAULT_WS_URL = "ws://127.0.0.1:8765/ws"
# `lab record --venue mock` with no URL starts the simulator in-process (lab.venues.simulator)
EMBEDDED = True
STALL_TIMEOUT = 5.0  # heartbeats every second: 5 s of silence is a stall (event + reconnect)
INSTRUMENTS_PATH = "/api/instruments"


def trade_ids_sequential(symbol: str, ids: list[str]) -> bool:
    """`lab verify` checks trade-id holes: the mock's ids count up by one per symbol."""
    return True


def depth_path(symbol: str) -> str:
    return f"/api/depth?symbol={quote(symbol)}"


def subscribe_frames(symbols: list[str], depth: int = 0) -> list[bytes]:
    return [orjson.dumps({"op": "subscribe", "symbols": symbols, "channels": ["book", "trades"]})]


def parse_instruments(payload: bytes) -> list[Instrument]:
    doc = orjson.loads(payload)
    return [
        Instrument(
            venue_symbol=i["symbol"],
            symbol=canonical_symbol(i["symbol"]),
            base=i.get("base", ""),
            quote=i.get("quote", ""),
            price_precision=int(i["price_precision"]),
            amount_precision=int(i["amount_precision"]),
        )
        for i in doc["instruments"]
    ]


class MockNormalizer(Normalizer):
    venue = VENUE

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.buffers: dict[str, list[tuple[RawRow, dict]]] = {}
        self.last_trade_id: dict[str, int] = {}

    # -- helpers ------------------------------------------------------------------------------
    def _levels(self, inst: Instrument, bids: list, asks: list) -> list[tuple[int, int, int]]:
        pp, ap = inst.price_precision, inst.amount_precision
        out = [(0, parse_fixed(p, pp), parse_fixed(a, ap)) for p, a in bids]
        out.extend((1, parse_fixed(p, pp), parse_fixed(a, ap)) for p, a in asks)
        return out

    def _unsync(self, row: RawRow, symbol: str, kind: str, detail: str) -> None:
        book = self.books[symbol]
        if kind:
            self.event(row, kind, symbol, detail)
        book.synced = False
        self.buffers[symbol] = []
        self.stats["resyncs"] += 1
        self.event(row, "resync", symbol, "requesting a REST snapshot")
        self.request(REQUEST_SNAPSHOT, symbol)

    def _apply_delta(self, row: RawRow, inst: Instrument, msg: dict, local_ts: int) -> bool:
        """Apply one synced delta; False (and an unsync) when it cannot be applied exactly."""
        symbol = inst.venue_symbol
        book = self.books[symbol]
        seq = msg["seq"]
        if seq <= book.seq:
            return True  # already in the snapshot
        if seq != book.seq + 1:
            self.stats["gaps"] += 1
            self._unsync(row, symbol, "gap", f"expected seq {book.seq + 1}, got {seq}")
            self.buffers[symbol].append((row, msg))
            return False
        checksum = msg.get("checksum")
        if not self.apply_wire(
            inst, book, msg["bids"], msg["asks"], msg["timestamp"], local_ts, row.rec_id, seq, seq, checksum, False
        ):
            self.stats["checksum_mismatches"] += 1
            self._unsync(row, symbol, "checksum_mismatch", f"seq {seq}: venue {checksum}, local {book.mock_checksum()}")
            return False
        return True

    # -- input --------------------------------------------------------------------------------
    def feed(self, row: RawRow) -> None:
        kind = row.kind
        if kind == "recv":
            self._on_frame(row)
        elif kind == "rest":
            if row.channel == INSTRUMENTS_PATH:
                for inst in parse_instruments(row.payload):
                    self.add_instrument(inst, row)
            elif row.channel.startswith("/api/depth"):
                self._on_snapshot(row)
        elif kind == "rest_error":
            self.event(row, "rest_error", row.symbol, f"{row.channel}: {row.payload[:200].decode(errors='replace')}")
            if row.symbol in self.books and row.channel.startswith("/api/depth"):
                self.request(REQUEST_SNAPSHOT, row.symbol)
        elif kind == "open":
            self.event(row, "connect", None, f"conn {row.conn_id} {row.payload.decode(errors='replace')}")
            for symbol, book in self.books.items():
                book.synced = False
                self.buffers[symbol] = []
        elif kind == "close":
            self.event(row, "disconnect", None, f"conn {row.conn_id} {row.payload.decode(errors='replace')}")
            for symbol, book in self.books.items():
                book.synced = False
                self.buffers[symbol] = []
        elif kind == "send":
            try:
                msg = orjson.loads(row.payload)
                if msg.get("op") == "subscribe":
                    self.event(row, "subscribe", None, row.payload.decode())
            except orjson.JSONDecodeError:
                pass
        elif kind == "note":
            self.note_event(row)

    def _on_frame(self, row: RawRow) -> None:
        try:
            msg = orjson.loads(row.payload)
            mtype = msg["type"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            self.stats["malformed"] += 1
            self.event(row, "malformed", None, f"conn {row.conn_id} seq {row.conn_seq}: {exc}; {row.payload[:80]!r}")
            return
        try:
            if mtype == "book":
                self._on_delta(row, msg)
            elif mtype == "trade":
                self._on_trade(row, msg)
            elif mtype == "subscribed":
                for symbol in msg.get("symbols", []):
                    if symbol in self.books:
                        self.request(REQUEST_SNAPSHOT, symbol)
            elif mtype == "error":
                self.event(row, "venue_error", None, str(msg.get("message")))
            elif mtype not in ("heartbeat", "hello"):
                self.event(row, "unknown_message", None, row.payload[:200].decode(errors="replace"))
        except (KeyError, TypeError, ValueError) as exc:
            self.stats["malformed"] += 1
            symbol = msg.get("symbol") if isinstance(msg, dict) else None
            self.event(row, "malformed", symbol if symbol in self.books else None, f"{type(exc).__name__}: {exc}")
            if symbol in self.books and mtype == "book":
                self._unsync(row, symbol, "", "")

    def _on_delta(self, row: RawRow, msg: dict) -> None:
        symbol = msg["symbol"]
        inst = self.instruments.get(symbol)
        if inst is None:
            self.event(row, "unknown_symbol", None, f"book message for {symbol!r}")
            return
        book = self.books[symbol]
        if not book.synced:
            self.buffers.setdefault(symbol, []).append((row, msg))
            return
        self._apply_delta(row, inst, msg, row.local_ts)

    def _on_snapshot(self, row: RawRow) -> None:
        try:
            snap = orjson.loads(row.payload)
            symbol = snap["symbol"]
            inst = self.instruments[symbol]
            self._levels(inst, snap["bids"], snap["asks"])  # validate here: a bad snapshot is malformed
            seq, checksum = snap["seq"], snap.get("checksum")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            self.stats["malformed"] += 1
            self.event(row, "malformed", row.symbol if row.symbol in self.books else None, f"depth snapshot: {exc}")
            if row.symbol in self.books:
                self.request(REQUEST_SNAPSHOT, row.symbol)
            return
        book = self.books[symbol]
        if book.synced:
            return  # a late answer to a request already satisfied
        buffered = [(r, m) for r, m in self.buffers.get(symbol, []) if m["seq"] > seq]
        if buffered and buffered[0][1]["seq"] != seq + 1:
            self.event(row, "stale_snapshot", symbol, f"snapshot seq {seq}, first buffered delta {buffered[0][1]['seq']}")
            self.request(REQUEST_SNAPSHOT, symbol)
            return
        book.synced = True  # so the snapshot's on_book call sees a synced book, as before
        if not self.apply_wire(
            inst, book, snap["bids"], snap["asks"], snap["timestamp"], row.local_ts, row.rec_id, seq, seq, checksum, True
        ):
            book.synced = False
            self.stats["checksum_mismatches"] += 1
            self.event(row, "checksum_mismatch", symbol, f"snapshot seq {seq}: venue {checksum}, local {book.mock_checksum()}")
            book.clear()
            self.request(REQUEST_SNAPSHOT, symbol)
            return
        book.seq = seq
        self.event(row, "snapshot", symbol, f"seq {seq}, {len(buffered)} buffered deltas applied")
        self.buffers[symbol] = []
        for brow, msg in buffered:
            # A delta buffered before its snapshot takes effect when the snapshot does.
            if not self._apply_delta(brow, inst, msg, row.local_ts):
                break

    def _on_trade(self, row: RawRow, msg: dict) -> None:
        symbol = msg["symbol"]
        inst = self.instruments.get(symbol)
        if inst is None:
            self.event(row, "unknown_symbol", None, f"trade for {symbol!r}")
            return
        trade_id = int(msg["id"])
        if trade_id <= self.last_trade_id.get(symbol, -1):
            return  # a duplicate after a reconnect
        self.last_trade_id[symbol] = trade_id
        self.emit_trade(
            inst, row, msg["timestamp"], str(trade_id), msg["side"],
            parse_fixed(msg["price"], inst.price_precision), parse_fixed(msg["amount"], inst.amount_precision),
        )


Normalizer = MockNormalizer


def describe() -> dict:
    """`lab venues --json`: what is recorded by default, without a network call."""
    from lab.venues.mock.market import DEFAULT_SYMBOLS

    return {"embedded": True, "symbols": [s.symbol for s in DEFAULT_SYMBOLS],
            "note": "with no --rest-url/--ws-url, `lab record --venue mock` starts this simulator in-process"}
