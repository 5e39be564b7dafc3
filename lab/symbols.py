"""One symbol model: the venue's spelling (`XBT/USD`, `BTCUSDT`) and the canonical, URL-safe one
(`XBT-USD`, the partition value) are accepted everywhere, case-insensitively.

Every venue lab records matches symbols case-insensitively (Kraken, Binance, Coinbase and the
mock simulator all do; Binance even spells stream names in lower case), so matching compares
`canonical_symbol()` forms, which are upper case. Outputs show the canonical spelling.
"""
from __future__ import annotations

from typing import Iterable

from lab.datasets.schema import canonical_symbol


class UnknownSymbol(ValueError):
    pass


def key(symbol: str) -> str:
    """The form two spellings of one symbol share (`xbt/usd`, `XBT-USD` -> `XBT-USD`)."""
    try:
        return canonical_symbol(symbol.strip())
    except ValueError:
        return symbol.strip().upper()


def resolve(symbol: str, known: Iterable[str], where: str = "") -> str:
    """The member of `known` that `symbol` names (exact spelling first, then any spelling with
    the same canonical form). UnknownSymbol (one line, listing what exists) otherwise."""
    known = list(known)
    if symbol in known:
        return symbol
    matches = sorted({k for k in known if key(k) == key(symbol)})
    if len(matches) == 1:
        return matches[0]
    where = f" for {where}" if where else ""
    if matches:
        raise UnknownSymbol(f"symbol {symbol!r} is ambiguous{where}: {', '.join(matches)}")
    shown = ", ".join(sorted(known)[:20]) + (" ..." if len(known) > 20 else "")
    raise UnknownSymbol(f"unknown symbol {symbol!r}{where} (has: {shown})")


def canonical_list(symbols: Iterable[str] | None) -> list[str] | None:
    """Canonical forms of user-given symbols (for selecting partitions), order kept."""
    if symbols is None:
        return None
    return list(dict.fromkeys(key(s) for s in symbols))
