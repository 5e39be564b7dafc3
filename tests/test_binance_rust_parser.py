"""Binance's Rust hot parsers (rust_book/src/binance.rs: `parse_binance_depth`,
`parse_binance_trade`, `parse_binance_snapshot`) against the Python reference path
(lab/venues/binance/protocol.py, `BinanceNormalizer.rust_parsers = False`):

* golden frames from PROTOCOLS.md section 4 give the reference's values and rows;
* arbitrary bytes and mutated real frames (byte flips, truncations, field swaps, duplicate keys,
  escapes, odd numbers) never panic, and what Rust accepts equals what the reference reads;
* whole streams (realistic diffs, trades, snapshots, gaps, combined framing, several connections,
  malformed frames) give identical rows, events, stats, requests and books from either path.

`python tests/test_binance_rust_parser.py [N]` prints the parse+apply benchmark (docs/BINANCE.md,
"Parsers").
"""
from __future__ import annotations

import itertools
import random
import sys
import time

import orjson
from hypothesis import given, settings, strategies as st

from lab import rust_book as rb
from lab.core.model import RawRow
from lab.venues.binance import protocol as P
from lab.venues.binance.feed import MS, BinanceNormalizer

DOC_DEPTH = b'{"lastUpdateId":1027024,"bids":[["4.00000000","431.00000000"]],"asks":[["4.00000200","12.00000000"]]}'
DOC_TRADE = b'{"e":"trade","E":1672515782136,"s":"BNBBTC","t":12345,"p":"0.001","q":"100","T":1672515782136,"m":true,"M":true}'
DOC_DIFF = b'{"e":"depthUpdate","E":1672515782136,"s":"BNBBTC","U":157,"u":160,"b":[["0.0024","10"]],"a":[["0.0026","100"]]}'
SPECS = [("BNBBTC", "BNB", "BTC", 8, 2), ("BTCUSDT", "BTC", "USDT", 2, 5), ("ETHUSDT", "ETH", "USDT", 2, 4)]
INFO = P.render_exchange_info(SPECS)


def wrap(frame: bytes, stream: str = "bnbbtc@depth@100ms") -> bytes:
    return b'{"stream":"' + stream.encode() + b'","data":' + frame + b"}"


GOLDEN = [DOC_DIFF, DOC_TRADE, wrap(DOC_DIFF), wrap(DOC_TRADE, "bnbbtc@trade"),
          P.render_diff("BTCUSDT", 1672515782136, 100, 104, [(6168599, 100000)], [(6168600, 0)], 2, 5),
          P.render_trade("BTCUSDT", 1672515782136, 7, 6168599, 12345, False, 2, 5, stream=True),
          b'{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":1,"b":[["61685.99100000","1"]],"a":[]}',
          b'{"e":"depthUpdate","E":1,"s":"BNBBTC","U":5,"u":9,"b":[],"a":[]}',
          b'{"result":null,"id":1}', b'{"e":"serverShutdown","E":1}', b'{"code":-1121,"msg":"Invalid symbol."}']


# -- reference readings ------------------------------------------------------------------------------
def ref_depth(payload: bytes):
    """(symbol, U, u, E ns, bids, asks) as the reference reads a depthUpdate, None otherwise."""
    try:
        msg = P.unwrap(orjson.loads(payload))
        if not isinstance(msg, dict) or msg.get("e") != "depthUpdate" or not isinstance(msg.get("s"), str):
            return None
        U, u, E = _ids_of(msg)
        for side in ("b", "a"):
            levels = msg.get(side)
            if not isinstance(levels, list) or not all(
                    isinstance(lv, list) and len(lv) == 2 and all(isinstance(x, str) for x in lv) for lv in levels):
                return None
        return msg["s"], U, u, E * MS, [tuple(lv) for lv in msg["b"]], [tuple(lv) for lv in msg["a"]]
    except (ValueError, TypeError):
        return None


def _ids_of(msg):
    U, u, E = msg.get("U"), msg.get("u"), msg.get("E")
    if not (P._int64(U) and P._int64(u) and U <= u and P._int64(E)):
        raise ValueError("ids")
    return U, u, E


def rust_depth(payload: bytes):
    try:
        msgs = rb.parse_binance_depth(payload)
    except ValueError:
        return None
    if msgs is None:
        return None
    [m] = msgs
    lv = m.levels()
    bids = [(p, a) for s, p, a in lv if s == 0]
    asks = [(p, a) for s, p, a in lv if s == 1]
    assert (m.bid_count, m.ask_count, len(m)) == (len(bids), len(asks), len(lv))
    assert [s for s, _, _ in lv] == sorted(s for s, _, _ in lv)  # bids first, then asks
    return m.symbol, m.first_id, m.last_id, m.timestamp, bids, asks


def ref_trade(payload: bytes, pp: int, ap: int):
    try:
        msg = P.unwrap(orjson.loads(payload))
        if not isinstance(msg, dict) or msg.get("e") != "trade" or not isinstance(msg.get("s"), str):
            return None
        t, T, side, price, qty = P.parse_trade(msg, pp, ap)
        return msg["s"], t, T * MS, side, price, qty
    except (ValueError, TypeError, OverflowError):
        return None


def rust_trade(payload: bytes, pp: int, ap: int):
    try:
        msgs = rb.parse_binance_trade(payload)
    except ValueError:
        return None
    if msgs is None:
        return None
    [m] = msgs
    if m.check(pp, ap) is not None:
        return None
    return m.symbol, m.id, m.timestamp, m.side, *m.values


def ref_snapshot(payload: bytes, pp: int, ap: int):
    try:
        snap = orjson.loads(payload)
        lid = P.check_snapshot(snap, pp, ap)
        return lid, [tuple(x) for x in snap["bids"]], [tuple(x) for x in snap["asks"]]
    except (ValueError, TypeError, OverflowError):
        return None


def rust_snapshot(payload: bytes, pp: int, ap: int):
    try:
        m = rb.parse_binance_snapshot(payload)
    except ValueError:
        return None
    if m.check(pp, ap) is not None:
        return None
    lv = m.levels()
    return m.last_id, [(p, a) for s, p, a in lv if s == 0], [(p, a) for s, p, a in lv if s == 1]


def levels_exact(levels, pp, ap) -> bool:
    try:
        P.check_levels([list(x) for x in levels], pp, ap, "x")
        return True
    except ValueError:
        return False


def check_frame(payload: bytes) -> None:
    """What Rust accepts, the reference reads the same (never a panic: a PanicException is a
    BaseException and fails the test)."""
    r = rust_depth(payload)
    if r is not None:
        assert r == ref_depth(payload), payload
        m = rb.parse_binance_depth(payload)[0]
        for pp, ap in ((8, 2), (2, 5), (0, 0)):
            assert (m.check(pp, ap) is None) == levels_exact(r[4] + r[5], pp, ap)
    for pp, ap in ((8, 2), (2, 5)):
        r = rust_trade(payload, pp, ap)
        if r is not None:
            assert r == ref_trade(payload, pp, ap), payload
        r = rust_snapshot(payload, pp, ap)
        if r is not None:
            assert r == ref_snapshot(payload, pp, ap), payload


# -- golden ----------------------------------------------------------------------------------------------
def test_golden_frames_equal_the_reference():
    m = rb.parse_binance_depth(DOC_DIFF)[0]
    assert (m.symbol, m.first_id, m.last_id, m.event_time) == ("BNBBTC", 157, 160, 1672515782136)
    assert m.levels() == [(0, "0.0024", "10"), (1, "0.0026", "100")] and not m.snapshot
    assert rb.parse_binance_depth(wrap(DOC_DIFF))[0].levels() == m.levels()
    [t] = rb.parse_binance_trade(DOC_TRADE)
    assert (t.symbol, t.id, t.trade_time, t.side, t.buyer_maker, t.texts()) == (
        "BNBBTC", 12345, 1672515782136, "sell", True, ("0.001", "100"))  # m=true: the taker sold
    assert t.check(8, 2) is None and t.values == (100000, 10000)
    assert t.check(2, 2) is not None  # 0.001 is finer than a 0.01 tick
    s = rb.parse_binance_snapshot(DOC_DEPTH)
    assert (s.snapshot, s.first_id, s.last_id, s.symbol, s.levels()) == (
        True, 1027024, 1027024, "", [(0, "4.00000000", "431.00000000"), (1, "4.00000200", "12.00000000")])
    assert rb.parse_binance_depth(DOC_TRADE) is None and rb.parse_binance_trade(DOC_DIFF) is None
    assert rb.parse_binance_depth(b'{"result":null,"id":1}') is None
    for frame in GOLDEN + [DOC_DEPTH]:
        check_frame(frame)
    # padding: trailing zeros beyond the tick are exact, a non-zero digit beyond it is not
    pad = rb.parse_binance_depth(b'{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":1,"b":[["61685.99000000","0.00001000"]],"a":[]}')[0]
    assert pad.check(2, 5) is None
    assert rb.parse_binance_depth(GOLDEN[6])[0].check(2, 5) is not None


def test_refused_forms_go_to_the_reference():
    for bad in (
        b'{"e":"depthUpdate","E":1,"s":"BNBBTC","U":1.0,"u":1,"b":[],"a":[]}',  # a float id
        b'{"e":"depthUpdate","E":1,"s":"BNBBTC","U":-0,"u":1,"b":[],"a":[]}',
        b'{"e":"depthUpdate","E":1,"s":"BNB\\u0042TC","U":1,"u":1,"b":[],"a":[]}',  # escapes
        b'{"e":"depthUpdate","E":1,"s":"BNBBTC","U":1,"u":1,"b":[["1","2","3"]],"a":[]}',
        b'{"e":"depthUpdate","E":9223372036855,"s":"BNBBTC","U":1,"u":1,"b":[],"a":[]}',  # E ns > int64
        b'{"stream":"x","data":"y"}',
    ):
        try:
            assert rb.parse_binance_depth(bad) is None
        except ValueError:
            pass
        check_frame(bad)


# -- the normalizer on either path --------------------------------------------------------------------
_ids = itertools.count()


def row(kind, payload, channel="ws", symbol=None, conn=1):
    i = next(_ids)
    return RawRow(i, 1_700_000_000_000_000_000 + i, conn, i, kind, channel, symbol, payload)


def depth_row(payload, symbol="BNBBTC", conn=1):
    return row("rest", payload, f"/api/v3/depth?symbol={symbol}&limit=5000", symbol, conn)


class Counting(BinanceNormalizer):
    reference_calls = 0

    def _on_frame_reference(self, row):
        self.reference_calls += 1
        super()._on_frame_reference(row)


def pair(depth: int = 0):
    out = []
    for fast in (True, False):
        calls, books, trades = [], [], []
        n = Counting(request=lambda a, s, calls=calls: calls.append((a, s)), depth=depth,
                     on_book=lambda b, books=books: books.append((b.symbol, b.seq, b.top_ticks())),
                     on_trade=lambda t, trades=trades: trades.append(t))
        n.rust_parsers = fast
        n.feed(row("rest", INFO, P.INSTRUMENTS_PATH))
        out.append((n, calls, books, trades))
    return out


def state(n, calls, books, trades):
    out = n.out
    return {
        "events": list(out.events),
        "book": {k: v.rows() for k, v in out.book.items()},
        "trades": {k: v.rows(0) for k, v in out.trades.items()},
        "stats": dict(n.stats),
        "calls": list(calls),
        "on_book": list(books),
        "on_trade": list(trades),
        "books": {s: (b.synced, b.seq, b.timestamp, b.local_timestamp, b.bids_ticks(), b.asks_ticks())
                  for s, b in n.books.items()},
        "last_trade_id": dict(n.last_trade_id),
        "buffers": {s: [(e[1], e[2], e[3]) for e in v] for s, v in n.buffers.items()},
        "owner": dict(n.owner),
        "shadow": {s: {c: [(e[0], e[3]) for e in es] for c, es in v.items()} for s, v in n.shadow.items()},
    }


def run_both(rows, depth: int = 0):
    (fast, *fa), (ref, *ra) = pair(depth)
    for r in rows:
        fast.feed(r)
        ref.feed(r)
    assert state(fast, *fa) == state(ref, *ra)
    assert ref.reference_calls >= fast.reference_calls
    return fast, ref


def test_doc_session_on_both_paths_and_the_fast_path_is_taken():
    rows = [row("recv", DOC_DIFF),
            depth_row(b'{"lastUpdateId":158,"bids":[["0.00240000","1.00000000"],["0.00230000","5"]],"asks":[["0.00270000","2"]]}'),
            row("recv", DOC_TRADE), row("recv", DOC_TRADE),
            row("recv", DOC_TRADE.replace(b'"t":12345', b'"t":12349')),  # a trade_gap
            row("recv", wrap(DOC_DIFF.replace(b'"U":157,"u":160', b'"U":161,"u":161'))),
            row("recv", DOC_DIFF.replace(b'"U":157,"u":160', b'"U":170,"u":171')),  # a gap
            depth_row(b'{"lastUpdateId":90,"bids":[],"asks":[]}'),  # stale
            depth_row(b'{"lastUpdateId":170,"bids":[],"asks":[]}'),
            row("recv", DOC_DIFF.replace(b'"U":157,"u":160', b'"U":172,"u":172').replace(b'"0.0026"', b'"0.0020"')),  # crossed
            ]
    fast, ref = run_both(rows)
    assert fast.reference_calls == 0 and ref.reference_calls == 7
    kinds = [e[2] for e in fast.out.events]
    for k in ("snapshot", "trade_gap", "gap", "stale_snapshot", "crossed_book"):
        assert k in kinds


def test_malformed_and_refused_frames_on_both_paths():
    bad = [b'{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":1,"b":[["61685.99100000","1"]],"a":[]}',
           b'{"e":"depthUpdate","E":1,"s":"NOPE","U":1,"u":1,"b":[],"a":[]}',
           b'{"e":"depthUpdate","E":1,"s":"BNBBTC","U":3,"u":2,"b":[],"a":[]}',
           b'{"e":"depthUpdate","E":1,"s":"BNBBTC","U":1,"u":2,"b":[["-0.1","1"]],"a":[]}',
           b'{"e":"depthUpdate","E":1,"s":"BNBBTC","U":1,"u":2,"b":[["0.1","-1"]],"a":[]}',
           b'{"e":"depthUpdate","E":9223372036855,"s":"BNBBTC","U":1,"u":2,"b":[],"a":[]}',
           b'{"e":"trade","E":1,"s":"BNBBTC","t":1,"p":"0.001","q":"1.001","T":1,"m":true}',
           b'{"e":"trade","E":1,"s":"BNBBTC","t":1,"p":"0.001","q":"1","T":9223372036855,"m":true}',
           b'{"e":"trade","E":1,"s":"BNBBTC","t":1,"p":"0.001","q":"1","T":1,"m":1}',
           b'{"e":"trade","s":"BNBBTC","t":2,"p":"0.001","q":"1","T":1,"m":false}',  # no E: fine
           b'{"e":"depth\\u0055pdate","E":1,"s":"BNBBTC","U":1,"u":2,"b":[],"a":[]}',
           b'{"stream":"s","data":[]}', b"[1]", b"{", b"\xff"]
    rows = [row("recv", DOC_DIFF)] + [row("recv", b) for b in bad] + [
        depth_row(b'{"lastUpdateId":158,"bids":[["0.00240000","1.001"]],"asks":[]}'),
        depth_row(b'{"code":-1121,"msg":"Invalid symbol."}'), depth_row(DOC_DEPTH, "NOPE"),
        depth_row(b'{"lastUpdateId":158,"bids":[],"asks":[]}')]
    run_both(rows)
    run_both(rows, depth=1)


def test_precision_change_while_buffered_on_both_paths():
    """A diff buffered at one precision, applied after exchangeInfo changed it: the Rust message
    parses again at the new book's precisions, with apply_wire_message's error where the
    reference's lists fail."""
    finer = P.render_exchange_info([("BNBBTC", "BNB", "BTC", 8, 3)] + SPECS[1:])
    coarser = P.render_exchange_info([("BNBBTC", "BNB", "BTC", 3, 2)] + SPECS[1:])
    for info in (finer, coarser):
        rows = [row("recv", DOC_DIFF), row("recv", DOC_DIFF.replace(b'"U":157,"u":160', b'"U":161,"u":162')),
                row("rest", info, P.INSTRUMENTS_PATH),
                depth_row(b'{"lastUpdateId":158,"bids":[["0.00200000","1.00000000"]],"asks":[["0.00300000","2"]]}')]
        fast, _ = run_both(rows)
        kinds = [e[2] for e in fast.out.events]
        assert "precision_change" in kinds and ("malformed" in kinds) == (info is coarser)


def realistic(n: int, seed: int = 7, stream: bool = False, trade_p: float = 0.2, levels: tuple = (1, 3)):
    """A simulator-like stream for SPECS: diffs of `levels` (min, max) levels near the mid, trades, a snapshot
    request answered when the first diff of a book arrives. Returns raw rows."""
    rng = random.Random(seed)
    books = {}
    for sym, _, _, pp, ap in SPECS:
        mid = rng.randint(10 ** 4, 10 ** 6)
        books[sym] = {"pp": pp, "ap": ap, "mid": mid, "bids": {mid - i: rng.randint(1, 10 ** ap) for i in range(20)},
                      "asks": {mid + 1 + i: rng.randint(1, 10 ** ap) for i in range(20)}, "u": 1000, "t": 1, "snap": False}
    out = [row("rest", INFO, P.INSTRUMENTS_PATH)]
    E = 1_700_000_000_000
    for _ in range(n):
        E += 1
        sym = rng.choice(list(books))
        b = books[sym]
        if rng.random() < trade_p:
            b["t"] += 1
            bm = rng.random() < 0.5
            price = max(b["bids"]) if bm else min(b["asks"])
            out.append(row("recv", P.render_trade(sym, E, b["t"], price, rng.randint(1, 10 ** b["ap"]), bm, b["pp"], b["ap"], stream=stream)))
            continue
        bids, asks = [], []
        for _ in range(rng.randint(*levels)):
            off = rng.randint(0, 30)
            q = 0 if rng.random() < 0.3 else rng.randint(1, 10 ** b["ap"])
            if rng.random() < 0.5:
                bids.append((b["mid"] - off, q))
            else:
                asks.append((b["mid"] + 1 + off, q))
        for side, lv in ((b["bids"], bids), (b["asks"], asks)):
            for p, q in lv:
                if q:
                    side[p] = q
                else:
                    side.pop(p, None)
        U = b["u"] + 1
        b["u"] = u = U + rng.randint(0, 3)
        out.append(row("recv", P.render_diff(sym, E, U, u, bids, asks, b["pp"], b["ap"], stream=stream)))
        if not b["snap"]:
            b["snap"] = True
            out.append(depth_row(P.render_depth(u, sorted(b["bids"].items(), reverse=True), sorted(b["asks"].items()),
                                                b["pp"], b["ap"]), sym))
    return out, books


def test_realistic_stream_equal_books_no_gaps():
    for stream in (False, True):
        rows, truth = realistic(3000, seed=3, stream=stream)
        fast, ref = run_both(rows)
        assert fast.reference_calls == 0
        assert fast.stats["gaps"] == 0 and fast.stats["malformed"] == 0
        for sym, b in truth.items():
            book = fast.books[sym]
            assert book.synced and book.seq == b["u"]
            assert book.bids_ticks() == sorted(b["bids"].items(), reverse=True) and book.asks_ticks() == sorted(b["asks"].items())


def test_two_connections_handover_on_both_paths():
    """A make-before-break rotation: conn 2 subscribes while conn 1 feeds, both deliver the same
    stream, conn 1 closes: the shadowed entries (Rust messages on the fast path) are replayed."""
    rows, _ = realistic(400, seed=5)
    frames = [r for r in rows[1:] if r.kind == "recv"]
    snaps = [r for r in rows[1:] if r.kind == "rest"]
    out = [row("open", b"ws://x/ws", conn=1), row("send", P.subscribe_frame([s for s, *_ in SPECS]), conn=1)]
    out += snaps[:1]
    half = len(frames) // 2
    for r in frames[:half]:
        out.append(row("recv", r.payload, conn=1))
    out += snaps[1:]
    out += [row("open", b"ws://x/ws", conn=2), row("send", P.subscribe_frame([s for s, *_ in SPECS]), conn=2),
            row("recv", b'{"result":null,"id":1}', conn=2)]
    for r in frames[half - 20:half + 40]:
        out.append(row("recv", r.payload, conn=2))
    for r in frames[half:half + 30]:
        out.append(row("recv", r.payload, conn=1))
    out.append(row("close", b"rotated", conn=1))
    for r in frames[half + 40:]:
        out.append(row("recv", r.payload, conn=2))
    fast, _ = run_both(out)
    assert "handover" in [e[2] for e in fast.out.events]


# -- hypothesis -------------------------------------------------------------------------------------------
@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_panic(data):
    check_frame(data)
    for parse in (rb.parse_binance_depth, rb.parse_binance_trade, rb.parse_binance_snapshot):
        try:
            parse(data)
        except ValueError:
            pass


REAL = GOLDEN + [DOC_DEPTH, P.render_depth(7, [(100, 1), (99, 2)], [(101, 3)], 2, 5)]
KEYS = [b'"e"', b'"E"', b'"s"', b'"U"', b'"u"', b'"b"', b'"a"', b'"t"', b'"p"', b'"q"', b'"T"', b'"m"',
        b'"lastUpdateId"', b'"bids"', b'"asks"', b'"stream"', b'"data"']
TOKENS = [b'"x"', b"1", b"-1", b"1.0", b"1e3", b"true", b"false", b"null", b"[]", b"{}", b'["1","2"]',
          b"9223372036854775807", b"9223372036854775808", b'"0.00000001"', b'"-0"', b"0", b'"\\u0041"']


def mutate(frame: bytes, data) -> bytes:
    f = bytearray(frame)
    for _ in range(data.draw(st.integers(1, 3))):
        how = data.draw(st.sampled_from(["flip", "cut", "swap", "key", "token", "dup", "ws"]))
        if not f:
            break
        k = data.draw(st.integers(0, len(f) - 1))
        if how == "flip":
            f[k] = data.draw(st.integers(0, 255))
        elif how == "cut":
            del f[k:]
        elif how == "swap":  # two keys trade places (their values swap)
            a, b = data.draw(st.sampled_from(KEYS)), data.draw(st.sampled_from(KEYS))
            f = bytearray(bytes(f).replace(a, b"\x00").replace(b, a).replace(b"\x00", b))
        elif how == "key":  # a key renamed
            f = bytearray(bytes(f).replace(data.draw(st.sampled_from(KEYS)), data.draw(st.sampled_from(KEYS)), 1))
        elif how == "token":  # a value replaced
            s = bytes(f)
            j = s.find(b":", k)
            if j >= 0:
                end = min([x for x in (s.find(b",", j), s.find(b"}", j)) if x >= 0] or [len(s)])
                f = bytearray(s[:j + 1] + data.draw(st.sampled_from(TOKENS)) + s[end:])
        elif how == "dup":  # a field repeated at the end
            s = bytes(f)
            if s.endswith(b"}"):
                f = bytearray(s[:-1] + b"," + data.draw(st.sampled_from(KEYS)) + b":" + data.draw(st.sampled_from(TOKENS)) + b"}")
        else:
            f[k:k] = data.draw(st.sampled_from([b" ", b"\n", b"\t"]))
    return bytes(f)


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(REAL), st.data())
def test_mutated_frames_equal_the_reference_or_are_refused(frame, data):
    check_frame(mutate(frame, data))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(REAL + [b"snap"]), st.booleans()), min_size=1, max_size=12), st.data())
def test_mutated_sessions_give_identical_outputs(frames, data):
    rows = [row("recv", DOC_DIFF), depth_row(DOC_DEPTH.replace(b"1027024", b"158").replace(b"4.000002", b"4.100002"))]
    for f, mut in frames:
        if f == b"snap":
            rows.append(depth_row(mutate(DOC_DEPTH, data) if mut else DOC_DEPTH))
        else:
            rows.append(row("recv", mutate(f, data) if mut else f))
    run_both(rows)


# -- benchmark ---------------------------------------------------------------------------------------------
def bench(n: int = 300_000, levels: tuple = (1, 3)) -> None:
    """Frames/s of parse + apply, Rust vs the reference: (1) the parser and apply alone (one
    `depthUpdate` / `trade` per frame); (2) the whole normalizer (`feed` per raw row)."""
    rows, _ = realistic(n, seed=11, trade_p=0.2, levels=levels)
    frames = [r.payload for r in rows if r.kind == "recv"]
    depth = [f for f in frames if b"depthUpdate" in f]
    trades = [f for f in frames if b'"trade"' in f]
    prec = {s: (p, a) for s, _, _, p, a in SPECS}

    def kernel_rust():
        books = {s: rb.OrderBook("binance", s, p, a) for s, (p, a) in prec.items()}
        cols = rb.BookRows()
        for f in depth:
            m = rb.parse_binance_depth(f)[0]
            p, a = prec[m.symbol]
            if m.check(p, a) is None:
                m.apply(books[m.symbol], cols, m.timestamp, 0, 0)
        tcols = rb.TradeRows()
        for f in trades:
            t = rb.parse_binance_trade(f)[0]
            p, a = prec[t.symbol]
            if t.check(p, a) is None:
                t.apply(tcols, p, a, 0, 0, None)

    def kernel_ref():
        books = {s: rb.OrderBook("binance", s, p, a) for s, (p, a) in prec.items()}
        cols = rb.BookRows()
        for f in depth:
            msg = P.unwrap(orjson.loads(f))
            p, a = prec[msg["s"]]
            U, u, E = P.check_diff(msg, p, a)
            books[msg["s"]].apply_wire_message(msg["b"], msg["a"], cols, E * MS, 0, 0, U, u, None, False)
        tcols = rb.TradeRows()
        for f in trades:
            msg = P.unwrap(orjson.loads(f))
            p, a = prec[msg["s"]]
            t, T, side, price, qty = P.parse_trade(msg, p, a)
            tcols.push(T * MS, 0, str(t), side, price, qty, 0)

    def normalizer(fast):
        n = BinanceNormalizer()
        n.rust_parsers = fast
        for r in rows:
            n.feed(r)
        return n

    print(f"{len(frames)} frames ({len(depth)} depthUpdate of {levels[0]}-{levels[1]} levels, {len(trades)} trade), "
          f"{len(SPECS)} symbols, {sum(map(len, frames)) / len(frames):.0f} bytes a frame")
    for name, fn in (("kernel rust", kernel_rust), ("kernel reference", kernel_ref),
                     ("normalizer rust", lambda: normalizer(True)), ("normalizer reference", lambda: normalizer(False))):
        best = min(_timed(fn) for _ in range(3))
        print(f"{name:22s} {len(frames) / best:12,.0f} frames/s  ({best:.2f} s)")


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
    bench(count)
    bench(count // 4, levels=(10, 30))
