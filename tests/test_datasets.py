"""The capture dataset: journal framing, exact decimals, atomic files, DuckDB views."""
from __future__ import annotations

import os
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.datasets import catalog
from lab.datasets import schema as S
from lab.datasets.journal import KINDS, JournalWriter, RawRow, read_journal
from lab.datasets.store import atomic_write, decimal_array, mantissas

rows = st.builds(
    RawRow,
    rec_id=st.integers(0, 2**62),
    local_ts=st.integers(0, 2**62),
    conn_id=st.integers(0, 2**31 - 1),
    conn_seq=st.integers(0, 2**62),
    kind=st.sampled_from(KINDS),
    channel=st.text(max_size=40),
    symbol=st.none() | st.text(max_size=20),
    payload=st.binary(max_size=300),
)


@settings(max_examples=50, deadline=None)
@given(st.lists(rows, max_size=30))
def test_journal_round_trip(tmp_path_factory, batch):
    path = os.path.join(tmp_path_factory.mktemp("j"), "s-000000.journal")
    w = JournalWriter(path)
    for r in batch:
        w.append(r)
    w.close()
    back, clean = read_journal(path)
    assert clean and back == batch


def test_journal_torn_tail_keeps_the_intact_prefix(tmp_path):
    path = str(tmp_path / "s-000000.journal")
    w = JournalWriter(path)
    batch = [RawRow(i, 1000 + i, 1, i, "recv", "ws", None, b'{"x":%d}' % i) for i in range(100)]
    for r in batch:
        w.append(r)
    w.close()
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size - 3)
    back, clean = read_journal(path)
    assert not clean and back == batch[:99]
    with open(path, "r+b") as f:  # a flipped byte in the middle: skip that record only, never return garbage
        f.seek(size // 2)
        b = f.read(1)
        f.seek(size // 2)
        f.write(bytes([b[0] ^ 0xFF]))
    scan = read_journal(path)
    back, clean = scan
    assert not clean and len(back) == 98 and all(r in batch for r in back)
    assert [s["tail"] for s in scan.skipped] == [False, True]
    assert scan.skipped[0]["est_records"] == 1


@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=50), st.integers(0, 18))
def test_decimal_columns_are_exact_ticks(values, precision):
    """Any int64 tick count at any precision 0..18 is exactly one DECIMAL(38, 18) value and back."""
    arr = decimal_array(values, precision)
    assert arr.type == pa.decimal128(38, 18) == S.decimal(precision)
    assert arr.to_pylist() == [Decimal(v).scaleb(-precision) for v in values]
    assert mantissas(arr, precision).tolist() == values
    if len(values) > 2:
        assert mantissas(arr.slice(1), precision).tolist() == values[1:]
    # schema version 1's DECIMAL(18, precision) gives the same ticks
    if all(abs(v) < 10**18 for v in values):
        assert mantissas(pa.array(arr.to_pylist(), S.legacy_decimal(precision)), precision).tolist() == values


def test_decimal_values_that_are_not_whole_ticks_name_the_row():
    import pytest

    arr = pa.array([Decimal("1.25"), Decimal("1.255")], S.DECIMAL)
    assert mantissas(arr, 3).tolist() == [1250, 1255]
    with pytest.raises(ValueError, match="row 1: .* not a whole number of ticks"):
        mantissas(arr, 2)
    with pytest.raises(ValueError, match="row 0: .* in int64"):
        mantissas(pa.array([Decimal("1e19")], S.DECIMAL), 0)
    with pytest.raises(ValueError, match="outside 0..18"):
        decimal_array([1], 19)


def test_atomic_write_leaves_no_tmp_and_carries_metadata(tmp_path):
    path = str(tmp_path / "t" / "venue=x" / "s-000001.parquet")
    atomic_write(pa.table({"a": [1, 2]}), path, {b"lab.table": b"t"})
    assert os.listdir(os.path.dirname(path)) == ["s-000001.parquet"]
    meta = pq.read_schema(path).metadata
    assert meta[b"lab.table"] == b"t" and meta[b"lab.schema_version"] == S.SCHEMA_VERSION.encode() == b"2"


def test_duckdb_views_keep_mixed_precisions_exact(tmp_path):
    """Without union_by_name DuckDB would read 1.25 through a DECIMAL(18,1) file as 1.3."""
    root = str(tmp_path)
    for sym, value, prec in (("A-USD", "1.5", 1), ("B-USD", "1.25", 2)):
        d = os.path.join(root, "trades", "venue=mock", f"symbol={sym}", "date=2026-01-01")
        os.makedirs(d)
        pq.write_table(pa.table({"price": pa.array([Decimal(value)], pa.decimal128(18, prec)), "amount": pa.array([Decimal(1)], pa.decimal128(18, 8))}), os.path.join(d, "s-000000.parquet"))
    out = catalog.query(root, "select symbol, price from trades order by symbol").to_pylist()
    assert [(r["symbol"], r["price"]) for r in out] == [("A-USD", Decimal("1.5")), ("B-USD", Decimal("1.25"))]
    assert catalog.query(root, "select count(*) as n from book").to_pylist() == [{"n": 0}]


def test_bad_query_is_one_line(tmp_path):
    import pytest

    with pytest.raises(catalog.QueryError) as err:
        catalog.query(str(tmp_path), "selec nonsense")
    assert "\n" not in str(err.value) and "syntax" in str(err.value).lower()


def test_background_compactor_rewrites_raw_files_in_place(tmp_path):
    """The recorder's compactor (a child process) recompresses submitted raw files as `lab
    compact` does (same table, `lab.compacted` added, smaller) and reports a failure instead of
    raising; stopped mid-file, it leaves the file as written and no temporary behind."""
    from lab.datasets import schema as S
    from lab.datasets.store import raw_table
    from lab.datasets.compactor import BackgroundCompactor

    rows = [RawRow(i, 1_700_000_000_000_000_000 + i, 1, i, "recv", "ws", None,
                   b'{"type":"book","seq":%d,"bids":[["%d.%02d","%d.%08d"]]}' % (i, 30000 - i % 50, i % 100, i % 9, i * 7919 % 10**8))
            for i in range(20_000)]
    path = str(tmp_path / "raw.parquet")
    meta = {S.META_TABLE: b"raw", S.META_VENUE: b"mock", S.META_SESSION: b"s"}
    atomic_write(raw_table(rows, "s"), path, meta)
    before, size = pq.read_table(path), os.path.getsize(path)
    compactor = BackgroundCompactor()
    compactor.submit([path, str(tmp_path / "missing.parquet")])
    compactor.close(finish_all=True)
    after = pq.read_table(path)
    assert after.equals(before) and os.path.getsize(path) < size
    assert after.schema.metadata[b"lab.compacted"] == b"zstd-19"
    assert compactor.compacted == 1 and compactor.bytes_saved == size - os.path.getsize(path)
    assert len(compactor.errors) == 1 and "missing.parquet" in compactor.errors[0]
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]  # no temporary left

    big = str(tmp_path / "big.parquet")
    atomic_write(raw_table(rows * 10, "s"), big, meta)
    size = os.path.getsize(big)
    compactor = BackgroundCompactor()
    compactor.submit([big])
    import time
    deadline = time.monotonic() + 30
    while not os.path.exists(tmp_path / ".big.parquet.tmp") and time.monotonic() < deadline:
        time.sleep(0.005)
    compactor.close()  # killed while it writes
    assert os.path.getsize(big) == size and b"lab.compacted" not in pq.read_schema(big).metadata
    assert pq.read_table(big).num_rows == len(rows) * 10
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]


def test_background_compactor_dies_with_the_recorder():
    """A recorder killed outright (SIGKILL) takes its compactor with it: no orphan rewriting
    files that a later `lab compact` may be rewriting too."""
    import signal
    import subprocess
    import sys
    import time

    code = ("import time\nfrom lab.datasets.compactor import BackgroundCompactor\n"
            "c = BackgroundCompactor(); c._start(); print(c._proc.pid, flush=True); time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    time.sleep(0.3)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{child}/status") as f:
                state = f.read().split("State:")[1].split()[0]
        except FileNotFoundError:
            state = "gone"
        if state in ("Z", "X", "gone"):  # dead (a zombie until init reaps it)
            break
        time.sleep(0.05)
    assert state in ("Z", "X", "gone")
