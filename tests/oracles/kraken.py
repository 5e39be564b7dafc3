"""Reference Kraken book checksum from wire strings (docs/PROTOCOLS.md, v1 and v2 rule): what
`lab.rust_book.kraken_checksum`, `OrderBook.kraken_checksum` and `kraken_wire_checksum` compute."""

from __future__ import annotations

import zlib


def wire_checksum(asks: list, bids: list) -> int:
    """CRC32 of the top 10 asks (ascending) then top 10 bids (descending) from exact wire strings:
    '.' removed, leading zeros stripped (PROTOCOLS.md, v1 and v2 rule). Levels are best first."""
    parts = []
    for level in list(asks)[:10] + list(bids)[:10]:
        parts.append(level[0].replace(".", "").lstrip("0"))
        parts.append(level[1].replace(".", "").lstrip("0"))
    return zlib.crc32("".join(parts).encode())
