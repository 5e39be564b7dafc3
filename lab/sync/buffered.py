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
"""
from __future__ import annotations

from lab.core.events import REQUEST_SNAPSHOT
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
