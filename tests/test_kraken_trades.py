"""Kraken trades (v1 and v2) and REST Depth through the Rust frame parser.

Golden cases (the trade messages of Kraken's WebSocket docs: PROTOCOLS.md has no trade
section), the v1 id (blake2b in Rust against hashlib and the Python rule), malformed frames
(a ValueError, never a panic), the Rust path against the Python reference path on hand-made
tricky frames and on faulted simulator captures (identical rows, events, stats and on_trade
calls), and the Rust trade accumulator against the table the list-based columns built."""
from __future__ import annotations

import hashlib
import random
from decimal import Decimal

import numpy as np
import orjson
import pyarrow as pa
import pytest

from lab.datasets import schema as S
from lab.datasets.store import TradeColumns, decimal_array
from lab.rust_book import (
    BookRows,
    OrderBook,
    TradeMemory,
    TradeRows,
    blake2b_hex,
    kraken_trade_id,
    parse_kraken_depth,
    parse_kraken_trades,
)
from lab.venues.kraken import feed as K
from lab.venues.kraken import protocol as P
from lab.venues.simulator import SimulatorThread

from mutate import mutations
from test_kraken_protocol import _row, normalizer

# Kraken WebSocket v1 docs, "trade" channel payload example
DOC_V1 = (b'[0,[["5541.20000","0.15850568","1534614057.321597","s","l",""],'
          b'["6060.00000","0.02455000","1534614057.324998","b","l",""]],"trade","XBT/USD"]')
# Kraken WebSocket v2 docs, "trade" channel update example
DOC_V2 = (b'{"channel":"trade","type":"update","data":[{"symbol":"MATIC/USD","side":"buy","price":0.5147,"qty":6423.46326,'
          b'"ord_type":"limit","trade_id":4665846,"timestamp":"2023-09-25T07:48:36.925533Z"},{"symbol":"MATIC/USD","side":"buy",'
          b'"price":0.5147,"qty":1136.19677815,"ord_type":"limit","trade_id":4665847,"timestamp":"2023-09-25T07:49:36.925603Z"}]}')
MATIC = P.PairSpec("MATICUSD", "MATICUSD", "MATIC/USD", "MATIC", "ZUSD", 4, 8)


# -- the v1 id ------------------------------------------------------------------------------------

def test_blake2b_matches_hashlib():
    rng = random.Random(7)
    for n in [*range(0, 300), 511, 512, 513, 4096]:
        data = rng.randbytes(n)
        for size in (8, 1, 32, 64):
            assert blake2b_hex(data, size) == hashlib.blake2b(data, digest_size=size).hexdigest(), (n, size)
    with pytest.raises(ValueError):
        blake2b_hex(b"", 65)


def test_v1_trade_id_is_the_python_rule():
    rng = random.Random(8)
    for _ in range(2000):
        pair = rng.choice(["XBT/USD", "ETH/USD", "Ä/€" * rng.randint(1, 40)])  # multi-block keys too
        t = [f"{rng.randint(0, 10**6)}.{rng.randint(0, 99999)}", f"{rng.random():.8f}", f"{rng.randint(10**9, 2 * 10**9)}.{rng.randint(0, 999999)}",
             rng.choice("bs"), rng.choice("lm"), ""]
        ordinal = rng.randint(0, 3)
        assert kraken_trade_id(pair, t[2], t[0], t[1], t[3], t[4], ordinal) == K.trade_id(pair, t, ordinal)


# -- golden cases -----------------------------------------------------------------------------------

def test_documented_v1_trade_message():
    [m] = parse_kraken_trades(DOC_V1)
    assert (m.api, m.symbol, len(m)) == (1, "XBT/USD", 2)
    assert m.trades()[0] == ("5541.20000", "0.15850568", "sell", 1534614057321597000, "1534614057.321597")
    n, _ = normalizer()
    seen = []
    n.on_trade = seen.append
    n.feed(_row("recv", DOC_V1))
    t = n.out.trades["XBT-USD"]
    assert t.price == [55412, 60600] and t.amount == [15850568, 2455000] and t.side == ["sell", "buy"]
    assert t.timestamp == [1534614057321597000, 1534614057324998000]
    assert t.id == [K.trade_id("XBT/USD", ["5541.20000", "0.15850568", "1534614057.321597", "s", "l"], 0),
                    K.trade_id("XBT/USD", ["6060.00000", "0.02455000", "1534614057.324998", "b", "l"], 0)]
    assert [(x.id, x.side, x.price, x.amount) for x in seen] == [
        (t.id[0], "sell", Decimal("5541.2"), Decimal("0.15850568")), (t.id[1], "buy", Decimal("6060.0"), Decimal("0.02455000"))]
    assert n.stats["trades"] == 2 and not n.out.events[1:]


def test_documented_v2_trade_message():
    ms = parse_kraken_trades(DOC_V2)
    assert [(m.api, m.symbol, len(m)) for m in ms] == [(2, "MATIC/USD", 2)]
    assert ms[0].trades()[1] == ("0.5147", "1136.19677815", "buy", 1695628176925603000, "4665847")
    n, _ = normalizer([*P.PAIRS, MATIC])
    n.feed(_row("recv", DOC_V2))
    t = n.out.trades["MATIC-USD"]
    assert t.id == ["4665846", "4665847"] and t.price == [5147, 5147] and t.amount == [642346326000, 113619677815]
    assert t.timestamp == [1695628116925533000, 1695628176925603000]


def test_documented_rest_depth():
    body = (b'{"error":[],"result":{"XXBTZUSD":{"asks":[["30384.10000","2.059",1688671659],["30387.90000","1.500",1688671380],'
            b'["30393.70000","9.871",1688671261]],"bids":[["30297.00000","1.115",1688671636],["30296.70000","2.002",1688671674],'
            b'["30289.80000","5.001",1688671673]]}}}')
    m = parse_kraken_depth(body)
    assert (m.symbol, m.snapshot, m.checksum, m.timestamp, len(m)) == ("XXBTZUSD", True, None, 1688671674 * 10**9, 6)
    n, _ = normalizer()
    n.feed(_row("rest", body, K.depth_path("XBT/USD"), "XBT/USD"))
    book = n.books["XBT/USD"]
    assert book.synced and book.best_bid_ticks() == (302970, 111500000) and book.best_ask_ticks() == (303841, 205900000)
    assert n.take().book_meta == {"XBT-USD": {"wire_price_decimals": 5, "wire_amount_decimals": 8}}
    for bad in (b'{"error":["EQuery:Unknown asset pair"]}', b'{"error":[],"result":{}}', b'{"error":[],"result":{"A":{},"B":{}}}',
                b'{"error":[],"result":{"X":{"asks":[["1.0","1.0",1.5]],"bids":[]}}}', b'[]', b'{"result":{"X":{"asks":[]}}}',
                b'{"error":[],"result":{"X":{"asks":[["1e1","1.0",1]],"bids":[]}}}', b'{"error":[],"result":{"X\\u0041":{"asks":[],"bids":[]}}}'):
        with pytest.raises(ValueError):
            parse_kraken_depth(bad)


# -- malformed frames -------------------------------------------------------------------------------

def test_malformed_trade_frames_raise_cleanly():
    assert parse_kraken_trades(b'{"channel":"heartbeat"}') is None
    assert parse_kraken_trades(b'[1,{"a":[["1.0","2.0","3"]],"c":"1"},"book-10","X"]') is None
    assert parse_kraken_trades(b'{"event":"subscriptionStatus","subscription":{"name":"trade"}}') is None
    bad = [
        b"", b"[", b'[0,[["1.0","1.0","1.5","b","l",""]],"trade"', b'[0,[["1.0","1.0","1.5","b","l",""]],"trade","X"] x',
        b'[0,[["1.0","1.0","1.5","x","l",""]],"trade","X"]', b'[0,[["1.0","1.0","1.5","b"]],"trade","X"]',
        b'[0,[[1.0,"1.0","1.5","b","l",""]],"trade","X"]', b'[0,[["1.0","1.0",1.5,"b","l",""]],"trade","X"]',
        b'[0,[["1.0","1.0","1.5","b","l",7]],"trade","X"]', b'[0,[["1.0","1.0","soon","b","l",""]],"trade","X"]',
        b'[0,[["1.0","1.0","99999999999.5","b","l",""]],"trade","X"]', b'[0,{"a":1},"trade","X"]', b'[0,[7],"trade","X"]',
        b'[0,[],"x","trade","X"]', b'[123456789012345678901,[],"trade","X"]', b'[0,[["1.0","1.0","1.5","b","\\u0041",""]],"trade","X"]',
        b'{"channel":"trade","data":{"symbol":"X"}}', b'{"channel":"trade","data":[7]}', b'{"channel":"trade","data":[{"symbol":"X"}]}',
        b' {"channel":"trade","data":[]}',
        b'{"channel":"trade","data":[{"symbol":"X","side":"buy","price":1,"qty":1,"trade_id":-0,"timestamp":"2023-09-25T07:48:36Z"}]}',
        b'{"channel":"trade","data":[{"symbol":"X","side":"up","price":1,"qty":1,"trade_id":1,"timestamp":"2023-09-25T07:48:36Z"}]}',
        b'{"channel":"trade","data":[{"symbol":"X","side":"buy","price":true,"qty":1,"trade_id":1,"timestamp":"2023-09-25T07:48:36Z"}]}',
        b'{"channel":"trade","data":[{"symbol":"X","side":"buy","price":1,"qty":1,"trade_id":1,"timestamp":"now"}]}',
        b'{"channel":"trade","data":[{"symbol":"X","side":"buy","price":1,"qty":1,"trade_id":1,"timestamp":"9999-12-31T23:59:59Z"}]}',
        b'[' * 10000, b'\xff\xfe',
    ]
    for frame in bad:
        with pytest.raises(ValueError):
            parse_kraken_trades(frame)
    for f in mutations([DOC_V1, DOC_V2], 4000, seed=5):  # every outcome is a value or a ValueError, apply never panics
        try:
            msgs = parse_kraken_trades(f)
        except ValueError:
            continue
        for m in msgs or []:
            m.apply(TradeRows(), TradeMemory(10), 1, 8, 1, 1)
    with pytest.raises(ValueError):
        parse_kraken_trades(DOC_V1)[0].apply(TradeRows(), TradeMemory(10), 19, 8, 1, 1)
    for bad in (b"", b"{", b'{"error":[],"result":{"X":{"asks":[["1","2"]],"bids":[]}}}'):
        with pytest.raises(ValueError):
            parse_kraken_depth(bad)


# -- the Rust path equals the Python reference path -----------------------------------------------

def _v1(pair: str, *trades) -> bytes:
    return orjson.dumps([7, [list(t) for t in trades], "trade", pair])


def _v2(*entries) -> bytes:
    keys = ("symbol", "side", "price", "qty", "ord_type", "trade_id", "timestamp")
    data = ",".join("{" + ",".join(f'"{k}":{v}' for k, v in zip(keys, e)) + "}" for e in entries)
    return ('{"channel":"trade","type":"update","data":[' + data + "]}").encode()


TS = '"2023-09-25T07:48:36.925533Z"'
A = ("5541.2", "0.15850568", "1534614057.321597", "s", "l", "")
B = ("5542.0", "0.1", "1534614057.5", "b", "m", "")
TRICKY = [
    ("recv", _v1("XBT/USD", A, A, B)),  # identical trades in one message: ordinals 0 and 1
    ("recv", _v1("XBT/USD", B, A)),  # seen again: duplicates
    ("recv", _v1("XBT/USD", ("5543.0", "1", "1534614058", "b", "l", ""), ("5543.05", "1", "1534614058", "b", "l", ""), B)),  # precision mid-message
    ("recv", _v1("XBT/USD", ("5544.0", "1.000000001", "1534614058", "s", "l", ""))),  # volume finer than lot_decimals
    ("recv", _v1("XBT/USD", ("5544.0", "-1", "1534614059", "s", "l", ""), ("5544.0", "0.00000000", "1534614059", "s", "l", ""))),
    ("recv", _v1("XBT/USD", ("1e3", "1", "1534614060", "s", "l", ""))),  # not a plain decimal: a parse error too
    ("recv", _v1("NOPE/USD", A)),  # unknown pair
    ("recv", _v1("XBT/USD", ("5545.0", "1", "1534614061", "x", "l", ""))),  # refused by Rust: the reference path reports it
    ("recv", _v1("XBT/USD", ("5545.0", "1", 1534614061.5, "b", "l", ""))),
    ("recv", _v1("XBT/USD", ("5545.0", "1", "99999999999", "b", "l", ""))),
    ("recv", _v1("XBT/USD")),
    ("recv", b'[7,[["5546.0","1","1534614062","b","l",""]],"extra","trade","XBT/USD"]'),
    ("recv", b' [7,[["5546.5","1","1534614062","b","l",""]],"trade","XBT/USD"]'),
    ("recv", b'[7,[["5547.0","1","1534614063","b","l","\\u00e9"]],"trade","XBT/USD"]'),
    ("recv", _v2(('"BTC/USD"', '"buy"', "30000.1", "0.5", '"limit"', "1", TS), ('"BTC/USD"', '"sell"', "30000.2", '"0.25"', '"market"', "2", TS))),
    ("recv", _v2(('"BTC/USD"', '"buy"', "30000.1", "0.5", '"limit"', "1", TS), ('"ETH/USD"', '"sell"', "2000.01", "1", '"limit"', "1", TS),
                 ('"BTC/USD"', '"buy"', "30000.3", "1", '"limit"', "3", TS), ('"NOPE/USD"', '"buy"', "1", "1", '"limit"', "1", TS),
                 ('"BTC/USD"', '"buy"', "30000.35", "1", '"limit"', "4", TS), ('"BTC/USD"', '"buy"', "30000.4", "1", '"limit"', "5", TS),
                 ('"ETH/USD"', '"buy"', "2000", "1e-8", '"limit"', '"x7"', TS))),
    ("recv", _v2(('"BTC/USD"', '"buy"', "30000.4", "1", '"limit"', "6", '"yesterday"'))),  # refused: reference path
    ("recv", _v2(('"BTC/USD"', '"buy"', "30000.4", "1", '"limit"', "6.5", TS), ('"BTC/USD"', '"buy"', "30000.4", "1", '"limit"', "true", TS))),
    ("recv", b'{"channel":"trade","type":"snapshot","data":null}'),
    ("recv", b'{"channel":"trade","type":"snapshot"}'),
    ("recv", b'{"channel":"book","channel":"trade","data":[{"symbol":"BTC/USD","side":"buy","price":1,"qty":1,"trade_id":99,"timestamp":"2023-09-25T07:48:36Z"}]}'),
    ("close", b"gone"),
    ("open", b"ws://x"),
    ("recv", _v1("XBT/USD", A, A, B)),  # after a reconnect: all duplicates
    ("rest", b'{"error":[],"result":{"XETHZUSD":{"asks":[["2000.10","1.5",1688671659]],"bids":[["1999.90000","2.00000000",1688671660]]}}}'),
    ("rest", b'{"error":[],"result":{"XETHZUSD":{"asks":[["2000.101","1.5",1688671659]],"bids":[]}}}'),  # precision
    ("rest", b'{"error":[],"result":{"XXBTZUSD":{"asks":[],"bids":[]}}}'),
    ("rest", b'{"error":[],"result":{"NOPE":{"asks":[],"bids":[]}}}'),
    ("rest", b'{"error":["EAPI:Rate limit exceeded"]}'),
]


def _derive(rows, refuse: bool, monkeypatch, depth: int = 0):
    def no(payload):
        raise ValueError("reference path")

    with monkeypatch.context() as mp:
        if refuse:
            mp.setattr(K, "parse_kraken_trades", no)
            mp.setattr(K, "parse_kraken_depth", no)
        trades = []
        n = K.Normalizer(depth=depth, on_trade=trades.append)
        for r in rows:
            n.feed(r)
        out = n.take()
        return ({s: c.rows() for s, c in out.trades.items()}, {s: c.rows() for s, c in out.book.items()}, out.events,
                dict(n.stats), out.book_meta, trades)


def test_tricky_frames_rust_equals_reference(monkeypatch):
    rows = [_row("rest", orjson.dumps({"error": [], "result": {s.internal: s.asset_pair() for s in P.PAIRS}}), K.INSTRUMENTS_PATH)]
    for kind, payload in TRICKY:
        channel = K.depth_path("ETH/USD") if kind == "rest" else "ws"
        rows.append(_row(kind, payload, channel))
    fast = _derive(rows, False, monkeypatch)
    slow = _derive(rows, True, monkeypatch)
    assert fast == slow
    trades, _, events, stats, _, seen = fast
    assert stats["trades"] > 8 and stats["duplicate_trades"] >= 5 and len(seen) == stats["trades"]
    kinds = [e[2] for e in events]
    assert kinds.count("unknown_symbol") == 2 and kinds.count("malformed") >= 8 and "snapshot" in kinds


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_faulted_capture_rust_equals_reference(tmp_path, monkeypatch, api):
    from lab.recorder.recorder import Recorder, RecordOptions

    root = str(tmp_path / "cap")
    faults = {"bad_checksum_every": 30, "drop_every": 45, "malformed_every": 60, "disconnect_after": 900}
    with SimulatorThread("kraken", seed=22, rate=3000, faults=faults) as sim:
        ws = sim.ws_url if api == "v1" else sim.ws_url.replace("/ws", "/v2")
        Recorder(RecordOptions(venue="kraken", symbols=["XBT/USD", "ETH/USD"], root=root, rest_url=sim.url, ws_url=ws,
                               depth=25, duration=2.0, status=False, **({"api": api} if api == "v2" else {}))).run()
    import sys

    sys.path.insert(0, "bench")
    from kraken_normalize import load_rows

    rows = [r for _, rs in load_rows(root) for r in rs]
    fast = _derive(rows, False, monkeypatch, 25)
    slow = _derive(rows, True, monkeypatch, 25)
    stats = fast[3]
    assert stats["trades"] > 50 and stats["malformed"] > 0 and stats["checksum_mismatches"] > 0
    assert fast == slow


# -- the accumulator -------------------------------------------------------------------------------

def test_trade_columns_table_matches_the_list_reference():
    cols = TradeColumns()
    rng = random.Random(3)
    ref = []
    for i in range(500):
        r = (rng.randint(0, 2**62), rng.randint(0, 2**62), rng.choice(["4665846", "ae1041702f64dd84", "", "é"]),
             rng.choice(["buy", "sell"]), rng.randint(-10**18 + 1, 10**18 - 1), rng.randint(0, 10**18 - 1), i)
        cols.push(*r)
        ref.append(r)
    got = cols.to_table(1, 8, "XBT/USD")
    c = list(zip(*ref))
    want = pa.table(
        [pa.array(c[0], pa.int64()).cast(S.TS), pa.array(c[1], pa.int64()).cast(S.TS), pa.array(c[2], pa.string()),
         pa.array(c[3], pa.string()), decimal_array(c[4], 1), decimal_array(c[5], 8), pa.array(c[6], pa.int64()),
         pa.array(["XBT/USD"] * len(ref), pa.string())],
        schema=S.trades_schema(1, 8),
    )
    assert got.equals(want) and len(cols) == 500 and cols.rows() == ref and cols.rows(498) == ref[498:]
    got.validate(full=True)
    assert np.array_equal(cols.local_timestamp, np.array(c[1], dtype=np.int64))
    assert TradeColumns().to_table(2, 8, "ETH/USD").num_rows == 0
    with pytest.raises(TypeError):
        cols.push(1, 1, None, "buy", 1, 1, 1)
    assert len(BookRows()) == 0 and OrderBook("kraken", "X", 1, 8).bid_count == 0  # (the book side is untouched)


def test_trade_memory_forgets_the_oldest():
    mem = TradeMemory(3)
    for tid in ("a", "b", "c", "a", "d"):
        mem.add(tid)
    assert "a" not in mem and all(t in mem for t in "bcd") and len(mem) == 3 and mem.capacity == 3
