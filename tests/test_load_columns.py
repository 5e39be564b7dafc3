"""`load_columns` and its lean footer (lab.replay.footer): every book file layout lab has written
(old and current writer settings) loads to the same columns and rebuilds to the same quotes."""
from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lab import rust_book as rb
from lab.benchmarks import book as B
from lab.datasets import schema as S
from lab.datasets.store import atomic_write
from lab.replay.footer import lean_metadata
from lab.datasets.reader import CaptureError
from lab.replay.rebuild import _BOOK_COLUMNS, load_columns, rebuild_columns

ROWS = 30_000


@pytest.fixture(scope="module")
def workload():
    return dict(rb.bench_workload(ROWS, seed=5))


@pytest.fixture(scope="module")
def table(workload):
    return B.book_table(workload).replace_schema_metadata({**B._book_meta(), S.META_SCHEMA_VERSION: b"1"})


def _legacy(table: pa.Table, path: str, **kw) -> None:
    """The writer settings lab used before data pages v2 (dictionary prices and flags, v1 pages of
    pyarrow's default size), or others given in `kw`."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    opts = dict(
        compression="zstd", compression_level=3, store_decimal_as_integer=True,
        use_dictionary=["side", "venue_symbol", "price", "flags"],
        column_encoding={"timestamp": "DELTA_BINARY_PACKED", "local_timestamp": "DELTA_BINARY_PACKED", "rec_id": "DELTA_BINARY_PACKED",
                         "first_seq": "DELTA_BINARY_PACKED", "last_seq": "DELTA_BINARY_PACKED", "amount": "BYTE_STREAM_SPLIT"},
        data_page_version="1.0",
    )
    opts.update(kw)
    pq.write_table(as_v1(table), path, **opts)


def as_v1(table: pa.Table) -> pa.Table:
    """`table` with schema version 1's DECIMAL(18, precision) prices and amounts (exact cast)."""
    schema = table.schema
    for name, p in (("price", 2), ("amount", 8)):
        schema = schema.set(schema.get_field_index(name), pa.field(name, S.legacy_decimal(p)))
    return table.cast(schema)


def _write(layout: str, table: pa.Table, path: str) -> None:
    if layout == "current":
        atomic_write(table, path, B._book_meta())
    elif layout == "legacy":
        _legacy(table, path)
    elif layout == "fixed_len_decimals":  # pyarrow's default decimal storage
        _legacy(table, path, store_decimal_as_integer=False, use_dictionary=["side"], column_encoding=None)
    elif layout == "v2_many_pages":  # several row groups and pages per column
        _legacy(table, path, data_page_version="2.0", row_group_size=7_000, data_page_size=4_096)
    else:
        raise ValueError(layout)


def _workload_of(table):
    from lab.datasets.store import mantissas

    return {"prices": mantissas(table.column("price"), 2).tobytes(), "amounts": mantissas(table.column("amount"), 8).tobytes(),
            **{k: b"" for k in B.FIELDS if k not in ("prices", "amounts")}}


def _arrays(cols) -> dict[str, np.ndarray]:
    def ticks(buf, width, scale, big_endian):
        if width == 8:
            return np.frombuffer(buf, dtype=np.int64)
        return np.frombuffer(rb.decimal128_to_ticks(buf, scale, big_endian=big_endian), dtype=np.int64)

    return {
        "sides": np.asarray(cols.sides, dtype=np.int8),
        "prices": ticks(cols.prices, cols.price_width, cols.price_scale, cols.price_big_endian),
        "amounts": ticks(cols.amounts, cols.amount_width, cols.amount_scale, cols.amount_big_endian),
        "flags": np.frombuffer(cols.flags, dtype=np.uint8),
        "timestamps": np.frombuffer(cols.timestamps, dtype=np.int64),
        "local_timestamps": np.frombuffer(cols.local_timestamps, dtype=np.int64),
    }


def _expected(workload) -> dict[str, np.ndarray]:
    return B._arrays(workload)


def _same_rebuild(cols, workload) -> None:
    got = rebuild_columns(cols)
    want = rb.rebuild_book(*(workload[k] for k in B.FIELDS), depth=cols.depth, out_price_scale=16, out_amount_scale=10)
    for key in ("quotes", "best_bid", "best_ask", "timestamp", "local_timestamp", "bid_price", "bid_amount", "ask_price", "ask_amount"):
        a, b = got[key], want[key]
        if isinstance(a, (int, list, tuple)):
            assert a == b, key
        else:
            assert memoryview(a).tobytes() == memoryview(b).tobytes(), key


@pytest.mark.parametrize("layout", ["current", "legacy", "fixed_len_decimals", "v2_many_pages"])
def test_every_layout_loads_the_same_columns(layout, table, workload, tmp_path):
    path = str(tmp_path / "book" / "venue=bench" / "symbol=BTC-USD" / "date=2023-11-14" / f"{layout}.parquet")
    _write(layout, table, path)
    cols = load_columns([path])
    got, want = _arrays(cols), _expected(workload)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    n = workload["rows"]
    assert (cols.rows, cols.file_rows, cols.price_precision, cols.amount_precision, cols.depth) == (n, [n], 2, 8, 1000)
    # int64 mantissas wherever the file stores them so; schema 2's DECIMAL(38, 18) as decimal128
    # that the engine divides exactly by 10^(18 - precision)
    assert (cols.price_width, cols.amount_width) == ((16, 16) if layout in ("fixed_len_decimals", "current") else (8, 8))
    assert (cols.price_scale, cols.amount_scale) == ((16, 10) if layout == "current" else (0, 0))
    _same_rebuild(cols, workload)


def test_mixed_layouts_in_one_stream(table, workload, tmp_path):
    files = []
    n = workload["rows"]
    bounds = [0, 9_001, 20_000, n]
    for k, layout in enumerate(["legacy", "current", "fixed_len_decimals"]):
        path = str(tmp_path / "book" / "venue=bench" / "symbol=BTC-USD" / "date=2023-11-14" / f"s-{k:06d}.parquet")
        _write(layout, table.slice(bounds[k], bounds[k + 1] - bounds[k]), path)
        files.append(path)
    cols = load_columns(files)
    assert cols.file_rows == [9_001, 10_999, n - 20_000] and cols.rows == n
    assert (cols.price_width, cols.amount_width) == (8, 8)  # the decimal128 file's mantissas taken out
    got, want = _arrays(cols), _expected(workload)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    _same_rebuild(cols, workload)


def test_lean_footer_of_a_current_file(table, tmp_path):
    # schema 2 writes DECIMAL(38, 18) as FLBA(16): read lean as its stored big-endian bytes
    current = str(tmp_path / "current2.parquet")
    atomic_write(table, current, B._book_meta())
    meta, decimals = lean_metadata(current, ("price", "amount"), tuple(_BOOK_COLUMNS))
    assert decimals == {"price": (38, 18), "amount": (38, 18)}
    lean = pq.ParquetFile(current, metadata=meta).read(columns=_BOOK_COLUMNS)
    assert not any(f.nullable for f in lean.schema)
    for name, p in (("price", 2), ("amount", 8)):
        assert lean.schema.field(name).type == pa.binary(16)
        big = np.frombuffer(lean.column(name).combine_chunks().buffers()[1], dtype=np.uint8).reshape(-1, 16)
        little = np.frombuffer(table.column(name).combine_chunks().buffers()[1], dtype=np.uint8).reshape(-1, 16)
        np.testing.assert_array_equal(big[:, ::-1], little)
        ticks = np.frombuffer(rb.decimal128_to_ticks(big.tobytes(), 18 - p, big_endian=True), dtype=np.int64)
        np.testing.assert_array_equal(ticks, B._arrays(_workload_of(table))[name + "s"])
    # a schema-1 file written with data pages v2: its INT64 decimals are read as int64 mantissas
    path = str(tmp_path / "current.parquet")
    atomic_write(as_v1(table), path, B._book_meta())
    table = as_v1(table)
    meta, decimals = lean_metadata(path, ("price", "amount"), tuple(_BOOK_COLUMNS))
    assert decimals == {"price": (18, 2), "amount": (18, 8)}
    lean = pq.ParquetFile(path, metadata=meta, read_dictionary=["side"]).read(columns=_BOOK_COLUMNS)
    plain = pq.ParquetFile(path, read_dictionary=["side"]).read(columns=_BOOK_COLUMNS)
    for name in _BOOK_COLUMNS:
        field = lean.schema.field(name)
        assert not field.nullable, name  # provably null-free v2 pages: read as REQUIRED
        if name in ("price", "amount"):
            assert field.type == pa.int64()
            words = np.frombuffer(plain.column(name).combine_chunks().buffers()[1], dtype=np.int64)[::2]
            np.testing.assert_array_equal(lean.column(name).to_numpy(), words)
        else:
            assert lean.column(name).equals(plain.column(name)), name
    # the columns not asked for are left as they are
    full = pq.ParquetFile(path, metadata=meta).read()
    assert full.schema.field("checksum").nullable and full.column("checksum").equals(pq.read_table(path).column("checksum"))


def test_lean_footer_leaves_v1_pages_and_nulls_alone(table, tmp_path):
    v1 = str(tmp_path / "v1.parquet")
    _legacy(table, v1)
    meta, _ = lean_metadata(v1, ("price", "amount"), tuple(_BOOK_COLUMNS))
    lean = pq.ParquetFile(v1, metadata=meta).read(columns=_BOOK_COLUMNS)
    assert all(f.nullable for f in lean.schema)  # v1 pages interleave levels and values
    assert lean.schema.field("price").type == pa.int64()
    # a null in a v2 page: that column keeps its levels, the others are still claimed
    prices = table.column("price").to_pylist()
    prices[123] = None
    with_null = table.set_column(table.schema.get_field_index("price"), pa.field("price", S.decimal(2)), pa.array(prices, S.decimal(2)))
    with_null = as_v1(with_null)
    v2 = str(tmp_path / "v2null.parquet")
    atomic_write(with_null, v2, B._book_meta())
    meta, _ = lean_metadata(v2, ("price", "amount"), tuple(_BOOK_COLUMNS))
    lean = pq.ParquetFile(v2, metadata=meta).read(columns=_BOOK_COLUMNS)
    assert lean.schema.field("price").nullable and not lean.schema.field("amount").nullable
    assert lean.column("price").null_count == 1 and lean.column("price")[124].as_py() == table.column("price")[124].as_py().scaleb(2)
    with pytest.raises(CaptureError, match="price has 1 nulls"):
        load_columns([v2])


def test_lean_footer_gives_up_on_what_it_does_not_know(tmp_path):
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"PAR1" + os.urandom(1000) + b"PAR1")
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    nested = tmp_path / "nested.parquet"
    pq.write_table(pa.table({"price": pa.array([{"a": 1}]), "amount": [1]}), nested, data_page_version="2.0")
    for path in (garbage, empty, nested, tmp_path / "missing.parquet"):
        assert lean_metadata(str(path), ("price", "amount"), ("price", "amount")) is None


def test_footer_walker_round_trips_and_survives_corruption(table, tmp_path):
    import random
    import struct

    from lab.replay.footer import _encode, _Walk

    current, legacy = str(tmp_path / "current.parquet"), str(tmp_path / "legacy.parquet")
    atomic_write(table, current, B._book_meta())
    _legacy(table, legacy)
    for path in (current, legacy):
        data = open(path, "rb").read()
        n = struct.unpack("<I", data[-8:-4])[0]
        footer = data[-8 - n:-8]
        assert _encode(footer, _Walk(footer).spans(), {}) == footer
    data = bytearray(open(current, "rb").read())
    n = struct.unpack("<I", data[-8:-4])[0]
    rng = random.Random(7)
    bad = tmp_path / "bad.parquet"
    for _ in range(300):
        copy = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(copy) - 8 - n, len(copy) - 8) if rng.random() < 0.8 else rng.randrange(4, 4000)
            copy[at] = rng.randrange(256)
        bad.write_bytes(bytes(copy))
        lean_metadata(str(bad), ("price", "amount"), tuple(_BOOK_COLUMNS))  # None or a footer, never an exception


def test_truncated_or_foreign_files_raise_capture_error(table, tmp_path):
    path = tmp_path / "book" / "venue=bench" / "symbol=BTC-USD" / "date=2023-11-14" / "cut.parquet"
    atomic_write(table, str(path), B._book_meta())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] + data[-2000:])  # a footer whose pages are gone
    with pytest.raises(CaptureError, match="not a readable book file"):
        load_columns([str(path)])
    path.write_bytes(b"not parquet at all")
    with pytest.raises(CaptureError, match="not a readable book file"):
        load_columns([str(path)])


def test_bad_sides_and_disagreeing_precisions(table, tmp_path):
    n = table.num_rows
    bad = table.set_column(table.schema.get_field_index("side"), "side", pa.array(["bid"] * (n - 1) + ["buy"]))
    p1 = str(tmp_path / "bad.parquet")
    atomic_write(bad, p1, B._book_meta())
    with pytest.raises(CaptureError, match="other than 'bid' / 'ask'"):
        load_columns([p1])
    asks_first = table.set_column(table.schema.get_field_index("side"), "side", pa.array(["ask"] + ["bid"] * (n - 1)))
    p2 = str(tmp_path / "asks_first.parquet")
    atomic_write(asks_first, p2, B._book_meta())
    assert np.asarray(load_columns([p2]).sides).tolist() == [1] + [0] * (n - 1)
    p3 = str(tmp_path / "other_precision.parquet")
    atomic_write(table, p3, {**B._book_meta(), S.META_PRICE_PRECISION: b"3"})
    with pytest.raises(CaptureError, match="disagree on or lack instrument precisions"):
        load_columns([p2, p3])


def test_a_newer_schema_version_is_refused_in_one_line(table, tmp_path):
    from lab.datasets.reader import load_book

    path = str(tmp_path / "book" / "venue=bench" / "symbol=BTC-USD" / "date=2023-11-14" / "s-000001.parquet")
    atomic_write(table, path, B._book_meta())
    t = pq.read_table(path)
    pq.write_table(t.replace_schema_metadata({**t.schema.metadata, S.META_SCHEMA_VERSION: b"3"}), path)
    with pytest.raises(CaptureError, match="schema version 3 is newer than this lab reads"):
        load_columns([path])
    with pytest.raises(CaptureError, match="schema version 3 is newer"):
        load_book([path], "bench", "BTC-USD")
