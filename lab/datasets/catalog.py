"""DuckDB views over a capture root: `raw`, `book`, `trades`, `events`, `instruments`, and any
derived table found under the root (`quotes`, `book_snapshot_25`, `orders`, `fills`, ...).

Files are read with `union_by_name=true`: without it DuckDB casts every file to the first file's
types, and a DECIMAL(18,2) column read as DECIMAL(18,1) is silently rounded. With it, mixed
precisions widen to a common exact type.
"""
from __future__ import annotations

import glob
import os

import duckdb
import pyarrow as pa

from . import schema as S

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


def connect(root: str, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    present = tables_in(root)
    for table in sorted(set(present) | set(_EMPTY)):
        if table in present:
            pattern = os.path.join(root, table, "**", "*.parquet").replace("'", "''")
            con.execute(
                f"CREATE VIEW \"{table}\" AS SELECT *{_FLOATS.get(table, '')} FROM read_parquet('{pattern}', "
                "hive_partitioning = true, union_by_name = true)"
            )
        else:
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


def query(root: str, sql: str, threads: int | None = None) -> pa.Table:
    try:
        con = connect(root, threads)
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
