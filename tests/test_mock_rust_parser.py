"""The mock venue's Rust hot parsers (rust_book/src/mock.rs: `parse_mock_book`,
`parse_mock_depth`, `MockBook.apply`) against the Python reference path
(`MockNormalizer.rust_parsers = False`): golden frames, arbitrary and mutated bytes (never a
panic; what Rust accepts equals the reference's reading), and whole sessions from the seeded
market (with dropped frames, bad checksums, mutated frames) giving identical rows, events,
stats, requests and books on both paths."""
from __future__ import annotations

import itertools
import random

import orjson
from hypothesis import given, settings, strategies as st

from lab import rust_book as rb
from lab.core.model import RawRow
from lab.venues.mock import feed as F
from lab.venues.mock import protocol as P
from lab.venues.mock.market import BookEvent, Market

DELTA = b'{"type":"book","symbol":"BTC-USD","seq":7,"timestamp":1700000000000000000,"bids":[["100.00","1.50000000"]],"asks":[],"checksum":42}'
DEPTH = b'{"symbol":"BTC-USD","seq":7,"timestamp":1,"bids":[["100.00","1.5"]],"asks":[["100.10","2"]],"checksum":42}'

_ids = itertools.count()


def row(kind, payload, channel="ws", symbol=None):
    i = next(_ids)
    return RawRow(i, 1_700_000_000_000_000_000 + i, 1, i, kind, channel, symbol, payload)


def frames_of(market: Market, n: int):
    out = []
    for ev in market.take(n):
        inst = market.spec(ev.symbol).instrument
        pp, ap = inst.price_precision, inst.amount_precision
        if type(ev) is BookEvent:
            out.append(P.render_book(ev.symbol, ev.seq, ev.timestamp, ev.bids, ev.asks, ev.checksum, pp, ap))
        else:
            out.append(P.render_trade(ev.symbol, ev.id, ev.timestamp, ev.side, ev.price, ev.amount, pp, ap))
    return out


def depth_of(market: Market, symbol: str) -> bytes:
    b = market.book(symbol)
    return P.render_depth(b.symbol, b.seq, b.timestamp, b.bids, b.asks, b.checksum, b.price_precision, b.amount_precision)


def pair():
    out = []
    for fast in (True, False):
        calls, books = [], []
        n = F.MockNormalizer(request=lambda a, s, calls=calls: calls.append((a, s)),
                             on_book=lambda b, books=books: books.append((b.symbol, b.seq, b.top_ticks())))
        n.rust_parsers = fast
        out.append((n, calls, books))
    return out


def state(n, calls, books):
    return {"events": list(n.out.events), "book": {k: v.rows() for k, v in n.out.book.items()},
            "trades": {k: v.rows(0) for k, v in n.out.trades.items()}, "stats": dict(n.stats), "calls": calls,
            "on_book": books, "books": {s: (b.synced, b.seq, b.timestamp, b.bids_ticks(), b.asks_ticks())
                                        for s, b in n.books.items()},
            "buffers": {s: [(e[1], e[2]) for e in v] for s, v in n.buffers.items()}}


def run_both(rows):
    (fast, *fa), (ref, *ra) = pair()
    for r in rows:
        fast.feed(r)
        ref.feed(r)
    assert state(fast, *fa) == state(ref, *ra)
    return fast


def session(seed: int, n: int, rng: random.Random, mutate=None):
    market = Market(seed=seed)
    rows = [row("open", b"ws://x/ws"), row("rest", P.render_instruments(market.instruments()), F.INSTRUMENTS_PATH)]
    frames = frames_of(market, n // 4)
    rows += [row("recv", f) for f in frames]
    for s in market.symbols:
        rows.append(row("rest", depth_of(market, s), F.depth_path(s), s))
    for f in frames_of(market, n):
        if mutate is not None and rng.random() < 0.05:
            f = mutate(f)
            if f is None:
                continue  # dropped: a gap
        rows.append(row("recv", f))
    return rows, market


def test_golden_frames():
    [m] = rb.parse_mock_book(DELTA)
    assert (m.symbol, m.seq, m.timestamp, m.checksum, m.snapshot, m.levels()) == (
        "BTC-USD", 7, 1700000000000000000, 42, False, [(0, "100.00", "1.50000000")])
    d = rb.parse_mock_depth(DEPTH)
    assert d.snapshot and d.levels() == [(0, "100.00", "1.5"), (1, "100.10", "2")]
    assert rb.parse_mock_book(b'{"type":"heartbeat","timestamp":1}') is None
    assert m.check(2, 8) is None and m.check(2, 0) is not None


def test_market_sessions_identical_books_and_the_fast_path():
    rows, market = session(3, 4000, random.Random(1))
    fast = run_both(rows)
    assert fast.stats["gaps"] == 0 and fast.stats["checksum_mismatches"] == 0 and fast.stats["malformed"] == 0
    for s in market.symbols:
        b = market.book(s)
        book = fast.books[s]
        assert book.synced and book.seq == b.seq
        assert book.bids_ticks() == list(b.bids) and book.asks_ticks() == list(b.asks)


def test_faulty_sessions_identical_on_both_paths():
    rng = random.Random(2)

    def mutate(f):
        how = rng.choice(["drop", "checksum", "flip", "cut", "precise"])
        if how == "drop":
            return None
        if how == "checksum" and b'"checksum":' in f:
            return f.replace(b'"checksum":', b'"checksum":1')
        if how == "precise":
            return f.replace(b'","', b'1","', 1)
        k = rng.randrange(len(f))
        return f[:k] if how == "cut" else f[:k] + bytes([rng.randrange(256)]) + f[k + 1:]

    for seed in range(3):
        rows, _ = session(seed, 1500, rng, mutate)
        fast = run_both(rows)
        assert fast.stats["resyncs"] > 0


REAL = [DELTA, DEPTH, DELTA.replace(b'"asks":[]', b'"asks":[["100.10","0"]]')]
TOKENS = [b'"x"', b"1", b"-1", b"1.0", b"1e3", b"true", b"null", b"[]", b'["1","2"]', b"4294967296",
          b"9223372036854775808", b"-9223372036854775808", b'"\\u0041"']


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.binary(max_size=150), st.sampled_from(REAL)), st.data())
def test_arbitrary_and_mutated_bytes(frame, data):
    for _ in range(data.draw(st.integers(0, 3))):
        if not frame:
            break
        k = data.draw(st.integers(0, len(frame) - 1))
        how = data.draw(st.sampled_from(["flip", "cut", "token"]))
        if how == "flip":
            frame = frame[:k] + bytes([data.draw(st.integers(0, 255))]) + frame[k + 1:]
        elif how == "cut":
            frame = frame[:k]
        else:
            j = frame.find(b":", k)
            if j >= 0:
                end = min([x for x in (frame.find(b",", j), frame.find(b"}", j)) if x >= 0] or [len(frame)])
                frame = frame[:j + 1] + data.draw(st.sampled_from(TOKENS)) + frame[end:]
    inst = F._instrument({"symbol": "BTC-USD", "price_precision": 2, "amount_precision": 8})
    for parse, snapshot in ((rb.parse_mock_book, False), (rb.parse_mock_depth, True)):
        try:
            m = parse(frame)
        except ValueError:
            continue
        if isinstance(m, list):
            [m] = m
        if m is None:
            continue
        doc = orjson.loads(frame)  # what Rust accepts, orjson reads the same
        if not snapshot:
            assert doc["type"] == "book"
        assert (doc["symbol"], doc["seq"], doc["timestamp"], doc["checksum"]) == (m.symbol, m.seq, m.timestamp, m.checksum)
        assert [(0, p, a) for p, a in doc["bids"]] + [(1, p, a) for p, a in doc["asks"]] == m.levels()
        try:
            F.check_book_message(inst, doc)
            ok = True
        except ValueError:
            ok = False
        assert (m.check(2, 8) is None) == ok
    rows = [row("rest", P.render_instruments([P.Instrument("BTC-USD", "BTC", "USD", 2, 8)]), F.INSTRUMENTS_PATH),
            row("recv", DELTA), row("rest", DEPTH.replace(b'"seq":7', b'"seq":6'), F.depth_path("BTC-USD"), "BTC-USD"),
            row("recv", frame), row("rest", frame, F.depth_path("BTC-USD"), "BTC-USD")]
    run_both(rows)
