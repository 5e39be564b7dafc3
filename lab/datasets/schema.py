"""The capture dataset: every table's Arrow schema, in one place.

Decisions beyond DESIGN.md (see docs/DATASET.md):
- prices and amounts are Parquet DECIMAL(38, 18) (Arrow decimal128(38, 18), physical
  FIXED_LEN_BYTE_ARRAY(16)) in every file of every table, whatever the instrument's precision: one
  type per column across the dataset, so any reader unifies any set of files without rescaling;
  18 decimals hold token amounts (Uniswap), 20 integer digits hold any int64 tick count at any
  precision <= 18 (|ticks| * 10^18 < 10^38), so the value of every tick count is exact. The
  instrument's own precision is in `instruments` and in the file metadata
  (`lab.price_precision`, `lab.amount_precision`); the engine works in int64 ticks at that precision.
  Schema version 1 (before 2) stored DECIMAL(18, precision) as INT64: `lab migrate ROOT`;
- `side` is a dictionary-free string (`bid`/`ask`, `buy`/`sell`) that Parquet dictionary-encodes;
- `flags` is a uint8 bit set: LAST = 1 (last row of one wire message), CLEAR = 2 (the book is
  reset before this row is applied).
"""
from __future__ import annotations

import pyarrow as pa

from lab.core.model import FLAG_CLEAR, FLAG_LAST, canonical_symbol  # noqa: F401  (part of the schema's vocabulary)

SCHEMA_VERSION = "2"
# versions the readers still open (1: DECIMAL(18, precision) INT64 prices and amounts)
READABLE_VERSIONS = ("1", "2")

# Every price and amount column: DECIMAL(38, SCALE).
DECIMAL_PRECISION = 38
SCALE = 18
DECIMAL = pa.decimal128(DECIMAL_PRECISION, SCALE)


TS = pa.timestamp("ns", tz="UTC")

TABLES = ("raw", "book", "trades", "events", "instruments")


def check_version(meta: dict, what: str) -> None:
    """ValueError when a file's `lab.schema_version` (str metadata) is one this lab cannot read."""
    v = meta.get("lab.schema_version")
    if v is not None and v not in READABLE_VERSIONS:
        raise ValueError(f"{what}: schema version {v} is newer than this lab reads ({', '.join(READABLE_VERSIONS)}): upgrade lab")


def decimal(precision: int | None = None) -> pa.DataType:
    """The one type of every price / amount column (`precision`, the instrument's, only checked)."""
    if precision is not None and not 0 <= precision <= SCALE:
        raise ValueError(f"precision {precision} outside 0..{SCALE}: not representable in DECIMAL(38, 18)")
    return DECIMAL


def legacy_decimal(precision: int) -> pa.DataType:
    """Schema version 1's type of a price / amount column at the instrument's precision."""
    return pa.decimal128(18, precision)


RAW = pa.schema(
    [
        ("local_timestamp", TS),
        ("rec_id", pa.int64()),
        ("session", pa.string()),
        ("conn_id", pa.int32()),
        ("conn_seq", pa.int64()),
        ("kind", pa.string()),
        ("channel", pa.string()),
        ("symbol", pa.string()),
        ("payload", pa.binary()),
    ]
)


def book_schema(price_precision: int, amount_precision: int) -> pa.Schema:
    return pa.schema(
        [
            ("timestamp", TS),
            ("local_timestamp", TS),
            ("is_snapshot", pa.bool_()),
            ("side", pa.string()),
            ("price", decimal(price_precision)),
            ("amount", decimal(amount_precision)),
            ("first_seq", pa.int64()),
            ("last_seq", pa.int64()),
            ("checksum", pa.uint32()),
            ("flags", pa.uint8()),
            ("rec_id", pa.int64()),
            ("venue_symbol", pa.string()),
        ]
    )


def trades_schema(price_precision: int, amount_precision: int) -> pa.Schema:
    return pa.schema(
        [
            ("timestamp", TS),
            ("local_timestamp", TS),
            ("id", pa.string()),
            ("side", pa.string()),
            ("price", decimal(price_precision)),
            ("amount", decimal(amount_precision)),
            ("rec_id", pa.int64()),
            ("venue_symbol", pa.string()),
        ]
    )


EVENTS = pa.schema(
    [
        ("local_timestamp", TS),
        ("rec_id", pa.int64()),
        ("kind", pa.string()),
        ("symbol", pa.string()),
        ("detail", pa.string()),
    ]
)

INSTRUMENTS = pa.schema(
    [
        ("venue_symbol", pa.string()),
        ("symbol", pa.string()),
        ("base", pa.string()),
        ("quote", pa.string()),
        ("price_precision", pa.int32()),
        ("amount_precision", pa.int32()),
        ("tick", pa.string()),
        ("lot", pa.string()),
        ("valid_from", TS),
        ("rec_id", pa.int64()),
    ]
)

# Parquet key-value metadata keys carried by every file.
META_SCHEMA_VERSION = b"lab.schema_version"
META_TABLE = b"lab.table"
META_SESSION = b"lab.session"
META_VENUE = b"lab.venue"
META_SYMBOL = b"lab.symbol"
META_VENUE_SYMBOL = b"lab.venue_symbol"
META_PRICE_PRECISION = b"lab.price_precision"
META_AMOUNT_PRECISION = b"lab.amount_precision"
META_DEPTH = b"lab.depth"
META_SOURCE_RAW = b"lab.source_raw"
META_REC_ID_RANGE = b"lab.rec_id_range"


