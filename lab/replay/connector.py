"""Replay a capture through the same callback interface live connectors offer.

Book messages and trades of every selected stream are merged in `(local_timestamp, venue, rec_id)`
order, window by window as `lab.replay.merge` streams them from the files (memory is bounded by
the windows, not the capture); each book message is applied in the Rust book (`OrderBook.apply_rows`, rows up to LAST)
and the callback receives the same reused `OrderBook` view a live connector gives. A CLEAR row
resets the book; a gap, checksum mismatch or disconnect in `events` marks the book unsynced until
the next CLEAR: replay never bridges a gap.

Each recorder session of a (venue, symbol) is its own book (its rows and events only); when
several sessions recorded the same symbol, `reader.SessionSelector` picks which one the callbacks
see per time range. Unreadable files are skipped and listed in `skipped` / the summary.
"""
from __future__ import annotations

import os
import threading
import time
from collections import Counter
from decimal import Decimal
from typing import Callable

import numpy as np

from lab.core.errors import UnknownVenue
from lab.datasets.venue_rules import rules
from lab.datasets import schema as S
from lab.core.model import Trade
from lab.rust_book import OrderBook, ReplayDriver
from lab.symbols import UnknownSymbol, canonical_list, key, resolve

from lab.datasets.reader import CaptureError, SessionSelector, normalize_path, streams_in, venue_spellings
from lab.replay.merge import BOOK as _BOOK, EVENT as _EVENT, TRADE as _TRADE, WINDOW_ROWS, MergePlan, Window, merge_order, plan_merge  # noqa: F401


_ALWAYS = -(2**63)  # ReplayDriver.wake: call `before` for every entry


class ReplayConnector:
    """`start_stream(symbol, on_book, on_trade)` registers callbacks; `run()` replays (blocking),
    `start()` replays in a background thread (`wait()` joins it), like a live stream."""

    def __init__(self, path: str, venue: str | None = None, symbols: list[str] | None = None,
                 start_ns: int | None = None, end_ns: int | None = None, speed: float | None = None,
                 progress: Callable[[int, int], None] | None = None, offsets: dict[str, int] | None = None,
                 window_rows: int = WINDOW_ROWS):
        self.path = normalize_path(path) if os.path.exists(path) else path
        self.skipped: list[tuple[str, str]] = []  # (file, why) of unreadable files left out
        self.progress = progress  # progress(events done, total as far as known), about every 0.1 s
        self.window_rows = window_rows  # rows each stream keeps loaded (lab.replay.merge)
        self.venue = venue
        # venue (`XBT/USD`, `BTCUSDT`) or canonical (`XBT-USD`) spelling, any case: partitions are
        # canonical; a venue spelling the canonical form cannot be derived from is found through
        # the files' own record of it
        self._spellings: dict[str, str] | None = None
        symbols = canonical_list(symbols)
        if symbols is not None and os.path.exists(self.path):
            present = {s for _, s in streams_in(self.path, "book", venue, None, [])} | {s for _, s in streams_in(self.path, "trades", venue, None, [])}
            symbols = [s if s in present else self.spellings().get(s, s) for s in symbols]
        self.symbols = symbols
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.speed = speed
        # venue -> ns added to its local times (a latency offset: where the strategy would sit
        # relative to that venue); the merge, the window, the pacing and the callbacks all see
        # the shifted times
        self.offsets = {v: int(ns) for v, ns in (offsets or {}).items() if ns}
        self._callbacks: dict[str, tuple[Callable, Callable | None]] = {}
        # before(local_ts, venue, symbol): called before a book message of that stream is applied
        # or a trade delivered (in the window): a backtest's timers and order arrivals that fall
        # before the message see the book as it was, not as the message leaves it. It and the
        # callbacks may return the next local time it has work for as an int (2**63 - 1: none
        # until a callback says otherwise): the Rust loop then skips the calls before it;
        # anything else (None) means "call every time"
        self.before: Callable[[int, str, str], None] | None = None
        self._books: dict[tuple[str, str, str], OrderBook] = {}  # (venue, symbol, session)
        self._selectors: dict[tuple[str, str], SessionSelector] = {}
        self._stop = threading.Event()
        self._stop_flag = bytearray(1)  # the same, for the Rust driver: seen right after the callback that set it
        self._thread: threading.Thread | None = None
        self.summary: dict | None = None
        self._book_streams = streams_in(self.path, "book", venue, symbols, self.skipped)
        if not self._book_streams and not streams_in(self.path, "trades", venue, symbols, self.skipped):
            raise CaptureError(f"no book or trades files under {path}" + (f" for {venue}" if venue else "") + (f" {symbols}" if symbols else ""))

    def __repr__(self) -> str:
        opts = "".join(f", {k}={v!r}" for k, v in (("venue", self.venue), ("symbols", self.symbols), ("start_ns", self.start_ns),
                                                     ("end_ns", self.end_ns), ("speed", self.speed)) if v is not None)
        streams = ", ".join(f"{v}/{s}" for v, s in sorted(self._book_streams))
        state = "running" if self._thread is not None and self._thread.is_alive() else "done" if self.summary is not None else "ready"
        return f"<ReplayConnector {self.path!r}{opts}: {len(self._book_streams)} book streams [{streams}], {state}>"

    def spellings(self) -> dict[str, str]:
        """The capture's venue spellings (shared form) -> canonical symbols (`venue_spellings`)."""
        if self._spellings is None:
            self._spellings = venue_spellings(self.path, self.venue) if os.path.exists(self.path) else {}
        return self._spellings

    # -- the live interface -------------------------------------------------------------------
    def list_symbols(self) -> list[str]:
        return sorted({s for _, s in self._book_streams})

    def start_stream(self, symbol: str, on_book: Callable[[OrderBook], None], on_trade: Callable[[Trade], None] | None = None) -> None:
        """`on_book(book)` after every applied message: one `OrderBook` view per stream, reused
        between calls and valid during the call (as live); `book.copy()` keeps one."""
        if symbol != "*":
            try:
                known = self.list_symbols()
                if key(symbol) not in {key(s) for s in known}:
                    symbol = self.spellings().get(key(symbol), symbol)
                symbol = resolve(symbol, known, "the capture")
            except UnknownSymbol as exc:
                raise CaptureError(str(exc)) from None
        self._callbacks[symbol] = (on_book, on_trade)

    def latest_snapshot(self, symbol: str | None = None) -> OrderBook | None:
        for (v, s), sel in self._selectors.items():
            if symbol is None or s == key(symbol):
                return self._books[(v, s, sel.active or next(iter(sel.books)))].copy()
        return None

    def stop_stream(self) -> None:
        self._stop.set()
        self._stop_flag[0] = 1
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="lab-replay", daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> dict | None:
        if self._thread is None:
            self.start()
        self._thread.join(timeout)
        return self.summary

    # -- replay -------------------------------------------------------------------------------
    def run(self) -> dict:
        wanted = set(self._callbacks) if self._callbacks and "*" not in self._callbacks else None
        streams = {k: v for k, v in self._book_streams.items() if wanted is None or k[1] in wanted}
        trade_files = streams_in(self.path, "trades", self.venue, sorted(wanted) if wanted else self.symbols, self.skipped)
        root = self.path if not _is_file(self.path) else _root_of(self.path)
        plan = plan_merge(self.path, root, streams, trade_files, self.offsets, self.skipped)
        if plan is None:
            self.summary = {"messages": 0, "trades": 0, "gaps": 0, "streams": {}, "skipped_files": [f for f, _ in self.skipped]}
            return self.summary
        for key, info in plan.book_info.items():
            book = OrderBook(key[0], key[1], info.price_precision, info.amount_precision, info.depth)
            book.synced = False
            self._books[key] = book
        for v, s in sorted({(k[0], k[1]) for k in plan.book_info}):
            sessions = {k[2]: self._books[k] for k in plan.book_info if k[:2] == (v, s)}
            counts = {x: plan.message_count((v, s, x)) for x in sessions} if len(sessions) > 1 else {x: 1 << 62 for x in sessions}
            self._selectors[(v, s)] = SessionSelector(sessions, counts, comparable_seq=_seq_is_venue_wide(v))
        # streams whose trades several sessions recorded: each trade id is delivered once, by the
        # Python loop
        single = {k for k in self._selectors if len(self._selectors[k].books) == 1}
        trade_sessions = Counter(k[:2] for k in plan.trade_sources)
        state = _RunState(plan, single, {vs for vs, n in trade_sessions.items() if n > 1})
        for window in plan.windows(self.window_rows):
            if not self._replay_window(window, state):
                break
        if self.progress is not None:
            self.progress(state.done, state.done)
        streams = {}
        loaded = {k[:2] for k, src in plan.book_sources.items() if src.loaded_any}
        for (v, s), sel in self._selectors.items():
            if (v, s) not in loaded:
                continue  # none of its files was readable: as if it were not there
            session = sel.active or min(sel.books)
            book = self._books[(v, s, session)]
            streams[f"{v}/{s}"] = {
                "venue": v, "symbol": s, "seq": book.seq, "synced": state.synced_at_last.get((v, s, session), False),
                "best_bid": _price(book.best_bid()),
                "best_ask": _price(book.best_ask()),
                "checksum": _checksum(v, book),
                "session": session, "sessions": len(sel.books), "session_switches": sel.switches,
            }
        self.summary = {
            "messages": state.messages,
            "trades": state.trades,
            "gaps": state.gaps,
            "streams": streams,
            "skipped_files": [f for f, _ in self.skipped],
        }
        return self.summary

    def _replay_window(self, w: Window, state: "_RunState") -> bool:
        """Replay one window of the merged order; False when the replay ends in it (--to, stop)."""
        for key, src in state.plan.book_sources.items():
            if src.lost_messages:  # in files found unreadable: they will never be applied
                sel = self._selectors.get(key[:2])
                if sel is not None and len(sel.books) > 1:
                    sel.remaining[key[2]] -= src.lost_messages
                src.lost_messages = 0
        books, trades, events, order = w.books, w.trades, w.events, w.order
        keys, single, dedupe = state.plan.keys, state.single, state.dedupe
        total_here = len(order[0])
        if self.start_ns is not None or self.end_ns is not None:
            lo = self.start_ns if self.start_ns is not None else np.iinfo(np.int64).min
            hi = self.end_ns if self.end_ns is not None else np.iinfo(np.int64).max
            keep = (order[0] >= lo) & (order[0] < hi)
        else:
            keep = None
        # everything at or past --to is left out, books included (the order is sorted by time)
        stop_at = total_here if self.end_ns is None else int(np.searchsorted(order[0], self.end_ns, side="left"))
        # The hot path in Rust: the book messages of streams one session recorded are applied and
        # called back by the driver without a Python frame each; trades, events, streams several
        # sessions recorded and paced replays (--speed) stay in the loop below.
        driver = None
        driven: set[int] = set()
        driven_trades: set[int] = set()
        if not self.speed:
            driver = ReplayDriver(*(order[i] for i in (3, 4, 0, 5)),
                                  None if keep is None else np.ascontiguousarray(keep).view(np.uint8), self._stop_flag)
            driver.wake = state.wake
            driven = {si for si, key in enumerate(keys) if key in books and key[:2] in single}
            driven_trades = {si for si, key in enumerate(keys) if key in trades and key[:2] not in dedupe}
            for si in driven:
                key, b = keys[si], books[keys[si]]
                cb = self._callbacks.get(key[1]) or self._callbacks.get("*")
                driver.add_stream(si, self._books[key], *(np.ascontiguousarray(c) for c in (b.sides, b.prices, b.amounts, b.flags)), 8, 8,
                                  *(np.ascontiguousarray(c, dtype=np.int64) for c in (b.timestamp, b.local_timestamp, b.last_seq)),
                                  None if cb is None else cb[0])
            for si in driven_trades:
                key = keys[si]
                cb = self._callbacks.get(key[1]) or self._callbacks.get("*")
                driver.add_trades(si, key[0], key[1], trades[key].trade, None if cb is None else cb[1])
        slow = [key for key in books if driver is None or key[:2] not in single]
        bufs = {key: (books[key].sides.tobytes(), books[key].prices.tobytes(), books[key].amounts.tobytes(), books[key].flags.tobytes()) for key in slow}
        cursor = {key: 0 for key in slow}
        # Python ints once, in bulk (numpy scalars read one at a time cost more than the rest of
        # the loop): the merged order's columns, and each stream's per-row clocks and seqs
        if driver is None:
            local_col, kind_col, stream_col, row_col = (order[i].tolist() for i in (0, 3, 4, 5))
            keep_col = keep.tolist() if keep is not None else None
        else:  # most entries are the driver's: read the others one by one
            local_col, kind_col, stream_col, row_col = order[0], order[3], order[4], order[5]
            keep_col = keep
        clocks = {key: (books[key].timestamp.tolist(), books[key].local_timestamp.tolist(), books[key].last_seq.tolist()) for key in slow}
        synced_at_last, seen_trades = state.synced_at_last, state.seen_trades
        stop, progress = self._stop, self.progress
        base, total = state.done, state.estimate(total_here)
        j = 0
        finished = True
        while j < stop_at:
            if stop.is_set():
                finished = False
                break
            if progress is not None and (driver is not None or (j & 1023) == 0 or self.speed) and time.monotonic() >= state.next_report:
                progress(base + j, total)
                state.next_report = time.monotonic() + 0.1
            if driver is not None:
                j = driver.run(j, min(4096, stop_at - j), self.before)
                if j >= stop_at:
                    break
                if int(stream_col[j]) in (driven if kind_col[j] == _BOOK else driven_trades if kind_col[j] == _TRADE else ()):
                    continue  # the driver stopped at its limit: stop / progress checks, then on
            local_ts, kind, si, row = int(local_col[j]), int(kind_col[j]), int(stream_col[j]), int(row_col[j])
            j += 1
            if driver is not None:
                driver.wake = _ALWAYS  # this entry's calls may move the hook's next wake earlier
            if kind == _EVENT:
                _, _, venue, symbol, ev_kind, session = events[row]
                if ev_kind == "gap":
                    state.gaps += 1
                for key, book in self._books.items():
                    if key[0] == venue and (symbol is None or key[1] == symbol) and (session is None or key[2] == session):
                        book.synced = False
                continue
            key = keys[si]
            in_window = keep_col is None or bool(keep_col[j - 1])
            if self.speed and in_window:
                if state.t0_data is None:
                    state.t0_data = local_ts
                delay = (local_ts - state.t0_data) / 1e9 / self.speed - (time.monotonic() - state.t0_wall)
                if delay > 0:
                    time.sleep(delay)
            if self.before is not None and in_window:
                self.before(local_ts, key[0], key[1])
            if kind == _BOOK:
                book = self._books[key]
                start = cursor[key]
                sides, prices, amounts, flags = bufs[key]
                if flags[start] & S.FLAG_CLEAR:
                    book.synced = True
                end = book.apply_rows(sides, prices, amounts, flags, start)
                cursor[key] = end
                # The message applied is the next one in row order, which is not always the one
                # this slot of the merge was sorted for: buffered diffs applied after a snapshot
                # carry the snapshot's time but their own (earlier) rec_ids.
                last = end - 1
                ts_l, lts_l, seq_l = clocks[key]
                book.timestamp = ts_l[last]
                book.local_timestamp = lts_l[last]
                book.seq = seq_l[last]
                synced_at_last[key] = book.synced
                deliver = self._selectors[key[:2]].deliver(key[2])
                if key[:2] not in single and not deliver:
                    continue
                state.messages += 1
                if in_window:
                    cb = self._callbacks.get(key[1]) or self._callbacks.get("*")
                    if cb is not None:
                        cb[0](book)
            else:
                if key[:2] in dedupe:
                    tid = trades[key].id(row)
                    seen = seen_trades.setdefault(key[:2], set())
                    if tid is None:
                        sel = self._selectors.get(key[:2])
                        if sel is not None and sel.active not in (None, key[2]):
                            continue
                    elif tid in seen:
                        continue
                    else:
                        seen.add(tid)
                state.trades += 1
                if in_window:
                    cb = self._callbacks.get(key[1]) or self._callbacks.get("*")
                    if cb is not None and cb[1] is not None:
                        cb[1](trades[key].trade(row))
        state.done = base + j
        if driver is not None:
            state.messages += driver.messages
            state.trades += driver.trades
            state.wake = driver.wake
            for si in driven:
                at_last = driver.synced_at_last(si)
                if at_last is not None:
                    synced_at_last[keys[si]] = at_last
        return finished and stop_at == total_here


class _RunState:
    """What a replay carries from one window to the next."""

    def __init__(self, plan: MergePlan, single: set, dedupe: set):
        self.plan, self.single, self.dedupe = plan, single, dedupe
        self.messages = self.trades = self.gaps = 0
        self.synced_at_last: dict[tuple[str, str, str], bool] = {}  # was each book synced at its last message
        self.seen_trades: dict[tuple[str, str], set] = {}  # trade ids delivered, where sessions overlap
        self.wake = _ALWAYS  # the driver's wake, window to window
        self.t0_wall, self.t0_data = time.monotonic(), None  # pacing
        self.done = 0  # entries replayed
        self.next_report = time.monotonic()

    def estimate(self, window_entries: int) -> int:
        """The replay's total entries as far as can be told: exact in the last window; before,
        the rows left scaled by the entries per row so far."""
        done = self.done + window_entries
        taken, total = self.plan.rows_taken, self.plan.rows_total
        return done + int((total - taken) * done / max(taken, 1)) if total > taken else done


def _is_file(path: str) -> bool:
    import os

    return os.path.isfile(path)


def _root_of(path: str) -> str:
    """A single book file has no events beside it unless it sits in a capture root."""
    import os

    parts = os.path.abspath(path).split(os.sep)
    for i, p in enumerate(parts):
        if p.startswith("venue=") and i > 1:
            return os.sep.join(parts[: i - 1]) or os.sep
    return os.path.dirname(path)


def _checksum(venue: str, book: OrderBook) -> int | None:
    """The venue's checksum of `book` as it stands (None when the venue sends none)."""
    try:
        checksum = rules(venue).checksum_function(book, [])
    except UnknownVenue:
        return None
    return None if checksum is None else checksum(0)


def _seq_is_venue_wide(venue: str) -> bool:
    """Whether `last_seq` is the venue's own sequence (comparable across sessions) rather than a
    per-connection counter (the venue adapter's `sequence_scope` is "counter")."""
    try:
        return rules(venue).seq_is_venue_sequence
    except UnknownVenue:
        return True


def _price(level) -> Decimal | None:
    return None if level is None else level[0]
