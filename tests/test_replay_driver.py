"""The Rust replay driver (`rust_book.ReplayDriver`, the hot path of `ReplayConnector.run`) and
the Python loop it replaces for paced replays and multi-session streams must hand the callbacks
the same sequence: the same books (by seq, clocks and top of book), the same trades, the same
`before` calls, the same window (`--from/--to`) and the same summary. A paced replay at a speed
no clock can follow takes the Python loop without sleeping, so each capture is replayed both
ways and compared."""
from __future__ import annotations

import numpy as np
import pytest

from lab import ReplayConnector
from lab.recorder.recorder import Recorder, RecordOptions
from lab.rust_book import OrderBook, ReplayDriver
from lab.venues.simulator import SimulatorThread

PYTHON_LOOP = 1e15  # --speed that never sleeps: the Python loop, unpaced


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("driver") / "cap")
    with SimulatorThread("mock", seed=5, rate=1500, faults={"drop_every": 400}) as sim:
        Recorder(RecordOptions(venue="mock", symbols=["BTC-USD", "ETH-USD"], root=root, rest_url=sim.url, ws_url=sim.ws_url, duration=3, status=False)).run()
    return root


def _replay(root, speed, **kw):
    books, trades, before = [], [], []
    c = ReplayConnector(root, speed=speed, **kw)
    c.start_stream("*", lambda b: books.append((b.venue, b.symbol, b.seq, b.timestamp, b.local_timestamp, b.synced, b.top_ticks(),
                                                 b.bids_ticks(3), b.asks_ticks(3))),
                   lambda t: trades.append((t.venue, t.symbol, t.id, t.local_timestamp, t.price, t.amount, t.side)))
    c.before = lambda ts, v, s: before.append((ts, v, s))
    summary = c.run()
    return books, trades, before, summary


def test_driver_and_python_loop_deliver_the_same(capture):
    fast, slow = _replay(capture, None), _replay(capture, PYTHON_LOOP)
    assert len(fast[0]) > 500 and len(fast[1]) > 50
    assert fast[3]["gaps"] > 0  # the dropped messages: unsynced stretches are part of the comparison
    for got, want in zip(fast, slow):
        assert got == want


def test_driver_and_python_loop_agree_on_a_window(capture):
    full = _replay(capture, None)[0]
    lo, hi = full[len(full) // 3][4], full[2 * len(full) // 3][4]
    fast, slow = _replay(capture, None, start_ns=lo, end_ns=hi), _replay(capture, PYTHON_LOOP, start_ns=lo, end_ns=hi)
    assert fast == slow
    assert fast[0] and all(lo <= b[4] < hi for b in fast[0])


def test_driver_rejects_bad_columns():
    kinds = np.zeros(3, dtype=np.int64)
    with pytest.raises(ValueError, match="one length"):
        ReplayDriver(kinds, np.zeros(2, dtype=np.int64), kinds, kinds)
    d = ReplayDriver(kinds, kinds, kinds, kinds)
    book = OrderBook("v", "S", 2, 2)
    rows = np.zeros(2, dtype=np.int64)
    with pytest.raises(ValueError, match="side must be 0"):
        d.add_stream(0, book, np.array([0, 3], dtype=np.int8), rows, rows, np.array([0, 1], dtype=np.uint8), 8, 8, rows, rows, rows)
    with pytest.raises(ValueError, match="holds"):
        d.add_stream(0, book, np.array([0], dtype=np.int8), rows, rows, np.array([0, 1], dtype=np.uint8), 8, 8, rows, rows, rows)
    # a stream whose data ends inside a message: an error, not a read past the rows
    d.add_stream(0, book, np.zeros(2, dtype=np.int8), rows, rows, np.array([0, 0], dtype=np.uint8), 8, 8, rows, rows, rows)
    with pytest.raises(ValueError, match="no complete message"):
        d.run(0, 10)


def test_a_callback_error_propagates_with_the_message_applied():
    kinds, streams, rows = np.zeros(2, dtype=np.int64), np.zeros(2, dtype=np.int64), np.array([0, 1], dtype=np.int64)
    d = ReplayDriver(kinds, streams, rows, rows)
    book = OrderBook("v", "S", 2, 2)
    seen = []

    def boom(b):
        seen.append(b.best_bid_ticks())
        raise RuntimeError("strategy bug")

    one = np.array([1, 2], dtype=np.int64)
    d.add_stream(0, book, np.zeros(2, dtype=np.int8), np.array([100, 101], dtype=np.int64), one, np.array([3, 1], dtype=np.uint8),
                 8, 8, one, one, one, boom)
    with pytest.raises(RuntimeError, match="strategy bug"):
        d.run(0, 10)
    assert seen == [(100, 1)] and d.cursor(0) == 1 and book.synced


class _TimedMaker:
    """A market maker that also acts on a timer: orders in flight, resting orders, fill reports
    and timers all move the backtest's cue to the replay driver."""

    @staticmethod
    def make():
        from lab.replay.backtest import Strategy

        class Timed(Strategy):
            timer_interval = 7_000_000  # 7 ms
            balances = {"USD": "1000000", "BTC": "10", "ETH": "100"}

            def on_start(self, ctx):
                self.n = 0

            def on_timer(self, now):
                for o in self.ctx.open_orders():
                    self.ctx.cancel(o.id)

            def on_book(self, book):
                self.n += 1
                if self.n % 25 or not book.synced:
                    return
                bid, ask = book.best_bid(), book.best_ask()
                if bid and ask:
                    self.ctx.place_order(book.venue, book.symbol, "buy", "limit", "0.01", bid[0])
                    self.ctx.place_order(book.venue, book.symbol, "sell", "limit", "0.01", ask[0])

        return Timed()


def _backtest(root, speed):
    from lab.replay.backtest import Engine, parse_models, venue_fees

    engine = Engine(_TimedMaker.make(), parse_models(latency="3ms", queue="conservative"), venue_fees, session="20261204T000000Z-abcdef")
    c = ReplayConnector(root, speed=speed)
    c.start_stream("*", engine.replay_book, engine.replay_trade)
    c.before = engine.before
    c.run()
    engine.finish()
    orders = [(o.id, o.status, o.created_ns, o.arrival_ns, o.price, o.volume, o.filled) for b in engine.brokers.values() for o in b.orders]
    fills = [(f.order_id, f.timestamp, f.local_timestamp, f.price, f.amount, f.liquidity) for b in engine.brokers.values() for f in b.fills]
    return orders, fills, engine.summary()


def test_a_backtest_is_the_same_through_the_driver_and_the_python_loop(capture):
    fast, slow = _backtest(capture, None), _backtest(capture, PYTHON_LOOP)
    assert len(fast[0]) > 50 and len(fast[1]) > 5
    assert fast == slow


def test_merge_order_equals_the_full_lexsort():
    """`merge_order` sorts by time with timsort and re-sorts only the ties: it must equal the
    plain lexsort over the whole key, ties of every kind included."""
    from hypothesis import given, settings, strategies as st

    from lab.replay.connector import _EVENT, merge_order

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 2), st.integers(0, 50), st.integers(0, 2), st.integers(0, 1)),
                             max_size=40), min_size=1, max_size=4))
    def check(parts):
        cols = []
        for si, part in enumerate(parts):
            part = sorted(part)  # each part in time order, as the connector builds them
            for i, (ts, rank, rec, kind, srank) in enumerate(part):
                cols.append((ts, rank, rec, kind, si, i, srank))
        if not cols:
            return
        order = np.array(cols, dtype=np.int64).T.copy()
        want = np.lexsort((order[3] != _EVENT, order[6], order[2], order[1], order[0]))
        got = merge_order(order)
        assert got.tolist() == want.tolist()  # both stable: equal keys keep their input order

    check()


def test_a_venue_offset_moves_its_times_in_the_merge_and_the_callbacks(tmp_path):
    """`offsets={venue: ns}` (`lab replay --offset V=D`): that venue's books and trades come
    `ns` later in the merge and say so in their local times; the other venue is untouched."""
    import subprocess
    import sys

    root = str(tmp_path / "cap")
    with SimulatorThread("mock", seed=3, rate=400) as m, SimulatorThread("kraken", seed=3, rate=300) as k:
        procs = [subprocess.Popen([sys.executable, "-m", "lab.cli", "record", "--venue", v, "--duration", "2s", "--out", root,
                                   "--rest-url", s.url, "--ws-url", s.ws_url] + extra, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for v, s, extra in (("mock", m, ["--symbol", "BTC-USD"]), ("kraken", k, ["--symbol", "XBT/USD"]))]
        for p in procs:
            assert p.wait(120) == 0, p.stderr.read()

    def seen(offsets):
        out = []
        c = ReplayConnector(root, offsets=offsets)
        c.start_stream("*", lambda b: out.append(("book", b.venue, b.seq, b.local_timestamp)),
                       lambda t: out.append(("trade", t.venue, t.id, t.local_timestamp)))
        c.run()
        return out

    shift = 250_000_000  # far more than the gaps between messages: the merge must change
    plain, moved = seen(None), seen({"kraken": shift})
    assert {e[1] for e in plain} == {"mock", "kraken"}
    # each venue's own sequence is unchanged, its times moved by exactly the offset
    for venue, d in (("mock", 0), ("kraken", shift)):
        a = [e for e in plain if e[1] == venue]
        b = [e for e in moved if e[1] == venue]
        assert [e[:3] for e in a] == [e[:3] for e in b] and all(y[3] - x[3] == d for x, y in zip(a, b))
    assert plain != moved and [e[3] for e in moved] == sorted(e[3] for e in moved)  # merged in the shifted time


def test_backtest_offset_moves_the_venue_clock(capture):
    """`run_backtest(offsets=)` / `lab backtest --offset`: the strategy sees the venue's data
    later by exactly the offset (its clock, its fills' local times)."""
    from lab.replay.backtest import Engine, parse_models, run_backtest

    def run(offsets):
        seen = []
        s = _TimedMaker.make()
        on_book = s.on_book
        s.on_book = lambda book: (seen.append(s.ctx.now()), on_book(book))[1]
        engine = run_backtest(s, capture, models=parse_models(latency="3ms", queue="conservative"), offsets=offsets)
        return seen, [f.local_timestamp for b in engine.brokers.values() for f in b.fills]

    (a, fa), (b, fb) = run(None), run({"mock": 7_000_000})
    assert len(a) == len(b) > 100 and all(y - x == 7_000_000 for x, y in zip(a, b))
    assert fa and len(fa) == len(fb) and all(y - x == 7_000_000 for x, y in zip(fa, fb))
