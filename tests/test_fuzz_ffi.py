"""Malformed input into every Rust entry point gives a clean Python exception, never a panic
across the FFI boundary. A Rust panic surfaces as pyo3's PanicException, a BaseException (not an
Exception), so `except Exception` below lets it fail the test."""
from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from lab import rust_book as rb

anything = st.one_of(
    st.none(), st.integers(), st.floats(allow_nan=True), st.text(max_size=12), st.binary(max_size=40),
    st.decimals(allow_nan=True, places=None), st.lists(st.integers(), max_size=4), st.tuples(st.text(max_size=4)),
)
big = st.integers(-(2**70), 2**70)


def call(fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except Exception:  # clean Python exceptions are fine; a panic is not an Exception
        return None


@given(args=st.lists(big, min_size=5, max_size=5), venue=st.text(max_size=5))
@settings(max_examples=300, deadline=None)
def test_orderbook_constructor_and_apply(args, venue):
    book = call(rb.OrderBook, venue, "X", args[0] % 25 - 3, args[1] % 25 - 3, args[2] % 7 - 2)
    if book is None:
        return
    call(book.apply, args[3] % 4 - 1, args[4], args[0])
    call(book.apply, 0, args[1], abs(args[2]))
    book.truncate()
    for fn in (book.top, book.bids_ticks, book.asks_ticks, book.mock_checksum, book.kraken_checksum, book.crossed,
               book.bids_decimal, book.asks_decimal, book.copy, repr, book.top_ticks, book.top_float,
               book.best_bid, book.best_ask, book.best_bid_ticks, book.best_ask_ticks, book.bids_float, book.asks_float):
        call(fn) if fn is not repr else repr(book)
    call(book.levels, args[3] % 4 - 1, abs(args[4]) % 5)
    call(book.levels_ticks, args[3] % 4 - 1, abs(args[4]) % 5)
    assert book.top() == book.top()  # the cached Decimals equal fresh ones


@given(bufs=st.lists(st.binary(max_size=64), min_size=4, max_size=4), start=st.integers(-3, 70),
       pw=st.sampled_from([0, 8, 16, 7, -8]), aw=st.sampled_from([8, 16, 32]), depth=st.integers(0, 3))
@settings(max_examples=400, deadline=None)
def test_apply_rows_random_bytes(bufs, start, pw, aw, depth):
    book = rb.OrderBook("v", "s", 2, 8, depth)
    call(book.apply_rows, *bufs, start, pw, aw)
    book.mock_checksum()
    book.kraken_checksum()


@given(asks=st.one_of(anything, st.lists(st.tuples(anything, anything), max_size=4), st.lists(anything, max_size=3)),
       bids=st.one_of(anything, st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=12)))
@settings(max_examples=400, deadline=None)
def test_kraken_checksum_garbage(asks, bids):
    call(rb.kraken_checksum, asks, bids)


@given(text=st.one_of(st.text(max_size=30), st.binary(max_size=30), anything,
                      st.from_regex(r"-?[0-9]{0,22}(\.[0-9]{0,22})?", fullmatch=True)),
       precision=st.integers(-3, 40))
@settings(max_examples=500, deadline=None)
def test_parse_and_format_fixed_garbage(text, precision):
    value = call(rb.parse_fixed, text, precision)
    if value is not None:
        assert rb.parse_fixed(rb.format_fixed(value, precision), precision) == value
    call(rb.format_fixed, text, precision)


@given(value=big, precision=st.integers(-2, 30))
@settings(max_examples=300, deadline=None)
def test_format_fixed_extremes(value, precision):
    text = call(rb.format_fixed, value, precision)
    if text is not None:
        assert Decimal(text) == Decimal(value).scaleb(-precision)


@given(rows=st.integers(-5, 3000), seed=st.integers(0, 2**64 - 1), depth=st.integers(-1, 30), every=st.integers(-1, 5))
@settings(max_examples=60, deadline=None)
def test_bench_workload_params(rows, seed, depth, every):
    w = call(rb.bench_workload, rows, seed, depth, every)
    if w is not None:
        out = rb.rebuild_book(*(w[k] for k in ("sides", "prices", "amounts", "flags", "timestamps", "local_timestamps")), depth=depth)
        assert (out["best_bid"], out["best_ask"]) == (w["best_bid"], w["best_ask"])


def test_rust_buffer_protocol():
    out = rb.rebuild_book(b"\x00", (5).to_bytes(8, "little"), (1).to_bytes(8, "little"), b"\x01", bytes(8), bytes(8))
    buf = out["bid_price"]
    assert len(buf) == 16 and bytes(memoryview(buf))[:8] == (5).to_bytes(8, "little")
    assert "16 bytes" in repr(buf)
    try:
        memoryview(buf).cast("B")[0] = 1
    except TypeError:
        pass
    else:
        raise AssertionError("RustBuffer must be read-only")


@given(order=st.lists(st.binary(max_size=48), min_size=4, max_size=4), window=st.one_of(st.none(), st.binary(max_size=6)),
       cols=st.lists(st.binary(max_size=48), min_size=7, max_size=7), widths=st.tuples(st.sampled_from([8, 16, 4]), st.sampled_from([8, 16, 0])),
       index=st.integers(0, 5), start=st.integers(-2, 8), limit=st.integers(0, 9), wake=st.integers(-(2**63), 2**63 - 1),
       ret=st.one_of(st.none(), st.integers(-(2**70), 2**70), st.text(max_size=3)))
@settings(max_examples=500, deadline=None)
def test_replay_driver_random_bytes(order, window, cols, widths, index, start, limit, wake, ret):
    """Arbitrary index columns, stream buffers, stream indexes and callback answers: the driver
    raises ValueError / TypeError / OverflowError or walks, never panics or reads past a buffer."""
    d = call(rb.ReplayDriver, *order, window)
    if d is None:
        return
    book = rb.OrderBook("v", "S", 2, 8)
    call(d.add_stream, index, book, *cols[:4], *widths, *cols[4:], lambda b: (b.top(), ret)[1])
    call(d.add_trades, index, "v", "S", lambda row: row, lambda t: ret)
    d.wake = wake
    call(d.run, start, limit, lambda ts, v, s: ret)
    call(d.cursor, index)
    call(d.synced_at_last, index)
    book.kraken_checksum()


@given(entries=st.lists(st.tuples(st.integers(-1, 3), st.integers(-2, 3), st.integers(-5, 20)), max_size=30),
       rows=st.lists(st.tuples(st.integers(0, 2), st.integers(-3, 10**6), st.integers(-1, 10**9), st.integers(0, 3)), max_size=25),
       limit=st.integers(0, 40), with_window=st.booleans())
@settings(max_examples=500, deadline=None)
def test_replay_driver_random_streams(entries, rows, limit, with_window):
    """Well-typed but arbitrary merged orders and book rows (bad sides, negative amounts, flags
    without LAST, stream indexes out of range): clean errors or a walk that stays in the rows."""
    import numpy as np

    kinds = np.array([e[0] for e in entries], dtype=np.int64)
    streams = np.array([e[1] for e in entries], dtype=np.int64)
    rowix = np.array([e[2] for e in entries], dtype=np.int64)
    local = np.arange(len(entries), dtype=np.int64)
    window = np.array([i % 2 for i in range(len(entries))], dtype=np.uint8) if with_window else None
    d = rb.ReplayDriver(kinds, streams, local, rowix, window)
    book = rb.OrderBook("v", "S", 2, 8)
    n = len(rows)
    sides = np.array([r[0] for r in rows], dtype=np.int8)
    prices = np.array([r[1] for r in rows], dtype=np.int64)
    amounts = np.array([r[2] for r in rows], dtype=np.int64)
    flags = np.array([r[3] for r in rows], dtype=np.uint8)
    clocks = np.arange(n, dtype=np.int64)
    seen = []
    call(d.add_stream, 0, book, sides, prices, amounts, flags, 8, 8, clocks, clocks, clocks, lambda b: seen.append(b.seq))
    call(d.add_trades, 1, "v", "S", lambda row: row, lambda t: seen.append(("t", t)))
    j = call(d.run, 0, limit, lambda ts, v, s: None)
    assert j is None or 0 <= j <= len(entries)
    assert all(isinstance(x, tuple) or 0 <= x < max(n, 1) for x in seen)
    book.kraken_checksum()


BINANCE_FRAMES = [
    b'{"e":"depthUpdate","E":1672515782136,"s":"BNBBTC","U":157,"u":160,"b":[["0.0024","10"]],"a":[["0.0026","100"]]}',
    b'{"stream":"bnbbtc@trade","data":{"e":"trade","E":1,"s":"BNBBTC","t":12345,"p":"0.001","q":"100","T":1,"m":true}}',
    b'{"lastUpdateId":1027024,"bids":[["4.00000000","431.00000000"]],"asks":[["4.00000200","12.00000000"]]}',
]


@given(data=st.one_of(st.binary(max_size=120), st.sampled_from(BINANCE_FRAMES)),
       cut=st.integers(0, 130), flip=st.tuples(st.integers(0, 130), st.integers(0, 255)),
       precisions=st.tuples(st.integers(-2, 40), st.integers(-2, 40)), depth=st.integers(0, 3),
       ids=st.tuples(st.one_of(st.none(), big), big, big))
@settings(max_examples=400, deadline=None)
def test_binance_parsers_garbage(data, cut, flip, precisions, depth, ids):
    """The Binance frame parsers (rust_book/src/binance.rs) and their messages' methods on
    arbitrary and mutated frames, precisions and arguments: clean exceptions, never a panic."""
    frames = [data, data[:cut]]
    if flip[0] < len(data):
        frames.append(data[:flip[0]] + bytes([flip[1]]) + data[flip[0] + 1:])
    pp, ap = precisions
    for frame in frames:
        msgs = []
        for parse in (rb.parse_binance_depth, rb.parse_binance_trade):
            msgs += call(parse, frame) or []
        snap = call(rb.parse_binance_snapshot, frame)
        if snap is not None:
            msgs.append(snap)
        for m in msgs:
            repr(m)
            call(m.check, pp, ap)
            if isinstance(m, rb.BinanceBook):
                m.levels()
                book = call(rb.OrderBook, "binance", "X", pp, ap, depth) or rb.OrderBook("binance", "X", 2, 8, depth)
                call(m.apply, book, rb.BookRows(), ids[1], ids[2], 0)
                call(m.apply, book, book, 0, 0, 0)
                book.kraken_checksum()
            else:
                m.texts()
                call(m.apply, rb.TradeRows(), pp, ap, ids[1], ids[2], ids[0])
                call(m.apply, rb.TradeMemory(3), pp, ap, 0, 0)
