"""Bulk rebuild (`rust_book.rebuild_book`, lab.replay.rebuild): quotes and book snapshots against
a dict-of-Decimals reference model, malformed input, and the seeded bench workload."""
from __future__ import annotations

import array
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab import rust_book as rb
from lab.replay import rebuild as R

LAST, CLEAR = rb.FLAG_LAST, rb.FLAG_CLEAR
SEC = 1_000_000_000


class Ref:
    """The obviously correct model: two dicts of Decimals."""

    def __init__(self, pp: int, ap: int, depth: int) -> None:
        self.pp, self.ap, self.depth = pp, ap, depth
        self.sides: list[dict[Decimal, Decimal]] = [{}, {}]

    def apply(self, side: int, p: int, a: int) -> None:
        price = Decimal(p).scaleb(-self.pp)
        if a == 0:
            self.sides[side].pop(price, None)
        else:
            self.sides[side][price] = Decimal(a).scaleb(-self.ap)

    def levels(self, side: int) -> list[tuple[Decimal, Decimal]]:
        return sorted(self.sides[side].items(), reverse=(side == 0))

    def truncate(self) -> None:
        if self.depth:
            self.sides = [dict(self.levels(s)[: self.depth]) for s in (0, 1)]

    def top(self, side: int):
        lv = self.levels(side)
        return lv[0] if lv else (None, None)


def ref_quote_rows(sides, prices, amounts, flags, lts, depth, gaps=()) -> list[int]:
    """The quotes rule, plainly (int ticks in dicts): the LAST row index of every message after
    which a quote row is written: the top (best bid price and amount, best ask price and amount,
    each side present or not) differs from the last quote written, or the message is the first,
    has a CLEAR row, or is the first after a gap (at or before its first row's local time; gaps
    consumed in the order given)."""
    sides, prices, amounts, flags, lts, gaps = (list(map(int, x)) for x in (sides, prices, amounts, flags, lts, gaps))
    book: list[dict[int, int]] = [{}, {}]
    out, last, fresh, gi, i = [], None, True, 0, 0
    while i < len(flags):
        while gi < len(gaps) and gaps[gi] <= lts[i]:
            fresh, gi = True, gi + 1
        cleared = False
        while True:
            if flags[i] & CLEAR:
                book, cleared = [{}, {}], True
            if amounts[i] == 0:
                book[sides[i]].pop(prices[i], None)
            else:
                book[sides[i]][prices[i]] = amounts[i]
            if flags[i] & LAST:
                break
            i += 1
        for s in (0, 1):
            if depth and len(book[s]) > depth:
                book[s] = {p: book[s][p] for p in sorted(book[s], reverse=(s == 0))[:depth]}
        bid, ask = max(book[0], default=None), min(book[1], default=None)
        top = (None if bid is None else (bid, book[0][bid]), None if ask is None else (ask, book[1][ask]))
        if fresh or cleared or top != last:
            out.append(i)
            last, fresh = top, False
        i += 1
    return out


def build(messages, width=8):
    """messages: list of (lts, [(side, price, amount, clear)]) -> column buffers."""
    sides, prices, amounts, flags, ts, lts = [], [], [], [], [], []
    for t, rows in messages:
        for i, (side, p, a, clear) in enumerate(rows):
            sides.append(side)
            prices.append(p)
            amounts.append(a)
            flags.append((LAST if i == len(rows) - 1 else 0) | (CLEAR if clear else 0))
            ts.append(t - 7)
            lts.append(t)
    def col(v):
        if width == 8:
            return np.asarray(v, dtype=np.int64)
        return b"".join(int(x).to_bytes(16, "little", signed=True) for x in v)
    return (np.asarray(sides, np.int8), col(prices), col(amounts), np.asarray(flags, np.uint8),
            np.asarray(ts, np.int64), np.asarray(lts, np.int64))


def ints(table: pa.Table) -> pa.Table:
    """Timestamps as int64 ns (pyarrow cannot make datetimes of every ns value)."""
    for name in ("timestamp", "local_timestamp"):
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, table.column(name).cast(pa.int64()))
    return table


# Mostly a narrow band (updates collide, books cross, deletes of absent levels), and some
# prices thousands of ticks away, so the engine's window of 4096 ticks around the touch moves
# and levels go to and come back from the ordered ladder behind it.
price_st = st.one_of(
    st.integers(95, 110),
    st.integers(95, 110),
    st.integers(95, 110).map(lambda p: p + 6000),
    st.integers(-30_000, 30_000),
)
row_st = st.tuples(
    st.integers(0, 1),
    price_st,  # narrow: duplicates inside a message, crossed books, absent deletes
    st.one_of(st.just(0), st.integers(1, 10**12)),
    st.sampled_from([False] * 10 + [True]),  # CLEAR, also mid-message
)


@st.composite
def streams(draw):
    n = draw(st.integers(1, 25))
    t = draw(st.integers(-5 * SEC, 5 * SEC))
    msgs = []
    for _ in range(n):
        t += draw(st.sampled_from([0, 1, 300_000_000, SEC, 2 * SEC + 5, 7 * SEC]))
        msgs.append((t, draw(st.lists(row_st, min_size=1, max_size=6))))
    return msgs


@given(msgs=streams(), depth=st.sampled_from([0, 1, 3]), width=st.sampled_from([8, 16]),
       snap=st.sampled_from([1, 2, 4]), interval=st.sampled_from([0, SEC, 3 * SEC]),
       gap_at=st.lists(st.integers(-6 * SEC, 60 * SEC), max_size=3))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_property_quotes_and_snapshots_match_reference(msgs, depth, width, snap, interval, gap_at):
    pp, ap = 1, 8
    cols = build(msgs, width)
    gaps = np.sort(np.asarray(gap_at, dtype=np.int64))
    out = rb.rebuild_book(*cols, price_width=width, amount_width=width, depth=depth, snapshot_depth=snap,
                          interval_ns=interval, gaps=gaps, out_price_scale=18 - pp, out_amount_scale=18 - ap)
    quotes = ints(R.quotes_table(out, pp, ap)).to_pylist()
    snaps = ints(R.snapshot_table(out, snap, pp, ap)).to_pylist()
    # reference
    ref = Ref(pp, ap, depth)
    want_q, want_s = [], []
    synced, prev_lts, prev_ts, gi = False, None, None, 0
    last_top, fresh, row, want_rows = None, True, -1, []

    def snapshot(ts, lts):
        row = {"timestamp": ts, "local_timestamp": lts}
        for k in range(snap):
            for side, name in ((1, "asks"), (0, "bids")):
                lv = ref.levels(side)
                p, a = lv[k] if k < len(lv) else (None, None)
                row[f"{name}[{k}].price"], row[f"{name}[{k}].amount"] = p, a
        want_s.append(row)

    for t, rows in msgs:
        if interval and prev_lts is not None and t // interval > prev_lts // interval:
            boundary = (prev_lts // interval + 1) * interval
            while gi < len(gaps) and gaps[gi] <= boundary:
                synced, fresh, gi = False, True, gi + 1
            if synced:
                snapshot(prev_ts, boundary)
        while gi < len(gaps) and gaps[gi] <= t:
            synced, fresh, gi = False, True, gi + 1
        for side, p, a, clear in rows:
            if clear:
                ref.sides, synced, fresh = [{}, {}], True, True
            ref.apply(side, p, a)
        row += len(rows)
        ref.truncate()
        (bp, ba), (ap_, aa) = ref.top(0), ref.top(1)
        # a quote only when the top changed (or first / after CLEAR / after a gap)
        if fresh or (bp, ba, ap_, aa) != last_top:
            want_q.append({"timestamp": t - 7, "local_timestamp": t, "bid_price": bp, "bid_amount": ba, "ask_price": ap_, "ask_amount": aa})
            want_rows.append(row)
            last_top, fresh = (bp, ba, ap_, aa), False
        if interval == 0 and synced:
            snapshot(t - 7, t)
        prev_lts, prev_ts = t, t - 7

    assert quotes == want_q
    assert snaps == want_s
    assert out["rows"] == len(cols[0]) and out["quotes"] == len(want_q)
    assert np.frombuffer(out["quote_rows"], np.int64).tolist() == want_rows
    if width == 8:
        assert want_rows == ref_quote_rows(*cols[:4], cols[5], depth, gaps)
    assert out["synced"] == synced
    top = [ref.levels(s)[0] if ref.levels(s) else None for s in (0, 1)]
    for got, want in zip((out["best_bid"], out["best_ask"]), top):
        assert got == (None if want is None else (int(want[0].scaleb(pp)), int(want[1].scaleb(ap))))


@given(msgs=streams(), pp=st.integers(0, 18), ap=st.integers(0, 18), snap=st.sampled_from([0, 2]))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_decimal38_input_gives_the_same_books_as_ticks(msgs, pp, ap, snap):
    """DECIMAL(38, 18) mantissas (ticks * 10^(18 - p)) divided exactly by the engine give the same
    quotes, snapshots and final book as the int64 ticks."""
    s, p, a, f, t, lt = build(msgs)
    dp, da = rb.ticks_to_decimal128(p, 18 - pp), rb.ticks_to_decimal128(a, 18 - ap)
    kw = dict(snapshot_depth=snap, out_price_scale=18 - pp, out_amount_scale=18 - ap)
    want = rb.rebuild_book(s, p, a, f, t, lt, **kw)
    got = rb.rebuild_book(s, dp, da, f, t, lt, price_width=16, amount_width=16, price_scale=18 - pp, amount_scale=18 - ap, **kw)
    for key in ("quotes", "best_bid", "best_ask", "synced", "snapshots"):
        assert got[key] == want[key], key
    for key in ("quote_rows", "bid_price", "bid_amount", "ask_price", "ask_amount", "snapshot_levels"):
        assert bytes(got[key]) == bytes(want[key]), key
    assert R.quotes_table(got, pp, ap).equals(R.quotes_table(want, pp, ap))


def test_decimal38_input_errors_name_the_row():
    s, p, a, f, t, lt = build([(10, [(0, 100, 5, True), (1, 101, 6, False)]), (20, [(0, 100, 0, False)])])
    dp = bytearray(rb.ticks_to_decimal128(p, 16))
    dp[16] += 1  # row 1: 1.01 + 1e-18, not a whole tick at precision 2
    with pytest.raises(ValueError, match="row 1: price mantissa 1010000000000000001 is not a whole number of ticks"):
        rb.rebuild_book(s, bytes(dp), a, f, t, lt, price_width=16, price_scale=16)
    huge = (10**19 * 10**10).to_bytes(16, "little", signed=True) * 3
    with pytest.raises(ValueError, match="row 0: amount mantissa .* in int64"):
        rb.rebuild_book(s, p, huge, f, t, lt, amount_width=16, amount_scale=10)
    with pytest.raises(ValueError, match="width 16"):
        rb.rebuild_book(s, p, a, f, t, lt, price_scale=16)
    with pytest.raises(ValueError, match="0..=18"):
        rb.rebuild_book(s, p, a, f, t, lt, out_price_scale=19)


def test_quotes_table_types_and_zero_copy():
    cols = build([(10, [(0, 100, 5, True), (1, 101, 6, False)]), (20, [(0, 100, 0, False)])])
    out = rb.rebuild_book(*cols, out_price_scale=16, out_amount_scale=10)
    t = R.quotes_table(out, 2, 8)
    assert t.schema == R.quotes_schema(2, 8)
    assert t.column("bid_price").to_pylist() == [Decimal("1.00"), None]
    assert t.column("ask_amount").to_pylist() == [Decimal("0.00000006")] * 2
    assert t.column("bid_price").null_count == 1
    # the Arrow buffer is the Rust buffer itself
    assert t.column("ask_price").chunk(0).buffers()[1].address == pa.py_buffer(out["ask_price"]).address
    mv = memoryview(out["ask_price"])
    assert mv.readonly and len(mv) == 32
    assert not np.frombuffer(out["ask_price"], dtype=np.uint8).flags.writeable


def test_quote_only_when_the_top_changes():
    """Each way the top can change gives a row, a message that leaves it as it was gives none,
    and CLEAR or a gap gives one even when the top comes back the same."""
    msgs = [
        (10, [(0, 100, 5, True), (0, 99, 1, False), (1, 101, 6, False)]),  # 0 first: row
        (20, [(0, 98, 3, False)]),   # 1 deeper bid: none
        (30, [(1, 102, 4, False)]),  # 2 deeper ask: none
        (40, [(0, 100, 5, False)]),  # 3 same amount again: none
        (50, [(0, 100, 7, False)]),  # 4 bid amount: row
        (60, [(1, 101, 8, False)]),  # 5 ask amount: row
        (70, [(0, 100, 0, False)]),  # 6 bid price (to 99): row
        (80, [(1, 100, 2, False)]),  # 7 ask price: row
        (90, [(0, 97, 0, False)]),   # 8 delete of an absent level: none
        (100, [(0, 100, 5, True), (0, 99, 1, False), (1, 101, 6, False)]),  # 9 CLEAR, new top: row
        (110, [(0, 100, 5, True), (0, 99, 1, False), (1, 101, 6, False)]),  # 10 CLEAR, same top: row
        (120, [(0, 99, 1, False)]),  # 11 none
        (130, [(0, 99, 2, False)]),  # 12 after the gap at 125, deeper change only: row
        (140, [(0, 99, 3, False)]),  # 13 none
        (150, [(0, 100, 0, False), (0, 99, 0, False), (0, 98, 0, False)]),  # 14 bid side empty: row
        (160, [(0, 98, 0, False)]),  # 15 still empty: none
        (170, [(1, 101, 0, False), (1, 100, 0, False), (1, 102, 0, False)]),  # 16 both empty: row
        (180, [(0, 50, 0, False)]),  # 17 none
        (190, [(1, 105, 1, False)]),  # 18 ask back: row
    ]
    cols = build(msgs)
    out = rb.rebuild_book(*cols, gaps=np.array([125], np.int64), out_price_scale=16, out_amount_scale=10)
    ends = np.flatnonzero(cols[3] & LAST)
    want = [0, 4, 5, 6, 7, 9, 10, 12, 14, 16, 18]
    assert np.frombuffer(out["quote_rows"], np.int64).tolist() == ends[want].tolist()
    assert np.frombuffer(out["quote_rows"], np.int64).tolist() == ref_quote_rows(*cols[:4], cols[5], 0, [125])
    q = ints(R.quotes_table(out, 2, 8))
    assert q.column("local_timestamp").to_pylist() == [msgs[k][0] for k in want]
    D = Decimal
    assert list(zip(*(q.column(c).to_pylist() for c in ("bid_price", "bid_amount", "ask_price", "ask_amount")))) == [
        (D("1.00"), D("5E-8"), D("1.01"), D("6E-8")),
        (D("1.00"), D("7E-8"), D("1.01"), D("6E-8")),
        (D("1.00"), D("7E-8"), D("1.01"), D("8E-8")),
        (D("0.99"), D("1E-8"), D("1.01"), D("8E-8")),
        (D("0.99"), D("1E-8"), D("1.00"), D("2E-8")),
        (D("1.00"), D("5E-8"), D("1.01"), D("6E-8")),
        (D("1.00"), D("5E-8"), D("1.01"), D("6E-8")),
        (D("1.00"), D("5E-8"), D("1.01"), D("6E-8")),
        (None, None, D("1.01"), D("6E-8")),
        (None, None, None, None),
        (None, None, D("1.05"), D("1E-8")),
    ]
    assert out["quotes"] == len(want) and len(out["bid_valid"]) == 2


def test_empty_stream():
    cols = build([])
    out = rb.rebuild_book(*cols, snapshot_depth=2, interval_ns=SEC)
    assert out["quotes"] == 0 and out["snapshots"] == 0 and out["best_bid"] is None
    assert R.quotes_table(out, 2, 8).num_rows == 0 and R.snapshot_table(out, 2, 2, 8).num_rows == 0


# --------------------------------------------------------------------------- malformed input


def _good():
    return build([(10, [(0, 100, 5, True), (1, 101, 6, False)])])


@pytest.mark.parametrize(
    "change, kw",
    [
        (lambda c: (c[0][:1], *c[1:]), {}),  # short sides
        (lambda c: (c[0], c[1][:1], *c[2:]), {}),  # short prices
        (lambda c: (*c[:2], c[2][:1], *c[3:]), {}),
        (lambda c: (*c[:3], np.array([0, 0], np.uint8), *c[4:]), {}),  # ends inside a message
        (lambda c: (*c[:4], c[4][:1], c[5]), {}),
        (lambda c: (*c[:5], c[5][:1]), {}),
        (lambda c: (np.array([0, 2], np.int8), *c[1:]), {}),  # bad side
        (lambda c: (np.array([0, -1], np.int8), *c[1:]), {}),
        (lambda c: (*c[:2], np.array([1, -1], np.int64), *c[3:]), {}),  # negative amount
        (lambda c: c, {"price_width": 16}),
        (lambda c: c, {"amount_width": 4}),
        (lambda c: c, {"depth": -1}),
        (lambda c: c, {"snapshot_depth": -1}),
        (lambda c: c, {"interval_ns": -1, "snapshot_depth": 1}),
        (lambda c: c, {"gaps": b"1234"}),
        (lambda c: c, {"snapshot_depth": 10**9}),
    ],
)
def test_malformed_input_raises_value_error(change, kw):
    with pytest.raises(ValueError):
        rb.rebuild_book(*change(_good()), **kw)


def test_decimal128_out_of_int64_and_non_buffers():
    huge = (2**63).to_bytes(16, "little", signed=True) * 2
    s, p, a, f, t, l = _good()
    with pytest.raises(ValueError, match="row 0"):
        rb.rebuild_book(s, huge, a, f, t, l, price_width=16)
    with pytest.raises(ValueError):
        rb.rebuild_book(s, p, huge, f, t, l, amount_width=16)
    for bad in ([0, 1], None, 3, "ab"):
        with pytest.raises(TypeError):
            rb.rebuild_book(bad, p, a, f, t, l)
    # every buffer type works: bytes, array.array, memoryview, pyarrow buffers
    out = rb.rebuild_book(bytes(s), array.array("q", p.tolist()), memoryview(a), pa.py_buffer(f), t, l)
    assert out["best_bid"] == (100, 5)


@given(
    data=st.lists(st.binary(max_size=80), min_size=7, max_size=7),
    pw=st.sampled_from([8, 16, 0, 3]),
    aw=st.sampled_from([8, 16, 32]),
    depth=st.integers(-2, 4),
    snap=st.integers(-1, 3),
    interval=st.integers(-2, 3),
)
@settings(max_examples=400, deadline=None)
def test_fuzz_rebuild_never_panics(data, pw, aw, depth, snap, interval):
    try:
        out = rb.rebuild_book(*data[:6], price_width=pw, amount_width=aw, depth=depth, snapshot_depth=snap,
                              interval_ns=interval, gaps=data[6])
    except ValueError:
        return
    low = lambda b, w: np.frombuffer(b, "<i8")[:: w // 8]  # noqa: E731 (int64, or decimal128's low words)
    flags = np.frombuffer(data[3], np.uint8)
    want = ref_quote_rows(np.frombuffer(data[0], np.int8), low(data[1], pw), low(data[2], aw), flags,
                          np.frombuffer(data[5], "<i8"), depth, np.frombuffer(data[6], "<i8"))
    assert np.frombuffer(out["quote_rows"], np.int64).tolist() == want and out["quotes"] == len(want)
    assert len(want) <= sum(b & LAST != 0 for b in data[3])


@given(rows=st.lists(st.tuples(st.integers(0, 1), st.integers(-2**63, 2**63 - 1), st.integers(0, 2**63 - 1),
                               st.integers(0, 255)), min_size=1, max_size=40))
@settings(max_examples=200, deadline=None)
def test_fuzz_extreme_values(rows):
    """Extreme prices/amounts and arbitrary flag bytes: a result or a ValueError, never a panic."""
    s = np.array([r[0] for r in rows], np.int8)
    p = np.array([r[1] for r in rows], np.int64)
    a = np.array([r[2] for r in rows], np.int64)
    f = np.array([r[3] for r in rows], np.uint8)
    t = np.arange(len(rows), dtype=np.int64) * (2**61)  # overflows the snapshot grid arithmetic
    try:
        rb.rebuild_book(s, p, a, f, t, t, depth=2, snapshot_depth=3, interval_ns=3)
    except ValueError:
        pass


# --------------------------------------------------------------------------- bench workload


def test_bench_workload_is_seeded_and_realistic():
    w1, w2, w3 = rb.bench_workload(50_000), rb.bench_workload(50_000), rb.bench_workload(50_000, seed=2)
    assert bytes(w1["prices"]) == bytes(w2["prices"]) and bytes(w1["prices"]) != bytes(w3["prices"])
    flags = np.frombuffer(w1["flags"], np.uint8)
    amounts = np.frombuffer(w1["amounts"], np.int64)
    assert w1["rows"] >= 50_000 and flags[-1] & LAST and flags[0] & CLEAR
    ends = np.flatnonzero(flags & LAST)
    sizes = np.diff(np.concatenate([[-1], ends]))
    deltas = sizes[1:]  # the first message is the 2000-row snapshot
    assert sizes[0] == 2000 and deltas.min() >= 1 and deltas.max() <= 50
    delta_rows = slice(2000, None)
    assert 0.22 < (amounts[delta_rows] == 0).mean() < 0.28
    assert amounts.max() <= 10**9
    out = rb.rebuild_book(w1["sides"], w1["prices"], w1["amounts"], w1["flags"], w1["timestamps"], w1["local_timestamps"], depth=1000)
    assert out["best_bid"] == w1["best_bid"] and out["best_ask"] == w1["best_ask"]
    want = ref_quote_rows(*(np.frombuffer(w1[k], dt) for k, dt in (("sides", np.int8), ("prices", np.int64), ("amounts", np.int64),
                                                                    ("flags", np.uint8), ("local_timestamps", np.int64))), 1000)
    assert np.frombuffer(out["quote_rows"], np.int64).tolist() == want
    assert out["quotes"] == len(want) < w1["messages"]
    q = R.quotes_table(out, 2, 8)
    bid = np.array(q.column("bid_price").cast(pa.float64()))
    ask = np.array(q.column("ask_price").cast(pa.float64()))
    assert (bid < ask).all()  # never crossed
    # snapshot every 10,000 messages with the full book
    with pytest.raises(ValueError):
        rb.bench_workload(0)


# --------------------------------------------------------------------------- entry point


class CStream:
    """Arrow data seen only through the PyCapsule stream interface (as polars, DuckDB or
    nanoarrow export it): no pyarrow type for `rebuild` to recognise."""

    def __init__(self, table: pa.Table) -> None:
        self._table = table

    def __arrow_c_stream__(self, requested_schema=None):
        return self._table.__arrow_c_stream__(requested_schema)


class CArray:
    def __init__(self, batch: pa.RecordBatch) -> None:
        self._batch = batch

    def __arrow_c_array__(self, requested_schema=None):
        return self._batch.__arrow_c_array__(requested_schema)


def test_rebuild_from_paths_arrow_tables_and_capsules(tmp_path):
    """`rebuild(source)` gives the same quotes and snapshots from a Parquet path, a list of
    paths, a pyarrow Table / RecordBatch, PyCapsule exporters, and int64 mantissas with the
    precisions given; the last quote is the workload's final top of book."""
    import pyarrow.parquet as pq

    from lab.benchmarks.book import _book_meta, book_table
    from lab.datasets.store import atomic_write

    w = dict(rb.bench_workload(60_000, seed=5))
    path = str(tmp_path / "book.parquet")
    atomic_write(book_table(w), path, _book_meta())
    kw = dict(snapshot_depth=5, interval_ns=SEC // 4)
    want = R.rebuild(path, **kw)
    assert set(want) == {"quotes", "book_snapshot_5"} and want["book_snapshot_5"].num_rows > 2
    last = want["quotes"].slice(want["quotes"].num_rows - 1)
    assert last.column("bid_price")[0].as_py() == Decimal(w["best_bid"][0]).scaleb(-2)
    assert last.column("ask_price")[0].as_py() == Decimal(w["best_ask"][0]).scaleb(-2)

    table = pq.read_table(path)
    half = table.num_rows // 2
    while not table.column("flags")[half - 1].as_py() & LAST:
        half += 1
    p1, p2 = str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")
    atomic_write(table.slice(0, half), p1, _book_meta())
    atomic_write(table.slice(half), p2, _book_meta())
    mantissas = table.set_column(table.schema.get_field_index("price"), "price", pa.array(np.frombuffer(w["prices"], dtype=np.int64)))
    mantissas = mantissas.set_column(mantissas.schema.get_field_index("amount"), "amount", pa.array(np.frombuffer(w["amounts"], dtype=np.int64)))
    batch = table.combine_chunks().to_batches()[0]
    for source, extra in (
        ([p1, p2], {}),
        (table, {}),
        (batch, {}),
        (CStream(table), {}),
        (CArray(batch), {}),
        (pa.RecordBatchReader.from_batches(table.schema, table.to_batches()), {}),
        (mantissas.replace_schema_metadata(None), dict(price_precision=2, amount_precision=8)),
    ):
        got = R.rebuild(source, depth=1000, **kw, **extra)
        assert got["quotes"].equals(want["quotes"]), type(source)
        assert got["book_snapshot_5"].equals(want["book_snapshot_5"]), type(source)


def test_rebuild_entry_point_errors(tmp_path):
    from lab.benchmarks.book import book_table

    w = dict(rb.bench_workload(2_000, seed=1))
    table = book_table(w)
    ints = table.set_column(table.schema.get_field_index("price"), "price", pa.array(np.frombuffer(w["prices"], dtype=np.int64)))
    with pytest.raises(R.CaptureError, match="price_precision"):
        R.rebuild(ints)
    # DECIMAL(38, 18) prices of 2 decimals are not whole ticks at precision 1 (the row is named)
    with pytest.raises(R.CaptureError, match="row [0-9]+: price mantissa [0-9]+ is not a whole number of ticks"):
        R.rebuild(table, price_precision=1)
    with pytest.raises(R.CaptureError, match="fewer decimals"):
        R.rebuild(table.cast(table.schema.set(4, pa.field("price", pa.decimal128(18, 2)))), price_precision=3)
    with pytest.raises(R.CaptureError, match="flags"):
        R.rebuild(table.drop_columns(["flags"]))
    with pytest.raises(TypeError, match="Arrow data"):
        R.rebuild(42)
    with pytest.raises(R.CaptureError, match="not a readable book file"):
        (tmp_path / "junk.parquet").write_bytes(b"PAR1 not really")
        R.rebuild(str(tmp_path / "junk.parquet"))
    assert R.rebuild(table.slice(0, 0))["quotes"].num_rows == 0


# --------------------------------------------------------------------------- end to end


def test_lab_rebuild_on_a_recorded_capture(tmp_path):
    """Record the mock simulator (with a gap), `lab rebuild`, then `lab query` the derived views:
    the last quote is the replayed final top of book, snapshots agree with the quotes."""
    import json

    from lab.venues.simulator import SimulatorThread
    from test_end_to_end import lab, query

    root = tmp_path / "cap"
    with SimulatorThread("mock", seed=21, rate=2000, faults=dict(drop_every=1500)) as sim:
        lab("record", "--venue", "mock", "--duration", "4s", "--out", root, "--rest-url", sim.url, "--ws-url", sim.ws_url, "--rotate", "2s")
    replay = json.loads(lab("replay", root, "--json").stdout)
    out = lab("rebuild", root, "--depth", "25", "--interval", "1s", "--json").stdout
    report = [json.loads(line) for line in out.splitlines()]
    assert {f"{r['venue']}/{r['symbol']}" for r in report} == set(replay["streams"])
    # a quote per message that changed the top (or first / after CLEAR / after a gap), exactly
    want = _reference_quote_times(str(root))
    assert sum(r["quotes"] for r in report) == sum(map(len, want.values())) < replay["messages"]
    for (v, s), times in want.items():
        got = query(root, f"select epoch_ns(local_timestamp) from quotes where venue = '{v}' and symbol = '{s}' order by 1")
        assert [int(t) for [t] in got] == times
    for name, stream in replay["streams"].items():
        symbol = stream["symbol"]
        [[bid, ask, n]] = query(root, f"select bid_price, ask_price, count(*) over () from quotes where symbol = '{symbol}' "
                                      "order by local_timestamp desc limit 1")
        assert Decimal(str(bid)) == Decimal(stream["best_bid"]) and Decimal(str(ask)) == Decimal(stream["best_ask"])
        # every snapshot's level 0 equals the quote of the last message before its grid time
        rows = query(root, f"""
            select s.local_timestamp, s."bids[0].price", s."asks[0].price", s."asks[24].price" is null,
                   (select q.bid_price from quotes q where q.symbol = s.symbol and q.local_timestamp < s.local_timestamp
                    order by q.local_timestamp desc limit 1),
                   (select q.ask_price from quotes q where q.symbol = s.symbol and q.local_timestamp < s.local_timestamp
                    order by q.local_timestamp desc limit 1)
            from book_snapshot_25 s where s.symbol = '{symbol}' order by 1""")
        assert len(rows) >= 2
        for _, b0, a0, _, qb, qa in rows:
            assert (b0, a0) == (qb, qa)
        [[off_grid]] = query(root, f"select count(*) from book_snapshot_25 where symbol = '{symbol}' and epoch_ns(local_timestamp) % 1000000000 <> 0")
        assert int(off_grid) == 0
    # derived files sit beside the book files, one per book segment, atomically written
    quotes_files = sorted(p.name for p in (root / "quotes").rglob("*.parquet"))
    book_files = sorted(p.name for p in (root / "book").rglob("*.parquet"))
    assert quotes_files == book_files
    assert not list(root.rglob(".*.tmp"))
    # a second rebuild replaces, never duplicates
    lab("rebuild", root, "--depth", "25", "--interval", "1s")
    [[n2]] = query(root, "select count(*) from quotes")
    assert int(n2) == sum(map(len, want.values()))


def _reference_quote_times(root: str) -> dict[tuple[str, str], list[int]]:
    """{(venue, symbol): sorted local timestamps of the quotes `ref_quote_rows` gives}, per
    recorder session of each book stream, with the session's gap events."""
    from lab.datasets.reader import by_session, streams_in

    out = {}
    for (v, s), files in streams_in(root, "book", None, None, None).items():
        times = []
        for session, fs in by_session(files).items():
            cols = R.load_columns(fs)
            ticks = []
            for buf, width, k, be in ((cols.prices, cols.price_width, cols.price_scale, cols.price_big_endian),
                                      (cols.amounts, cols.amount_width, cols.amount_scale, cols.amount_big_endian)):
                ticks.append(np.frombuffer(buf if width == 8 else rb.decimal128_to_ticks(buf, k, big_endian=be), np.int64))
            lts = np.frombuffer(cols.local_timestamps, np.int64)
            rows = ref_quote_rows(cols.sides, *ticks, np.frombuffer(cols.flags, np.uint8), lts, cols.depth,
                                  R.gap_times(root, v, s, session))
            times += lts[rows].tolist()
        out[(v, s)] = sorted(times)
    return out
