"""Binance spot protocol (PROTOCOLS.md section 4): golden cases from every documented message,
the buffered-diff sync rules, generated diff streams parsed back, arbitrary frame orders around
the snapshot (a correct book or an explicit resync, never a wrong book), mutated frames."""
from __future__ import annotations

import itertools

import orjson
from hypothesis import given, settings, strategies as st

from lab.core.model import RawRow
from lab.venues import registry
from lab.venues.binance import protocol as P
from lab.venues.binance.feed import BinanceNormalizer

DOC_INFO = (b'{"symbols":[{"symbol":"BTCUSDT","status":"TRADING","baseAsset":"BTC","quoteAsset":"USDT","baseAssetPrecision":8,'
            b'"quoteAssetPrecision":8,"filters":[{"filterType":"PRICE_FILTER","minPrice":"0.01000000","maxPrice":"1000000.00000000",'
            b'"tickSize":"0.01000000"},{"filterType":"LOT_SIZE","minQty":"0.00001000","maxQty":"9000.00000000","stepSize":"0.00001000"}]}]}')
BNBBTC_INFO = P.render_exchange_info([("BNBBTC", "BNB", "BTC", 8, 2)])
DOC_DEPTH = b'{"lastUpdateId":1027024,"bids":[["4.00000000","431.00000000"]],"asks":[["4.00000200","12.00000000"]]}'
DOC_TRADE = b'{"e":"trade","E":1672515782136,"s":"BNBBTC","t":12345,"p":"0.001","q":"100","T":1672515782136,"m":true,"M":true}'
DOC_DIFF = b'{"e":"depthUpdate","E":1672515782136,"s":"BNBBTC","U":157,"u":160,"b":[["0.0024","10"]],"a":[["0.0026","100"]]}'

_ids = itertools.count()


def row(kind, payload, channel="ws", symbol=None):
    i = next(_ids)
    return RawRow(i, 1_700_000_000_000_000_000 + i, 1, i, kind, channel, symbol, payload)


def depth_row(payload, symbol="BNBBTC"):
    return row("rest", payload, f"/api/v3/depth?symbol={symbol}&limit=5000", symbol)


def normalizer(info=BNBBTC_INFO):
    calls = []
    n = BinanceNormalizer(request=lambda action, symbol: calls.append((action, symbol)))
    n.feed(row("rest", info, P.INSTRUMENTS_PATH))
    return n, calls


def kinds(n):
    return [e[2] for e in n.out.events]


# -- golden ------------------------------------------------------------------------------------
def test_exchange_info_precisions_come_from_the_filters_not_the_padding():
    [inst] = P.parse_exchange_info(DOC_INFO)
    assert (inst.venue_symbol, inst.symbol, inst.price_precision, inst.amount_precision) == ("BTCUSDT", "BTC-USDT", 2, 5)
    from lab.rust_book import parse_fixed

    assert parse_fixed("61685.99000000", 2) == 6168599  # padding zeros are exact at tick 0.01
    n, _ = normalizer(DOC_INFO)
    n.feed(row("recv", b'{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":1,"b":[["61685.99100000","1"]],"a":[]}'))
    assert "malformed" in kinds(n)  # a non-zero digit beyond the tick is not silently rounded


def test_steps_and_bad_filters():
    assert [P.decimals_of_step(s) for s in ("1.00000000", "0.10000000", "0.00000001", "10")] == [0, 1, 8, 0]
    for bad in ("0", "-0.01", "0.05", "abc", 1):
        try:
            P.decimals_of_step(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


def test_snapshot_then_doc_diff_then_doc_trade():
    n, calls = normalizer()
    n.feed(row("recv", DOC_DIFF))  # buffered; the first buffered diff asks for the snapshot
    assert calls == [("snapshot", "BNBBTC")]
    n.feed(depth_row(b'{"lastUpdateId":158,"bids":[["0.00240000","1.00000000"],["0.00230000","5"]],"asks":[["0.00270000","2"]]}'))
    book = n.books["BNBBTC"]
    assert book.synced and book.seq == 160
    assert book.bids_ticks() == [(240000, 1000), (230000, 500)]
    assert book.asks_ticks() == [(260000, 10000), (270000, 200)]
    cols = n.out.book["BNB-BTC"]
    assert cols is not None
    n.feed(row("recv", DOC_TRADE))
    [t] = list(n.out.trades["BNB-BTC"].rows(0))
    assert t[2] == "12345" and t[3] == "sell" and t[0] == 1672515782136 * 1_000_000  # m=true: the taker sold
    n.feed(row("recv", DOC_TRADE))  # a duplicate id after a reconnect is dropped
    assert len(list(n.out.trades["BNB-BTC"].rows(0))) == 1
    assert "snapshot" in kinds(n)
    [snap_event] = [e for e in n.out.events if e[2] == "snapshot"]
    assert "depth 2 bids / 1 asks" in snap_event[4]


def test_doc_depth_snapshot_and_combined_framing():
    n, _ = normalizer()
    n.feed(row("recv", b'{"stream":"bnbbtc@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BNBBTC","U":1027020,"u":1027030,"b":[],"a":[]}}'))
    n.feed(depth_row(DOC_DEPTH))
    book = n.books["BNBBTC"]
    assert book.synced and book.seq == 1027030
    assert book.bids_ticks() == [(400000000, 43100)] and book.asks_ticks() == [(400000200, 1200)]


def test_rules_drop_old_first_event_and_continuity():
    n, calls = normalizer()
    diff = lambda U, u, b="0.0024": row("recv", orjson.dumps({"e": "depthUpdate", "E": 1, "s": "BNBBTC", "U": U, "u": u,
                                                              "b": [[b, "1"]], "a": []}))
    n.feed(diff(100, 105))
    n.feed(diff(106, 110, "0.0025"))
    n.feed(depth_row(b'{"lastUpdateId":107,"bids":[],"asks":[]}'))  # drops u<=107? no: 106..110 straddles 108
    book = n.books["BNBBTC"]
    assert book.synced and book.seq == 110 and book.bids_ticks() == [(250000, 100)]
    n.feed(diff(111, 112))
    assert book.seq == 112
    n.feed(diff(114, 115))  # U != prev_u + 1: a gap, a resync, a fresh snapshot
    assert not book.synced and kinds(n)[-2:] == ["gap", "resync"] and calls[-1] == ("snapshot", "BNBBTC")
    n.feed(depth_row(b'{"lastUpdateId":90,"bids":[],"asks":[]}'))  # older than the buffer (114)
    assert not book.synced and kinds(n)[-1] == "stale_snapshot"
    n.feed(depth_row(b'{"lastUpdateId":114,"bids":[],"asks":[]}'))
    assert book.synced and book.seq == 115


def test_crossed_book_is_an_event_and_a_resync():
    n, calls = normalizer()
    n.feed(row("recv", b'{"e":"depthUpdate","E":1,"s":"BNBBTC","U":11,"u":11,"b":[["0.0030","1"]],"a":[]}'))
    n.feed(depth_row(b'{"lastUpdateId":10,"bids":[["0.0020","1"]],"asks":[["0.0026","1"]]}'))
    assert "crossed_book" in kinds(n) and not n.books["BNBBTC"].synced


def test_control_messages():
    n, _ = normalizer()
    n.feed(row("recv", b'{"result":null,"id":1}'))
    n.feed(row("recv", b'{"e":"serverShutdown","E":1}'))
    n.feed(row("recv", b'{"code":-1121,"msg":"Invalid symbol."}'))
    assert kinds(n)[-2:] == ["server_shutdown", "venue_error"]
    frame = orjson.loads(registry.adapter("binance").subscribe_frames(["BTC-USDT", "ethusdt"])[0])
    assert frame == {"method": "SUBSCRIBE", "params": ["btcusdt@depth@100ms", "btcusdt@trade", "ethusdt@depth@100ms", "ethusdt@trade"], "id": 1}


def test_symbols_and_adapter_declarations():
    v = registry.adapter("binance")
    insts = P.parse_exchange_info(DOC_INFO)
    assert v.resolve_symbols(["btc-usdt", "BTCUSDT", "btc/usdt"], insts) == ["BTCUSDT"]
    assert v.depth_path("btc-usdt") == "/api/v3/depth?symbol=BTCUSDT&limit=5000"
    assert v.max_connection_age == 86400 and v.max_streams_per_connection * 2 <= 1024
    assert v.retry_after(429, b"") and v.retry_after(418, b"") and v.retry_after(200, b"{}") is None
    assert P.depth_weight(5000) == 250 and P.depth_weight(100) == 5


# -- generated ------------------------------------------------------------------------------------
PP, AP = 8, 2
level = st.tuples(st.sampled_from([0, 1]), st.integers(1, 60), st.integers(0, 5))


def build(changes, chunks):
    """changes -> diffs [(U, u, bids, asks)] and the true book after each, from id 1000."""
    bids, asks, uid = {}, {}, 1000
    truth = {uid: ({}, {})}
    diffs = []
    it = iter(changes)
    for size in chunks:
        part = list(itertools.islice(it, size))
        if not part:
            break
        b = [(100 + p, q) for s, p, q in part if s == 0]
        a = [(200 + p, q) for s, p, q in part if s == 1]
        for side, lv in ((bids, b), (asks, a)):
            for p, q in lv:
                side[p] = q  # absolute quantities; 0 removes
                if not q:
                    del side[p]
        U, u = uid + 1, uid + len(part)
        uid = u
        diffs.append((U, u, b, a))
        truth[u] = (dict(bids), dict(asks))
    return diffs, truth


def diff_row(U, u, b, a, stream=False):
    return row("recv", P.render_diff("BNBBTC", 1, U, u, b, a, PP, AP, stream=stream))


@settings(max_examples=60, deadline=None)
@given(st.lists(level, min_size=1, max_size=40), st.lists(st.integers(1, 4), min_size=40, max_size=40), st.booleans())
def test_rendered_diffs_parse_back_to_the_book(changes, chunks, stream):
    diffs, truth = build(changes, chunks)
    n, _ = normalizer()
    for d in diffs:
        n.feed(diff_row(*d, stream=stream))
    n.feed(depth_row(P.render_depth(1000, [], [], PP, AP)))
    book = n.books["BNBBTC"]
    assert book.synced and book.seq == diffs[-1][1]
    b, a = truth[book.seq]
    assert book.bids_ticks() == sorted(b.items(), reverse=True) and book.asks_ticks() == sorted(a.items())


@settings(max_examples=120, deadline=None)
@given(st.lists(level, min_size=1, max_size=30), st.lists(st.integers(1, 3), min_size=30, max_size=30),
       st.data())
def test_arbitrary_orders_around_the_snapshot_never_give_a_wrong_book(changes, chunks, data):
    diffs, truth = build(changes, chunks)
    ids = sorted(truth)
    frames = [("diff", d) for d in diffs]
    frames = data.draw(st.permutations(frames)) if data.draw(st.booleans()) else frames
    keep = data.draw(st.lists(st.booleans(), min_size=len(frames), max_size=len(frames)))
    frames = [f for f, k in zip(frames, keep) if k or data.draw(st.booleans())]
    for _ in range(data.draw(st.integers(1, 3))):  # one or more snapshots, of any moment
        sid = data.draw(st.sampled_from(ids))
        frames.insert(data.draw(st.integers(0, len(frames))), ("snap", sid))
    n, _ = normalizer()
    for kind, what in frames:
        if kind == "diff":
            n.feed(diff_row(*what))
        else:
            b, a = truth[what]
            n.feed(depth_row(P.render_depth(what, sorted(b.items(), reverse=True), sorted(a.items()), PP, AP)))
    book = n.books["BNBBTC"]
    assert n.stats["malformed"] == 0
    if book.synced:  # correct at its id ...
        b, a = truth[book.seq]
        assert book.bids_ticks() == sorted(b.items(), reverse=True) and book.asks_ticks() == sorted(a.items())
    # ... or unsynced, which is an explicit resync / a wait for a snapshot (never a wrong book)


REAL = [DOC_DIFF, DOC_TRADE, b'{"stream":"bnbbtc@trade","data":' + DOC_TRADE + b"}", b'{"result":null,"id":1}',
        b'{"e":"serverShutdown","E":1}']


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(REAL), st.data())
def test_mutated_and_truncated_frames_never_crash(frame, data):
    n, _ = normalizer()
    n.feed(row("recv", DOC_DIFF))
    n.feed(depth_row(DOC_DEPTH.replace(b"1027024", b"158")))
    cut = data.draw(st.integers(1, len(frame) - 1))
    before = n.stats["malformed"]
    n.feed(row("recv", frame[:cut]))  # truncated JSON: always a malformed event
    assert n.stats["malformed"] == before + 1 and kinds(n)[-1] == "malformed"
    pos = data.draw(st.integers(0, len(frame) - 1))
    mutated = frame[:pos] + bytes([data.draw(st.integers(0, 255))]) + frame[pos + 1:]
    n.feed(row("recv", mutated))  # never raises; whatever it is becomes rows or events
    for r in (depth_row(mutated), row("rest", mutated, P.INSTRUMENTS_PATH)):
        n.feed(r)
