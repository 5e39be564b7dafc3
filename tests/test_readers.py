"""A multi-venue, multi-symbol capture recorded from the real simulators (mock BTC-USD and ETH-USD
at 2 price decimals, Kraken XBT/USD at 1 and ETH/USD at 2) opens exactly with every Arrow reader
users reach for, without any option that papers over differing types: DuckDB `read_parquet(...,
hive_partitioning = true)` (no union_by_name), `pyarrow.dataset`, polars `scan_parquet` and
pandas; each agrees value for value with `lab query ... --csv` and with the others, for `book`,
`trades` and the derived `quotes`. Then the same capture rewritten in schema version 1
(DECIMAL(18, precision), as lab wrote it before) is brought back by `lab migrate`."""
from __future__ import annotations

import csv
import glob
import io
import json
import os
import subprocess
import sys
from decimal import Decimal

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from lab.datasets import schema as S
from lab.venues.simulator import SimulatorThread
from labcli import LAB, lab  # noqa: F401

COLUMNS = {
    "book": ("rec_id", "side", "price", "amount"),
    "trades": ("rec_id", "id", "side", "price", "amount"),
    "quotes": ("local_timestamp", "bid_price", "bid_amount", "ask_price", "ask_amount"),
}
DECIMALS = {"book": ("price", "amount"), "trades": ("price", "amount"), "quotes": ("bid_price", "bid_amount", "ask_price", "ask_amount")}


@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("multi") / "capture")
    with SimulatorThread("mock", seed=21, rate=400) as sim:
        lab("record", "--venue", "mock", "--duration", "3s", "--out", root, "--rest-url", sim.url, "--ws-url", sim.ws_url, "--rotate", "1s")
    with SimulatorThread("kraken", seed=22, rate=400) as sim:
        lab("record", "--venue", "kraken", "--symbol", "XBT/USD", "--symbol", "ETH/USD", "--ws-url", sim.ws_url, "--rest-url", sim.url,
            "--duration", "3s", "--out", root, "--rotate", "1s")
    lab("rebuild", root, "--depth", "5")
    return root


def _key(table: str, venue, symbol, values: list) -> tuple:
    out = [str(venue), str(symbol)]
    for name, v in zip(COLUMNS[table], values):
        if name in DECIMALS[table]:
            out.append(None if v is None or (isinstance(v, str) and v == "") else Decimal(v))
        elif name == "local_timestamp":
            out.append(v if isinstance(v, int) else int(pd.Timestamp(v).value))
        else:
            out.append(str(v))
    return tuple(out)


def _sorted(rows) -> list:
    return sorted(rows, key=lambda r: tuple((x is None, x) for x in r))


def via_lab_query(root: str, table: str) -> list:
    ts = "epoch_ns(local_timestamp)" if table == "quotes" else None
    cols = ", ".join(ts if c == "local_timestamp" else c for c in COLUMNS[table])
    out = lab("query", f"select venue, symbol, {cols} from {table}", "--root", root, "--csv").stdout
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0][:2] == ["venue", "symbol"]
    assert "E-" not in out  # fixed notation: a DECIMAL(38, 18) zero (book deletes) is not 0E-18
    return _sorted(_key(table, r[0], r[1], [int(x) if c == "local_timestamp" else x for c, x in zip(COLUMNS[table], r[2:])]) for r in rows[1:])


def via_duckdb(root: str, table: str) -> list:
    pattern = os.path.join(root, table, "**", "*.parquet")
    con = duckdb.connect()
    rel = con.sql(f"select * from read_parquet('{pattern}', hive_partitioning = true)")
    types = dict(zip(rel.columns, map(str, rel.types)))
    assert all(types[c] == "DECIMAL(38,18)" for c in DECIMALS[table]), types
    ts = "epoch_ns(local_timestamp)" if table == "quotes" else None
    cols = ", ".join(ts if c == "local_timestamp" else c for c in COLUMNS[table])
    rows = con.sql(f"select venue, symbol, {cols} from read_parquet('{pattern}', hive_partitioning = true)").fetchall()
    return _sorted(_key(table, r[0], r[1], list(r[2:])) for r in rows)


def via_pyarrow_dataset(root: str, table: str) -> list:
    d = ds.dataset(os.path.join(root, table), format="parquet", partitioning="hive")
    t = d.to_table()  # raises "Rescaling Decimal value would cause data loss" on mixed scales
    for c in DECIMALS[table]:
        assert t.schema.field(c).type == pa.decimal128(38, 18), t.schema
    cols = [t.column("venue").to_pylist(), t.column("symbol").to_pylist()]
    for c in COLUMNS[table]:
        cols.append(t.column(c).cast(pa.int64()).to_pylist() if c == "local_timestamp" else t.column(c).to_pylist())
    return _sorted(_key(table, r[0], r[1], list(r[2:])) for r in zip(*cols))


def via_polars(root: str, table: str) -> list:
    df = pl.scan_parquet(os.path.join(root, table, "**", "*.parquet"), hive_partitioning=True).collect()
    for c in DECIMALS[table]:
        assert df.schema[c] == pl.Decimal(38, 18), df.schema
    if table == "quotes":
        df = df.with_columns(pl.col("local_timestamp").dt.epoch("ns"))
    cols = [df["venue"].to_list(), df["symbol"].to_list()] + [df[c].to_list() for c in COLUMNS[table]]
    return _sorted(_key(table, r[0], r[1], list(r[2:])) for r in zip(*cols))


def via_pandas(root: str, table: str) -> list:
    df = pd.read_parquet(os.path.join(root, table))
    if table == "quotes":
        df["local_timestamp"] = df["local_timestamp"].astype("int64")
    rows = zip(df["venue"].astype(str), df["symbol"].astype(str), *(df[c].tolist() for c in COLUMNS[table]))
    return _sorted(_key(table, r[0], r[1], [None if (isinstance(v, float) and v != v) else v for v in r[2:]]) for r in rows)


@pytest.mark.parametrize("table", ["book", "trades", "quotes"])
def test_every_reader_opens_the_capture_exactly(capture, table):
    want = via_lab_query(capture, table)
    streams = {(r[0], r[1]) for r in want}
    assert streams == {("mock", "BTC-USD"), ("mock", "ETH-USD"), ("kraken", "XBT-USD"), ("kraken", "ETH-USD")}, streams
    # the files of the table do differ in instrument precision (the case the readers broke on)
    files = glob.glob(os.path.join(capture, table, "**", "*.parquet"), recursive=True)
    precisions = {pq.read_schema(f).metadata[S.META_PRICE_PRECISION] for f in files}
    assert precisions == {b"1", b"2"}
    # Kraken XBT/USD prices have one decimal: DuckDB reading them through a 2-decimal first
    # file (or the reverse) kept them only with one type for all files
    dec = [r for r in want if r[0] == "kraken" and r[1] == "XBT-USD"]
    prices = {r[COLUMNS[table].index(DECIMALS[table][0]) + 2] for r in dec} - {None}
    assert len(prices) > 3 and all(p == p.quantize(Decimal("0.1")) for p in prices)
    assert any(p != p.quantize(Decimal("1")) for p in prices)
    for reader in (via_duckdb, via_pyarrow_dataset, via_polars, via_pandas):
        got = reader(capture, table)
        assert len(got) == len(want), reader.__name__
        assert got == want, reader.__name__


def _write_v1(root: str) -> int:
    """Rewrite the capture's decimal columns as schema version 1 wrote them: DECIMAL(18,
    precision), INT64 mantissas, `lab.schema_version` 1."""
    n = 0
    for f in glob.glob(os.path.join(root, "**", "*.parquet"), recursive=True):
        t = pq.ParquetFile(f).read()
        meta = t.schema.metadata or {}
        if not any(pa.types.is_decimal(x.type) for x in t.schema):
            continue
        schema = t.schema
        for field in t.schema:
            if pa.types.is_decimal(field.type):
                p = int(meta[S.META_AMOUNT_PRECISION if "amount" in field.name else S.META_PRICE_PRECISION])
                schema = schema.set(schema.get_field_index(field.name), field.with_type(S.legacy_decimal(p)))
        old = t.cast(schema).replace_schema_metadata({**meta, S.META_SCHEMA_VERSION: b"1"})
        pq.write_table(old, f, store_decimal_as_integer=True, compression="zstd", data_page_version="2.0")
        n += 1
    return n


def test_migrate_a_schema_1_capture(capture, tmp_path):
    import shutil

    root = str(tmp_path / "old")
    shutil.copytree(capture, root)
    n = _write_v1(root)
    assert n > 8
    f0 = sorted(glob.glob(os.path.join(root, "book", "venue=kraken", "symbol=XBT-USD", "**", "*.parquet"), recursive=True))[0]
    assert pq.read_schema(f0).field("price").type == pa.decimal128(18, 1)
    # lab itself still reads schema 1: the same rebuild, the same query answers
    before = {t: via_lab_query(root, t) for t in ("book", "trades")}
    assert before == {t: via_lab_query(capture, t) for t in ("book", "trades")}
    # ... but readers without union_by_name do not unify it
    with pytest.raises(Exception):
        via_pyarrow_dataset(root, "book")

    dry = lab("migrate", root, "--dry-run").stdout
    assert f"{n} to migrate" in dry and pq.read_schema(f0).field("price").type == pa.decimal128(18, 1)
    out = lab("migrate", root, "--json").stdout
    reports = [json.loads(line) for line in out.splitlines()]
    assert sum(r["action"] == "migrated" for r in reports) == n and not any(r["action"] == "error" for r in reports)
    assert reports[-1]["index"] == reports[-1]["total"] == len(reports)
    assert not glob.glob(os.path.join(root, "**", ".*.tmp"), recursive=True)
    meta = pq.read_schema(f0).metadata
    assert pq.read_schema(f0).field("price").type == S.DECIMAL and meta[S.META_SCHEMA_VERSION] == b"2"
    assert meta[S.META_PRICE_PRECISION] == b"1" and meta[S.META_VENUE] == b"kraken"
    for table in ("book", "trades", "quotes"):
        want = via_lab_query(capture, table)
        for reader in (via_lab_query, via_duckdb, via_pyarrow_dataset, via_polars, via_pandas):
            assert reader(root, table) == want, (table, reader.__name__)
    # idempotent: a second run changes nothing
    again = lab("migrate", root).stdout
    assert "0 migrated" in again and "already current" in again
    # verify and rebuild take the migrated capture
    assert json.loads(lab("verify", root, "--json").stdout)["ok"]
    lab("rebuild", root, "--depth", "5")
    assert via_duckdb(root, "quotes") == via_duckdb(capture, "quotes")


def test_migrate_reports_an_unreadable_file_and_fails(tmp_path):
    root = tmp_path / "bad"
    d = root / "book" / "venue=mock" / "symbol=BTC-USD" / "date=2026-01-01"
    d.mkdir(parents=True)
    (d / "s-000001.parquet").write_bytes(b"PAR1 not really a file")
    p = lab("migrate", root, check=False)
    assert p.returncode == 1 and "error" in p.stderr and "Traceback" not in p.stderr
