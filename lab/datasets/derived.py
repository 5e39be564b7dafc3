"""What a normalizer hands the writer: the rows derived from one run of raw rows."""
from __future__ import annotations

from dataclasses import dataclass, field

from lab.core.model import Instrument
from lab.datasets.store import BookColumns, TradeColumns


@dataclass
class Derived:
    """Rows derived from one run of raw rows, keyed by canonical symbol."""

    book: dict[str, BookColumns] = field(default_factory=dict)
    trades: dict[str, TradeColumns] = field(default_factory=dict)
    events: list[tuple] = field(default_factory=list)  # (local_ts, rec_id, kind, symbol, detail)
    instruments: list[tuple[Instrument, int, int]] = field(default_factory=list)  # (instrument, valid_from, rec_id)
    # extra Parquet key-value metadata of the book files, by canonical symbol (e.g. Kraken's
    # wire_price_decimals / wire_amount_decimals); written as `lab.<key>`
    book_meta: dict[str, dict] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return not (self.book or self.trades or self.events or self.instruments)
