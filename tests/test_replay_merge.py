"""The streaming merge (`lab.replay.merge`): replaying window by window must hand the callbacks
exactly what one window over the whole capture hands them, however the files are cut (rows of one
message split across files, files of one row, clocks stepping back), and a file replay cannot
read leaves its book unsynced until the next snapshot instead of bridging the hole."""
from __future__ import annotations

import glob
import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from lab import ReplayConnector
from lab.recorder.recorder import Recorder, RecordOptions
from lab.replay.merge import HOLE_EVENT
from lab.venues.simulator import SimulatorThread

PYTHON_LOOP = 1e15  # --speed that never sleeps: the Python loop, unpaced


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("merge") / "cap")
    with SimulatorThread("mock", seed=11, rate=1500, faults={"drop_every": 500}) as sim:
        Recorder(RecordOptions(venue="mock", symbols=["BTC-USD", "ETH-USD"], root=root, rest_url=sim.url, ws_url=sim.ws_url, duration=3,
                               rotate_interval=0.7, status=False)).run()
    return root


def _replay(root, window_rows=None, speed=None, **kw):
    books, trades = [], []
    c = ReplayConnector(root, speed=speed, **({"window_rows": window_rows} if window_rows else {}), **kw)
    c.start_stream("*", lambda b: books.append((b.venue, b.symbol, b.seq, b.timestamp, b.local_timestamp, b.synced, b.top_ticks(),
                                                 b.bids_ticks(3), b.asks_ticks(3))),
                   lambda t: trades.append((t.venue, t.symbol, t.id, t.local_timestamp, t.price, t.amount, t.side)))
    summary = c.run()
    return books, trades, summary


def _files(root, table):
    return sorted(glob.glob(os.path.join(root, table, "**", "*.parquet"), recursive=True))


def _recut(src: str, dst: str, cuts_for) -> None:
    """Copy the capture, each book and trades stream's files rewritten as one concatenation cut
    at `cuts_for(rows)` (sorted row positions), names and metadata kept in file order."""
    shutil.copytree(src, dst)
    for table in ("book", "trades"):
        streams: dict[str, list[str]] = {}
        for f in _files(dst, table):
            streams.setdefault(os.path.dirname(f), []).append(f)
        for folder, files in streams.items():
            files = sorted(files, key=os.path.basename)
            tables = [pq.read_table(f) for f in files]
            meta = tables[0].schema.metadata
            whole = pa.concat_tables([t.replace_schema_metadata(meta) for t in tables])
            session = os.path.basename(files[0]).rsplit("-", 1)[0]
            for f in files:
                os.remove(f)
            edges = [0, *sorted(set(cuts_for(whole.num_rows))), whole.num_rows]
            for i, (a, b) in enumerate(zip(edges, edges[1:])):
                if b > a:
                    pq.write_table(whole.slice(a, b - a), os.path.join(folder, f"{session}-{i:06d}.parquet"))


def test_the_capture_has_several_files_per_stream(capture):
    # otherwise the windows below would not cross a file boundary
    assert len(_files(capture, "book")) >= 6 and len(_files(capture, "trades")) >= 4


@pytest.mark.parametrize("window_rows", [1, 50, 3000])
def test_windows_deliver_what_one_window_does(capture, window_rows):
    whole = _replay(capture, window_rows=1 << 40)
    assert len(whole[0]) > 500 and len(whole[1]) > 50 and whole[2]["gaps"] > 0
    assert _replay(capture, window_rows=window_rows) == whole
    # the Python loop (paced replays) on windows too
    assert _replay(capture, window_rows=window_rows, speed=PYTHON_LOOP) == whole


def test_a_window_with_from_and_to(capture):
    full = _replay(capture, window_rows=1 << 40)[0]
    lo, hi = full[len(full) // 4][4], full[3 * len(full) // 4][4]
    want = _replay(capture, window_rows=1 << 40, start_ns=lo, end_ns=hi)
    got = _replay(capture, window_rows=1, start_ns=lo, end_ns=hi)
    assert got[:2] == want[:2] and got[0] and all(lo <= b[4] < hi for b in got[0])


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), pieces=st.integers(1, 40))
def test_files_cut_anywhere_replay_the_same(capture, tmp_path_factory, seed, pieces):
    """Messages split across files, files of one row: the rows are the same, so are the callbacks."""
    want = _replay(capture, window_rows=1 << 40)
    rng = np.random.default_rng(seed)
    dst = str(tmp_path_factory.mktemp("recut") / "cap")
    _recut(capture, dst, lambda n: rng.integers(1, max(n, 2), pieces).tolist() + ([1, 2] if n > 3 else []))
    for window_rows in (1, 777):
        assert _replay(dst, window_rows=window_rows) == want


def test_memory_is_the_windows_not_the_capture(capture):
    """The sources never hold much more than `window_rows` rows each (plus one file)."""
    from lab.replay import merge
    from lab.datasets.reader import streams_in

    skipped = []
    books = streams_in(capture, "book", None, None, skipped)
    trades = streams_in(capture, "trades", None, None, skipped)
    plan = merge.plan_merge(capture, capture, books, trades, {}, skipped)
    biggest_file = max(pq.read_metadata(f).num_rows for f in _files(capture, "book") + _files(capture, "trades"))
    peak, windows = 0, 0
    for w in plan.windows(window_rows=200):
        windows += 1
        peak = max(peak, max(s.rows for s in plan.sources()))
        assert w.entries > 0
    assert windows >= 3
    assert peak <= 200 + biggest_file
    assert plan.rows_taken == sum(s.rows_total for s in plan.sources())  # every row went through a window


@pytest.mark.parametrize("damage", ["pages", "truncated"])
def test_an_unreadable_book_file_is_a_hole_not_a_bridge(capture, tmp_path, damage):
    root = str(tmp_path / "cap")
    shutil.copytree(capture, root)
    victims = [f for f in _files(root, "book") if "symbol=BTC-USD" in f]
    victim = victims[len(victims) // 2]  # one in the middle of the session
    after = pq.read_table(victims[victims.index(victim) + 1], columns=["last_seq"]).column("last_seq").to_pylist()
    data = open(victim, "rb").read()
    if damage == "pages":
        # the footer parses, the data does not (as a disk error or a bad copy leaves a file)
        start = pq.read_metadata(victim).row_group(0).column(0).data_page_offset
        data = data[:start] + bytes(b ^ 0xFF for b in data[start:start + 4096]) + data[start + 4096:]
    else:  # a torn copy: no footer at all
        data = data[: len(data) // 2]
    with open(victim, "wb") as fh:
        fh.write(data)
    books, _, summary = _replay(root)
    if not summary["skipped_files"]:
        pytest.skip("the damage happened to decode")  # (zstd frames rarely survive; keep the test honest)
    assert summary["skipped_files"] == [os.path.realpath(victim)] or summary["skipped_files"] == [victim]
    # right after the hole the book is unsynced, until a snapshot (CLEAR) syncs it again
    btc = [b for b in books if b[1] == "BTC-USD"]
    first_after = next(i for i, b in enumerate(btc) if b[2] in set(after))
    assert btc[first_after][5] is False
    assert HOLE_EVENT == "unreadable_file"
