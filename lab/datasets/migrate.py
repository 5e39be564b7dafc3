"""`lab migrate ROOT`: rewrite a capture's files of an older schema version in the current one.

Schema version 1 -> 2: every decimal column (`price`, `amount` of book, trades, quotes,
book_snapshot_N levels, paper orders / fills, ...) goes from DECIMAL(18, precision) (INT64
mantissas) to the dataset's one type DECIMAL(38, 18). The cast is exact (18 - precision integer
digits <= 20, precision decimals <= 18) and is checked value for value on the file written
before it replaces the old one. Files are rewritten one at a time with `store.atomic_write` (a
dot-prefixed tmp, fsync, rename, fsync of the directory), so an interrupted migration leaves every
file either old or new and a second run finishes it: migrated files are recognised by their
types and skipped (idempotent). Files without a decimal column (`raw`, `events`, `instruments`)
did not change between versions 1 and 2 and are left as they are (raw files are the largest).
"""
from __future__ import annotations

import os
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from . import schema as S
from .store import COMPACT_LEVEL, META_COMPACTED, atomic_write


def capture_files(root: str) -> list[str]:
    """Every Parquet file of the root readers see (not dot-prefixed tmp files, not journals)."""
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if not x.startswith("."))
        out += [os.path.join(d, f) for f in sorted(files) if f.endswith(".parquet") and not f.startswith(".")]
    return out


def _old_decimals(schema: pa.Schema) -> list[str]:
    return [f.name for f in schema if pa.types.is_decimal(f.type) and f.type != S.DECIMAL]


def migrated_schema(schema: pa.Schema) -> pa.Schema:
    for name in _old_decimals(schema):
        i = schema.get_field_index(name)
        schema = schema.set(i, schema.field(i).with_type(S.DECIMAL))
    return schema


def migrate_file(path: str, dry_run: bool = False) -> dict:
    """{path, action ("current", "migrated", "would migrate", "error"), columns, rows, error}."""
    out = {"path": path, "action": "current", "columns": [], "rows": 0}
    try:
        schema = pq.read_schema(path)
        old = _old_decimals(schema)
        out["columns"] = [f"{c} {schema.field(c).type} -> {S.DECIMAL}" for c in old]
        if not old:
            return out
        for c in old:
            t = schema.field(c).type
            if t.scale > S.SCALE or t.precision - t.scale > S.DECIMAL_PRECISION - S.SCALE:
                raise ValueError(f"column {c} {t} does not fit {S.DECIMAL} exactly")
        if dry_run:
            out["action"] = "would migrate"
            out["rows"] = pq.read_metadata(path).num_rows
            return out
        table = pq.ParquetFile(path).read()  # the file alone: no partition columns added
        new = table.cast(migrated_schema(table.schema))
        meta = {k: v for k, v in (table.schema.metadata or {}).items()}
        atomic_write(new, path, meta, compression_level=COMPACT_LEVEL if META_COMPACTED in meta else 3)
        back = pq.ParquetFile(path).read()
        for c in old:  # value for value: the new file holds what the old one held
            if not back.column(c).equals(table.column(c).cast(S.DECIMAL)) or back.column(c).cast(table.schema.field(c).type).to_pylist() != table.column(c).to_pylist():
                raise ValueError(f"column {c} changed in the rewrite")
        out["action"], out["rows"] = "migrated", table.num_rows
    except (OSError, ValueError, pa.ArrowException) as exc:
        out["action"], out["error"] = "error", str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return out


def migrate_root(root: str, dry_run: bool = False) -> Iterator[dict]:
    """Migrate every file under `root` (see the module doc), yielding one report per file with
    `index` and `total` for progress."""
    files = capture_files(root)
    for i, path in enumerate(files, 1):
        r = migrate_file(path, dry_run)
        r["index"], r["total"], r["path"] = i, len(files), os.path.relpath(path, root)
        yield r
