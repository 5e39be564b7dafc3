"""Hostile input into every normalizer (issue 8, deliverables 2 and 9).

Contract (docs/ARCHITECTURE.md, "Malformed frames"): for ANY raw row `Normalizer.feed` returns;
a frame that cannot be normalized is a `malformed` events row (counted in stats); a book that
saw one is unsynced and a resync is requested; a synced book always equals the venue's book at
its seq; after a fresh valid snapshot the book equals the reference again.

Streams are real: the mock venue's seeded `Market` rendered by its protocol module (the bytes the
simulator sends, with `Market.book_at` as the reference book), and Kraken v1/v2 frames built from
a Python reference book with the PROTOCOLS.md checksum (`tests/oracles/kraken.py`), starting from
the documented golden snapshot (vector D).
"""
from __future__ import annotations

import copy
import itertools
import re
import os
import random

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from lab.core.model import RawRow
from lab.core.events import REQUEST_RESUBSCRIBE, REQUEST_SNAPSHOT
from lab.venues.kraken import feed as K
from lab.venues.kraken import protocol as KP
from oracles.kraken import wire_checksum
from lab.venues.mock import feed as M
from lab.venues.mock import protocol as MP
from lab.venues.mock.market import BookEvent, Market

# CI runs a fixed, deterministic set; LAB_FUZZ_EXAMPLES=5000 for a longer hunt.
EXAMPLES = int(os.environ.get("LAB_FUZZ_EXAMPLES", "150"))
# No shrinking: a failure prints the example as found (shrinking these states takes minutes).
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 200, database=None,
                suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])


# ============================================================================= harness

class Run:
    """One normalizer and the invariants checked after every row fed to it."""

    def __init__(self, module, reference=None):
        self.requests: list[tuple[str, str]] = []
        self.n = module.Normalizer(request=lambda a, s: self.requests.append((a, s)))
        self.rec = itertools.count(1)
        self.reference = reference  # (venue symbol, book) -> the venue's book at book.seq, or None
        self.malformed = 0

    def feed(self, kind: str, payload: bytes, channel: str = "ws", symbol: str | None = None) -> list[tuple]:
        i = next(self.rec)
        row = RawRow(i, 1_700_000_000_000_000_000 + i, 1, i, kind, channel, symbol, payload)
        n = self.n
        before_ev, before_bad, before_req = len(n.out.events), n.stats["malformed"], len(self.requests)
        n.feed(row)  # the property: never raises
        new = n.out.events[before_ev:]
        bad = [e for e in new if e[2] == "malformed"]
        # every malformed frame is counted and is an events row at its rec_id
        assert n.stats["malformed"] - before_bad == len(bad), (new, payload[:200])
        assert all(e[1] == i for e in new)
        for e in bad:
            assert isinstance(e[4], str) and e[4]
            # A frame naming a book: that book is unsynced and a resync requested. (A bad REST
            # snapshot never touched the book: a synced one stays synced, an unsynced one is
            # asked for again.)
            # A bad trade names its pair but touches no book.
            if e[3] is not None and kind != "rest" and "trade" not in e[4].split(";")[0]:
                vs = self.venue_symbol(e[3])
                assert vs is not None and not n.books[vs].synced, (e, payload[:200])
                assert len(self.requests) > before_req or vs in getattr(n, "resyncing", ()), (e, payload[:200])
        self.malformed += len(bad)
        for e in new:  # events rows hold strings (the events table's schema)
            assert isinstance(e[2], str) and (e[3] is None or isinstance(e[3], str)) and isinstance(e[4], str)
        self.check_books()
        return new

    def venue_symbol(self, canonical: str) -> str | None:
        for vs, inst in self.n.instruments.items():
            if inst.symbol == canonical:
                return vs
        return None

    def check_books(self) -> None:
        if self.reference is None:
            return
        for vs, book in self.n.books.items():
            if book.synced:
                bids, asks = self.reference(vs, book)
                assert (book.bids_ticks(), book.asks_ticks()) == (bids, asks), f"{vs} synced but wrong at seq {book.seq}"


# ============================================================================= mock venue

MARKET_SEED = 7
_market = Market(seed=MARKET_SEED)
_specs = {s.symbol: s for s in _market.specs}
# the venue's book after each of its messages (the reference; Market.book_at, precomputed)
_books = {(s, 0): _market.book(s) for s in _specs}
_events = []
for _ in range(300):
    _ev = _market.next_event()
    _events.append(_ev)
    if isinstance(_ev, BookEvent):
        _books[(_ev.symbol, _ev.seq)] = _market.book(_ev.symbol)
INSTRUMENTS = MP.render_instruments(_market.instruments())


def _render(ev) -> bytes:
    s = _specs[ev.symbol]
    if isinstance(ev, BookEvent):
        return MP.render_book(ev.symbol, ev.seq, ev.timestamp, ev.bids, ev.asks, ev.checksum, s.price_precision, s.amount_precision)
    return MP.render_trade(ev.symbol, ev.id, ev.timestamp, ev.side, ev.price, ev.amount, s.price_precision, s.amount_precision)


MOCK_FRAMES = [_render(ev) for ev in _events]
MOCK_BOOK_FRAMES = [f for ev, f in zip(_events, MOCK_FRAMES) if isinstance(ev, BookEvent)]
MOCK_TRADE_FRAMES = [f for ev, f in zip(_events, MOCK_FRAMES) if not isinstance(ev, BookEvent)]


def mock_depth(symbol: str, seq: int) -> bytes:
    b = _books[(symbol, seq)]
    return MP.render_depth(symbol, b.seq, b.timestamp, b.bids, b.asks, b.checksum, b.price_precision, b.amount_precision)


def mock_reference(symbol: str, book):
    b = _books[(symbol, book.seq)]
    return list(b.bids), list(b.asks)


def mock_run() -> Run:
    run = Run(M, mock_reference)
    run.feed("rest", INSTRUMENTS, M.INSTRUMENTS_PATH)
    run.feed("open", b"ws://127.0.0.1/ws")
    run.feed("recv", MP.render_subscribed(list(_specs), ["book", "trades"]))
    return run


def mock_at(state: str, upto: int) -> Run:
    """A mock normalizer that has seen the first `upto` frames, in `state`:
    "unknown" (no instruments), "buffering" (deltas buffered, no snapshot yet), "synced"."""
    if state == "unknown":
        run = Run(M, mock_reference)
        for f in MOCK_FRAMES[:upto]:
            run.feed("recv", f)
        return run
    run = mock_run()
    if state == "synced":
        for s in _specs:
            run.feed("rest", mock_depth(s, 0), M.depth_path(s), s)
            assert run.n.books[s].synced
    for f in MOCK_FRAMES[:upto]:
        run.feed("recv", f)
    return run


def mock_recover(run: Run) -> None:
    """A fresh valid snapshot per symbol at the market's seq: every book equals the reference."""
    for s in _specs:
        seq = max(ev.seq for ev in _events if isinstance(ev, BookEvent) and ev.symbol == s)
        run.feed("rest", mock_depth(s, seq), M.depth_path(s), s)
        if not run.n.books[s].synced:  # a buffered delta that cannot follow this snapshot: visible
            assert any(e[2] == "stale_snapshot" for e in run.n.out.events), run.n.out.events[-5:]
            run.feed("close", b"reconnect")
            run.feed("open", b"ws://127.0.0.1/ws")
            run.feed("rest", mock_depth(s, seq), M.depth_path(s), s)
        book = run.n.books[s]
        assert book.synced and book.seq == seq
        assert (book.bids_ticks(), book.asks_ticks()) == mock_reference(s, book)


def _delta(seq_index: int = 0) -> dict:
    return orjson.loads(MOCK_BOOK_FRAMES[seq_index])


# -- the killers of issue 8, each in every state -------------------------------------------

def _killers():
    d = _delta()
    bid = d["bids"][0] if d["bids"] else ["60000.00", "0.10000000"]
    k = {
        "too_many_decimals": {"bids": [[bid[0] + "001", bid[1]]]},
        "exponent": {"bids": [["1e30", bid[1]]]},
        "numbers_not_strings": {"bids": [[60000.0, 0.1]]},
        "one_element_level": {"bids": [[bid[0]]]},
        "non_integer_seq": {"seq": "12"},
        "float_seq": {"seq": 12.5},
        "string_timestamp": {"timestamp": "2024-01-01"},
        "negative_amount": {"bids": [[bid[0], "-" + bid[1]]]},
        "huge_seq": {"seq": 10**30},
        "list_symbol": {"symbol": ["BTC-USD"]},
        "dict_symbol": {"symbol": {"a": 1}},
        "no_checksum": {"checksum": None},
    }
    return k


@pytest.mark.parametrize("state", ["unknown", "buffering", "synced"])
@pytest.mark.parametrize("killer", sorted(_killers()))
def test_mock_killers(state, killer):
    run = mock_at(state, 40)
    # the next real book delta after frame 40, broken
    idx = next(i for i in range(40, len(MOCK_FRAMES)) if isinstance(_events[i], BookEvent))
    msg = orjson.loads(MOCK_FRAMES[idx])
    for key, v in _killers()[killer].items():
        if v is None:
            msg.pop(key)
        else:
            msg[key] = v
    symbol = _events[idx].symbol
    run.feed("recv", _dumps(msg))
    if state == "unknown":
        return
    assert run.malformed == 1
    ev = [e for e in run.n.out.events if e[2] == "malformed"][-1]
    assert f"rec {run.n.out.events[-1][1]}" in ev[4] or f"seq" in ev[4]
    if killer not in ("list_symbol", "dict_symbol"):
        assert ev[3] == symbol and not run.n.books[symbol].synced
        assert (REQUEST_SNAPSHOT, symbol) in run.requests
    # the rest of the stream, then a fresh snapshot: right again (nothing skipped silently)
    for f in MOCK_FRAMES[idx + 1:]:
        run.feed("recv", f)
    mock_recover(run)


def test_mock_buffered_malformed_delta_is_not_skipped_over():
    """A delta that is malformed while its book buffers breaks the sequence there: a snapshot
    from before it must not sync the book by applying the deltas after it."""
    run = mock_at("buffering", 0)
    s = _events[0].symbol
    book_events = [(i, ev) for i, ev in enumerate(_events) if isinstance(ev, BookEvent) and ev.symbol == s]
    (i1, e1), (i2, e2) = book_events[1], book_events[2]
    for f in MOCK_FRAMES[: i2]:
        run.feed("recv", f)
    bad = orjson.loads(MOCK_FRAMES[i2])
    bad["bids"] = [["1e30", "1"]]
    run.feed("recv", _dumps(bad))
    assert run.malformed == 1 and (REQUEST_SNAPSHOT, s) in run.requests
    for f in MOCK_FRAMES[i2 + 1:]:
        run.feed("recv", f)
    run.feed("rest", mock_depth(s, e1.seq), M.depth_path(s), s)  # from before the bad delta
    assert not run.n.books[s].synced
    mock_recover(run)


def test_mock_list_symbol_in_every_message_kind():
    run = mock_at("synced", 10)
    for t in ("book", "trade", "subscribed", "error", "hello", "heartbeat"):
        run.feed("recv", orjson.dumps({"type": t, "symbol": ["BTC-USD"], "symbols": [["x"]], "message": [1]}))
    run.feed("recv", orjson.dumps({"type": ["book"]}))
    run.feed("send", b"[1,2]")
    run.feed("send", b'"subscribe"')
    run.feed("note", b'{"kind":["x"],"symbol":[1],"detail":{"a":1}}')
    run.feed("note", b"[]")
    run.feed("rest_error", b"\xff\xfe", "/api/depth?symbol=X", "BTC-USD")
    assert run.n.books["BTC-USD"].synced  # nothing touched the books
    for f in MOCK_FRAMES[10:]:
        run.feed("recv", f)
    mock_recover(run)


# -- fuzzing ---------------------------------------------------------------------------------

HOSTILE_VALUES = st.sampled_from([  # deep-copied where drawn: the lists and dicts are edited in place
    None, True, False, 0, -1, 1.5, 10**30, -(10**30), 2**63, 2**64, float("inf"), float("nan"), 1e308,
    "", "x", "1e30", "-1", "NaN", "Infinity", "0x10", "1.0000000000000000001", "١٢٣", "\u0000", "\ud7ff" * 3,
    "9" * 400, [], [[]], [["1"]], [["1", "1", "1"]], {}, {"a": [1]}, [None], [1, 2], "BTC-USD", "ETH-USD",
])


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, prefix + (i,))


def _set(doc, path, value):
    if not path:
        return value
    parent = doc
    for p in path[:-1]:
        parent = parent[p]
    parent[path[-1]] = value
    return doc


def _delete(doc, path):
    if not path:
        return doc
    parent = doc
    for p in path[:-1]:
        parent = parent[p]
    del parent[path[-1]]
    return doc


@st.composite
def json_mutant(draw, frames: list[bytes]) -> bytes:
    """A structure-aware mutant of one real frame: 1-3 JSON edits (a value replaced by a hostile
    one, a key deleted, a value wrapped in a list or deeply nested, a key added) or a byte-level
    truncation / flip / unicode splice of the serialized frame."""
    raw = draw(st.sampled_from(frames))
    doc = orjson.loads(raw)
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(doc))
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["value", "value", "value", "delete", "wrap", "nest", "add", "string_num"]))
        try:
            if op == "value":
                doc = _set(doc, path, copy.deepcopy(draw(HOSTILE_VALUES)))
            elif op == "delete":
                doc = _delete(doc, path)
            elif op == "wrap":
                cur = doc
                for p in path:
                    cur = cur[p]
                doc = _set(doc, path, [cur])
            elif op == "nest":
                doc = _set(doc, path, [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[0]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]])
            elif op == "add" and isinstance(doc, dict):
                doc[draw(st.sampled_from(["type", "symbol", "seq", "channel", "event", "x"]))] = copy.deepcopy(draw(HOSTILE_VALUES))
            elif op == "string_num":  # a numeric string with more decimals / an exponent
                cur = doc
                for p in path:
                    cur = cur[p]
                if isinstance(cur, str):
                    doc = _set(doc, path, cur + draw(st.sampled_from(["1", "0000000001", "e5", "e-400", ".5", "x"])))
        except (KeyError, IndexError, TypeError):
            pass
    out = _dumps(doc)
    byte_op = draw(st.sampled_from(["none", "none", "none", "truncate", "flip", "unicode"]))
    if byte_op == "truncate" and out:
        out = out[: draw(st.integers(0, len(out) - 1))]
    elif byte_op == "flip" and out:
        k = draw(st.integers(0, len(out) - 1))
        out = out[:k] + bytes([draw(st.integers(0, 255))]) + out[k + 1:]
    elif byte_op == "unicode" and out:
        k = draw(st.integers(0, len(out)))
        out = out[:k] + draw(st.sampled_from(["é", "\u2028", "\U0001f600", "\ufeff"])).encode() + out[k:]
    return out


def _dumps(doc) -> bytes:
    """orjson, or the stdlib for what orjson refuses to write: ints beyond 64 bits, and NaN /
    Infinity as bare tokens (not JSON, but venues have sent them)."""
    import json
    import math

    def odd(v):
        if isinstance(v, float):
            return not math.isfinite(v)
        if isinstance(v, int) and not isinstance(v, bool):
            return not -(1 << 63) <= v < (1 << 64)
        if isinstance(v, dict):
            return any(odd(x) for x in v.values())
        if isinstance(v, list):
            return any(odd(x) for x in v)
        return False

    if odd(doc):
        return json.dumps(doc).encode()
    return orjson.dumps(doc)


STATES = st.sampled_from(["unknown", "buffering", "synced", "after_gap"])


def _mock_state(state: str, upto: int) -> Run:
    if state != "after_gap":
        return mock_at(state, upto)
    run = mock_at("synced", 0)
    book_idx = [i for i, ev in enumerate(_events[:upto]) if isinstance(ev, BookEvent)]
    drop = set(book_idx[len(book_idx) // 2: len(book_idx) // 2 + 1])
    for i, f in enumerate(MOCK_FRAMES[:upto]):
        if i not in drop:
            run.feed("recv", f)
    return run


@FUZZ
@given(state=STATES, upto=st.integers(0, 120), payload=st.binary(max_size=300))
def test_mock_arbitrary_bytes(state, upto, payload):
    run = _mock_state(state, upto)
    for kind, channel in (("recv", "ws"), ("rest", M.INSTRUMENTS_PATH), ("rest", M.depth_path("BTC-USD")),
                          ("send", "ws"), ("note", ""), ("open", "ws"), ("close", "ws"), ("rest_error", "/api/depth")):
        run.feed(kind, payload, channel, "BTC-USD" if channel.startswith("/api/depth") else None)
    if state != "unknown":
        for f in MOCK_FRAMES[upto:]:
            run.feed("recv", f)
        mock_recover(run)


@FUZZ
@given(state=STATES, upto=st.integers(0, 150), mutants=st.lists(json_mutant(MOCK_FRAMES), min_size=1, max_size=3))
def test_mock_mutated_frames(state, upto, mutants):
    run = _mock_state(state, upto)
    for m in mutants:
        run.feed("recv", m)
    if state != "unknown":
        for f in MOCK_FRAMES[upto:]:
            run.feed("recv", f)
        mock_recover(run)


_DEPTHS = [mock_depth(s, 0) for s in _specs] + [mock_depth("BTC-USD", 5)]


@FUZZ
@given(state=STATES, rest=st.lists(st.one_of(json_mutant([INSTRUMENTS]).map(lambda b: ("i", b)),
                                            json_mutant(_DEPTHS).map(lambda b: ("d", b))), min_size=1, max_size=3))
def test_mock_mutated_rest_bodies(state, rest):
    run = _mock_state(state, 60)
    for what, body in rest:
        if what == "i":
            run.feed("rest", body, M.INSTRUMENTS_PATH)
        else:
            run.feed("rest", body, M.depth_path("BTC-USD"), "BTC-USD")
    if state != "unknown":
        if set(run.n.instruments) != set(_specs) or any(
            (i.price_precision, i.amount_precision) != (_specs[s].price_precision, _specs[s].amount_precision)
            for s, i in run.n.instruments.items()
        ):
            run.feed("rest", INSTRUMENTS, M.INSTRUMENTS_PATH)  # a mutated instruments body changed them
        for f in MOCK_FRAMES[60:]:
            run.feed("recv", f)
        mock_recover(run)


# ============================================================================= Kraken v1 / v2

PAIR = "XBT/USD"  # pair_decimals 1, lot_decimals 8 (PROTOCOLS.md section 1)
ASSET_PAIRS = orjson.dumps({"error": [], "result": {s.internal: s.asset_pair() for s in KP.PAIRS}})
DEPTH = 10


def _p(t: int) -> str:
    return f"{t // 10}.{t % 10}"


def _v(lots: int) -> str:
    return f"{lots // 10**8}.{lots % 10**8:08d}"


class KrakenRef:
    """The venue's book for one pair (ticks, lots), truncated to the subscribed depth."""

    def __init__(self, asks: dict[int, int], bids: dict[int, int]):
        self.asks, self.bids = dict(asks), dict(bids)
        self.truncate()

    def truncate(self):
        self.asks = dict(sorted(self.asks.items())[:DEPTH])
        self.bids = dict(sorted(self.bids.items(), reverse=True)[:DEPTH])

    def levels(self):
        return sorted(self.bids.items(), reverse=True), sorted(self.asks.items())

    def checksum(self) -> int:
        bids, asks = self.levels()
        return wire_checksum([(_p(p), _v(a)) for p, a in asks[:10]], [(_p(p), _v(a)) for p, a in bids[:10]])


# vector D of PROTOCOLS.md: the golden 10x10 BTC/USD snapshot
_VD_ASKS = [("45285.2", "0.00100000"), ("45286.4", "1.54571953"), ("45286.6", "1.54571109"), ("45289.6", "1.54560911"),
            ("45290.2", "0.15890660"), ("45291.8", "1.54553491"), ("45294.7", "0.04454749"), ("45296.1", "0.35380000"),
            ("45297.5", "0.09945542"), ("45299.5", "0.18772827")]
_VD_BIDS = [("45283.5", "0.10000000"), ("45283.4", "1.54582015"), ("45282.1", "0.10000000"), ("45281.0", "0.10000000"),
            ("45280.3", "1.54592586"), ("45279.0", "0.07990000"), ("45277.6", "0.03310103"), ("45277.5", "0.30000000"),
            ("45277.3", "1.54602737"), ("45276.6", "0.15445238")]


def _ticks(levels):
    return {int(p.replace(".", "")): int(a.replace(".", "")) for p, a in levels}


def kraken_stream(api: str, n: int = 60, seed: int = 3):
    """(snapshot frame, [(update frame, reference levels after it)]) in the api's wire form."""
    rng = random.Random(seed)
    ref = KrakenRef(_ticks(_VD_ASKS), _ticks(_VD_BIDS))
    ts = 1_696_613_755
    snap = _k_frame(api, ref, None, True, ts)
    out = []
    for i in range(n):
        changes = []
        for _ in range(rng.randint(1, 3)):
            side = rng.choice("ab")
            book = ref.asks if side == "a" else ref.bids
            if book and rng.random() < 0.3:
                price, lots = rng.choice(sorted(book)), 0
            else:
                best = min(ref.asks) if side == "a" else max(ref.bids)
                price = best + (rng.randint(0, 30) if side == "a" else -rng.randint(0, 30))
                lots = rng.randint(1, 3 * 10**8)
            if lots:
                book[price] = lots
            else:
                book.pop(price, None)
            changes.append((side, price, lots))
        ref.truncate()
        out.append((_k_frame(api, ref, changes, False, ts + i + 1), ref.levels()))
    return snap, out


def _k_frame(api, ref: KrakenRef, changes, snapshot: bool, ts: int) -> bytes:
    t = f"{ts}.000001"
    if api == "v1":
        if snapshot:
            bids, asks = ref.levels()
            return orjson.dumps([42, {"as": [[_p(p), _v(a), t] for p, a in asks], "bs": [[_p(p), _v(a), t] for p, a in bids]},
                                 "book-10", PAIR])
        a = [[_p(p), _v(l), t] for s, p, l in changes if s == "a"]
        b = [[_p(p), _v(l), t] for s, p, l in changes if s == "b"]
        d: dict = {}
        if a:
            d["a"] = a
        if b:
            d["b"] = b
        d["c"] = str(ref.checksum())
        return orjson.dumps([42, d, "book-10", PAIR])
    # v2: numbers as exact tokens
    if snapshot:
        bids, asks = ref.levels()
        lv = lambda levels: ",".join(f'{{"price":{_p(p)},"qty":{_v(a)}}}' for p, a in levels)  # noqa: E731
        return (f'{{"channel":"book","type":"snapshot","data":[{{"symbol":"BTC/USD","bids":[{lv(bids)}],'
                f'"asks":[{lv(asks)}],"checksum":{ref.checksum()}}}]}}').encode()
    lv = lambda side: ",".join(f'{{"price":{_p(p)},"qty":{_v(l)}}}' for s, p, l in changes if s == side)  # noqa: E731
    return (f'{{"channel":"book","type":"update","data":[{{"symbol":"BTC/USD","bids":[{lv("b")}],"asks":[{lv("a")}],'
            f'"checksum":{ref.checksum()},"timestamp":"2023-10-06T17:35:55.440295Z"}}]}}').encode()


STREAMS = {api: kraken_stream(api) for api in ("v1", "v2")}
KRAKEN_TRADES = [
    orjson.dumps([337, [["45283.5", "0.10000000", "1534614057.321597", "s", "l", ""]], "trade", PAIR]),
    b'{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy","price":45283.5,"qty":0.1,'
    b'"ord_type":"limit","trade_id":7,"timestamp":"2023-09-25T07:48:36.925533Z"}]}',
]
KRAKEN_EVENTS = [
    b'{"channelID":42,"channelName":"book-10","event":"subscriptionStatus","pair":"XBT/USD","status":"subscribed","subscription":{"depth":10,"name":"book"}}',
    b'{"errorMessage":"Subscription depth not supported","event":"subscriptionStatus","pair":"XBT/USD","status":"error","subscription":{"depth":42,"name":"book"}}',
    b'{"connectionID":17843232920108168701,"event":"systemStatus","status":"online","version":"1.8.3"}',
    b'{"event":"heartbeat"}', b'{"event":"pong","reqid":42}',
    b'{"method":"subscribe","result":{"channel":"book","depth":10,"snapshot":true,"symbol":"BTC/USD"},"success":true}',
    b'{"channel":"status","type":"update","data":[{"api_version":"v2","connection_id":1,"system":"online","version":"2.0.0"}]}',
    b'{"method":"pong","req_id":101}',
]
KRAKEN_DEPTH = (b'{"error":[],"result":{"XXBTZUSD":{"asks":[["45285.20000","0.001",1688671659]],'
                b'"bids":[["45283.50000","0.100",1688671636]]}}}')


class KrakenRun(Run):
    def __init__(self, api: str):
        self.expected = None  # reference levels of the last valid frame fed
        super().__init__(K, lambda vs, book: self.expected)
        self.api = api

    def check_books(self) -> None:
        book = self.n.books.get(PAIR)
        if book is not None and book.synced and self.expected is not None:
            assert (book.bids_ticks(), book.asks_ticks()) == self.expected


def kraken_at(api: str, state: str, upto: int) -> KrakenRun:
    run = KrakenRun(api)
    snap, updates = STREAMS[api]
    if state != "unknown":
        run.feed("rest", ASSET_PAIRS, K.INSTRUMENTS_PATH)
    run.feed("open", b"wss://x")
    run.feed("recv", KRAKEN_EVENTS[0] if api == "v1" else KRAKEN_EVENTS[5])
    if state in ("synced", "after_gap"):
        run.expected = KrakenRef(_ticks(_VD_ASKS), _ticks(_VD_BIDS)).levels()
        run.feed("recv", snap)
        assert run.n.books[PAIR].synced
    for i, (frame, levels) in enumerate(updates[:upto]):
        if state == "after_gap" and i == upto // 2:
            run.expected = None  # the lost update: the book is wrong until a resync
            continue
        if run.expected is not None:
            run.expected = levels
        run.feed("recv", frame)
    return run


def kraken_recover(run: KrakenRun) -> None:
    """After the stream, a resubscription's fresh snapshot (the venue's current book)."""
    snap, updates = STREAMS[run.api]
    _, last = updates[-1]
    bids, asks = last
    ref = KrakenRef(dict(asks), dict(bids))
    run.expected = ref.levels()
    run.feed("recv", _k_frame(run.api, ref, None, True, 1_700_000_000))
    book = run.n.books[PAIR]
    assert book.synced and (book.bids_ticks(), book.asks_ticks()) == run.expected


def _kraken_killers(api):
    snap, updates = STREAMS[api]
    frame = updates[0][0]
    if api == "v1":
        m = orjson.loads(frame)
        d = m[1]
        side = "a" if "a" in d else "b"
        lvl = d[side][0]
        edits = {
            "too_many_decimals": lambda: d[side].__setitem__(0, [lvl[0] + "01", lvl[1], lvl[2]]),
            "exponent": lambda: d[side].__setitem__(0, ["1e30", lvl[1], lvl[2]]),
            "numbers_not_strings": lambda: d[side].__setitem__(0, [float(lvl[0]), float(lvl[1]), lvl[2]]),
            "one_element_level": lambda: d[side].__setitem__(0, [lvl[0]]),
            "string_timestamp": lambda: d[side].__setitem__(0, [lvl[0], lvl[1], "yesterday"]),
            "negative_amount": lambda: d[side].__setitem__(0, [lvl[0], "-" + lvl[1], lvl[2]]),
            "checksum_number": lambda: d.__setitem__("c", 10**30),
            "checksum_huge": lambda: d.__setitem__("c", "9" * 30),
            "levels_not_list": lambda: d.__setitem__(side, 5),
        }
        out = {}
        for name, edit in edits.items():
            m = orjson.loads(frame)
            d = m[1]
            lvl = d[side][0]
            edit()
            out[name] = _dumps(m)
        return out
    text = frame.decode()
    return {
        "too_many_decimals": re.sub(r'"price":([0-9.]+)', r'"price":\g<1>01', text, count=1).encode(),
        "exponent": text.replace('"price":', '"price":1e30,"x":', 1).encode(),
        "string_price": text.replace('"price":', '"price":"1","y":', 1).encode(),
        "negative_qty": text.replace('"qty":', '"qty":-', 1).encode(),
        "data_not_list": b'{"channel":"book","type":"update","data":5,"symbol":"BTC/USD"}',
        "checksum_string": text.replace('"checksum":', '"checksum":"x","c2":', 1).encode(),
        "deep": b'{"channel":"book","type":"update","data":' + b"[" * 5000 + b"]" * 5000 + b"}",
    }


@pytest.mark.parametrize("api", ["v1", "v2"])
@pytest.mark.parametrize("state", ["unknown", "buffering", "synced"])
def test_kraken_killers(api, state):
    for name, bad in _kraken_killers(api).items():
        run = kraken_at(api, state, 5)
        run.feed("recv", bad)
        if state == "synced" and name not in ("deep",):
            assert run.malformed >= 1 or any(e[2] in ("precision", "checksum_mismatch") for e in run.n.out.events), name
            assert not run.n.books[PAIR].synced, name
        if state != "unknown":
            kraken_recover(run)


def test_kraken_v1_subscription_status_pair_list():
    run = kraken_at("v1", "synced", 3)
    for pair in (["XBT/USD"], {"a": 1}, 5):
        run.feed("recv", orjson.dumps({"channelID": [1], "channelName": "book-10", "event": "subscriptionStatus",
                                       "pair": pair, "status": "subscribed", "subscription": {"depth": 10, "name": "book"}}))
    run.feed("recv", orjson.dumps({"event": "subscriptionStatus", "pair": PAIR, "status": "subscribed", "subscription": [1],
                                   "channelID": {"x": 1}}))
    run.feed("recv", orjson.dumps({"event": "subscriptionStatus", "pair": PAIR, "status": "unsubscribed", "channelID": [2]}))
    assert run.malformed == 3
    kraken_recover(run)


KSTATES = st.sampled_from(["unknown", "buffering", "synced", "after_gap"])


@FUZZ
@given(api=st.sampled_from(["v1", "v2"]), state=KSTATES, upto=st.integers(0, 60), payload=st.binary(max_size=300))
def test_kraken_arbitrary_bytes(api, state, upto, payload):
    run = kraken_at(api, state, upto)
    for kind, channel in (("recv", "ws"), ("rest", K.INSTRUMENTS_PATH), ("rest", K.depth_path(PAIR)), ("send", "ws"),
                          ("note", ""), ("rest_error", K.depth_path(PAIR))):
        run.feed(kind, payload, channel, PAIR if channel.startswith(K.DEPTH_PATH) else None)
    if state != "unknown":
        run.feed("rest", ASSET_PAIRS, K.INSTRUMENTS_PATH)
        kraken_recover(run)


@FUZZ
@given(api=st.sampled_from(["v1", "v2"]), state=KSTATES, upto=st.integers(0, 60), data=st.data())
def test_kraken_mutated_frames(api, state, upto, data):
    snap, updates = STREAMS[api]
    frames = [snap] + [f for f, _ in updates[:8]] + KRAKEN_TRADES + KRAKEN_EVENTS
    run = kraken_at(api, state, upto)
    for m in data.draw(st.lists(json_mutant(frames), min_size=1, max_size=3)):
        run.expected = None  # a mutant may be a valid frame that changes the book: no claim until resync
        run.feed("recv", m)
    if state != "unknown":
        kraken_recover(run)


@FUZZ
@given(state=KSTATES, bodies=st.lists(st.one_of(json_mutant([ASSET_PAIRS]).map(lambda b: ("i", b)),
                                                json_mutant([KRAKEN_DEPTH]).map(lambda b: ("d", b))), min_size=1, max_size=3))
def test_kraken_mutated_rest_bodies(state, bodies):
    run = kraken_at("v1", state, 5)
    for what, body in bodies:
        run.expected = None
        if what == "i":
            run.feed("rest", body, K.INSTRUMENTS_PATH)
        else:
            run.feed("rest", body, K.depth_path(PAIR), PAIR)
    if state != "unknown":
        run.feed("rest", ASSET_PAIRS, K.INSTRUMENTS_PATH)
        kraken_recover(run)


def test_callback_exceptions_still_reach_the_caller():
    """The guard is for the wire, not for the user's code: an on_book that raises propagates."""
    def boom(book):
        raise RuntimeError("user bug")

    n = M.Normalizer(on_book=boom)
    n.feed(RawRow(1, 1, 0, 0, "rest", M.INSTRUMENTS_PATH, None, INSTRUMENTS))
    with pytest.raises(RuntimeError, match="user bug"):
        n.feed(RawRow(2, 2, 0, 0, "rest", M.depth_path("BTC-USD"), "BTC-USD", mock_depth("BTC-USD", 0)))


def test_one_bogus_seq_while_buffering_restarts_the_buffer_and_the_book_syncs():
    """A structurally valid delta with a far-future seq in the buffer would make every snapshot
    look stale (its first buffered delta never follows): the buffer's own continuity rule drops
    it when the next real delta arrives, so the next snapshot syncs."""
    run = mock_run()
    frames = [orjson.loads(f) for f in MOCK_BOOK_FRAMES]
    symbol = frames[0]["symbol"]
    mine = [f for f in frames if f["symbol"] == symbol][:6]
    bogus = dict(mine[0], seq=mine[0]["seq"] + 10**9)
    for msg in [mine[0], bogus, *mine[1:]]:
        run.feed("recv", orjson.dumps(msg))
    assert any(e[2] == "gap" and "while buffering" in e[4] for e in run.n.out.events)
    run.feed("rest", mock_depth(symbol, mine[1]["seq"] - 1), M.depth_path(symbol), symbol)
    book = run.n.books[symbol]
    assert book.synced and book.seq == mine[-1]["seq"]
    assert (book.bids_ticks(), book.asks_ticks()) == mock_reference(symbol, book)
