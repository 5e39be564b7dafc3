"""DuckDB views over a capture root: `raw`, `book`, `trades`, `events`, `instruments`, and any
derived table found under the root (`quotes`, `book_snapshot_25`, `orders`, `fills`, ...).

Files are read with `union_by_name=true`: without it DuckDB casts every file to the first file's
types, and a DECIMAL(18,2) column read as DECIMAL(18,1) is silently rounded. With it, mixed
precisions widen to a common exact type.

Views are built over the list of readable files (each file's footer checked once per process,
cached by path, size and mtime), not over a glob: one truncated or overwritten file would make
DuckDB fail every query of its view. Skipped files are returned to the caller, which warns.
"""
from __future__ import annotations

import glob
import os

import duckdb
import pyarrow as pa

from lab.datasets import schema as S
from lab.datasets.files import CaptureError, split_readable

_EMPTY = {
    "raw": S.RAW,
    "book": S.book_schema(8, 8),
    "trades": S.trades_schema(8, 8),
    "events": S.EVENTS,
    "instruments": S.INSTRUMENTS,
}
_FLOATS = {
    "book": ", CAST(price AS DOUBLE) AS price_float, CAST(amount AS DOUBLE) AS amount_float",
    "trades": ", CAST(price AS DOUBLE) AS price_float, CAST(amount AS DOUBLE) AS amount_float",
}


class QueryError(RuntimeError):
    pass


def tables_in(root: str) -> list[str]:
    found = set()
    for entry in os.listdir(root) if os.path.isdir(root) else []:
        if entry.startswith(".") or not os.path.isdir(os.path.join(root, entry)):
            continue
        if glob.glob(os.path.join(root, entry, "venue=*", "**", "*.parquet"), recursive=True):
            found.add(entry)
    return sorted(found)


def _files_of(root: str, table: str) -> list[str]:
    files = glob.glob(os.path.join(root, table, "**", "*.parquet"), recursive=True)  # glob skips dot files
    return sorted(f for f in files if not os.path.basename(f).startswith("."))


def connect(root: str, threads: int | None = None, skipped: list[tuple[str, str]] | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with one view per table under `root`. Unreadable files are left out of
    the views and appended to `skipped` as (path, reason); without a list they raise QueryError."""
    root = os.path.realpath(root)
    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    present = tables_in(root)
    for table in sorted(set(present) | set(_EMPTY)):
        files = []
        if table in present:
            try:
                files = split_readable(_files_of(root, table), skipped)
            except CaptureError as exc:
                raise QueryError(str(exc)) from None
        if files:
            listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
            con.execute(
                f"CREATE VIEW \"{table}\" AS SELECT *{_FLOATS.get(table, '')} FROM read_parquet([{listed}], "
                "hive_partitioning = true, union_by_name = true)"
            )
        elif table in _EMPTY:
            empty = pa.Table.from_batches([], _with_partitions(table, _EMPTY[table]))
            con.register(f"_empty_{table}", empty)
            con.execute(f"CREATE VIEW {table} AS SELECT *{_FLOATS.get(table, '')} FROM _empty_{table}")
    return con


def _with_partitions(table: str, schema: pa.Schema) -> pa.Schema:
    extra = [("venue", pa.string())]
    if table in ("book", "trades"):
        extra.append(("symbol", pa.string()))
    if table not in ("instruments",):
        extra.append(("date", pa.date32()))
    names = set(schema.names)
    for name, typ in extra:
        if name not in names:
            schema = schema.append(pa.field(name, typ))
    return schema


def query(root: str, sql: str, threads: int | None = None, skipped: list[tuple[str, str]] | None = None) -> pa.Table:
    """Run `sql` over the root's views; unreadable files are skipped into `skipped` (see connect)."""
    try:
        con = connect(root, threads, skipped)
    except duckdb.Error as exc:
        raise QueryError(f"cannot open the capture under {root}: {str(exc).splitlines()[0]}") from None
    try:
        relation = con.sql(sql)
        if relation is None:  # a statement without a result
            return pa.table({})
        # duckdb 2 names it to_arrow_table; 1.x arrow
        return (getattr(relation, "to_arrow_table", None) or relation.arrow)()
    except duckdb.Error as exc:
        raise QueryError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    finally:
        con.close()
