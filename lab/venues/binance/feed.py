"""Binance spot normalizer: frames and REST answers in, book / trade rows and events out, on the
shared buffered-diff strategy (lab/sync/buffered.py) with Binance's own rules (its defaults).

Book rows carry `first_seq = U`, `last_seq = u` (a snapshot: both `lastUpdateId`). A snapshot is
requested when the first diff of an unsynced book is buffered (Binance: "buffer, note U, then GET
depth"), so the snapshot is never older than the stream it must bridge unless the venue lags.
Trades are deduplicated by Binance's trade id; a hole in the ids is a `trade_gap` event.

Several connections (the stream cap, make-before-break rotation): `U`/`u` and trade ids are
venue-wide, so a successor's updates are deduplicated against the book's id and the last trade id
and the book is handed over at the old connection's close without a snapshot (lab/sync/buffered.py,
docs/BINANCE.md "Connections"). The connections a symbol is on are read off the SUBSCRIBE frames
(and `/ws/<stream>`, `/stream?streams=` URLs); the `{"result":null}` answer confirms them.
A `serverShutdown` asks the live side to rotate that connection (REQUEST_ROTATE).

The hot paths are Rust (rust_book/src/binance.rs, on the shared `FrameParser` contract): diff
depth (`parse_binance_depth`), trades (`parse_binance_trade`) and the REST snapshot
(`parse_binance_snapshot`), frame in, levels applied and rows appended in Rust (`BinanceBook`
stands in for the bids/asks lists in the buffered-diff entries; `apply_wire` applies it). A frame
they refuse (escapes, an odd shape, a value not exact at the precisions, an unknown symbol) goes
through the Python reference path (`_on_frame_reference`, protocol.py), which reports it exactly as
before; both share the state, and tests require identical rows, events and stats from either
(`rust_parsers = False` selects the reference path alone).
"""
from __future__ import annotations

import orjson

from lab.core.events import REQUEST_ROTATE, REQUEST_SNAPSHOT
from lab.core.model import Instrument, RawRow
from lab.rust_book import BinanceBook, parse_binance_depth, parse_binance_snapshot, parse_binance_trade
from lab.sync.buffered import BufferedDiffNormalizer
from lab.venues.binance import protocol as P

MS = 1_000_000  # Binance times are milliseconds; lab's are nanoseconds


class BinanceNormalizer(BufferedDiffNormalizer):
    venue = P.VENUE
    rust_parsers = True  # False: every frame through the Python reference path (tests, benchmarks)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.last_trade_id: dict[str, int] = {}
        self.requested: set[str] = set()

    def symbol_of(self, row: RawRow) -> str | None:
        if row.kind == "recv":
            try:
                msg = P.unwrap(orjson.loads(row.payload))
            except orjson.JSONDecodeError:
                return None
            if isinstance(msg, dict) and isinstance(msg.get("s"), str):
                return msg["s"]
        return row.symbol

    def unsync(self, row, symbol, kind="", detail=""):
        self.requested.add(symbol)
        super().unsync(row, symbol, kind, detail)

    # -- input --------------------------------------------------------------------------------
    def _feed(self, row: RawRow) -> None:
        kind = row.kind
        if kind == "recv":
            self._on_frame(row)
        elif kind == "rest":
            if row.channel.startswith(P.INSTRUMENTS_PATH):
                self._on_instruments(row)
            elif row.channel.startswith(P.DEPTH_PATH):
                self._on_snapshot(row)
        elif kind == "rest_error":
            self.event(row, "rest_error", row.symbol, f"{row.channel}: {row.payload[:200].decode(errors='replace')}")
            if row.symbol in self.books and row.channel.startswith(P.DEPTH_PATH):
                self.request(REQUEST_SNAPSHOT, row.symbol)
        elif kind == "open":
            url = row.payload.decode(errors="replace")
            if self.connection_opened(row, f"conn {row.conn_id} {url}"):
                self.requested.clear()
            in_url = _url_symbols(url)
            if in_url:
                self.subscribed(row.conn_id, in_url)
        elif kind == "close":
            lost = self.connection_closed(row, f"conn {row.conn_id} {row.payload.decode(errors='replace')}")
            if lost is None:
                self.requested.clear()
            else:
                self.requested.difference_update(lost)
        elif kind == "send":
            try:
                msg = orjson.loads(row.payload)
            except orjson.JSONDecodeError:
                return
            if isinstance(msg, dict) and msg.get("method") in ("SUBSCRIBE", "UNSUBSCRIBE"):
                self.event(row, "subscribe", None, row.payload.decode(errors="replace"))
                params = msg.get("params")
                if msg["method"] == "SUBSCRIBE" and isinstance(params, list):
                    self.subscribed(row.conn_id, {p.split("@", 1)[0].upper() for p in params if isinstance(p, str)})
        elif kind == "note":
            self.note_event(row)

    def _on_instruments(self, row: RawRow) -> None:
        self.add_instruments(row, "symbols", P.instrument, "exchangeInfo")

    def _on_frame(self, row: RawRow) -> None:
        # The Rust path: parse, then handle the frame's one message; a refusal (ValueError), not
        # this kind (None) or a False from the handler (nothing touched) leaves the frame to the
        # reference path, which also reports what Rust refused.
        if self.rust_parsers:
            payload = row.payload
            if b'"depthUpdate"' in payload:
                try:
                    msgs = parse_binance_depth(payload)
                except ValueError:
                    msgs = None
                if msgs and len(msgs) == 1 and self._on_depth_fast(row, msgs[0]):
                    return
            elif b'"trade"' in payload:
                try:
                    msgs = parse_binance_trade(payload)
                except ValueError:
                    msgs = None
                if msgs and len(msgs) == 1 and self._on_trade_fast(row, msgs[0]):
                    return
        self._on_frame_reference(row)

    def _on_depth_fast(self, row: RawRow, m: BinanceBook) -> bool:
        """A `depthUpdate` parsed by `parse_binance_depth`: the reference path's entry, with the
        message in place of the bids / asks lists. False (nothing touched): an unknown symbol or
        a level not exact at the precisions, which the reference path reports."""
        symbol = m.symbol
        inst = self.instruments.get(symbol)
        if inst is None or m.check(inst.price_precision, inst.amount_precision) is not None:
            return False
        entry = ("diff", row, inst, m.first_id, m.last_id, m.timestamp, m, None, None)
        if self.feeds(row, symbol):
            self.replay_shadow(entry)
        else:
            self.shadow_entry(symbol, entry)
        return True

    def _on_trade_fast(self, row: RawRow, m) -> bool:
        """A `trade` parsed by `parse_binance_trade`: `_on_trade`'s dedupe, gap event, row and
        on_trade call, the row appended in Rust. False (nothing touched): an unknown symbol or
        a price / qty not exact at the precisions."""
        symbol = m.symbol
        inst = self.instruments.get(symbol)
        if inst is None or m.check(inst.price_precision, inst.amount_precision) is not None:
            return False
        t = m.id
        if not self.feeds(row, symbol):
            price, qty = m.values
            self.shadow_entry(symbol, ("trade", row, inst, t, m.trade_time, m.side, price, qty))
            return True
        last = self.last_trade_id.get(symbol)
        if last is None or t > last:  # else a duplicate after a reconnect
            cols = self.trade_columns(inst)
            start = len(cols)
            if m.apply(cols, inst.price_precision, inst.amount_precision, row.local_ts, row.rec_id, last) > 0:
                self.event(row, "trade_gap", symbol, f"trade ids {last + 1}..{t - 1} missing")
            self.last_trade_id[symbol] = t
            self.trades_appended(inst, cols, start)
        if self.shadow:
            self.prune_shadow(symbol)
        return True

    def apply_wire(self, inst, book, bids, asks, ts, local_ts, rec_id, first_seq, last_seq, checksum, snapshot) -> bool:
        """A Rust-parsed message (`BinanceBook` as `bids`, `asks` None) is applied by its own
        `apply`, with the same rows, book metadata, stats and on_book call as the reference
        lists through `Normalizer.apply_wire` (Binance sends no checksum)."""
        if asks is not None or not isinstance(bids, BinanceBook):
            return super().apply_wire(inst, book, bids, asks, ts, local_ts, rec_id, first_seq, last_seq, checksum, snapshot)
        if bids.apply(book, self.book_columns(inst), ts, local_ts, rec_id):
            self._book_message(book)
        else:  # an empty delta writes no rows, but the sequence moves on
            book.seq = last_seq
        return True

    def describe_snapshot(self, snapshot_id: int, bids, asks, applied: int) -> str:
        if isinstance(bids, BinanceBook):
            bids, asks = range(bids.bid_count), range(bids.ask_count)  # what the text reads: the counts
        return super().describe_snapshot(snapshot_id, bids, asks, applied)

    def _on_frame_reference(self, row: RawRow) -> None:
        """The Python reference path: every frame the Rust parsers do not take."""
        try:
            msg = P.unwrap(orjson.loads(row.payload))
        except orjson.JSONDecodeError as exc:
            self.malformed(row, None, f"JSONDecodeError: {exc}")
            return
        if not isinstance(msg, dict):
            self.malformed(row, None, "frame is not an object")
            return
        etype = msg.get("e")
        if etype is None:
            if "result" in msg and "id" in msg:
                self.confirmed(row.conn_id)  # {"result": null, "id": N}: a SUBSCRIBE acknowledged
                return
            if "code" in msg:
                self.event(row, "venue_error", None, str(msg.get("msg"))[:200])
                return
            self.event(row, "unknown_message", None, row.payload[:200].decode(errors="replace"))
            return
        if etype == "serverShutdown":
            self.event(row, "server_shutdown", None, f"conn {row.conn_id}: the venue will close this connection")
            self.request(REQUEST_ROTATE, str(row.conn_id))  # make-before-break, if there is time
            return
        if etype not in ("depthUpdate", "trade"):
            self.event(row, "unknown_message", None, row.payload[:200].decode(errors="replace"))
            return
        symbol = msg.get("s")
        if not isinstance(symbol, str):
            self.malformed(row, None, f"{etype}: symbol {str(symbol)[:40]!r} is not a string")
            return
        inst = self.instruments.get(symbol)
        if inst is None:
            self.event(row, "unknown_symbol", None, f"{etype} for {symbol[:40]!r}")
            return
        try:
            if etype == "depthUpdate":
                U, u, E = P.check_diff(msg, inst.price_precision, inst.amount_precision)
            else:
                t, T, side, price, qty = P.parse_trade(msg, inst.price_precision, inst.amount_precision)
        except (ValueError, TypeError, OverflowError) as exc:
            self.malformed(row, symbol, f"{etype}: {type(exc).__name__}: {exc}")
            if etype == "depthUpdate" and self.feeds(row, symbol):
                self.unsync(row, symbol)  # the id sequence is broken here
            return
        if etype == "trade":
            entry = ("trade", row, inst, t, T, side, price, qty)
            if self.feeds(row, symbol):
                self.replay_shadow(entry)
            else:
                self.shadow_entry(symbol, entry)
            return
        entry = ("diff", row, inst, U, u, E * MS, msg["b"], msg["a"], None)
        if self.feeds(row, symbol):
            self.replay_shadow(entry)
        else:  # another connection feeds this book: held until the owner delivers it or closes
            self.shadow_entry(symbol, entry)

    def replay_shadow(self, entry: tuple) -> None:
        """One diff or trade of the connection that feeds its book (live, or at a handover)."""
        if entry[0] == "diff":
            _, row, inst, U, u, ts, bids, asks, _ = entry
            symbol = inst.venue_symbol
            book = self.books[symbol]
            if not book.synced and not self.buffers.get(symbol) and symbol not in self.requested:
                self.requested.add(symbol)
                self.request(REQUEST_SNAPSHOT, symbol)
            self.on_diff(row, inst, U, u, ts, bids, asks)
        else:
            _, row, inst, t, T, side, price, qty = entry
            self._on_trade(row, inst, t, T, side, price, qty)
        if self.shadow:
            self.prune_shadow(inst.venue_symbol)

    def shadow_stale(self, symbol: str, entry: tuple) -> bool:
        if entry[0] == "trade":
            last = self.last_trade_id.get(symbol)
            return last is not None and entry[3] <= last
        return super().shadow_stale(symbol, entry)

    def _on_snapshot(self, row: RawRow) -> None:
        symbol = row.symbol
        inst = self.instruments.get(symbol) if isinstance(symbol, str) else None
        if inst is None:
            self.malformed(row, None, f"depth snapshot for unknown symbol {str(symbol)[:40]!r}")
            return
        if self.rust_parsers:
            try:
                m = parse_binance_snapshot(row.payload)
            except ValueError:
                m = None
            if m is not None and m.check(inst.price_precision, inst.amount_precision) is None:
                self.requested.discard(symbol)
                self.on_snapshot(row, inst, m.last_id, row.local_ts, m, None)
                return
        try:
            snap = orjson.loads(row.payload)
            lid = P.check_snapshot(snap, inst.price_precision, inst.amount_precision)
        except (ValueError, TypeError, OverflowError) as exc:
            self.malformed(row, symbol, f"depth snapshot: {type(exc).__name__}: {exc}")
            self.request(REQUEST_SNAPSHOT, symbol)
            return
        self.requested.discard(symbol)
        self.on_snapshot(row, inst, lid, row.local_ts, snap["bids"], snap["asks"])

    def _on_trade(self, row: RawRow, inst: Instrument, t: int, T: int, side: str, price: int, qty: int) -> None:
        symbol = inst.venue_symbol
        last = self.last_trade_id.get(symbol)
        if last is not None and t <= last:
            return  # a duplicate after a reconnect
        if last is not None and t != last + 1:
            self.event(row, "trade_gap", symbol, f"trade ids {last + 1}..{t - 1} missing")
        self.last_trade_id[symbol] = t
        self.emit_trade(inst, row, T * MS, str(t), side, price, qty)


def _url_symbols(url: str) -> set[str]:
    """Symbols a raw `/ws/<stream>` or combined `/stream?streams=a/b` URL subscribes."""
    from urllib.parse import parse_qs, urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return set()
    names: list[str] = []
    if parts.path.startswith("/ws/"):
        names = parts.path[4:].split("/")
    elif parts.path.startswith("/stream"):
        for v in parse_qs(parts.query).get("streams", []):
            names += v.split("/")
    return {n.split("@", 1)[0].upper() for n in names if n}


Normalizer = BinanceNormalizer
