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
    assert book.best_bid_ticks() == (bids[0] if bids else None)
    assert book.best_ask_ticks() == (asks[0] if asks else None)
    assert book.best_bid() == (ref.levels(0)[0] if bids else None)
    assert book.best_ask() == (ref.levels(1)[0] if asks else None)
    top = (ref.levels(0)[0][0] if bids else None, ref.levels(1)[0][0] if asks else None)
    assert book.top() == top and book.top() == top  # the second from the Decimal cache
    assert book.top_ticks() == (bids[0][0] if bids else None, asks[0][0] if asks else None)
    assert book.top_float() == tuple(None if x is None else float(x) for x in top)
    assert book.bids_ticks(3) == bids[:3] and book.asks_ticks(3) == asks[:3]
    assert book.levels_ticks(0, 5) == bids[:5] and book.levels_ticks(1, 5) == asks[:5]
    assert book.levels(0, 5) == ref.levels(0)[:5] and book.levels(1, 5) == ref.levels(1)[:5]
    assert book.bids_decimal() == ref.levels(0) == book.bids
    assert book.asks_decimal() == ref.levels(1) == book.asks
    assert book.bids_float() == [(float(p), float(a)) for p, a in ref.levels(0)]
    assert book.asks_float() == [(float(p), float(a)) for p, a in ref.levels(1)]
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
    assert b.top() == (Decimal("100.26"), Decimal("100.28")) and b.top_float() == (100.26, 100.28)
    assert b.bids[1] == (Decimal("100.25"), Decimal("0.5")) and b.bids_float()[1] == (100.25, 0.5)
    assert all(type(x) is Decimal for level in b.bids + b.asks for x in level)
    expected = (
        "100.28:0.00000004;100.30:0.00000003;"
        "100.26:0.00000002;100.25:0.50000000;100.24:0.00000001;"
    )
    assert b.mock_checksum() == zlib.crc32(expected.encode())
    b.apply(0, 10026, 0)
    assert b.best_bid_ticks() == (10025, 50_000_000) and b.top()[0] == Decimal("100.25")  # the cache follows the touch
    b.apply(0, 10025, 7)
    assert b.best_bid_ticks() == (10025, 7) and b.best_bid() == (Decimal("100.25"), Decimal("0.00000007"))
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
    assert c.best_bid_ticks() == (4, 1) and c.top() == (Decimal(4), Decimal(11))


def test_precision_zero_and_large_values() -> None:
    b = OrderBook("v", "s", 0, 18)
    b.apply(1, 123, 10**18)
    assert b.asks_decimal() == [(Decimal(123), Decimal(1))]
    assert b.asks_float() == [(123.0, 1.0)] and b.asks == b.asks_decimal()
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


# --------------------------------------------------------------------------- apply_rows

LAST, CLEAR = rb.FLAG_LAST, rb.FLAG_CLEAR


def columns(rows: list[tuple[int, int, int, int]], width: int = 8, pp: int = PP, ap: int = AP):
    """(side, price, amount, flags) rows -> pyarrow buffers (int64 or decimal128)."""
    sides = pa.array([r[0] for r in rows], pa.int8()).buffers()[1]
    flags = pa.array([r[3] for r in rows], pa.uint8()).buffers()[1]
    if width == 8:
        prices = pa.array([r[1] for r in rows], pa.int64()).buffers()[1]
        amounts = pa.array([r[2] for r in rows], pa.int64()).buffers()[1]
    else:
        prices = pa.array(
            [Decimal(r[1]).scaleb(-pp) for r in rows], pa.decimal128(38, pp)
        ).buffers()[1]
        amounts = pa.array(
            [Decimal(r[2]).scaleb(-ap) for r in rows], pa.decimal128(38, ap)
        ).buffers()[1]
    return sides, prices, amounts, flags


def test_apply_rows_messages_int64_and_decimal128() -> None:
    rows = [
        (0, 10025, 5, CLEAR),  # snapshot starts: clear
        (0, 10024, 6, 0),
        (1, 10027, 7, 0),
        (1, 10028, 8, LAST),
        (0, 10025, 0, 0),  # delta: delete best bid
        (1, 10026, 9, LAST),
        (1, 10099, 1, CLEAR | LAST),  # new snapshot replaces everything
    ]
    for width in (8, 16):
        b = OrderBook("mock", "BTC-USD", PP, AP)
        b.apply(0, 1, 1)  # stale level, removed by CLEAR
        cols = columns(rows, width)
        kw = dict(price_width=width, amount_width=width)
        assert b.apply_rows(*cols, 0, **kw) == 4
        assert b.bids_ticks() == [(10025, 5), (10024, 6)]
        assert b.asks_ticks() == [(10027, 7), (10028, 8)]
        assert b.apply_rows(*cols, 4, **kw) == 6
        assert b.bids_ticks() == [(10024, 6)]
        assert b.asks_ticks() == [(10026, 9), (10027, 7), (10028, 8)]
        assert b.apply_rows(*cols, 6, **kw) == 7
        assert b.bids_ticks() == [] and b.asks_ticks() == [(10099, 1)]


def test_apply_rows_mixed_widths_and_buffer_types() -> None:
    rows = [(0, 100, 1, 0), (1, 101, 2, 0), (0, 99, 3, LAST)]
    sides = bytes(r[0] for r in rows)
    flags = bytearray(r[3] for r in rows)
    prices = array.array("q", [r[1] for r in rows])
    amounts16 = b"".join(r[2].to_bytes(16, "little", signed=True) for r in rows)
    b = OrderBook("v", "s", 0, 0)
    assert b.apply_rows(memoryview(sides), prices, amounts16, flags, 0, 8, 16) == 3
    assert b.bids_ticks() == [(100, 1), (99, 3)] and b.asks_ticks() == [(101, 2)]
    # a memoryview of a wider array works too (read as raw bytes)
    b2 = OrderBook("v", "s", 0, 0)
    amounts = array.array("q", [r[2] for r in rows])
    assert b2.apply_rows(sides, memoryview(prices), memoryview(amounts), flags, 0) == 3
    assert b2.bids_ticks() == b.bids_ticks() and b2.asks_ticks() == b.asks_ticks()


def test_apply_rows_truncates_to_depth() -> None:
    rows = [(0, p, 1, 0) for p in range(10)] + [(1, 100 + p, 1, 0) for p in range(10)]
    rows[-1] = (1, 109, 1, LAST)
    b = OrderBook("v", "s", 0, 0, depth=3)
    assert b.apply_rows(*columns(rows), 0) == 20
    assert b.bids_ticks() == [(9, 1), (8, 1), (7, 1)]
    assert b.asks_ticks() == [(100, 1), (101, 1), (102, 1)]


def test_apply_rows_bad_input() -> None:
    good = [(0, 100, 1, 0), (1, 101, 2, LAST)]
    s, p, a, f = columns(good)
    b = OrderBook("v", "s", 0, 0)
    b.apply(0, 50, 5)
    before = (b.bids_ticks(), b.asks_ticks())

    def bad(*args, **kw) -> None:
        with pytest.raises(ValueError):
            b.apply_rows(*args, **kw)
        assert (b.bids_ticks(), b.asks_ticks()) == before  # untouched

    bad(s, p, a, f, 0, price_width=4)
    bad(s, p, a, f, 0, amount_width=32)
    bad(s, p, a, f, 0, price_width=16)  # prices buffer too short for int128
    bad(s, p.slice(0, 8), a, f, 0)  # short prices
    bad(s, p, a.slice(0, 15), f, 0)  # short amounts
    bad(s.slice(0, 1), p, a, f, 0)  # short sides
    bad(s, p, a, f, 2)  # start past the end
    bad(s, p, a, f, -1)
    bad(s, p, a, bytes([0, 0]), 0)  # no LAST row
    bad(s, p, a, b"", 0)
    bad(bytes([0, 2]), p, a, f, 0)  # bad side
    bad(bytes([0, 255]), p, a, f, 0)  # side -1
    neg = array.array("q", [1, -1])
    bad(s, p, neg, f, 0)  # negative amount
    huge = (2**63).to_bytes(16, "little", signed=True) * 2
    bad(s, huge, a, f, 0, price_width=16)  # decimal128 beyond int64
    bad(s, p, huge, f, 0, amount_width=16)
    with pytest.raises(TypeError):
        b.apply_rows([0, 1], p, a, f, 0)
    assert b.apply_rows(s, p, a, f, 0) == 2  # and the good call still works


# --------------------------------------------------------------------------- property tests

# Mostly a narrow band (updates collide, books cross, deletes of absent levels), and some
# prices thousands of ticks away, so the engine's window of 4096 ticks around the touch moves
# and levels go to and come back from the ordered ladder behind it.
price_st = st.one_of(
    st.integers(95, 110),
    st.integers(95, 110),
    st.integers(95, 110).map(lambda p: p + 6000),
    st.integers(0, 30_000),  # never negative: the checksums are of prices
)
row_st = st.tuples(
    st.integers(0, 1),  # side
    price_st,  # price ticks: narrow, so updates collide and books cross
    st.one_of(st.just(0), st.integers(1, 10**9)),  # amount lots, 0 = delete
    st.sampled_from([False] * 12 + [True]),  # CLEAR before this row (rare, also mid-message)
)
message_st = st.lists(row_st, min_size=1, max_size=8)


@given(
    messages=st.lists(message_st, min_size=1, max_size=12),
    depth=st.sampled_from([0, 0, 1, 3, 5]),
    width=st.sampled_from([8, 16]),
)
@settings(max_examples=150, deadline=None)
def test_property_against_reference(messages, depth, width) -> None:
    check_against_reference(messages, depth, width)


@st.composite
def drifting_messages(draw) -> list:
    """A market whose touch jumps by up to 9000 ticks now and then, deleting the levels it moves
    through (before or after the new levels arrive): the engine's window (4096 ticks) moves both
    ways and levels go to and come back from the ladder behind it."""
    centre = draw(st.integers(10**4, 10**6))  # prices stay positive (checksums are of prices)
    live = ({}, {})  # side -> prices the market placed (some may be truncated away: absent deletes)
    messages = []
    for _ in range(draw(st.integers(1, 40))):
        msg = []
        swept = []
        if draw(st.integers(0, 3)) == 0:
            centre = max(100, centre + draw(st.integers(-9000, 9000)))
            swept = [(0, p, 0, False) for p in sorted(live[0]) if p >= centre]
            swept += [(1, p, 0, False) for p in sorted(live[1]) if p <= centre]
        sweep_first = draw(st.booleans())
        if sweep_first:
            msg += swept
        for _ in range(draw(st.integers(1, 10))):
            side = draw(st.integers(0, 1))
            distance = 1 + draw(st.integers(0, 60))
            price = centre - distance if side == 0 else centre + distance
            amount = draw(st.one_of(st.just(0), st.integers(1, 10**9)))
            msg.append((side, price, amount, draw(st.sampled_from([False] * 30 + [True]))))
        if not sweep_first:
            msg += swept
        for side, price, amount, clear in msg:
            if clear:
                live[0].clear()
                live[1].clear()
            if amount:
                live[side][price] = amount
            else:
                live[side].pop(price, None)
        messages.append(msg)
    return messages


@given(messages=drifting_messages(), depth=st.sampled_from([0, 0, 3, 20]), width=st.sampled_from([8, 16]))
@settings(max_examples=150, deadline=None)
def test_property_drifting_touch_against_reference(messages, depth, width) -> None:
    check_against_reference(messages, depth, width)


def check_against_reference(messages, depth, width) -> None:
    pp, ap = 1, 8
    ref = RefBook(pp, ap, depth)
    via_apply = OrderBook("mock", "X", pp, ap, depth=depth)
    via_rows = OrderBook("mock", "X", pp, ap, depth=depth)
    rows = []
    for msg in messages:
        for i, (side, price, amount, clear) in enumerate(msg):
            flag = (LAST if i == len(msg) - 1 else 0) | (CLEAR if clear else 0)
            rows.append((side, price, amount, flag))
    cols = columns(rows, width, pp, ap)
    pos = 0
    for msg in messages:
        for side, price, amount, clear in msg:
            if clear:
                ref.clear()
                via_apply.clear()
            ref.apply(side, price, amount)
            via_apply.apply(side, price, amount)
        ref.truncate()
        via_apply.truncate()
        pos = via_rows.apply_rows(*cols, pos, price_width=width, amount_width=width)
        assert_same(via_apply, ref)
        assert_same(via_rows, ref)
        snapshot = via_rows.copy()
        assert snapshot.mock_checksum() == via_rows.mock_checksum()
    assert pos == len(rows)


@given(
    st.lists(st.tuples(st.integers(0, 10**7), st.integers(1, 10**10)), max_size=25),
    st.lists(st.tuples(st.integers(0, 10**7), st.integers(1, 10**10)), max_size=25),
    st.integers(0, 6),
    st.integers(0, 10),
)
@settings(max_examples=150, deadline=None)
def test_property_kraken_wire_strings_match_book(asks, bids, pp, ap) -> None:
    """The module function on padded wire strings equals the book method."""
    book = OrderBook("kraken", "X", pp, ap)
    wire_asks, wire_bids = {}, {}
    for side, levels, wire in ((1, asks, wire_asks), (0, bids, wire_bids)):
        for p, q in levels:
            book.apply(side, p, q)
            wire[p] = (format_fixed(p, pp), format_fixed(q, ap))
    assert kraken_checksum(list(wire_asks.values()), list(wire_bids.values())) == (
        book.kraken_checksum()
    )


# -- BookRows / apply_wire_message / journal_encode ------------------------------------------


def _ref_rows(levels, ts, local_ts, rec_id, first_seq, last_seq, checksum, snapshot):
    """What Normalizer.emit_levels wrote before the Rust path (the reference)."""
    if not levels:
        if not snapshot:
            return []
        levels = [(0, 0, 0)]
    n = len(levels)
    out = []
    for i, (s, p, a) in enumerate(levels):
        flags = (rb.FLAG_CLEAR if snapshot and i == 0 else 0) | (rb.FLAG_LAST if i == n - 1 else 0)
        out.append((ts, local_ts, snapshot, "bid" if s == 0 else "ask", p, a, first_seq, last_seq,
                    checksum if i == n - 1 else None, flags, rec_id))
    return out


def _wire(levels, pp, ap):
    return [[format_fixed(p, pp), format_fixed(a, ap)] for p, a in levels]


def test_apply_wire_message_rows_and_checksum() -> None:
    pp, ap = 2, 8
    ref = OrderBook("mock", "BTC-USD", pp, ap, depth=3)
    book = OrderBook("mock", "BTC-USD", pp, ap, depth=3, checksum="mock")
    rows = rb.BookRows()
    expected = []
    messages = [
        (True, [(10000, 5), (9990, 7), (9980, 1), (9970, 2)], [(10010, 3), (10020, 4)]),
        (False, [(10000, 0), (10005, 9)], []),
        (False, [], [(10010, 0), (10015, 1)]),
        (False, [], []),  # empty delta: no rows
        (True, [], []),  # empty snapshot: one CLEAR|LAST bid row at 0/0
        (False, [(100, 1)], [(200, 2)]),
    ]
    for i, (snap, bids, asks) in enumerate(messages):
        if snap:
            ref.clear()
        levels = [(0, p, a) for p, a in bids] + [(1, p, a) for p, a in asks]
        for s, p, a in levels:
            ref.apply(s, p, a)
        ref.truncate()
        cs = ref.mock_checksum()
        assert book.apply_wire_message(_wire(bids, pp, ap), _wire(asks, pp, ap), rows, 1000 + i, 2000 + i, 7 + i, i, i, cs, snap)
        expected += _ref_rows(levels, 1000 + i, 2000 + i, 7 + i, i, i, cs, snap)
        assert book.bids_ticks() == ref.bids_ticks() and book.asks_ticks() == ref.asks_ticks()
        assert rows.rows() == expected
        assert len(rows) == len(expected)
        if levels or snap:
            assert (book.timestamp, book.local_timestamp, book.seq) == (1000 + i, 2000 + i, i)
    # checksum None: applied and emitted without a check; the LAST row's checksum is null
    assert book.apply_wire_message([["1.00", "1"]], [], rows, 1, 2, 3, 4, 5, None, False)
    assert rows.rows()[-1][8] is None and book.seq == 5
    # mismatch: applied, nothing emitted, metadata untouched
    n = len(rows)
    assert not book.apply_wire_message([["1.01", "1"]], [], rows, 9, 9, 9, 9, 9, book.mock_checksum() ^ 1, False)
    assert len(rows) == n and book.seq == 5 and book.best_bid_ticks() == (101, 100000000)
    assert not book.apply_wire_message([], [], rows, 9, 9, 9, 9, 9, "nope", False)
    # kraken checksum kind (chosen when the book is built)
    kbook = OrderBook("kraken", "BTC-USD", pp, ap, depth=3, checksum="kraken")
    assert kbook.apply_wire_message([], [], rows, 9, 9, 9, 9, 10, zlib.crc32(b""), True) is True
    with pytest.raises(ValueError):
        OrderBook("v", "s", pp, ap, checksum="crc64")


def test_apply_wire_message_bad_values_leave_book_unchanged() -> None:
    book = OrderBook("mock", "X", 2, 8)
    rows = rb.BookRows()
    assert book.apply_wire_message([["100.00", "1.00000000"]], [["101.00", "2"]], rows, 1, 1, 1, 1, 1, None, False)
    before = (book.bids_ticks(), book.asks_ticks(), len(rows))
    for bids, asks, exc in [
        ([["100.001", "1"]], [], ValueError),  # too precise
        ([["99.00", "1"]], [["abc", "1"]], ValueError),
        ([["99.00", "-1"]], [], ValueError),  # negative amount
        ([["99.00", "1", "x"]], [], ValueError),
        ([["99.00"]], [], ValueError),
        ([["99.00", 1]], [], TypeError),
        ([5], [], TypeError),
        (None, [], TypeError),
    ]:
        with pytest.raises(exc):
            book.apply_wire_message(bids, asks, rows, 2, 2, 2, 2, 2, None, True)
        assert (book.bids_ticks(), book.asks_ticks(), len(rows)) == before
    # tuples and bytes work like lists and str
    assert book.apply_wire_message((("99.5", b"3"),), [], rows, 3, 3, 3, 3, 3, None, False)
    assert book.bids_ticks()[1] == (9950, 300000000)


def test_book_columns_table_matches_reference() -> None:
    from lab.datasets import schema as S
    from lab.datasets.store import BookColumns, decimal_array

    cols = BookColumns()
    cols.push_levels([(0, 10000, 5), (1, 10010, 3)], 10, 11, 1, 5, 5, 123, True)
    cols.push_levels([], 12, 13, 2, 6, 6, None, False)  # nothing
    cols.push_levels([(1, 10020, 0)], 14, 15, 3, 6, 6, 2**32 - 1, False)
    cols.push_levels([], 16, 17, 4, 7, 7, None, True)
    ref = [r for args in [
        ([(0, 10000, 5), (1, 10010, 3)], 10, 11, 1, 5, 5, 123, True),
        ([(1, 10020, 0)], 14, 15, 3, 6, 6, 2**32 - 1, False),
        ([], 16, 17, 4, 7, 7, None, True),
    ] for r in _ref_rows(*args)]
    assert cols.rows() == ref
    table = cols.to_table(2, 8, "BTC-USD")
    c = list(zip(*ref))
    want = pa.table(
        [
            pa.array(c[0], pa.int64()).cast(S.TS),
            pa.array(c[1], pa.int64()).cast(S.TS),
            pa.array(c[2], pa.bool_()),
            pa.array(c[3], pa.string()),
            decimal_array(c[4], 2),
            decimal_array(c[5], 8),
            pa.array(c[6], pa.int64()),
            pa.array(c[7], pa.int64()),
            pa.array(c[8], pa.uint32()),
            pa.array(c[9], pa.uint8()),
            pa.array(c[10], pa.int64()),
            pa.array(["BTC-USD"] * len(ref), pa.string()),
        ],
        schema=S.book_schema(2, 8),
    )
    table.validate(full=True)
    assert table.equals(want)
    for name in table.column_names:
        assert table.column(name).cast(pa.int64() if name.endswith('timestamp') else want.schema.field(name).type).equals(want.column(name).cast(pa.int64() if name.endswith('timestamp') else want.schema.field(name).type))
    assert cols.local_timestamp.tolist() == list(c[1])
    empty = BookColumns()
    assert len(empty) == 0 and empty.to_table(2, 8, "X").num_rows == 0


def test_journal_encode_matches_python() -> None:
    from lab.datasets.journal import RawRow, decode_body, encode
    from oracles.journal import encode_py

    for row in [
        RawRow(1, 2, 3, 4, "recv", "ws", "BTC-USD", b'{"a":1}'),
        RawRow(-1, 2**62, -5, 0, "rest", "/api/depth?symbol=X", None, b""),
        RawRow(9, 9, 0, 9, "note", "", "", bytes(range(256)) * 10),
    ]:
        data = encode(row)
        assert data == encode_py(row)
        assert decode_body(data[8:]) == row
