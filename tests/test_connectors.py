"""The live callback interface and the replay connector: one strategy, unchanged, on both."""
from __future__ import annotations

import json
import time
import urllib.request

import pytest

from lab import OrderBook, ReplayConnector, get_connector, list_connectors
from lab.core.errors import VenueError
from lab.recorder.recorder import Recorder, RecordOptions
from lab.venues.simulator import SimulatorThread


class Strategy:
    """What a user writes: reads the book in the callback, keeps copies only when it wants."""

    def __init__(self):
        self.books = 0
        self.trades = 0
        self.crossed = 0
        self.last: OrderBook | None = None

    def on_book(self, book: OrderBook) -> None:
        self.books += 1
        bid, ask = book.top()
        if bid is not None and ask is not None and bid >= ask:
            self.crossed += 1
        assert book.synced
        self.last = book.copy()

    def on_trade(self, trade) -> None:
        self.trades += 1


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def test_live_connector_streams_verified_books():
    assert "mock" in list_connectors()
    with SimulatorThread("mock", seed=4, rate=1000) as sim:
        c = get_connector("mock", rest_url=sim.url, ws_url=sim.ws_url)
        assert c.list_symbols() == ["BTC-USD", "ETH-USD"]
        snap = c.fetch_orderbook_sync("BTC-USD")
        bid, ask = snap.top()
        assert bid < ask and snap.synced and len(snap.bids) > 0
        with pytest.raises(VenueError, match="unknown symbol"):
            c.fetch_orderbook_sync("NOPE")
        s = Strategy()
        c.start_stream("BTC-USD", s.on_book, s.on_trade)
        time.sleep(2.5)
        c.stop_stream()
        assert s.books > 100 and s.trades > 0 and s.crossed == 0
        latest = c.latest_snapshot()
        want = get(f"{sim.url}/control/book?symbol=BTC-USD&seq={latest.seq}")
        assert latest.mock_checksum() == want["checksum"]
        assert "secret" not in repr(c)


def test_same_strategy_runs_on_a_capture(tmp_path):
    root = str(tmp_path / "cap")
    with SimulatorThread("mock", seed=6, rate=1000) as sim:
        Recorder(RecordOptions(venue="mock", symbols=["BTC-USD"], root=root, rest_url=sim.url, ws_url=sim.ws_url, duration=3, status=False)).run()
        sent = get(sim.url + "/control/stats")["connections"][-1]
        want = get(f"{sim.url}/control/book?symbol=BTC-USD&seq={sent['last_seq']['BTC-USD']}")
    replay = ReplayConnector(root)
    assert replay.list_symbols() == ["BTC-USD"]
    s = Strategy()
    replay.start_stream("BTC-USD", s.on_book, s.on_trade)
    summary = replay.wait(timeout=60)
    assert s.books == summary["messages"] > 100 and s.trades == summary["trades"] > 0 and s.crossed == 0
    assert s.last.seq == sent["last_seq"]["BTC-USD"]
    assert s.last.mock_checksum() == want["checksum"]
    assert [(str(p), str(q)) for p, q in s.last.bids_decimal(3)] == [tuple(level) for level in want["bids"][:3]]


def test_a_slow_strategy_gets_coalesced_books_not_a_stalled_stream():
    with SimulatorThread("mock", seed=8, rate=2000) as sim:
        c = get_connector("mock", rest_url=sim.url, ws_url=sim.ws_url)
        seqs = []

        def slow(book):
            seqs.append(book.seq)
            time.sleep(0.05)

        c.start_stream("BTC-USD", slow)
        time.sleep(2.0)
        latest = c.latest_snapshot()
        seen = seqs[-1]
        c.stop_stream()
    # the stream kept up: in 2 s at ~1300 BTC messages/s the book moved on by far more messages
    # than the 50 ms callback could take one by one ...
    assert latest is not None and latest.seq - seqs[0] > 1000 and seen - seqs[0] > 1000
    # ... and the callback saw increasing, coalesced books
    assert seqs == sorted(seqs) and len(seqs) < 60 and seqs[-1] - seqs[0] > len(seqs)


class Sequence:
    """A strategy that writes down what it is called with: each book by its venue sequence and
    top of book, each trade by id."""

    def __init__(self):
        self.books: list[tuple] = []
        self.trades: list = []

    def on_book(self, book: OrderBook) -> None:
        if book.synced:
            self.books.append((book.symbol, book.seq, book.top_ticks(), tuple(book.bids_ticks(5)), tuple(book.asks_ticks(5))))

    def on_trade(self, trade) -> None:
        self.trades.append((trade.symbol, trade.id, trade.side, trade.price, trade.amount))


def test_one_strategy_live_and_on_the_capture_gets_the_same_callbacks(tmp_path):
    """The same strategy object's class, live on a simulator stream while that stream is recorded,
    then on the capture: over the stretch both saw, the same books in the same order (by the
    venue's own sequence, Binance's u, the same on every connection) and the same trades by id."""
    root = str(tmp_path / "cap")
    live = Sequence()
    with SimulatorThread("binance", seed=14, rate=400) as sim:
        c = get_connector("binance", rest_url=sim.url, ws_url=sim.ws_url)
        c.start_stream("BTCUSDT", live.on_book, live.on_trade)
        Recorder(RecordOptions(venue="binance", symbols=["BTCUSDT"], root=root, rest_url=sim.url, ws_url=sim.ws_url,
                               duration=4, status=False)).run()
        c.stop_stream()
    replayed = Sequence()
    r = ReplayConnector(root)
    r.start_stream("BTCUSDT", replayed.on_book, replayed.on_trade)
    r.run()
    # the stretch both saw: from the later first book to the earlier last one
    lo = max(live.books[0][1], replayed.books[0][1])
    hi = min(live.books[-1][1], replayed.books[-1][1])
    a = [b for b in live.books if lo <= b[1] <= hi]
    b = [b for b in replayed.books if lo <= b[1] <= hi]
    assert len(a) > 50 and a == b
    ids = {t[1] for t in live.trades} & {t[1] for t in replayed.trades}
    assert len(ids) > 10
    assert [t for t in live.trades if t[1] in ids] == [t for t in replayed.trades if t[1] in ids]
    # the venue's spelling, which has no separator to derive the canonical one from, works for
    # selecting streams and in a backtest's context too
    assert ReplayConnector(root, symbols=["btcusdt"]).list_symbols() == ["BTC-USDT"]
    from lab.replay.backtest import Strategy as BacktestStrategy, run_backtest

    class Reads(BacktestStrategy):
        def on_start(self, ctx):
            self.found = []

        def on_book(self, book):
            self.found.append((self.ctx.book("binance", "BTCUSDT") is book, self.ctx.symbol("BTCUSDT")))

    s = Reads()
    run_backtest(s, root)
    assert s.found and set(s.found) == {(True, "BTC-USDT")}
