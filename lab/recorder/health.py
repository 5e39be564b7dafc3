"""A live stream's health, as a page or a strategy can trust it (`LiveConnector.status()`).

The connector feeds it from the places where things happen (a frame arrives, the book syncs or
loses sync, the connection closes, a reconnect attempt fails or succeeds); `status()` reads one
consistent `Status` at any time, from any thread.

States (`Status.state`):
- `CONNECTING`: the stream started and no connection is open yet (first attempt).
- `RECONNECTING`: the connection dropped and the connector is backing off (`attempt` = the
  attempt in progress, 1 for the first retry).
- `OUT_OF_SYNC`: connected, the book is not in sync: between a gap (or checksum mismatch, or a
  fresh connection) and the snapshot that resyncs it.
- `STALE`: connected and in sync, but nothing came for `stale_after` seconds (2 s).
- `LIVE`: books are arriving and the book is in sync.
- `STOPPED`: no stream (never started, or stopped).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

LIVE = "LIVE"
STALE = "STALE"
RECONNECTING = "RECONNECTING"
OUT_OF_SYNC = "OUT_OF_SYNC"
CONNECTING = "CONNECTING"
STOPPED = "STOPPED"

STATES = (LIVE, STALE, RECONNECTING, OUT_OF_SYNC, CONNECTING, STOPPED)

# event kinds after which the book is out of sync until its resync completes
GAP_KINDS = frozenset({"gap", "checksum_mismatch"})
RESYNC_KINDS = frozenset({"resync"})


@dataclass(frozen=True)
class Status:
    state: str
    attempt: int  # the reconnect attempt in progress (RECONNECTING), else 0
    messages: int  # frames received
    books: int  # synced books delivered
    gaps: int  # gaps and checksum mismatches
    resyncs: int
    reconnects: int  # successful reconnects (the first connection is not one)
    age: float | None  # seconds since the last frame (None before the first)
    detail: str = ""  # the last failure or event, for a tooltip

    @property
    def live(self) -> bool:
        return self.state == LIVE

    def label(self) -> str:
        """`LIVE`, `RECONNECTING (attempt 3)`, `OUT OF SYNC`, `STALE (4.2 s)`..."""
        if self.state == RECONNECTING:
            return f"RECONNECTING (attempt {self.attempt})"
        if self.state == STALE and self.age is not None:
            return f"STALE ({self.age:.1f} s)"
        return self.state.replace("_", " ")

    def as_dict(self) -> dict:
        return {"state": self.state, "label": self.label(), "attempt": self.attempt, "messages": self.messages,
                "books": self.books, "gaps": self.gaps, "resyncs": self.resyncs, "reconnects": self.reconnects,
                "age": self.age, "detail": self.detail}


class Health:
    """Counters and connection state of one stream. Every `on_*` is called from the stream's
    thread; `status()` from any."""

    def __init__(self, stale_after: float = 2.0, clock=time.monotonic):
        self.stale_after = stale_after
        self._clock = clock
        self._lock = threading.Lock()
        self.running = False
        self.connected = False
        self.ever_connected = False
        self.synced = False
        self.attempt = 0
        self.messages = 0
        self.books = 0
        self.gaps = 0
        self.resyncs = 0
        self.reconnects = 0
        self.last_message: float | None = None
        self.detail = ""

    # -- hooks (the stream's thread) ------------------------------------------------------------
    def on_start(self) -> None:
        with self._lock:
            self.running, self.connected, self.synced, self.attempt = True, False, False, 0

    def on_stop(self) -> None:
        with self._lock:
            self.running = False

    def on_open(self) -> None:
        """A connection is open (the first, or a successful reconnect)."""
        with self._lock:
            if self.ever_connected:
                self.reconnects += 1
            self.ever_connected = self.connected = True
            self.synced = False  # a fresh connection resyncs its book
            self.attempt = 0

    def on_close(self, reason: str = "") -> None:
        """The connection closed: the connector backs off and tries again."""
        with self._lock:
            self.connected = False
            self.synced = False
            self.attempt = 1
            self.detail = reason

    def on_connect_failed(self, detail: str = "") -> None:
        """A (re)connect attempt failed: the next one starts after the backoff."""
        with self._lock:
            self.connected = False
            self.attempt += 1 if self.ever_connected else 0
            self.detail = detail

    def on_message(self) -> None:
        with self._lock:
            self.messages += 1
            self.last_message = self._clock()

    def on_event(self, kind: str, detail: str = "") -> None:
        with self._lock:
            if kind in GAP_KINDS:
                self.gaps += 1
                self.synced = False
                self.detail = f"{kind}: {detail}"
            elif kind in RESYNC_KINDS:
                self.resyncs += 1

    def on_synced(self, synced: bool, books: int = 0) -> None:
        """After each frame: whether the book is in sync, and how many books it delivered."""
        with self._lock:
            self.synced = synced
            self.books += books

    # -- reading (any thread) ---------------------------------------------------------------------
    def status(self) -> Status:
        with self._lock:
            now = self._clock()
            age = None if self.last_message is None else max(now - self.last_message, 0.0)
            if not self.running:
                state = STOPPED
            elif not self.connected:
                state = RECONNECTING if self.ever_connected else CONNECTING
            elif not self.synced or self.books == 0:
                state = OUT_OF_SYNC
            elif age is None or age > self.stale_after:
                state = STALE
            else:
                state = LIVE
            return Status(state, self.attempt if state == RECONNECTING else 0, self.messages, self.books, self.gaps,
                          self.resyncs, self.reconnects, age, self.detail)
