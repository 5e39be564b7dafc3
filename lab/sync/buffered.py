"""Buffered-diff sync, written once: a diff stream buffered until a REST snapshot, then the
venue's first-event rule and continuity rule (docs/ARCHITECTURE.md, "Add a venue").

The venue subclass parses its frames and calls `on_diff` / `on_snapshot` with update ids; the
rules are hooks, defaulting to the documented "manage a local order book" algorithm of the
largest spot venue (PROTOCOLS.md section 4):

* while unsynced every diff is buffered; a hole inside the buffer restarts it (a gap);
* a snapshot older than the first buffered diff (`last_update_id < first_seq` of that diff) is
  stale: an event and another snapshot request;
* diffs with `last_seq <= last_update_id` are dropped; the first applied diff must satisfy
  `first_seq <= last_update_id + 1 <= last_seq` (`first_ok`), each later one
  `first_seq == prev_last_seq + 1` (`continues`);
* anything else is a gap: an `events` row, a fresh snapshot request, and the snapshot's CLEAR;
* a crossed book after a message (best bid >= best ask) is an event and a resync.

Book rows carry `first_seq` / `last_seq` as the venue sent them. Each sync's `snapshot` event
records the snapshot's depth (levels per side): levels beyond it stay unknown until they change.

Several connections (a venue that caps streams per connection, and make-before-break rotation;
docs/ARCHITECTURE.md, "Connections: plan and rotation"), for venues whose update ids are
venue-wide (the same update has the same id on every connection). Each book is fed by one
connection at a time, its *owner* (the first connection that delivered it a diff). What another
open connection delivers for that book (a successor subscribed before the old one closes) is held
in a *shadow* list, pruned of what the owner already delivered (a diff with `last_seq <=` the
book's id, a trade the venue's dedupe rule drops), so every update is applied exactly once. At the
owner's `close` row the book is handed over to the open, confirmed connection carrying it (a
`handover` event): its shadow is replayed, the first diff must pass `first_ok` against the book's
id (the snapshot rule), so a hole between the two streams is a `gap` event and a resync, never
silently skipped. A book with no successor is unsynced alone (a `disconnect` event naming it). With
a single connection (every one-connection venue) an open or close resets every book, as always.
"""
from __future__ import annotations

import dataclasses

from lab.core.events import REQUEST_OVERLAP, REQUEST_SNAPSHOT
from lab.core.model import Instrument, RawRow
from lab.sync.normalizer import Normalizer


class BufferedDiffNormalizer(Normalizer):
    """Subclasses parse frames and call `on_diff` / `on_snapshot`; they may override the rules."""

    check_crossed = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # venue symbol -> [(row, first_seq, last_seq, ts, bids, asks)] buffered while unsynced
        self.buffers: dict[str, list[tuple]] = {}
        self.await_first: dict[str, bool] = {}  # the next applied diff must pass `first_ok`
        # several connections (see the module doc)
        self.open_conns: set[int] = set()
        self.live_conns: set[int] = set()  # subscriptions the venue confirmed (or that delivered data)
        self.carries: dict[int, set[str]] = {}  # conn -> venue symbols it subscribed
        self.owner: dict[str, int] = {}  # venue symbol -> the connection feeding its book
        self.shadow: dict[str, dict[int, list]] = {}  # venue symbol -> conn -> entries, oldest first
        self.overlapped: set[tuple[int, str]] = set()  # (conn, symbol) whose stream met the book
        self.handovers = 0

    # -- the rules (hooks) ------------------------------------------------------------------------
    def first_ok(self, first_seq: int, last_seq: int, snapshot_id: int) -> bool:
        return first_seq <= snapshot_id + 1 <= last_seq

    def continues(self, first_seq: int, prev_last_seq: int) -> bool:
        return first_seq == prev_last_seq + 1

    def stale(self, snapshot_id: int, first_buffered_seq: int) -> bool:
        """The snapshot cannot bridge the buffer: older than its first diff."""
        return snapshot_id + 1 < first_buffered_seq

    # -- the events' texts (a venue may word them its own way) -----------------------------------------
    def describe_gap(self, book, expected: str, first_seq: int, last_seq: int) -> str:
        return f"expected {expected}, got [{first_seq}, {last_seq}]"

    def describe_buffer_gap(self, prev_last: int, first_seq: int, dropped: int) -> str:
        return f"while buffering: expected first id {prev_last + 1}, got {first_seq}; {dropped} buffered diffs dropped"

    def describe_stale(self, snapshot_id: int, first_buffered: int) -> str:
        return f"snapshot id {snapshot_id} older than the first buffered diff {first_buffered}"

    def describe_snapshot(self, snapshot_id: int, bids: list, asks: list, applied: int) -> str:
        return f"id {snapshot_id}, depth {len(bids)} bids / {len(asks)} asks, {applied} buffered diffs applied"

    def describe_checksum(self, book, first_seq: int, last_seq: int, checksum, snapshot: bool) -> str:
        what = f"snapshot {last_seq}" if snapshot else f"[{first_seq}, {last_seq}]"
        return f"{what}: venue {checksum}, local {book.checksum()}"

    # -- state ------------------------------------------------------------------------------------
    def unsync(self, row: RawRow, symbol: str, kind: str = "", detail: str = "") -> None:
        """Unsync `symbol`: an optional events row, drop the buffer, request a fresh snapshot."""
        book = self.books[symbol]
        if kind:
            self.event(row, kind, symbol, detail)
        book.synced = False
        self.buffers[symbol] = []
        self.await_first[symbol] = True
        self.stats["resyncs"] += 1
        self.event(row, "resync", symbol, "requesting a REST snapshot")
        self.request(REQUEST_SNAPSHOT, symbol)

    def resync_book(self, row: RawRow, symbol: str) -> None:
        self.unsync(row, symbol)

    def reset_all(self) -> None:
        """A connection opened or closed: every book waits for a new snapshot."""
        for symbol, book in self.books.items():
            book.synced = False
            self.buffers[symbol] = []
            self.await_first[symbol] = True

    # -- input from the venue's parser --------------------------------------------------------------
    def on_diff(self, row: RawRow, inst: Instrument, first_seq: int, last_seq: int, ts: int,
                bids: list, asks: list, checksum: int | None = None) -> None:
        """One validated diff (levels already checked exact at the instrument's precisions)."""
        symbol = inst.venue_symbol
        book = self.books[symbol]
        if not book.synced:
            buffer = self.buffers.setdefault(symbol, [])
            if buffer and not self.continues(first_seq, buffer[-1][2]):
                # The buffer itself has a hole: no snapshot could ever be bridged to its first
                # diff, so it restarts here and a fresh snapshot is asked for.
                self.stats["gaps"] += 1
                self.event(row, "gap", symbol, self.describe_buffer_gap(buffer[-1][2], first_seq, len(buffer)))
                buffer.clear()
                self.stats["resyncs"] += 1  # every gap is followed by its resync, here too
                self.event(row, "resync", symbol, "requesting a REST snapshot")
                self.request(REQUEST_SNAPSHOT, symbol)
            buffer.append((row, first_seq, last_seq, ts, bids, asks, checksum))
            return
        self._apply(row, inst, first_seq, last_seq, ts, bids, asks, checksum, row.local_ts)

    def _apply(self, row, inst, first_seq, last_seq, ts, bids, asks, checksum, local_ts) -> bool:
        """Apply one diff to a synced book; False (and an unsync) when it cannot be applied."""
        symbol = inst.venue_symbol
        book = self.books[symbol]
        if last_seq <= book.seq:
            return True  # already in the snapshot
        if self.await_first.get(symbol, True):
            ok = self.first_ok(first_seq, last_seq, book.seq)
            expected = f"first id <= {book.seq + 1} <= last id"
        else:
            ok = self.continues(first_seq, book.seq)
            expected = f"first id {book.seq + 1}"
        if not ok:
            self.stats["gaps"] += 1
            self.unsync(row, symbol, "gap", self.describe_gap(book, expected, first_seq, last_seq))
            self.buffers[symbol].append((row, first_seq, last_seq, ts, bids, asks, checksum))
            return False
        if not self.apply_wire(inst, book, bids, asks, ts, local_ts, row.rec_id, first_seq, last_seq, checksum, False):
            self.stats["checksum_mismatches"] += 1
            self.unsync(row, symbol, "checksum_mismatch", self.describe_checksum(book, first_seq, last_seq, checksum, False))
            return False
        self.await_first[symbol] = False
        if self.check_crossed and book.crossed():
            self.unsync(row, symbol, "crossed_book", f"after [{first_seq}, {last_seq}]: best bid {book.best_bid()} >= best ask {book.best_ask()}")
            return False
        return True

    def on_snapshot(self, row: RawRow, inst: Instrument, snapshot_id: int, ts: int, bids: list, asks: list,
                    checksum: int | None = None) -> None:
        """One validated REST snapshot whose update id is `snapshot_id`."""
        symbol = inst.venue_symbol
        book = self.books[symbol]
        if book.synced:
            return  # a late answer to a request already satisfied
        buffer = self.buffers.get(symbol, [])
        kept = [b for b in buffer if b[2] > snapshot_id]
        if kept and self.stale(snapshot_id, kept[0][1]):
            self.event(row, "stale_snapshot", symbol, self.describe_stale(snapshot_id, kept[0][1]))
            self.request(REQUEST_SNAPSHOT, symbol)
            return
        book.synced = True  # so the snapshot's on_book call sees a synced book
        if not self.apply_wire(inst, book, bids, asks, ts, row.local_ts, row.rec_id, snapshot_id, snapshot_id, checksum, True):
            book.synced = False
            self.stats["checksum_mismatches"] += 1
            self.event(row, "checksum_mismatch", symbol, self.describe_checksum(book, snapshot_id, snapshot_id, checksum, True))
            book.clear()
            self.stats["resyncs"] += 1
            self.event(row, "resync", symbol, "requesting a REST snapshot")
            self.request(REQUEST_SNAPSHOT, symbol)
            return
        book.seq = snapshot_id
        self.await_first[symbol] = True
        self.event(row, "snapshot", symbol, self.describe_snapshot(snapshot_id, bids, asks, len(kept)))
        self.buffers[symbol] = []
        if self.check_crossed and book.crossed():
            self.unsync(row, symbol, "crossed_book", f"snapshot {snapshot_id}: best bid >= best ask")
            return
        for brow, first_seq, last_seq, bts, bb, ba, bc in kept:
            # a diff buffered before its snapshot takes effect when the snapshot does
            if not self._apply(brow, inst, first_seq, last_seq, bts, bb, ba, bc, row.local_ts):
                break  # unsynced: live diffs refill the buffer for the next snapshot

    # -- several connections: owner, shadow, handover (see the module doc) -------------------------
    SHADOW_MAX = 100_000  # entries per (symbol, connection); beyond it the oldest go (a gap at handover)

    def connection_opened(self, row: RawRow, detail: str) -> bool:
        """An `open` row: a `connect` event. True when it is the only open connection (every book
        resets, as a one-connection venue always did); False when other connections stay open
        (their books go on)."""
        self.event(row, "connect", None, detail)
        self.open_conns.add(row.conn_id)
        if len(self.open_conns) == 1:
            self.reset_all()
            self.owner.clear()
            self.shadow.clear()
            self.overlapped.clear()
            return True
        return False

    def connection_closed(self, row: RawRow, detail: str) -> list[str] | None:
        """A `close` row. The only connection: a `disconnect` event, every book resets (None).
        Otherwise each book the connection fed is handed over to its successor, or unsynced with
        a `disconnect` event naming it; returns the symbols unsynced."""
        conn = row.conn_id
        self.open_conns.discard(conn)
        self.live_conns.discard(conn)
        self.carries.pop(conn, None)
        for by_conn in self.shadow.values():
            by_conn.pop(conn, None)
        self.overlapped = {k for k in self.overlapped if k[0] != conn}
        if not self.open_conns:
            self.event(row, "disconnect", None, detail)
            self.reset_all()
            self.owner.clear()
            self.shadow.clear()
            self.overlapped.clear()
            return None
        self.event(row, "connection_closed", None, f"{detail}; {len(self.open_conns)} other connection(s) open")
        lost = []
        for symbol, owner in sorted(self.owner.items()):
            if owner != conn:
                continue
            successor = self._successor(symbol)
            if successor is None:
                del self.owner[symbol]
                if symbol in self.books:
                    self.event(row, "disconnect", symbol, detail)
                    self.books[symbol].synced = False
                    self.buffers[symbol] = []
                    self.await_first[symbol] = True
                lost.append(symbol)
            else:
                self._handover(row, symbol, conn, successor)
        return lost

    def subscribed(self, conn: int, symbols, confirmed: bool = False) -> None:
        """The venue's parser saw `conn` subscribe `symbols` (`confirmed`: the venue acknowledged)."""
        self.carries.setdefault(conn, set()).update(symbols)
        if confirmed:
            self.live_conns.add(conn)

    def confirmed(self, conn: int) -> None:
        self.live_conns.add(conn)

    def feeds(self, row: RawRow, symbol: str) -> bool:
        """True when `row`'s connection feeds `symbol`'s book (its owner, or the book has none
        open); False: the caller shadows the entry (`shadow_entry`)."""
        conn = row.conn_id
        owner = self.owner.get(symbol)
        if owner == conn:
            return True
        if owner is None or owner not in self.open_conns or conn not in self.open_conns:
            self.owner[symbol] = conn
            return True
        return False

    def head(self, symbol: str) -> int | None:
        """The last update id the book's owner delivered (applied, or buffered while unsynced)."""
        book = self.books.get(symbol)
        if book is not None and book.synced:
            return book.seq
        buffer = self.buffers.get(symbol)
        return buffer[-1][2] if buffer else None

    def shadow_stale(self, symbol: str, entry: tuple) -> bool:
        """Already delivered by the owner (a venue overrides for its other entry kinds)."""
        if entry[0] == "diff":
            head = self.head(symbol)
            return head is not None and entry[4] <= head
        return False

    def replay_shadow(self, entry: tuple) -> None:
        """Apply one shadow entry as its (new) owner's (a venue overrides for its entry kinds)."""
        if entry[0] == "diff":
            self.on_diff(*entry[1:])

    def shadow_entry(self, symbol: str, entry: tuple) -> None:
        """An entry of a connection that does not feed `symbol`: ("diff", row, inst, first_seq,
        last_seq, ts, bids, asks, checksum), or a venue's own kind (trades)."""
        row = entry[1]
        conn = row.conn_id
        self.live_conns.add(conn)
        self.carries.setdefault(conn, set()).add(symbol)
        if self.shadow_stale(symbol, entry):
            if entry[0] == "diff":
                self._overlap(conn, symbol)
            return
        entries = self.shadow.setdefault(symbol, {}).setdefault(conn, [])
        if len(entries) >= self.SHADOW_MAX:
            del entries[0]
        entries.append(entry)
        if entry[0] == "diff":
            head = self.head(symbol)
            if head is None or entry[3] <= head + 1:
                self._overlap(conn, symbol)

    def prune_shadow(self, symbol: str) -> None:
        """The owner moved on: drop what it delivered from the other connections' shadows."""
        by_conn = self.shadow.get(symbol)
        if not by_conn:
            return
        stale = self.shadow_stale
        for conn, entries in by_conn.items():
            if entries and stale(symbol, entries[0]):
                had_diff = any(e[0] == "diff" and stale(symbol, e) for e in entries)
                entries[:] = [e for e in entries if not stale(symbol, e)]
                if had_diff:
                    self._overlap(conn, symbol)

    def _overlap(self, conn: int, symbol: str) -> None:
        key = (conn, symbol)
        if key not in self.overlapped:
            self.overlapped.add(key)
            self.request(REQUEST_OVERLAP, symbol)

    def _successor(self, symbol: str) -> int | None:
        """The open, confirmed connection that takes `symbol` over (one with shadowed data first)."""
        candidates = [c for c in sorted(self.open_conns)
                      if c in self.live_conns and (self.shadow.get(symbol, {}).get(c) or symbol in self.carries.get(c, ()))]
        with_data = [c for c in candidates if self.shadow.get(symbol, {}).get(c)]
        return (with_data or candidates or [None])[0]

    def _handover(self, row: RawRow, symbol: str, old: int, new: int) -> None:
        """`symbol`'s book moves from `old` (closed) to `new`: the shadow is replayed at the close
        row's time; the first diff must pass `first_ok` against the book's id."""
        self.owner[symbol] = new
        entries = self.shadow.get(symbol, {}).pop(new, [])
        self.overlapped.discard((new, symbol))
        self.handovers += 1
        head = self.head(symbol)
        self.event(row, "handover", symbol, f"conn {old} -> conn {new} at id {head}; "
                   f"{len(entries)} entries of conn {new} replayed")
        book = self.books.get(symbol)
        if book is not None and book.synced:
            self.await_first[symbol] = True  # the successor's first diff: U <= id + 1 <= u
        for entry in entries:
            if self.shadow_stale(symbol, entry):
                continue
            # takes effect now (like a diff buffered before its snapshot), keeps its own rec_id
            self.replay_shadow((entry[0], dataclasses.replace(entry[1], local_ts=row.local_ts)) + tuple(entry[2:]))
