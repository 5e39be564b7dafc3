"""A book's checksum algorithm is chosen once, when the book is built (`OrderBook(...,
checksum=NAME)`), and `apply_wire_message` / `book.checksum()` use it: the venue normalizers
build their books with their venue's algorithm."""

from __future__ import annotations

import copy
import zlib

import pytest

from lab import rust_book as rb
from lab.core.model import Instrument, RawRow
from lab.rust_book import OrderBook, format_fixed
from lab.venues.kraken import feed as K
from lab.venues.mock import feed as M

PP, AP = 2, 8


def _filled(checksum=None, depth=0) -> OrderBook:
    b = OrderBook("v", "s", PP, AP, depth, checksum=checksum)
    for k in range(15):
        b.apply(0, 10_000 - 3 * k, 100_000_000 + k)
        b.apply(1, 10_001 + 2 * k, 5 * k + 1)
    return b


def test_default_is_none() -> None:
    b = _filled()
    assert b.checksum_kind == "none" and b.checksum() is None
    assert OrderBook("v", "s", PP, AP, checksum="none").checksum() is None
    # a message that carries a checksum cannot be verified: an error, nothing applied
    rows = rb.BookRows()
    before = (b.bids_ticks(), b.asks_ticks())
    with pytest.raises(ValueError, match="built without one"):
        b.apply_wire_message([["1.00", "1"]], [], rows, 1, 1, 1, 1, 1, 123, False)
    assert (b.bids_ticks(), b.asks_ticks(), len(rows)) == (*before, 0)
    # without a checksum it applies
    assert b.apply_wire_message([["1.00", "1"]], [], rows, 1, 1, 1, 1, 1, None, False) and len(rows) == 1


def test_kinds_compute_their_algorithm() -> None:
    mock, kraken = _filled("mock", depth=12), _filled("kraken", depth=12)
    mock.truncate(), kraken.truncate()
    assert (mock.checksum_kind, kraken.checksum_kind) == ("mock", "kraken")
    assert mock.checksum() == mock.mock_checksum() != mock.kraken_checksum()
    assert kraken.checksum() == kraken.kraken_checksum() != kraken.mock_checksum()
    # the kraken rule by hand: top 10 asks ascending then bids descending, mantissa digits
    text = "".join(f"{p}{a}" for p, a in kraken.asks_ticks(10) + kraken.bids_ticks(10))
    assert kraken.checksum() == zlib.crc32(text.encode())
    # copies keep the kind
    for c in (mock.copy(), copy.copy(kraken), copy.deepcopy(kraken)):
        assert c.checksum() == (mock if c.checksum_kind == "mock" else kraken).checksum()


def test_apply_wire_message_uses_the_books_kind() -> None:
    levels = [(10_000, 5), (9_990, 7)]
    wire = [[format_fixed(p, PP), format_fixed(a, AP)] for p, a in levels]
    ref = OrderBook("v", "s", PP, AP)
    for p, a in levels:
        ref.apply(0, p, a)
    for kind, good in (("mock", ref.mock_checksum()), ("kraken", ref.kraken_checksum())):
        b, rows = OrderBook("v", "s", PP, AP, checksum=kind), rb.BookRows()
        assert b.apply_wire_message(wire, [], rows, 1, 1, 1, 1, 1, good, True)
        assert rows.rows()[-1][8] == good
        other = ref.kraken_checksum() if kind == "mock" else ref.mock_checksum()
        assert not b.apply_wire_message(wire, [], rows, 2, 2, 2, 2, 2, other, True)


def test_bad_names() -> None:
    with pytest.raises(ValueError, match=r"unknown checksum 'crc64'|unknown checksum \"crc64\""):
        OrderBook("v", "s", PP, AP, checksum="crc64")
    with pytest.raises(TypeError):
        OrderBook("v", "s", PP, AP, 0, "mock")  # keyword only
    with pytest.raises(TypeError):
        OrderBook("v", "s", PP, AP, checksum=3)


def test_normalizers_build_books_with_their_venues_kind() -> None:
    row = RawRow(1, 1, 0, 0, "meta", "instruments", None, b"")
    for norm, kind in ((M.MockNormalizer(), "mock"), (K.KrakenNormalizer(), "kraken")):
        norm.add_instrument(Instrument("X/Y", "X-Y", "X", "Y", PP, AP), row)
        book = norm.books["X/Y"]
        assert book.checksum_kind == kind
        assert book.checksum() == (book.mock_checksum() if kind == "mock" else book.kraken_checksum())
