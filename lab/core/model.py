"""The model types, defined once: `Instrument`, `Trade`, `RawRow`, book-row flags and the
canonical symbol spelling. Nothing here imports lab."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

# `flags` of a `book` row (docs/DATASET.md): LAST ends a wire message, CLEAR starts a snapshot.
FLAG_LAST = 1
FLAG_CLEAR = 2

# The kinds of raw rows a connection writes (their order is the journal's on-disk kind code).
RAW_KINDS = ("open", "close", "recv", "send", "rest", "rest_error", "note")


def canonical_symbol(venue_symbol: str) -> str:
    """URL-safe canonical form used as the partition value: `XBT/USD` -> `XBT-USD`."""
    out = venue_symbol.upper().replace("/", "-").replace("_", "-").replace(" ", "")
    if not out or any(not (c.isalnum() or c in "-.") for c in out):
        raise ValueError(f"symbol {venue_symbol!r} has no URL-safe canonical form")
    return out


@dataclass(slots=True)
class RawRow:
    """One record of the wire as the connection saw it (the `raw` table's row)."""

    rec_id: int
    local_ts: int
    conn_id: int
    conn_seq: int
    kind: str
    channel: str
    symbol: str | None
    payload: bytes


@dataclass(frozen=True)
class Instrument:
    venue_symbol: str
    symbol: str  # canonical, URL-safe
    base: str
    quote: str
    price_precision: int
    amount_precision: int

    @property
    def tick(self) -> str:
        return str(Decimal(1).scaleb(-self.price_precision))

    @property
    def lot(self) -> str:
        return str(Decimal(1).scaleb(-self.amount_precision))


def wire_instrument(venue_symbol: str, base, quote, price_precision: int, amount_precision: int) -> Instrument:
    """An Instrument from a venue's instrument metadata, once the venue has checked the symbol
    and precisions: the canonical symbol derived, base/quote kept only when they are strings."""
    return Instrument(
        venue_symbol=venue_symbol,
        symbol=canonical_symbol(venue_symbol),
        base=base if isinstance(base, str) else "",
        quote=quote if isinstance(quote, str) else "",
        price_precision=price_precision,
        amount_precision=amount_precision,
    )


@dataclass(frozen=True, slots=True)
class Trade:
    venue: str
    symbol: str
    timestamp: int
    local_timestamp: int
    id: str
    side: str  # taker side: buy or sell
    price: Decimal
    amount: Decimal
