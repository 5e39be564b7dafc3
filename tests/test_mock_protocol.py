"""The mock wire protocol (docs/ARCHITECTURE.md): golden frames, checksum, round trips."""
from __future__ import annotations

import zlib

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.venues.mock import protocol as P
from lab.venues.mock.market import Market


# ----------------------------------------------------------------------------- fixed point

@pytest.mark.parametrize(
    "value,precision,text",
    [
        (10025, 2, "100.25"),
        (50000000, 8, "0.50000000"),
        (5, 8, "0.00000005"),
        (0, 8, "0.00000000"),
        (0, 0, "0"),
        (7, 0, "7"),
        (-10025, 2, "-100.25"),
        (-5, 2, "-0.05"),
        (123456789012345678, 8, "1234567890.12345678"),
    ],
)
def test_format_and_parse_fixed(value, precision, text):
    assert P.format_fixed(value, precision) == text
    assert P.parse_fixed(text, precision) == value


def test_parse_fixed_fewer_and_zero_extra_decimals():
    assert P.parse_fixed("100.2", 2) == 10020
    assert P.parse_fixed("100", 2) == 10000
    assert P.parse_fixed("100.250000", 2) == 10025
    assert P.parse_fixed("0.5", 8) == 50000000
    assert P.parse_fixed("-0.00", 2) == 0


@pytest.mark.parametrize(
    "text,precision", [("100.251", 2), ("0.000000001", 8), ("1.0000000001", 8), ("-1.001", 2), ("1.5", 0)],
)
def test_parse_fixed_rejects_digits_beyond_precision(text, precision):
    with pytest.raises(ValueError, match="decimals"):
        P.parse_fixed(text, precision)


@pytest.mark.parametrize(
    "text", ["", "abc", "1e5", "1.", ".5", " 1.0", "1.0 ", "+1", "1,0", "nan", "inf", "١٢", "--1", "1.2.3"],
)
def test_parse_fixed_rejects_non_decimals(text):
    with pytest.raises(ValueError):
        P.parse_fixed(text, 8)


def test_parse_fixed_rejects_non_strings():
    with pytest.raises(ValueError):
        P.parse_fixed(1.5, 2)  # type: ignore[arg-type]


@given(st.integers(min_value=-(10**18), max_value=10**18), st.integers(min_value=0, max_value=18))
def test_fixed_round_trip(value, precision):
    text = P.format_fixed(value, precision)
    assert P.parse_fixed(text, precision) == value
    if precision:
        assert len(text.split(".")[1]) == precision


@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=1, max_value=8),
       st.integers(min_value=1, max_value=9))
def test_parse_fixed_never_rounds(value, precision, extra_digit):
    text = P.format_fixed(value, precision) + str(extra_digit)
    with pytest.raises(ValueError):
        P.parse_fixed(text, precision)


# ----------------------------------------------------------------------------- checksum

def test_checksum_of_a_small_book_by_hand():
    bids = [(10025, 50000000), (10024, 100000000)]  # 100.25 x 0.5, 100.24 x 1
    asks = [(10030, 200000000), (10026, 25000000)]  # deliberately unsorted
    # asks ascending, then bids descending, each "<price>:<amount>;" at fixed precision
    text = "100.26:0.25000000;100.30:2.00000000;100.25:0.50000000;100.24:1.00000000;"
    assert zlib.crc32(text.encode()) == 794008460
    assert P.mock_checksum(bids, asks, 2, 8) == 794008460
    assert P.mock_checksum(dict(bids), dict(asks), 2, 8) == 794008460
    # zero amounts are not levels
    assert P.mock_checksum(bids + [(10000, 0)], asks, 2, 8) == 794008460


def test_checksum_edge_cases():
    assert P.mock_checksum([], [], 2, 8) == 0
    assert P.mock_checksum([(15, 100)], [], 1, 5) == zlib.crc32(b"1.5:0.00100;")
    assert P.mock_checksum([], [(15, 1)], 1, 3) == 908794411  # "1.5:0.001;"


# ----------------------------------------------------------------------------- golden frames

NS = 1700000000123456789

GOLDEN = [
    (
        b'{"instruments":[{"symbol":"BTC-USD","base":"BTC","quote":"USD","price_precision":2,"amount_precision":8}]}',
        P.Instruments((P.Instrument("BTC-USD", "BTC", "USD", 2, 8),)),
    ),
    (
        b'{"symbol":"BTC-USD","seq":1234,"timestamp":1700000000123456789,"bids":[["100.25","0.50000000"],'
        b'["100.24","1.00000000"]],"asks":[["100.26","0.25000000"],["100.30","2.00000000"]],"checksum":794008460}',
        P.Depth("BTC-USD", 1234, NS, (("100.25", "0.50000000"), ("100.24", "1.00000000")),
                (("100.26", "0.25000000"), ("100.30", "2.00000000")), 794008460),
    ),
    (b'{"error":"unknown symbol: X"}', P.RestError("unknown symbol: X")),
    (b'{"error":"rate limit exceeded"}', P.RestError("rate limit exceeded")),
    (b'{"type":"hello","timestamp":1700000000123456789}', P.Hello(NS)),
    (
        b'{"op":"subscribe","symbols":["BTC-USD"],"channels":["book","trades"]}',
        P.Subscribe(("BTC-USD",), ("book", "trades")),
    ),
    (
        b'{"type":"subscribed","symbols":["BTC-USD"],"channels":["book","trades"]}',
        P.Subscribed(("BTC-USD",), ("book", "trades")),
    ),
    (b'{"type":"error","message":"unknown symbol: X"}', P.Error("unknown symbol: X")),
    (
        b'{"type":"book","symbol":"BTC-USD","seq":1235,"timestamp":1700000000123456789,'
        b'"bids":[["100.25","0.50000000"]],"asks":[],"checksum":3735928559}',
        P.BookDelta("BTC-USD", 1235, NS, (("100.25", "0.50000000"),), (), 3735928559),
    ),
    (
        b'{"type":"book","symbol":"BTC-USD","seq":1236,"timestamp":1700000000123456789,'
        b'"bids":[],"asks":[["100.26","0.00000000"]],"checksum":0}',
        P.BookDelta("BTC-USD", 1236, NS, (), (("100.26", "0.00000000"),), 0),
    ),
    (
        b'{"type":"trade","symbol":"BTC-USD","id":77,"timestamp":1700000000123456789,'
        b'"side":"buy","price":"100.26","amount":"0.01000000"}',
        P.Trade("BTC-USD", 77, NS, "buy", "100.26", "0.01000000"),
    ),
    (b'{"type":"heartbeat","timestamp":1700000000123456789}', P.Heartbeat(NS)),
]


@pytest.mark.parametrize("frame,message", GOLDEN, ids=[m.__class__.__name__ for _, m in GOLDEN])
def test_golden_frames(frame, message):
    assert P.parse_message(frame) == message
    assert P.parse_message(frame.decode()) == message
    assert P.render_message(message) == frame


def test_golden_render_functions():
    assert P.render_hello(NS) == GOLDEN[4][0]
    assert P.render_subscribe(["BTC-USD"]) == GOLDEN[5][0]
    assert P.render_subscribed(["BTC-USD"], ["book", "trades"]) == GOLDEN[6][0]
    assert P.render_error("unknown symbol: X") == GOLDEN[7][0]
    assert P.render_rest_error("rate limit exceeded") == GOLDEN[3][0]
    assert P.render_heartbeat(NS) == GOLDEN[11][0]
    assert P.render_instruments([P.Instrument("BTC-USD", "BTC", "USD", 2, 8)]) == GOLDEN[0][0]
    assert P.render_book("BTC-USD", 1235, NS, [(10025, 50000000)], [], 3735928559, 2, 8) == GOLDEN[8][0]
    assert P.render_book("BTC-USD", 1236, NS, [], [(10026, 0)], 0, 2, 8) == GOLDEN[9][0]
    assert P.render_trade("BTC-USD", 77, NS, "buy", 10026, 1000000, 2, 8) == GOLDEN[10][0]
    bids = [(10025, 50000000), (10024, 100000000)]
    asks = [(10026, 25000000), (10030, 200000000)]
    cs = P.mock_checksum(bids, asks, 2, 8)
    assert P.render_depth("BTC-USD", 1234, NS, bids, asks, cs, 2, 8) == GOLDEN[1][0]


def test_parsed_levels_convert_exactly():
    msg = P.parse_message(GOLDEN[1][0])
    assert msg.bid_ints(2, 8) == [(10025, 50000000), (10024, 100000000)]
    assert msg.ask_ints(2, 8) == [(10026, 25000000), (10030, 200000000)]
    trade = P.parse_message(GOLDEN[10][0])
    assert (trade.price_ticks(2), trade.amount_lots(8)) == (10026, 1000000)
    # a wire value with more decimals than the instrument is the caller's error to report
    with pytest.raises(ValueError):
        trade.amount_lots(1)


# ----------------------------------------------------------------------------- malformed

MALFORMED = [
    b"",
    b"{",
    b'{"type":"book","symbol":"BTC-USD","seq":1',
    b"[]",
    b"42",
    b'"hello"',
    b"\xff\xfe",
    b'{"type":"nope","timestamp":1}',
    b'{"type":"hello"}',
    b'{"type":"hello","timestamp":"1"}',
    b'{"type":"hello","timestamp":1.5}',
    b'{"type":"hello","timestamp":true}',
    b'{"type":"hello","timestamp":-1}',
    b'{"type":"hello","timestamp":1,"extra":2}',
    b'{"type":"book","symbol":"BTC-USD","seq":1,"timestamp":1,"bids":[["1.0"]],"asks":[],"checksum":0}',
    b'{"type":"book","symbol":"BTC-USD","seq":1,"timestamp":1,"bids":[[1.0,"2"]],"asks":[],"checksum":0}',
    b'{"type":"book","symbol":"BTC-USD","seq":1,"timestamp":1,"bids":[["1e3","2"]],"asks":[],"checksum":0}',
    b'{"type":"book","symbol":"BTC-USD","seq":1,"timestamp":1,"bids":{},"asks":[],"checksum":0}',
    b'{"type":"book","symbol":"BTC-USD","seq":1,"timestamp":1,"bids":[],"asks":[],"checksum":4294967296}',
    b'{"type":"book","symbol":7,"seq":1,"timestamp":1,"bids":[],"asks":[],"checksum":0}',
    b'{"type":"trade","symbol":"BTC-USD","id":1,"timestamp":1,"side":"long","price":"1","amount":"1"}',
    b'{"type":"trade","symbol":"BTC-USD","id":1,"timestamp":1,"side":"buy","price":"1"}',
    b'{"type":"subscribed","symbols":"BTC-USD","channels":[]}',
    b'{"op":"unsubscribe","symbols":[],"channels":[]}',
    b'{"op":"subscribe","symbols":[1],"channels":[]}',
    b'{"instruments":[{"symbol":"BTC-USD"}]}',
    b'{"instruments":{}}',
    b'{"error":5}',
    b'{"foo":1}',
]


@pytest.mark.parametrize("frame", MALFORMED)
def test_malformed_frames_raise_value_error(frame):
    with pytest.raises(ValueError, match="malformed mock frame"):
        P.parse_message(frame)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_parse_never_raises_anything_but_value_error(data):
    try:
        P.parse_message(data)
    except ValueError:
        pass


@given(st.integers(min_value=1, max_value=200))
def test_truncated_frames_are_malformed(cut):
    frame = GOLDEN[1][0]
    cut = min(cut, len(frame) - 1)
    with pytest.raises(ValueError):
        P.parse_message(frame[:cut])


# ----------------------------------------------------------------------------- round trips

symbols = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
ints = st.integers(min_value=0, max_value=2**62)
precision = st.integers(min_value=0, max_value=12)
levels = st.lists(st.tuples(ints, ints), max_size=6)
checksums = st.integers(min_value=0, max_value=0xFFFFFFFF)


@given(symbols, ints, ints, levels, levels, checksums, precision, precision)
def test_round_trip_book(symbol, seq, ts, bids, asks, cs, pp, ap):
    frame = P.render_book(symbol, seq, ts, bids, asks, cs, pp, ap)
    msg = P.parse_message(frame)
    assert isinstance(msg, P.BookDelta)
    assert (msg.symbol, msg.seq, msg.timestamp, msg.checksum) == (symbol, seq, ts, cs)
    assert msg.bid_ints(pp, ap) == bids and msg.ask_ints(pp, ap) == asks
    assert P.render_message(msg) == frame


@given(symbols, ints, ints, levels, levels, checksums, precision, precision)
def test_round_trip_depth(symbol, seq, ts, bids, asks, cs, pp, ap):
    frame = P.render_depth(symbol, seq, ts, bids, asks, cs, pp, ap)
    msg = P.parse_message(frame)
    assert isinstance(msg, P.Depth)
    assert (msg.symbol, msg.seq, msg.timestamp, msg.checksum) == (symbol, seq, ts, cs)
    assert msg.bid_ints(pp, ap) == bids and msg.ask_ints(pp, ap) == asks
    assert P.render_message(msg) == frame


@given(symbols, ints, ints, st.sampled_from(P.SIDES), ints, ints, precision, precision)
def test_round_trip_trade(symbol, tid, ts, side, price, amount, pp, ap):
    frame = P.render_trade(symbol, tid, ts, side, price, amount, pp, ap)
    msg = P.parse_message(frame)
    assert msg == P.Trade(symbol, tid, ts, side, P.format_fixed(price, pp), P.format_fixed(amount, ap))
    assert (msg.price_ticks(pp), msg.amount_lots(ap)) == (price, amount)
    assert P.render_message(msg) == frame


@given(ints)
def test_round_trip_hello_heartbeat(ts):
    assert P.parse_message(P.render_hello(ts)) == P.Hello(ts)
    assert P.parse_message(P.render_heartbeat(ts)) == P.Heartbeat(ts)


@given(st.lists(symbols, max_size=4), st.lists(symbols, max_size=3))
def test_round_trip_subscribe_subscribed(syms, chans):
    assert P.parse_message(P.render_subscribe(syms, chans)) == P.Subscribe(tuple(syms), tuple(chans))
    assert P.parse_message(P.render_subscribed(syms, chans)) == P.Subscribed(tuple(syms), tuple(chans))


@given(st.text(max_size=40))
def test_round_trip_errors(text):
    assert P.parse_message(P.render_error(text)) == P.Error(text)
    assert P.parse_message(P.render_rest_error(text)) == P.RestError(text)


@given(st.lists(st.builds(P.Instrument, symbols, symbols, symbols,
                          st.integers(0, 18), st.integers(0, 18)), max_size=4))
def test_round_trip_instruments(instruments):
    frame = P.render_instruments(instruments)
    msg = P.parse_message(frame)
    assert msg == P.Instruments(tuple(instruments))
    assert P.render_message(msg) == frame


def test_render_matches_orjson_of_documented_key_order():
    frame = P.render_book("ETH-USD", 9, NS, [(300000, 1)], [(300001, 2)], 5, 2, 8)
    assert list(orjson.loads(frame)) == ["type", "symbol", "seq", "timestamp", "bids", "asks", "checksum"]
    frame = P.render_trade("ETH-USD", 9, NS, "sell", 300000, 1, 2, 8)
    assert list(orjson.loads(frame)) == ["type", "symbol", "id", "timestamp", "side", "price", "amount"]


# ----------------------------------------------------------------------------- simulator renderer

def test_simulator_fast_renderer_is_byte_identical_to_protocol():
    from lab.venues.mock.market import BookEvent
    from lab.venues.mock.sim import MockVenue

    class _Clock:
        start_ns, time_scale = NS, 1.0

    class _Sim:
        seed, rate, clock = 3, 1000.0, _Clock()

    venue = MockVenue(_Sim())
    market = Market(seed=3, start_ns=NS)
    for ev in market.take(3000):
        spec = market.spec(ev.symbol)
        pp, ap = spec.price_precision, spec.amount_precision
        if isinstance(ev, BookEvent):
            expected = P.render_book(ev.symbol, ev.seq, ev.timestamp, ev.bids, ev.asks, ev.checksum, pp, ap)
        else:
            expected = P.render_trade(ev.symbol, ev.id, ev.timestamp, ev.side, ev.price, ev.amount, pp, ap)
        assert venue.render_event(ev) == expected
