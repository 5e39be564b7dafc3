"""Live delivery: every book to a callback that keeps up; coalescing only behind a slow one."""
from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
import time

from lab import get_connector
from lab.recorder.connector import Dispatcher
from lab.rust_book import BookRows, OrderBook
from lab.venues.simulator import SimulatorThread


def test_dispatcher_applies_the_normalizers_rows_and_delivers_each_marked_message():
    """The view the callback gets follows the rows exactly, including unsynced messages that
    are applied but not delivered; metadata comes from the markers."""
    ref = OrderBook("v", "S", 2, 0, depth=3)
    rows = BookRows()
    messages = [
        ([(0, 100, 1), (0, 99, 2), (1, 101, 3)], True),   # snapshot (CLEAR)
        ([(0, 100, 0), (1, 102, 1)], False),
        ([(0, 98, 5), (0, 97, 5), (0, 96, 5)], False),  # truncated to depth 3
        ([(1, 101, 0)], False),
    ]
    items = []
    for i, (levels, snap) in enumerate(messages):
        rows.push_levels(levels, 10 + i, 20 + i, i, i, i, None, snap)
        if i != 1:  # message 1 is applied while unsynced: no on_book for it
            items.append((len(rows), 10 + i, 20 + i, i))
    got = []
    view = OrderBook("v", "S", 2, 0, depth=3)
    d = Dispatcher(lambda b: got.append((b.seq, b.synced, b.bids_ticks(), b.asks_ticks(), id(b))), None, "t", book=view)
    d.push(rows, items)
    d.close()
    want, pos = [], 0
    for i, (levels, snap) in enumerate(messages):
        if snap:
            ref.clear()
        for s, p, a in levels:
            ref.apply(s, p, a)
        ref.truncate()
        if i != 1:
            want.append((i, True, ref.bids_ticks(), ref.asks_ticks(), id(view)))
    assert got == want
    assert d.stats()["applied"] == 4 and d.delivered == 3 and d.coalesced == 0


def test_dispatcher_coalesces_only_behind_a_slow_callback(caplog):
    caplog.set_level(logging.WARNING, logger="lab.live")
    view = OrderBook("v", "S", 0, 0)
    seen = []

    def slow(book):
        seen.append(book.seq)
        time.sleep(0.02)

    d = Dispatcher(slow, None, "slow-test", book=view, max_lag=0.05)
    for i in range(200):
        rows = BookRows()
        rows.push_levels([(0, 100 + i, 1)], i, i, i, i, i, None, i == 0)
        d.push(rows, [(1, i, i, i)])
        time.sleep(0.001)
    d.close()
    assert seen == sorted(seen) and seen[-1] == 199 and view.bids_ticks()[0] == (299, 1)
    assert d.coalesced > 0 and d.delivered + d.coalesced == 200 and len(seen) == d.delivered
    warnings = [r.getMessage() for r in caplog.records if "slower than the stream" in r.getMessage()]
    assert len(warnings) == 1 and "us a book" in warnings[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_noop_callback_sees_every_book_at_10k_messages_per_second():
    """The issue's "done means": a no-op callback on a live mock stream at --rate 10000 (the
    simulator in its own process, as `lab simulate`) sees every book, seq by seq."""
    port = _free_port()
    sim = subprocess.Popen([sys.executable, "-m", "lab.venues.simulator", "--venue", "mock", "--port", str(port),
                            "--rate", "10000", "--seed", "3", "--option", "prerender=40000"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        sim.stdout.readline()
        c = get_connector("mock", rest_url=f"http://127.0.0.1:{port}", ws_url=f"ws://127.0.0.1:{port}/ws")
        seqs = []
        c.start_stream("BTC-USD", lambda book: seqs.append(book.seq))
        time.sleep(3)
        c.stop_stream()
    finally:
        sim.kill()
        sim.wait()
    (stats,) = c.stats().values()
    assert len(seqs) > 10_000  # ~2/3 of the 10k msg/s are BTC-USD
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # no book skipped
    assert stats["delivered"] == stats["applied"] == len(seqs) and stats["coalesced"] == 0


def test_latest_snapshot_is_a_copy_of_the_newest_delivered_book():
    with SimulatorThread("mock", seed=5, rate=500) as sim:
        c = get_connector("mock", rest_url=sim.url, ws_url=sim.ws_url)
        assert c.latest_snapshot() is None
        last = {}
        lock = threading.Lock()

        def cb(book):
            with lock:
                last["seq"] = book.seq
                last["book"] = book

        c.start_stream("BTC-USD", cb)
        time.sleep(1.0)
        c.stop_stream()
    snap = c.latest_snapshot()
    assert snap is not last["book"] and snap.seq == last["seq"] and snap.synced
    assert snap.bids_ticks() == last["book"].bids_ticks()
