"""Tests of the Rust book engine (lab.rust_book) against a simple Decimal reference model."""

from __future__ import annotations

import array
import copy
import zlib
from decimal import Decimal

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab import rust_book as rb
from lab.rust_book import OrderBook, format_fixed, kraken_checksum, parse_fixed

PP, AP = 2, 8  # mock BTC-USD precisions


# --------------------------------------------------------------------------- reference model


class RefBook:
    """Dict-of-Decimals L2 book: the obviously correct model."""

    def __init__(self, pp: int, ap: int, depth: int = 0) -> None:
        self.pp, self.ap, self.depth = pp, ap, depth
        self.sides: list[dict[Decimal, Decimal]] = [{}, {}]

    def clear(self) -> None:
        self.sides = [{}, {}]

    def apply(self, side: int, price_ticks: int, amount_lots: int) -> None:
        p = Decimal(price_ticks).scaleb(-self.pp)
        a = Decimal(amount_lots).scaleb(-self.ap)
        if amount_lots == 0:
            self.sides[side].pop(p, None)
        else:
            self.sides[side][p] = a

    def levels(self, side: int) -> list[tuple[Decimal, Decimal]]:
        return sorted(self.sides[side].items(), reverse=(side == 0))

    def truncate(self) -> None:
        if self.depth:
            for s in (0, 1):
                self.sides[s] = dict(self.levels(s)[: self.depth])

    def ticks(self, side: int) -> list[tuple[int, int]]:
        return [
            (int(p.scaleb(self.pp)), int(a.scaleb(self.ap))) for p, a in self.levels(side)
        ]

    def text(self, v: Decimal, prec: int) -> str:
        return f"{v:.{prec}f}"

    def mock_checksum(self) -> int:
        s = "".join(
            f"{self.text(p, self.pp)}:{self.text(a, self.ap)};"
            for p, a in self.levels(1) + self.levels(0)
        )
        return zlib.crc32(s.encode())

    def kraken_checksum(self) -> int:
        def k(v: Decimal, prec: int) -> str:
            return self.text(v, prec).replace(".", "").lstrip("0")

        s = "".join(
            k(p, self.pp) + k(a, self.ap) for p, a in self.levels(1)[:10] + self.levels(0)[:10]
        )
        return zlib.crc32(s.encode())


def assert_same(book: OrderBook, ref: RefBook) -> None:
    bids, asks = ref.ticks(0), ref.ticks(1)
    assert book.bids_ticks() == bids
    assert book.asks_ticks() == asks
    assert book.bid_count == len(bids) and book.ask_count == len(asks)
    assert book.best_bid() == (bids[0] if bids else None)
    assert book.best_ask() == (asks[0] if asks else None)
    assert book.top() == (
        float(ref.levels(0)[0][0]) if bids else None,
        float(ref.levels(1)[0][0]) if asks else None,
    )
    assert book.bids_ticks(3) == bids[:3] and book.asks_ticks(3) == asks[:3]
    assert book.levels(0, 5) == bids[:5] and book.levels(1, 5) == asks[:5]
    assert book.bids_decimal() == ref.levels(0)
    assert book.asks_decimal() == ref.levels(1)
    assert book.bids == [(float(p), float(a)) for p, a in ref.levels(0)]
    assert book.asks == [(float(p), float(a)) for p, a in ref.levels(1)]
    assert book.crossed() == bool(bids and asks and bids[0][0] >= asks[0][0])
    assert book.mock_checksum() == ref.mock_checksum()
    assert book.kraken_checksum() == ref.kraken_checksum()


# --------------------------------------------------------------------------- basics


def test_constructor_and_metadata() -> None:
    b = OrderBook("mock", "BTC-USD", 2, 8)
    assert (b.venue, b.symbol, b.price_precision, b.amount_precision, b.depth) == (
        "mock",
        "BTC-USD",
        2,
        8,
        0,
    )
    assert (b.timestamp, b.local_timestamp, b.seq, b.synced) == (0, 0, 0, False)
    b.timestamp, b.local_timestamp, b.seq, b.synced = 5, 6, 7, True
    b.venue, b.symbol = "kraken", "XBT/USD"
    assert (b.venue, b.symbol, b.timestamp, b.local_timestamp, b.seq, b.synced) == (
        "kraken",
        "XBT/USD",
        5,
        6,
        7,
        True,
    )
    with pytest.raises(AttributeError):
        b.depth = 3  # type: ignore[misc]
    with pytest.raises(AttributeError):
        b.price_precision = 3  # type: ignore[misc]
    assert OrderBook("v", "s", 0, 0, depth=10).depth == 10
    for bad in ((-1, 8, 0), (2, 19, 0), (2, 8, -1)):
        with pytest.raises(ValueError):
            OrderBook("v", "s", *bad)


def test_empty_book() -> None:
    b = OrderBook("mock", "BTC-USD", PP, AP)
    assert b.top() == (None, None)
    assert b.best_bid() is None and b.best_ask() is None
    assert b.bids == [] and b.asks == []
    assert not b.crossed()
    assert b.mock_checksum() == zlib.crc32(b"")
    assert b.kraken_checksum() == zlib.crc32(b"")
    assert "BTC-USD" in repr(b)


def test_apply_order_delete_and_checksum() -> None:
    b = OrderBook("mock", "BTC-USD", PP, AP)
    b.apply(0, 10025, 50_000_000)
    b.apply(0, 10024, 1)
    b.apply(0, 10026, 2)
    b.apply(1, 10030, 3)
    b.apply(1, 10028, 4)
    b.apply(1, 10029, 0)  # delete of an absent level: no-op
    assert b.bids_ticks() == [(10026, 2), (10025, 50_000_000), (10024, 1)]
    assert b.asks_ticks() == [(10028, 4), (10030, 3)]
    assert b.top() == (100.26, 100.28)
    assert b.bids[1] == (100.25, 0.5)
    expected = (
        "100.28:0.00000004;100.30:0.00000003;"
        "100.26:0.00000002;100.25:0.50000000;100.24:0.00000001;"
    )
    assert b.mock_checksum() == zlib.crc32(expected.encode())
    b.apply(0, 10026, 0)
    assert b.best_bid() == (10025, 50_000_000)
    b.apply(0, 10025, 7)
    assert b.best_bid() == (10025, 7)
    assert b.bids_decimal(1) == [(Decimal("100.25"), Decimal("0.00000007"))]
    assert str(b.bids_decimal()[0][0]) == "100.25"
    assert b.asks_decimal()[0][1].as_tuple() == (0, (4,), -8)  # exact, at precision
    with pytest.raises(ValueError):
        b.apply(2, 1, 1)
    with pytest.raises(ValueError):
        b.apply(0, 1, -1)
    with pytest.raises(ValueError):
        b.levels(3, 1)


def test_crossed_truncate_clear_copy() -> None:
    b = OrderBook("mock", "X", 0, 0, depth=2)
    for p in (1, 2, 3, 4):
        b.apply(0, p, 1)
        b.apply(1, p + 10, 1)
    assert b.bid_count == 4  # apply does not truncate
    b.truncate()
    assert b.bids_ticks() == [(4, 1), (3, 1)]
    assert b.asks_ticks() == [(11, 1), (12, 1)]
    assert not b.crossed()
    b.seq = 9
    c = b.copy()
    d = copy.copy(b)
    e = copy.deepcopy(b)
    b.apply(0, 11, 5)
    assert b.crossed()
    for x in (c, d, e):
        assert not x.crossed() and x.seq == 9 and x.depth == 2
        assert x.bids_ticks() == [(4, 1), (3, 1)]
    b.clear()
    assert b.top() == (None, None) and b.seq == 9
    assert c.best_bid() == (4, 1)


def test_precision_zero_and_large_values() -> None:
    b = OrderBook("v", "s", 0, 18)
    b.apply(1, 123, 10**18)
    assert b.asks_decimal() == [(Decimal(123), Decimal(1))]
    assert b.asks == [(123.0, 1.0)]
    assert b.mock_checksum() == zlib.crc32(b"123:1.000000000000000000;")


# --------------------------------------------------------------------------- parse / format


@pytest.mark.parametrize(
    "s,p,v",
    [
        ("100.25", 2, 10025),
        ("0.50000000", 8, 50_000_000),
        ("0.5", 8, 50_000_000),
        ("7", 3, 7000),
        ("1.2300", 2, 123),
        ("-0.05", 2, -5),
        ("+3.1", 1, 31),
        (".5", 1, 5),
        ("5.", 1, 50),
        ("00012.10", 2, 1210),
        ("1e-8", 8, 1),
        ("1.5E2", 0, 150),
        ("9223372036854775807", 0, 2**63 - 1),
        ("-9223372036854775808", 0, -(2**63)),
        ("92233720368.54775807", 8, 2**63 - 1),
        ("0.000000000000000000000", 2, 0),
    ],
)
def test_parse_fixed(s: str, p: int, v: int) -> None:
    assert parse_fixed(s, p) == v
    assert parse_fixed(s.encode(), p) == v


@pytest.mark.parametrize(
    "s,p",
    [
        ("1.231", 2),
        ("0.000000001", 8),
        ("", 2),
        (".", 2),
        ("-", 2),
        ("abc", 2),
        ("1.2.3", 2),
        ("1,5", 2),
        (" 1", 2),
        ("1 ", 2),
        ("1e", 2),
        ("nan", 2),
        ("inf", 2),
        ("9223372036854775808", 0),
        ("92233720368.54775808", 8),
        ("100000000000", 8),
        ("1e30", 0),
        ("1", 19),
        ("1", -1),
    ],
)
def test_parse_fixed_rejects(s: str, p: int) -> None:
    with pytest.raises(ValueError):
        parse_fixed(s, p)


def test_format_fixed() -> None:
    assert format_fixed(10025, 2) == "100.25"
    assert format_fixed(50_000_000, 8) == "0.50000000"
    assert format_fixed(-5, 2) == "-0.05"
    assert format_fixed(0, 3) == "0.000"
    assert format_fixed(42, 0) == "42"
    assert format_fixed(-(2**63), 18) == "-9.223372036854775808"
    with pytest.raises(ValueError):
        format_fixed(1, 19)


@given(st.integers(-(2**63), 2**63 - 1), st.integers(0, 18))
@settings(max_examples=300, deadline=None)
def test_format_parse_roundtrip(v: int, p: int) -> None:
    s = format_fixed(v, p)
    assert Decimal(s) == Decimal(v).scaleb(-p)
    assert parse_fixed(s, p) == v


# --------------------------------------------------------------------------- Kraken vectors

VECTOR_A_ASKS = [
    "0.05005", "0.05010", "0.05015", "0.05020", "0.05025",
    "0.05030", "0.05035", "0.05040", "0.05045", "0.05050",
]  # fmt: skip
VECTOR_A_BIDS = [
    "0.05000", "0.04995", "0.04990", "0.04980", "0.04975",
    "0.04970", "0.04965", "0.04960", "0.04955", "0.04950",
]  # fmt: skip
VECTOR_D_ASKS = [
    ("45285.2", "0.00100000"), ("45286.4", "1.54571953"), ("45286.6", "1.54571109"),
    ("45289.6", "1.54560911"), ("45290.2", "0.15890660"), ("45291.8", "1.54553491"),
    ("45294.7", "0.04454749"), ("45296.1", "0.35380000"), ("45297.5", "0.09945542"),
    ("45299.5", "0.18772827"),
]  # fmt: skip
VECTOR_D_BIDS = [
    ("45283.5", "0.10000000"), ("45283.4", "1.54582015"), ("45282.1", "0.10000000"),
    ("45281.0", "0.10000000"), ("45280.3", "1.54592586"), ("45279.0", "0.07990000"),
    ("45277.6", "0.03310103"), ("45277.5", "0.30000000"), ("45277.3", "1.54602737"),
    ("45276.6", "0.15445238"),
]  # fmt: skip


def test_kraken_vector_a() -> None:
    asks = [(p, "0.00000500") for p in VECTOR_A_ASKS]
    bids = [(p, "0.00000500") for p in VECTOR_A_BIDS]
    assert kraken_checksum(asks, bids) == 974947235
    # any order in, v1 style [price, volume, timestamp] triples, extra deeper levels ignored
    asks3 = [[p, q, "1534614248.123678"] for p, q in reversed(asks)] + [["0.06000", "1.0", "1"]]
    bids3 = [[p, q, "1534614248.123678"] for p, q in bids[::2] + bids[1::2]]
    bids3.append(["0.04000", "1.0", "1"])
    assert kraken_checksum(asks3, bids3) == 974947235
    # the book method agrees
    b = OrderBook("kraken", "PAIR", 5, 8, depth=10)
    for p, q in asks:
        b.apply(1, parse_fixed(p, 5), parse_fixed(q, 8))
    for p, q in bids:
        b.apply(0, parse_fixed(p, 5), parse_fixed(q, 8))
    assert b.kraken_checksum() == 974947235


def test_kraken_vector_d() -> None:
    assert kraken_checksum(VECTOR_D_ASKS, VECTOR_D_BIDS) == 3310070434
    assert kraken_checksum(VECTOR_D_ASKS[::-1], VECTOR_D_BIDS[::-1]) == 3310070434
    decimals = [(Decimal(p), Decimal(q)) for p, q in VECTOR_D_ASKS]
    assert kraken_checksum(decimals, VECTOR_D_BIDS) == 3310070434
    b = OrderBook("kraken", "BTC/USD", 1, 8, depth=10)
    for p, q in VECTOR_D_BIDS:
        b.apply(0, parse_fixed(p, 1), parse_fixed(q, 8))
    for p, q in VECTOR_D_ASKS:
        b.apply(1, parse_fixed(p, 1), parse_fixed(q, 8))
    assert b.kraken_checksum() == 3310070434


def test_kraken_checksum_numeric_sort_and_errors() -> None:
    # numeric, not lexicographic, ordering: "9.5" < "10.0"
    asks = [("10.0", "1.0"), ("9.5", "1.0")]
    assert kraken_checksum(asks, []) == zlib.crc32(b"951010010")
    assert kraken_checksum([], []) == zlib.crc32(b"")
    with pytest.raises(ValueError):
        kraken_checksum([("1.0.0", "1")], [])
    with pytest.raises(ValueError):
        kraken_checksum([("-1", "1")], [])
    with pytest.raises(TypeError):
        kraken_checksum([(1.5, "1")], [])
