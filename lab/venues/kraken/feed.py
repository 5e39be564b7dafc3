"""Kraken, client side: endpoints, subscription and the WebSocket v1 book/trade state machine.

Sync is snapshot-on-subscribe (PROTOCOLS.md section 2): every pair shares one connection and one
`book` subscription; the venue sends a snapshot, then updates that carry a CRC32 of the top 10
levels per side after truncating to the subscribed depth. The normalizer applies each update in
wire order (asks dict before bids dict in a 5-element message, repeated prices in array order,
`r` republished levels as plain upserts), truncates to the depth, then compares the book's
checksum with the venue's. A mismatch, a value finer than the pair's precision or a malformed
book message is an `events` row, then a resync of that pair alone (unsubscribe + subscribe on the
same connection: REQUEST_RESUBSCRIBE with the adapter's `resubscribe_frames`), a CLEAR and a fresh
snapshot. Kraken v1 has no sequence numbers: `first_seq`/`last_seq` in `book` are a per-pair
counter of applied messages, so they are gap-free by construction and a lost update shows up as a
checksum mismatch.

WebSocket v2 (`--api v2`, `adapter.KrakenV2` for the subscribe frames) goes through the same
normalizer: it tells the two apart by the frame's shape (v1 data messages are arrays, v2 ones
are objects with a `channel`). v2 snapshots carry a checksum too, prices and quantities are JSON
numbers (read as their exact token text, never as floats), symbols are `BTC/USD` (mapped to the
AssetPairs wsname `XBT/USD`, which stays the capture's venue symbol) and trades carry a
`trade_id`.

The hot paths are Rust, frame in, rows out: books (`lab.rust_book.parse_kraken_book` +
`KrakenBook.apply`), trades (`parse_kraken_trades` + `KrakenTrades.apply`, v1 ids included) and
REST Depth snapshots (`parse_kraken_depth`). A frame they do not accept (invalid JSON, an odd
shape, anything but the form Kraken sends) goes through the Python reference path below, which
reports it exactly; both paths share the state (books, trade memory), and tests require
identical rows, events and stats from either.

Trade ids (v1 trades carry none): see `trade_id`.
"""
from __future__ import annotations

import hashlib
import json

import orjson

from lab.core.model import RawRow
from lab.core.model import Instrument, wire_instrument
from lab.sync.snapshot import SnapshotChecksumNormalizer
from lab.rust_book import (
    KRAKEN_MISMATCH,
    KRAKEN_PRECISION,
    TradeMemory,
    parse_fixed,
    parse_kraken_book,
    parse_kraken_depth,
    parse_kraken_trades,
    rfc3339_to_ns,
)
from lab.venues.kraken.protocol import DEFAULT_DEPTH, v2_symbol

VENUE = "kraken"
DEFAULT_REST_URL = "https://api.kraken.com"
DEFAULT_WS_URL = "wss://ws.kraken.com"
INSTRUMENTS_PATH = "/0/public/AssetPairs"
DEPTH_PATH = "/0/public/Depth"
DEFAULT_DEPTH_COUNT = 100


class KrakenError(ValueError):
    """Kraken answered with a non-empty `error` array."""

    def __init__(self, errors: list[str], what: str = ""):
        self.errors = list(errors)
        super().__init__(f"kraken{' ' + what if what else ''}: {', '.join(self.errors)}")


def altname(symbol: str) -> str:
    """REST/AddOrder name of a v1 pair name: XBT/USD -> XBTUSD."""
    return symbol.replace("/", "")


def depth_path(symbol: str, count: int = DEFAULT_DEPTH_COUNT) -> str:
    return f"{DEPTH_PATH}?pair={altname(symbol)}&count={count}"


def _result(payload: bytes, what: str) -> dict:
    doc = orjson.loads(payload)
    if not isinstance(doc, dict):
        raise KrakenError([f"unexpected {what} response"], what)
    if doc.get("error"):
        raise KrakenError(doc["error"], what)
    return doc.get("result") or {}


def parse_asset_pairs(payload: bytes) -> dict[str, dict]:
    """AssetPairs result: internal name -> pair dict (pairs without a wsname are skipped)."""
    return {k: v for k, v in _result(payload, "AssetPairs").items() if isinstance(v, dict) and v.get("wsname")}


def parse_instruments(payload: bytes) -> list[Instrument]:
    try:
        pairs = parse_asset_pairs(payload)
    except KrakenError as exc:
        from lab.core.errors import VenueError

        raise VenueError(str(exc)) from None
    return [_instrument(p) for p in pairs.values()]


def _instrument(p: dict) -> Instrument:
    """ValueError / KeyError / TypeError on a pair lab cannot book (the caller reports it)."""
    if not isinstance(p["wsname"], str):
        raise ValueError(f"wsname {str(p['wsname'])[:40]!r} is not a string")
    precisions = []
    for key in ("pair_decimals", "lot_decimals"):
        v = p[key]
        if isinstance(v, bool) or not isinstance(v, (int, str)) or not 0 <= int(v) <= 18:
            raise ValueError(f"{key} {str(v)[:40]!r} is not an integer in 0..18")
        precisions.append(int(v))
    return wire_instrument(p["wsname"], p.get("base", ""), p.get("quote", ""), *precisions)


def ts_ns(text) -> int:
    """Kraken seconds with a fraction ("1534614248.123678", or an int) -> ns, exactly.
    ValueError beyond int64 ns (the time columns' range)."""
    s = str(text)
    sec, _, frac = s.partition(".")
    ns = int(sec) * 1_000_000_000 + (int((frac + "000000000")[:9]) if frac else 0)
    if not -(1 << 63) <= ns < (1 << 63):
        raise ValueError(f"time {s!r} is out of range")
    return ns


def trade_id(pair: str, trade: list, ordinal: int) -> str:
    """The id lab gives a v1 trade (the venue sends none).

    blake2b-64 (hex) of `pair|time|price|volume|side|ordertype|ordinal`, all exact wire strings,
    where `ordinal` counts earlier trades of the same message with identical fields. The same
    trade received twice (a reconnect, a duplicated frame) gets the same id and is written once;
    it is a pure function of raw, so `lab normalize` reproduces it."""
    key = "|".join([pair, str(trade[2]), str(trade[0]), str(trade[1]), str(trade[3]), str(trade[4]), str(ordinal)])
    return hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


class _Resync(Exception):
    def __init__(self, kind: str, detail: str):
        self.kind = kind
        self.detail = detail


class KrakenNormalizer(SnapshotChecksumNormalizer):
    venue = VENUE
    checksum_kind = "kraken"  # the v1 and v2 rule at the pair's precisions (rust_book/src/kraken.rs)
    TRADE_MEMORY = 20_000  # ids remembered per pair for de-duplication

    def __init__(self, *args, depth: int = 0, **kwargs):
        super().__init__(*args, depth=depth or DEFAULT_DEPTH, **kwargs)
        self.channels: dict[int, tuple[str, str]] = {}  # channelID -> (channel name, pair)
        self.by_internal: dict[str, str] = {}  # XXBTZUSD -> XBT/USD
        self.by_altname: dict[str, str] = {}  # XBTUSD -> XBT/USD
        self.by_v2: dict[str, str] = {}  # BTC/USD -> XBT/USD
        self.wire_pad: dict[str, tuple[int, int]] = {}  # pair -> wire decimals beyond precision
        self.seen_trades: dict[str, TradeMemory] = {}  # pair -> ids of its last TRADE_MEMORY trades
        self.stats.setdefault("trades", 0)
        self.stats.setdefault("duplicate_trades", 0)

    # -- helpers ------------------------------------------------------------------------------
    def _parse_levels(self, inst: Instrument, side: int, levels, out: list, pads: list) -> int:
        """Append (side, price ticks, amount lots); return the newest level time (ns)."""
        pp, ap = inst.price_precision, inst.amount_precision
        newest = 0
        for level in levels:
            p, a, t = level[0], level[1], level[2]
            try:
                out.append((side, parse_fixed(p, pp), parse_fixed(a, ap)))
            except ValueError as exc:
                raise _Resync("precision", f"{exc} (pair_decimals {pp}, lot_decimals {ap})") from None
            pads.append((_decimals(p) - pp, _decimals(a) - ap))
            tn = ts_ns(t)
            if tn > newest:
                newest = tn
        return newest

    def _checksum(self, symbol: str) -> tuple[int, int]:
        """(checksum of the wire strings as Kraken computes it, checksum at the pair's precisions).

        They are the same number when the wire pads to pair_decimals / lot_decimals (the
        simulator does, as PROTOCOLS.md's vectors do). Where the venue pads further (trailing
        zeros only: anything else is a precision event), the wire value is rebuilt from ticks."""
        book = self.books[symbol]
        local = book.checksum()
        pad = self.wire_pad.get(symbol)
        if not pad or pad == (0, 0):
            return local, local
        import zlib

        fp, fa = 10 ** max(pad[0], 0), 10 ** max(pad[1], 0)
        parts = []
        for levels in (book.asks_ticks(10), book.bids_ticks(10)):
            for p, a in levels:
                parts.append(str(p * fp) if p else "")
                parts.append(str(a * fa) if a else "")
        return zlib.crc32("".join(parts).encode()), local

    def unsync_all(self) -> None:
        super().unsync_all()
        self.channels.clear()

    def symbol_of(self, row: RawRow) -> str | None:
        """The pair a frame is about: v1 `[..., name, pair]`, v2 `data[0].symbol`, else the row's."""
        if row.kind == "recv":
            try:
                msg = orjson.loads(row.payload)
            except orjson.JSONDecodeError:
                return row.symbol
            if isinstance(msg, list) and msg and isinstance(msg[-1], str):
                return msg[-1]
            if isinstance(msg, dict):
                data = msg.get("data")
                if isinstance(data, list) and data and isinstance(data[0], dict):
                    sym = data[0].get("symbol")
                    if isinstance(sym, str):
                        return self.by_v2.get(sym, sym)
                if isinstance(msg.get("pair"), str):
                    return msg["pair"]
        return row.symbol

    # -- input --------------------------------------------------------------------------------
    def _feed(self, row: RawRow) -> None:
        kind = row.kind
        if kind == "recv":
            self._on_frame(row)
        elif kind == "rest":
            if row.channel.startswith(INSTRUMENTS_PATH):
                self._on_asset_pairs(row)
            elif row.channel.startswith(DEPTH_PATH):
                self._on_depth(row)
        elif kind == "rest_error":
            self.event(row, "rest_error", row.symbol if row.symbol in self.books else None,
                       f"{row.channel}: {row.payload[:200].decode(errors='replace')}")
        elif kind == "open":
            self.event(row, "connect", None, f"conn {row.conn_id} {row.payload.decode(errors='replace')}")
            self.unsync_all()
        elif kind == "close":
            self.event(row, "disconnect", None, f"conn {row.conn_id} {row.payload.decode(errors='replace')}")
            self.unsync_all()
        elif kind == "send":
            try:
                msg = orjson.loads(row.payload)
            except orjson.JSONDecodeError:
                return
            if isinstance(msg, dict):
                what = msg.get("event") or msg.get("method")
                if what in ("subscribe", "unsubscribe", "ping"):
                    self.event(row, what, None, row.payload.decode(errors="replace"))
        elif kind == "note":
            self.note_event(row)

    def _on_asset_pairs(self, row: RawRow) -> None:
        try:
            pairs = parse_asset_pairs(row.payload)
        except (KrakenError, orjson.JSONDecodeError) as exc:
            self.event(row, "venue_error", None, f"AssetPairs: {exc}")
            return
        for internal, p in pairs.items():
            try:
                inst = _instrument(p)
            except (KeyError, ValueError, TypeError) as exc:
                self.malformed(row, None, f"AssetPairs {internal}: {type(exc).__name__}: {exc}")
                continue
            self.by_internal[internal] = inst.venue_symbol
            self.by_v2[v2_symbol(inst.venue_symbol)] = inst.venue_symbol
            if isinstance(p.get("altname"), str) and p["altname"]:
                self.by_altname[p["altname"]] = inst.venue_symbol
            self.add_instrument(inst, row)

    def _on_depth(self, row: RawRow) -> None:
        """REST Depth: a snapshot for `fetch_orderbook_sync`. While the pair streams over the
        WebSocket a REST book cannot be bridged into it (no sequence numbers), so it is ignored.
        The Rust path takes the well-formed snapshot of a known pair that is not streaming;
        everything else (errors, precision, streaming pairs) goes through the reference path."""
        try:
            m = parse_kraken_depth(row.payload)
        except ValueError:
            m = None
        if m is not None and self._on_depth_fast(row, m):
            return
        symbol = row.symbol
        try:
            result = _result(row.payload, "Depth")
            if not result:
                raise KrakenError(["empty Depth result"], "Depth")
            [(key, book_doc)] = result.items()
            symbol = self.by_internal.get(key) or self.by_altname.get(key) or key if symbol is None else symbol
            inst = self.instruments[symbol]
            levels: list = []
            pads: list = []
            newest = max(
                self._parse_levels(inst, 1, book_doc["asks"], levels, pads),
                self._parse_levels(inst, 0, book_doc["bids"], levels, pads),
            )
        except KrakenError as exc:
            self.event(row, "venue_error", symbol if symbol in self.books else None, f"Depth: {exc}")
            return
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, _Resync) as exc:
            self.stats["malformed"] += 1
            self.event(row, "malformed", symbol if symbol in self.books else None, f"Depth: {getattr(exc, 'detail', exc)}")
            return
        if symbol in self.streaming:
            return
        self._apply_snapshot(row, inst, levels, pads, newest or row.local_ts, None)

    def _on_depth_fast(self, row: RawRow, m) -> bool:
        """A Depth snapshot parsed by `parse_kraken_depth`; False: leave it to the reference path."""
        symbol = row.symbol
        if symbol is None:
            symbol = self.by_internal.get(m.symbol) or self.by_altname.get(m.symbol) or m.symbol
        inst = self.instruments.get(symbol)
        if inst is None or symbol in self.streaming:
            return False
        book = self.books[symbol]
        cols = self.book_columns(inst)
        seq = self.next_seq(symbol)
        pad = self.wire_pad.get(symbol, (0, 0))
        status, _, _, pad_p, pad_a, added, _ = m.apply(book, cols, row.local_ts, row.rec_id, seq, pad[0], pad[1])
        if status:
            return False  # a value finer than the precision: nothing was applied
        if len(m) and ((pad_p, pad_a) != pad or symbol not in self.wire_pad):
            self.wire_pad[symbol] = (pad_p, pad_a)
        book.synced = True
        self.commit_seq(symbol, seq)
        self.event(row, "snapshot", symbol, f"{book.bid_count} bids, {book.ask_count} asks")
        if added:  # (a snapshot always adds rows)
            self.stats["messages"] += 1
            if self.on_book is not None:
                self.on_book(book)
        return True

    @staticmethod
    def _fast(row: RawRow, parse, handle) -> bool:
        """Parse a frame in Rust and handle each message; False leaves it to the reference
        path, which also reports what Rust refused."""
        try:
            msgs = parse(row.payload)
        except ValueError:
            return False
        if msgs is None:
            return False
        for m in msgs:
            handle(row, m)
        return True

    def _on_frame(self, row: RawRow) -> None:
        payload = row.payload
        # v1 `"book-10"` / `"trade"`, v2 `"channel":"book"` / `"channel":"trade"`: the Rust path
        if b'"book' in payload and self._fast(row, parse_kraken_book, self._on_book_fast):
            return
        if b'"trade"' in payload and self._fast(row, parse_kraken_trades, self._on_trades_fast):
            return
        if payload[:1] == b"{" and (b'"channel"' in payload or b'"method"' in payload):  # v2 (v1 events have neither)
            self._on_v2(row)
            return
        try:
            msg = orjson.loads(row.payload)
        except orjson.JSONDecodeError as exc:
            self.stats["malformed"] += 1
            self.event(row, "malformed", None, f"conn {row.conn_id} seq {row.conn_seq}: {exc}; {row.payload[:80]!r}")
            return
        if isinstance(msg, dict):
            self._on_event(row, msg)
            return
        if not isinstance(msg, list) or len(msg) < 4 or not isinstance(msg[-2], str) or not isinstance(msg[-1], str):
            self.stats["malformed"] += 1
            self.event(row, "malformed", None, f"conn {row.conn_id} seq {row.conn_seq}: not a channel message; {row.payload[:80]!r}")
            return
        name, pair = msg[-2], msg[-1]
        if name.startswith("book"):
            self._on_book(row, msg, pair)
        elif name == "trade":
            self._on_trades(row, msg, pair)
        else:
            self.event(row, "unknown_message", None, row.payload[:200].decode(errors="replace"))

    def _on_event(self, row: RawRow, msg: dict) -> None:
        ev = msg.get("event")
        if ev == "heartbeat":
            return
        if ev == "pong":
            self.event(row, "pong", None, f"reqid {msg.get('reqid')}")
            return
        if ev == "systemStatus":
            status = msg.get("status")
            self.event(row, "status", None, f"systemStatus {status} version {msg.get('version')}")
            return
        if ev == "subscriptionStatus":
            pair = msg.get("pair")
            status = msg.get("status")
            sub = msg.get("subscription")
            name = sub.get("name") if isinstance(sub, dict) else None
            if pair is not None and not isinstance(pair, str):
                self.malformed(row, None, f"subscriptionStatus: pair {str(pair)[:40]!r} is not a string")
                return
            symbol = pair if pair in self.books else None
            if status == "subscribed":
                if isinstance(msg.get("channelID"), int):
                    self.channels[msg["channelID"]] = (msg.get("channelName", name), pair)
                if name == "book" and symbol:
                    self.streaming.add(symbol)
                    self.books[symbol].synced = False  # the snapshot follows
            elif status == "unsubscribed":
                if isinstance(msg.get("channelID"), int):
                    self.channels.pop(msg["channelID"], None)
                if name == "book" and symbol:
                    self.streaming.discard(symbol)
                    self.books[symbol].synced = False
            elif status == "error":
                detail = f"{name} {pair}: {msg.get('errorMessage')}"
                self.event(row, "venue_error", symbol, detail)
                if pair is not None and symbol is None:
                    self.event(row, "unknown_symbol", None, detail)
            return
        if ev == "error":
            self.event(row, "venue_error", None, str(msg.get("errorMessage")))
            return
        self.event(row, "unknown_message", None, row.payload[:200].decode(errors="replace"))

    def _on_book(self, row: RawRow, msg: list, pair: str) -> None:
        inst = self.instruments.get(pair)
        if inst is None:
            self.event(row, "unknown_symbol", None, f"book message for {pair!r}")
            return
        book = self.books[pair]
        parts = msg[1:-2]
        try:
            if not parts or not all(isinstance(p, dict) for p in parts):
                raise _Resync("malformed", "book message without level dicts")
            if "as" in parts[0] or "bs" in parts[0]:
                levels: list = []
                pads: list = []
                d = parts[0]
                newest = max(
                    self._parse_levels(inst, 1, d.get("as", []), levels, pads),
                    self._parse_levels(inst, 0, d.get("bs", []), levels, pads),
                )
                self.snapshot_started(pair)
                self._apply_snapshot(row, inst, levels, pads, newest or row.local_ts, None)
                return
            if not self.accepts_update(pair):
                return  # updates before the (re)subscription's snapshot
            levels = []
            pads = []
            newest = 0
            checksum = None
            for d in parts:
                if "a" in d:
                    newest = max(newest, self._parse_levels(inst, 1, d["a"], levels, pads))
                if "b" in d:
                    newest = max(newest, self._parse_levels(inst, 0, d["b"], levels, pads))
                if "c" in d:
                    c = d["c"]
                    checksum = c if type(c) is int else int(c) if isinstance(c, str) and c.isascii() and c.isdigit() and len(c) <= 10 else -1
                    if not 0 <= checksum < (1 << 32):
                        raise _Resync("malformed", f"book update: checksum {str(c)[:40]!r} is not an unsigned 32-bit integer")
            if checksum is None:
                raise _Resync("malformed", "book update without a checksum")
        except _Resync as exc:
            if exc.kind == "malformed":
                self.stats["malformed"] += 1
            self.resync(row, pair, exc.kind, exc.detail)
            return
        except (KeyError, IndexError, TypeError, ValueError, OverflowError) as exc:
            self.stats["malformed"] += 1
            self.resync(row, pair, "malformed", f"book update: {type(exc).__name__}: {exc}")
            return
        self._learn_pad(pair, pads)
        for side, price, amount in levels:
            book.apply(side, price, amount)
        book.truncate()
        wire, local = self._checksum(pair)
        if wire != checksum:
            self.checksum_mismatch(row, pair, f"venue {checksum}, local {wire}")
            return
        seq = self.next_seq(pair)
        self.commit_seq(pair, seq)
        self.emit_levels(
            inst, book, levels, ts=newest or row.local_ts, local_ts=row.local_ts, rec_id=row.rec_id,
            first_seq=seq, last_seq=seq, checksum=wire, snapshot=False,
        )

    # -- the Rust hot path ---------------------------------------------------------------------
    def _trade_memory(self, pair: str) -> TradeMemory:
        mem = self.seen_trades.get(pair)
        if mem is None:
            mem = self.seen_trades[pair] = TradeMemory(self.TRADE_MEMORY)
        return mem

    def _on_trades_fast(self, row: RawRow, m) -> None:
        """One pair's trades parsed by `parse_kraken_trades` (v1 message, or a run of v2 data
        entries with the same symbol): the reference paths' ids, de-duplication, rows, events,
        stats and on_trade calls, with the rows appended in Rust."""
        if m.api == 1:
            pair = m.symbol
            inst = self.instruments.get(pair)
            if inst is None:
                self.event(row, "unknown_symbol", None, f"trade for {pair!r}")
                return
        else:
            pair = self.by_v2.get(m.symbol)
            inst = self.instruments.get(pair)
            if inst is None:
                for _ in range(len(m)):
                    self.event(row, "unknown_symbol", None, f"trade for {m.symbol!r}")
                return
        cols = self.trade_columns(inst)
        start = len(cols)
        added, duplicates, errors = m.apply(
            cols, self._trade_memory(pair), inst.price_precision, inst.amount_precision, row.local_ts, row.rec_id
        )
        self.stats["trades"] += added
        self.stats["duplicate_trades"] += duplicates
        for detail in errors:  # a value finer than the precision (v1: the rest of the message is dropped)
            self.stats["malformed"] += 1
            if m.api == 1:
                self.event(row, "malformed", pair, f"trade message: ValueError: {detail}")
            else:
                self.event(row, "malformed", None, f"v2 trade message: ValueError: {detail}")
        if added:
            self.trades_appended(inst, cols, start)

    def _on_book_fast(self, row: RawRow, m) -> None:
        """One pair's book message parsed by `parse_kraken_book` (v1 or v2)."""
        pair = m.symbol if m.api == 1 else self.by_v2.get(m.symbol, m.symbol)
        inst = self.instruments.get(pair)
        if inst is None:
            self.event(row, "unknown_symbol", None, f"book message for {m.symbol!r}")
            return
        book = self.books[pair]
        if m.snapshot:
            self.snapshot_started(pair)
        elif not self.accepts_update(pair):
            return  # updates before the (re)subscription's snapshot
        cols = self.out.book.get(inst.symbol)
        if cols is None:
            cols = self.book_columns(inst)
        seq = self.next_seq(pair)
        pad = self.wire_pad.get(pair, (0, 0))
        status, ts, _, pad_p, pad_a, added, detail = m.apply(book, cols, row.local_ts, row.rec_id, seq, pad[0], pad[1])
        if (pad_p, pad_a) != pad or pair not in self.wire_pad:
            self.wire_pad[pair] = (pad_p, pad_a)
        if status:
            if status == KRAKEN_MISMATCH:
                self.checksum_mismatch(row, pair, detail)
            elif status == KRAKEN_PRECISION:
                self.resync(row, pair, "precision", detail)
            return
        if m.snapshot:
            self.snapshot_applied(row, pair)
        if added:
            self.commit_seq(pair, seq)
            self.stats["messages"] += 1
            if self.on_book is not None and book.synced:
                self.on_book(book)

    def take(self):
        out = super().take()
        out.book_meta = self.book_meta()
        return out

    def book_meta(self) -> dict[str, dict]:
        """Per canonical symbol, the book files' extra metadata: the decimals the venue writes
        prices and volumes with on the WebSocket (pair precision + learned trailing zeros), which
        the stored checksum (the venue's) is computed over; `lab verify` recomputes with them."""
        meta = {}
        for pair, (pad_p, pad_a) in self.wire_pad.items():
            inst = self.instruments.get(pair)
            if inst is not None:
                meta[inst.symbol] = {
                    "wire_price_decimals": inst.price_precision + max(pad_p, 0),
                    "wire_amount_decimals": inst.amount_precision + max(pad_a, 0),
                }
        return meta

    # -- WebSocket v2 control messages and trades ------------------------------------------------
    def _on_v2(self, row: RawRow) -> None:
        try:
            msg = json.loads(row.payload, parse_float=str)  # numbers keep their exact text
        except (ValueError, UnicodeDecodeError) as exc:
            self.stats["malformed"] += 1
            self.event(row, "malformed", None, f"conn {row.conn_id} seq {row.conn_seq}: {exc}; {row.payload[:80]!r}")
            return
        if not isinstance(msg, dict):
            self.stats["malformed"] += 1
            self.event(row, "malformed", None, f"conn {row.conn_id} seq {row.conn_seq}: not an object; {row.payload[:80]!r}")
            return
        channel = msg.get("channel")
        method = msg.get("method")
        if channel == "heartbeat":
            return
        if msg.get("data") is not None and not isinstance(msg["data"], list):  # (null: none, as in Rust)
            known = symbol_pair = None
            if isinstance(msg.get("symbol"), str):
                symbol_pair = self.by_v2.get(msg["symbol"])
                known = symbol_pair if symbol_pair in self.books else None
            self.malformed(row, known, f"v2 {str(channel)[:20]!r} message: data is not a list")
            if known is not None and channel == "book":
                self.resync(row, known, "", "")
            return
        if channel == "status":
            for d in msg.get("data") or []:
                if isinstance(d, dict):
                    self.event(row, "status", None, f"system {d.get('system')} api {d.get('api_version')} version {d.get('version')}")
            return
        if channel == "trade":
            self._on_trades_v2(row, msg)
            return
        if channel == "book":  # a book message the Rust parser refused
            self.stats["malformed"] += 1
            data = msg.get("data")
            symbol = data[0].get("symbol") if isinstance(data, list) and data and isinstance(data[0], dict) else None
            pair = self.by_v2.get(symbol) if isinstance(symbol, str) else None
            detail = f"book message: {row.payload[:120]!r}"
            if pair in self.books:
                self.resync(row, pair, "malformed", detail)
            else:
                self.event(row, "malformed", None, detail)
            return
        if method == "pong":
            self.event(row, "pong", None, f"req_id {msg.get('req_id')}")
            return
        if method in ("subscribe", "unsubscribe"):
            result = msg.get("result") if isinstance(msg.get("result"), dict) else {}
            symbol = result.get("symbol", msg.get("symbol"))
            pair = self.by_v2.get(symbol) if isinstance(symbol, str) else None
            name = result.get("channel")
            if msg.get("success"):
                if name == "book" and pair in self.books:
                    if method == "subscribe":
                        self.streaming.add(pair)
                    else:
                        self.streaming.discard(pair)
                    self.books[pair].synced = False  # (the snapshot follows)
                return
            detail = f"{method} {symbol}: {msg.get('error')}"
            self.event(row, "venue_error", pair, detail)
            if symbol is not None and pair is None:
                self.event(row, "unknown_symbol", None, detail)
            return
        if "error" in msg:
            self.event(row, "venue_error", None, str(msg.get("error")))
            return
        self.event(row, "unknown_message", None, row.payload[:200].decode(errors="replace"))

    def _on_trades_v2(self, row: RawRow, msg: dict) -> None:
        """v2 trades carry `trade_id` (sequential per book): it is the trade's id, and a trade
        seen again (a reconnect, a trade snapshot) is written once."""
        for t in msg.get("data") or []:
            try:
                symbol = t["symbol"]
                pair = self.by_v2.get(symbol)
                inst = self.instruments.get(pair)
                if inst is None:
                    self.event(row, "unknown_symbol", None, f"trade for {symbol!r}")
                    continue
                ids = self._trade_memory(pair)
                tid = str(t["trade_id"])
                if tid in ids:
                    self.stats["duplicate_trades"] += 1
                    continue
                price = parse_fixed(str(t["price"]), inst.price_precision)
                amount = parse_fixed(str(t["qty"]), inst.amount_precision)
                side = {"buy": "buy", "sell": "sell"}[t["side"]]
                ts = rfc3339_to_ns(t["timestamp"])
            except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
                self.stats["malformed"] += 1
                self.event(row, "malformed", None, f"v2 trade message: {type(exc).__name__}: {exc}")
                continue
            ids.add(tid)
            self.stats["trades"] += 1
            self.emit_trade(inst, row, ts, tid, side, price, amount)

    def _learn_pad(self, pair: str, pads: list) -> None:
        if pads:
            cur = self.wire_pad.get(pair, (0, 0))
            pad = (max(cur[0], max(p for p, _ in pads)), max(cur[1], max(a for _, a in pads)))
            if pad != cur or pair not in self.wire_pad:
                self.wire_pad[pair] = pad

    def _apply_snapshot(self, row: RawRow, inst: Instrument, levels: list, pads: list, ts: int, checksum) -> None:
        pair = inst.venue_symbol
        book = self.books[pair]
        self._learn_pad(pair, pads)
        book.clear()
        for side, price, amount in levels:
            book.apply(side, price, amount)
        book.truncate()
        self.snapshot_applied(row, pair)
        seq = self.next_seq(pair)
        self.commit_seq(pair, seq)
        self.emit_levels(
            inst, book, levels, ts=ts, local_ts=row.local_ts, rec_id=row.rec_id,
            first_seq=seq, last_seq=seq, checksum=checksum, snapshot=True,  # v1 snapshots carry none
        )

    def _on_trades(self, row: RawRow, msg: list, pair: str) -> None:
        inst = self.instruments.get(pair)
        if inst is None:
            self.event(row, "unknown_symbol", None, f"trade for {pair!r}")
            return
        ids = self._trade_memory(pair)
        counts: dict[tuple, int] = {}
        try:
            for t in msg[1]:
                fields = tuple(str(x) for x in t[:5])
                ordinal = counts.get(fields, 0)
                counts[fields] = ordinal + 1
                tid = trade_id(pair, t, ordinal)
                if tid in ids:
                    self.stats["duplicate_trades"] += 1
                    continue
                price = parse_fixed(t[0], inst.price_precision)
                amount = parse_fixed(t[1], inst.amount_precision)
                side = {"b": "buy", "s": "sell"}[t[3]]
                ts = ts_ns(t[2])
                ids.add(tid)
                self.stats["trades"] += 1
                self.emit_trade(inst, row, ts, tid, side, price, amount)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            self.stats["malformed"] += 1
            self.event(row, "malformed", pair, f"trade message: {type(exc).__name__}: {exc}")


def _decimals(s) -> int:
    s = str(s)
    dot = s.find(".")
    return 0 if dot < 0 else len(s) - dot - 1


Normalizer = KrakenNormalizer
