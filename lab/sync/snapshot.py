"""Subscribe-snapshot sync with a checksum, written once: the venue sends a book snapshot on the
WebSocket when a book is subscribed, then updates, each carrying a checksum of the book's top
(Kraken now, Coinbase next; docs/ARCHITECTURE.md, "Add a venue").

The rules (the venue subclass parses its frames and calls these):

* updates before the subscription's snapshot are ignored (`accepts_update` is False): the book
  is not synced until `snapshot_applied`;
* a snapshot starts the book again (`snapshot_started` before its levels are applied: the
  resync, if one was under way, is over);
* after each update the venue's checksum is compared with the local book's; a mismatch, a
  malformed update, a value beyond the instrument's precisions, is a `resync`: an `events` row
  of its kind, the book unsynced and cleared, and (once per book until its next snapshot) a
  `resync` event and a REQUEST_RESUBSCRIBE for that symbol alone (unsubscribe and subscribe on the
  same connection: the adapter's `resubscribe_frames`), whose snapshot syncs it again;
* a disconnect unsyncs every book (`unsync_all`); the reconnect's subscriptions bring snapshots.

The venue's messages carry no sequence of their own that survives a resubscription, so the
sequence is counted here, per symbol (`next_seq` / `commit_seq`: the adapter's `sequence_scope`
is "counter"), one per message applied.
"""
from __future__ import annotations

from lab.core.events import REQUEST_RESUBSCRIBE
from lab.core.model import RawRow
from lab.sync.normalizer import Normalizer


class SnapshotChecksumNormalizer(Normalizer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.resyncing: set[str] = set()  # books whose resubscription is under way
        self.streaming: set[str] = set()  # books with a live WebSocket subscription
        self.msg_seq: dict[str, int] = {}  # symbol -> messages applied (the counted sequence)

    def accepts_update(self, symbol: str) -> bool:
        """An update applies only to a book its snapshot synced."""
        return self.books[symbol].synced

    def snapshot_started(self, symbol: str) -> None:
        self.resyncing.discard(symbol)
        self.streaming.add(symbol)

    def snapshot_applied(self, row: RawRow, symbol: str) -> None:
        book = self.books[symbol]
        book.synced = True
        self.event(row, "snapshot", symbol, f"{book.bid_count} bids, {book.ask_count} asks")

    def next_seq(self, symbol: str) -> int:
        return self.msg_seq.get(symbol, 0) + 1

    def commit_seq(self, symbol: str, seq: int) -> None:
        self.msg_seq[symbol] = seq

    def checksum_mismatch(self, row: RawRow, symbol: str, detail: str) -> None:
        self.stats["checksum_mismatches"] += 1
        self.resync(row, symbol, "checksum_mismatch", detail)

    def resync(self, row: RawRow, symbol: str, kind: str, detail: str) -> None:
        """`kind` (when given) as an events row; the book unsynced and cleared; its
        resubscription asked for once until its next snapshot."""
        book = self.books[symbol]
        if kind:
            self.event(row, kind, symbol, detail)
        book.synced = False
        book.clear()
        if symbol in self.resyncing:
            return
        self.resyncing.add(symbol)
        self.stats["resyncs"] += 1
        self.event(row, "resync", symbol, "resubscribing the book for a fresh snapshot")
        self.request(REQUEST_RESUBSCRIBE, symbol)

    def resync_book(self, row: RawRow, symbol: str) -> None:
        self.resync(row, symbol, "", "")

    def unsync_all(self) -> None:
        """The connection is gone: every book waits for its next snapshot."""
        for book in self.books.values():
            book.synced = False
            book.clear()
        self.streaming.clear()
        self.resyncing.clear()
