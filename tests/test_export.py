"""`lab export`: tardis CSV and hftbacktest npz written from real captures (mock and Kraken
simulators, recorded over loopback) rebuild exactly the final books `lab replay` ends with; the
peer round trip through hftbacktest's own converter and backtester where /work/peers has it."""
from __future__ import annotations

import csv
import glob
import gzip
import json
import os
import subprocess
import sys
from decimal import Decimal

import numpy as np
import pytest

from labcli import lab
from lab.datasets.catalog import query
from lab.datasets.export import BOOK_COLUMNS, EVENT_DTYPE, QUOTE_COLUMNS, TRADE_COLUMNS, file_symbol
from lab.recorder.recorder import Recorder, RecordOptions
from lab.replay.connector import ReplayConnector
from lab.venues.simulator import SimulatorThread

PEERS = "/work/peers/bin/python"


def _record(root, venue: str, seed: int, depth: int = 0) -> str:
    with SimulatorThread(venue, seed=seed, rate=400) as sim:
        Recorder(RecordOptions(venue=venue, symbols=[], root=str(root), rest_url=sim.url, ws_url=sim.ws_url, depth=depth,
                               duration=3.0, status=False, compact=False, rotate_interval=1.0)).run()
    return str(root)


@pytest.fixture(scope="module")
def mock_capture(tmp_path_factory):
    return _record(tmp_path_factory.mktemp("export") / "mock", "mock", seed=3)


@pytest.fixture(scope="module")
def kraken_capture(tmp_path_factory):
    # depth 10: the engine truncates after every message, the venue sends no delete for what falls out
    return _record(tmp_path_factory.mktemp("export") / "kraken", "kraken", seed=5, depth=10)


def replay_books(root: str) -> dict:
    """{(venue, symbol): (bids, asks)} as `lab replay` ends, Decimal levels best first."""
    conn = ReplayConnector(root)
    conn.start_stream("*", lambda book: None)
    conn.run()
    return {(v, s): (book.bids_decimal(), book.asks_decimal()) for (v, s, _), book in conn._books.items()}


def read_tardis_book(path: str) -> tuple[list, list, int]:
    """Our own reader of a tardis incremental_book_L2 file: a run of is_snapshot rows after
    updates resets the book; amount 0 deletes."""
    bids: dict[Decimal, Decimal] = {}
    asks: dict[Decimal, Decimal] = {}
    in_snapshot, rows = False, 0
    with gzip.open(path, "rt", newline="") as f:
        r = csv.reader(f)
        assert next(r) == BOOK_COLUMNS
        for exchange, symbol, ts, lts, is_snapshot, side, price, amount in r:
            rows += 1
            assert is_snapshot in ("true", "false") and side in ("bid", "ask")
            assert "e" not in price.lower() and "e" not in amount.lower()
            snap = is_snapshot == "true"
            if snap and not in_snapshot:
                bids.clear(), asks.clear()
            in_snapshot = snap
            book = bids if side == "bid" else asks
            if Decimal(amount) == 0:
                book.pop(Decimal(price), None)
            else:
                book[Decimal(price)] = Decimal(amount)
    return sorted(bids.items(), reverse=True), sorted(asks.items()), rows


def apply_events(data: np.ndarray, tick: float, lot: float) -> tuple[list, list]:
    """A small hftbacktest-semantics reader: LOCAL events in order; DEPTH_CLEAR_EVENT without a side
    clears both sides; DEPTH / DEPTH_SNAPSHOT events set a level (qty 0 deletes). Levels in ticks."""
    bids: dict[int, int] = {}
    asks: dict[int, int] = {}
    for e in data[(data["ev"] & (1 << 30)) != 0]:
        kind, ev = int(e["ev"]) & 0xFF, int(e["ev"])
        buy, sell = bool(ev & (1 << 29)), bool(ev & (1 << 28))
        if kind == 3:
            if buy or not sell:
                bids.clear()
            if sell or not buy:
                asks.clear()
        elif kind in (1, 4):
            book = bids if buy else asks
            p, q = int(round(e["px"] / tick)), int(round(e["qty"] / lot))
            if q == 0:
                book.pop(p, None)
            else:
                book[p] = q
    return sorted(bids.items(), reverse=True), sorted(asks.items())


def _ticks(levels, pp, ap):
    return [(int(p.scaleb(pp)), int(q.scaleb(ap))) for p, q in levels]


@pytest.mark.parametrize("which", ["mock_capture", "kraken_capture"])
def test_tardis_csv_rebuilds_the_replayed_books(which, request, tmp_path):
    root = request.getfixturevalue(which)
    out = tmp_path / "tardis"
    report = json.loads(lab("export", root, "--format", "tardis", "--out", out, "--json").stdout)
    books = replay_books(root)
    assert books
    for (venue, symbol), (bids, asks) in books.items():
        vsym = query(root, f"select any_value(venue_symbol) s from book where symbol = '{symbol}'").to_pylist()[0]["s"]
        files = glob.glob(str(out / f"{venue}_incremental_book_L2_*_{file_symbol(vsym)}.csv.gz"))
        assert len(files) == 1, files
        got_bids, got_asks, rows = read_tardis_book(files[0])
        assert (got_bids, got_asks) == (bids, asks) and bids and asks
        n = query(root, f"select count(*) n from book where symbol = '{symbol}'").to_pylist()[0]["n"]
        if which == "mock_capture":
            assert rows == n  # unbounded book: the rows as stored
        else:
            assert rows > n  # depth 10: the levels the engine dropped are written as deletes
    assert report["rows"]["incremental_book_L2"] >= sum(1 for _ in books)


def test_tardis_columns_timestamps_and_exact_decimals(mock_capture, tmp_path):
    out = tmp_path / "t"
    lab("export", mock_capture, "--format", "tardis", "--out", out, "--symbol", "BTC-USD")
    (trades,) = glob.glob(str(out / "*_trades_*.csv.gz"))
    (book,) = glob.glob(str(out / "*_incremental_book_L2_*.csv.gz"))
    assert os.path.basename(book).startswith("mock_incremental_book_L2_") and book.endswith("_BTC-USD.csv.gz")
    with gzip.open(trades, "rt") as f:
        rows = list(csv.reader(f))
    assert rows[0] == TRADE_COLUMNS
    want = query(mock_capture, "select epoch_ns(timestamp) t, epoch_ns(local_timestamp) l, id, side, price, amount from trades "
                               "where symbol = 'BTC-USD' order by rec_id").to_pylist()
    assert len(rows) - 1 == len(want)
    for row, w in zip(rows[1:], want):
        assert row[0] == "mock" and row[1] == "BTC-USD"
        assert int(row[2]) == w["t"] // 1000 and int(row[3]) == w["l"] // 1000
        assert row[4] == w["id"] and row[5] == w["side"]
        assert Decimal(row[6]) == w["price"] and Decimal(row[7]) == w["amount"]
        assert not row[6].endswith("0") or "." not in row[6]  # shortest exact text, no float artefacts
    with gzip.open(book, "rt") as f:
        first = f.readline().strip()
    assert first == ",".join(BOOK_COLUMNS)


def test_derived_tables_export_after_rebuild(mock_capture, tmp_path):
    import shutil

    root = tmp_path / "c"
    shutil.copytree(mock_capture, root)
    lab("rebuild", root, "--depth", "5", "--interval", "100ms")
    out = tmp_path / "o"
    report = json.loads(lab("export", root, "--format", "tardis", "--out", out, "--json").stdout)
    (q,) = glob.glob(str(out / "mock_quotes_*_BTC-USD.csv.gz"))
    with gzip.open(q, "rt") as f:
        rows = list(csv.reader(f))
    assert rows[0] == QUOTE_COLUMNS
    assert len(rows) - 1 == query(str(root), "select count(*) n from quotes where symbol = 'BTC-USD'").to_pylist()[0]["n"]
    (s,) = glob.glob(str(out / "mock_book_snapshot_5_*_BTC-USD.csv.gz"))
    with gzip.open(s, "rt") as f:
        header = f.readline().strip().split(",")
    assert header[:8] == ["exchange", "symbol", "timestamp", "local_timestamp", "asks[0].price", "asks[0].amount", "bids[0].price", "bids[0].amount"]
    assert len(header) == 4 + 4 * 5
    assert report["rows"]["quotes"] > 0 and report["rows"]["book_snapshot_5"] > 0


@pytest.mark.parametrize("which", ["mock_capture", "kraken_capture"])
def test_hftbacktest_npz_rebuilds_the_replayed_books(which, request, tmp_path):
    root = request.getfixturevalue(which)
    out = tmp_path / "npz"
    lab("export", root, "--format", "hftbacktest", "--out", out)
    conn = ReplayConnector(root)
    conn.start_stream("*", lambda book: None)
    conn.run()
    for (venue, symbol, _), book in conn._books.items():
        vsym = query(root, f"select any_value(venue_symbol) s from book where symbol = '{symbol}'").to_pylist()[0]["s"]
        (path,) = glob.glob(str(out / f"{venue}_{file_symbol(vsym)}_*.npz"))
        data = np.load(path)["data"]
        assert data.dtype == EVENT_DTYPE
        local = data[(data["ev"] & (1 << 30)) != 0]
        exch = data[(data["ev"] & (1 << 31)) != 0]
        assert (np.diff(local["local_ts"]) >= 0).all() and (np.diff(exch["exch_ts"]) >= 0).all()
        kinds = set((local["ev"] & 0xFF).tolist())
        assert {1, 2, 3, 4} <= kinds  # depth, trade, clear, snapshot
        pp, ap = book.price_precision, book.amount_precision
        bids, asks = apply_events(data, 10.0 ** -pp, 10.0 ** -ap)
        assert bids == [tuple(x) for x in book.levels_ticks(0)] and asks == [tuple(x) for x in book.levels_ticks(1)] and bids


def test_errors_are_one_line(mock_capture, tmp_path):
    def err(*args):
        r = lab("export", *args, check=False)
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        return r.stderr.strip()

    assert "venue 'nope' is not in the capture (it holds: mock)" in err(mock_capture, "--format", "tardis", "--out", tmp_path / "a", "--venue", "nope")
    assert "symbol DOGE-USD is not in the capture" in err(mock_capture, "--format", "tardis", "--out", tmp_path / "a", "--symbol", "DOGE/USD")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "nothing to export" in err(empty, "--format", "hftbacktest", "--out", tmp_path / "a")
    assert "does not exist" in err(tmp_path / "missing", "--format", "tardis", "--out", tmp_path / "a")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert "cannot write to" in err(mock_capture, "--format", "tardis", "--out", blocker / "sub")


def _peer_ready() -> bool:
    if not os.path.exists(PEERS):
        return False
    return subprocess.run([PEERS, "-c", "import hftbacktest.data.utils.tardis"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _peer_ready(), reason=f"hftbacktest not importable by {PEERS} (python3 -m venv /work/peers && /work/peers/bin/pip install hftbacktest)")
@pytest.mark.parametrize("which", ["mock_capture", "kraken_capture"])
def test_peer_round_trip_through_hftbacktest(which, request):
    root = request.getfixturevalue(which)
    bench = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "export_roundtrip.py")
    r = subprocess.run([sys.executable, bench, "--capture", root, "--peers-python", PEERS, "--json"], capture_output=True, text=True, timeout=900)
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["streams"] and result["agree"], result
    assert r.returncode == 0
