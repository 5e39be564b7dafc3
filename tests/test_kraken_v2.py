"""Kraken WebSocket v2 and the Rust frame parser: PROTOCOLS.md Vector D and every documented v2
message as golden cases, exact token text (no float anywhere), malformed frames, the Rust path
against the Python reference path, an independent v2 client against the simulator, and
end-to-end records (v2 with and without faults, v1 with Kraken's real price padding, idle pings)."""
from __future__ import annotations

import asyncio
import json

import orjson
import pyarrow.parquet as pq
import pytest

from lab.core.events import REQUEST_RESUBSCRIBE
from lab.rust_book import BookRows, OrderBook, kraken_wire_checksum, parse_kraken_book, rfc3339_to_ns
from lab.venues.kraken import feed as K
from lab.venues.kraken.adapter import KrakenV1, KrakenV2
from lab.venues.kraken import protocol as P
from oracles.kraken import wire_checksum
from lab.venues.simulator import SimulatorThread

from mutate import mutations
from test_kraken_end_to_end import check_clean_capture, get, lab, query
from test_kraken_protocol import VECTOR_D_ASKS, VECTOR_D_BIDS, _row, normalizer


def _levels(levels) -> str:
    return ",".join(f'{{"price":{p},"qty":{q}}}' for p, q in levels)


def v2_book(kind: str, symbol: str, asks, bids, checksum: int, timestamp: str | None = None) -> bytes:
    ts = f',"timestamp":"{timestamp}"' if timestamp else ""
    return (f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"{symbol}","bids":[{_levels(bids)}],'
            f'"asks":[{_levels(asks)}],"checksum":{checksum}{ts}}}]}}').encode()


VECTOR_D_FRAME = v2_book("snapshot", "BTC/USD", VECTOR_D_ASKS, VECTOR_D_BIDS, 3310070434)


# -- golden cases -----------------------------------------------------------------------------------

def test_vector_d_v2_snapshot_golden():
    """The documented 10x10 BTC/USD snapshot, as JSON numbers: the trailing zeros (0.10000000)
    survive parsing, the checksum verifies, and the book and the stored row match."""
    [m] = parse_kraken_book(VECTOR_D_FRAME)
    assert (m.api, m.symbol, m.snapshot, m.checksum) == (2, "BTC/USD", True, 3310070434)
    assert m.levels()[0] == (1, "45285.2", "0.00100000") and m.levels()[10] == (0, "45283.5", "0.10000000")
    n, requests = normalizer()
    n.feed(_row("recv", VECTOR_D_FRAME))
    book = n.books["XBT/USD"]  # BTC/USD on the wire, the AssetPairs wsname in the capture
    assert book.synced and not requests and not [e for e in n.out.events if e[2] != "snapshot"]
    assert book.kraken_checksum() == 3310070434
    assert book.asks_ticks(1) == [(452852, 100000)] and book.bids_ticks(1) == [(452835, 10000000)]
    rows = n.out.book["XBT-USD"].rows()
    assert len(rows) == 20 and rows[0][9] & 2 and rows[-1][9] & 1 and rows[-1][8] == 3310070434
    # a wrong snapshot checksum (v2 snapshots carry one) is a mismatch and a resync
    n2, requests = normalizer()
    n2.feed(_row("recv", VECTOR_D_FRAME.replace(b"3310070434", b"3310070435")))
    assert [e[2] for e in n2.out.events] == ["checksum_mismatch", "resync"]
    assert requests == [(REQUEST_RESUBSCRIBE, "XBT/USD")] and not n2.books["XBT/USD"].synced


def test_documented_v2_messages():
    n, requests = normalizer()
    for frame in (
        b'{"channel":"status","type":"update","data":[{"api_version":"v2","connection_id":13834774380200032777,"system":"online","version":"2.0.0"}]}',
        b'{"method":"subscribe","result":{"channel":"book","depth":10,"snapshot":true,"symbol":"BTC/USD"},"success":true,"time_in":"2023-10-06T17:35:55.219022Z","time_out":"2023-10-06T17:35:55.219067Z"}',
        VECTOR_D_FRAME,
        b'{"channel":"heartbeat"}',
        b'{"method":"pong","req_id":101,"time_in":"2023-10-06T17:35:55.1Z","time_out":"2023-10-06T17:35:55.2Z"}',
        b'{"error":"Currency pair not supported NOPE/USD","method":"subscribe","success":false,"symbol":"NOPE/USD","time_in":"x","time_out":"y"}',
    ):
        n.feed(_row("recv", frame))
    kinds = [e[2] for e in n.out.events]
    assert kinds == ["status", "snapshot", "pong", "venue_error", "unknown_symbol"]
    assert "online" in n.out.events[0][4] and n.out.events[2][4] == "req_id 101"
    book = n.books["XBT/USD"]
    # an update: qty 0 deletes, the same price twice applies in order, then truncation to depth 10
    asks = dict(VECTOR_D_ASKS)
    del asks["45285.2"]
    asks["45284.0"] = "0.50000000"
    bids = dict(VECTOR_D_BIDS)
    bids["45283.5"] = "0.20000000"
    top_a = sorted(asks.items(), key=lambda kv: float(kv[0]))[:10]
    top_b = sorted(bids.items(), key=lambda kv: -float(kv[0]))[:10]
    crc = wire_checksum(top_a, top_b)
    frame = v2_book("update", "BTC/USD", [("45285.2", "0.00000000"), ("45284.0", "9.00000000"), ("45284.0", "0.50000000")],
                    [("45283.5", "0.20000000")], crc, "2023-10-06T17:35:55.440295Z")
    n.feed(_row("recv", frame))
    assert book.synced and book.kraken_checksum() == crc and not requests
    assert book.asks_ticks(1) == [(452840, 50000000)] and len(book.asks_ticks()) == 10
    rows = n.out.book["XBT-USD"].rows()
    assert rows[-1][0] == 1696613755440295000 == rfc3339_to_ns("2023-10-06T17:35:55.440295Z")  # the message's time
    assert [r[3] for r in rows[-4:]] == ["ask", "ask", "ask", "bid"] and rows[-1][8] == crc
    # the documented MATIC update: a quantity with fewer decimals than lot_decimals is exact too
    spec = P.PairSpec("MATICUSD", "MATICUSD", "MATIC/USD", "MATIC", "ZUSD", 4, 8)
    [m] = parse_kraken_book(b'{"channel":"book","type":"update","data":[{"symbol":"MATIC/USD","bids":[{"price":0.5657,"qty":1098.3947558}],"asks":[],"checksum":2114181697,"timestamp":"2023-10-06T17:35:55.440295Z"}]}')
    ob, rows = OrderBook("kraken", "MATIC-USD", spec.pair_decimals, spec.lot_decimals, 10), BookRows()
    status, *_ = m.apply(ob, rows, 1, 1, 1)
    assert status == 1 and ob.bids_ticks() == [(5657, 109839475580)]  # (a mismatch: the rest of that book is unknown)


def test_v2_trades_use_trade_id_and_exact_numbers():
    n, _ = normalizer()
    frame = (b'{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy","price":90071992.5,"qty":0.90071992,'
             b'"ord_type":"market","trade_id":4665846,"timestamp":"2023-09-25T07:48:36.925533Z"},'
             b'{"symbol":"BTC/USD","side":"sell","price":30000.1,"qty":1.00000001,"ord_type":"limit","trade_id":4665847,"timestamp":"2023-09-25T07:48:36.925533Z"}]}')
    n.feed(_row("recv", frame))
    n.feed(_row("recv", frame))  # again (a reconnect with a trade snapshot): written once
    t = n.out.trades["XBT-USD"]
    assert t.id == ["4665846", "4665847"] and t.side == ["buy", "sell"]
    assert t.price == [900719925, 300001] and t.amount == [90071992, 100000001]  # no float rounding
    assert t.timestamp[0] == 1695628116925533000 and n.stats["duplicate_trades"] == 2


def test_symbol_mapping_and_frames():
    assert P.v2_symbol("XBT/USD") == "BTC/USD" and P.v2_symbol("XDG/EUR") == "DOGE/EUR" and P.v2_symbol("ETH/USD") == "ETH/USD"
    assert P.v1_symbol("BTC/USDT") == "XBT/USDT"
    insts = K.parse_instruments(orjson.dumps({"error": [], "result": {s.internal: s.asset_pair() for s in P.PAIRS}}))
    K1, K2 = KrakenV1(), KrakenV2()
    assert K1.resolve_symbols(["BTC/USD", "XBT/USD", "ETH/USD"], insts) == ["XBT/USD", "ETH/USD"]
    book, trade = (orjson.loads(f) for f in K2.subscribe_frames(["XBT/USD", "ETH/USD"], 25))
    assert book == {"method": "subscribe", "params": {"channel": "book", "symbol": ["BTC/USD", "ETH/USD"], "depth": 25, "snapshot": True}, "req_id": 1}
    assert trade["params"]["channel"] == "trade"
    unsub, sub = (orjson.loads(f) for f in K2.resubscribe_frames("XBT/USD", 10))
    assert unsub["method"] == "unsubscribe" and sub["params"]["symbol"] == ["BTC/USD"]
    assert orjson.loads(K2.ping_frame(7)) == {"method": "ping", "req_id": 7}
    assert orjson.loads(K1.ping_frame(7)) == {"event": "ping", "reqid": 7}
    assert type(KrakenV1.with_options({"api": "v2"})) is KrakenV2 and type(KrakenV1.with_options({"api": "v1"})) is KrakenV1


# -- malformed input: clean exceptions, never a panic --------------------------------------------

def test_parser_rejects_cleanly():
    assert parse_kraken_book(b'[42,[["1.0","2.0","3.0","s","l",""]],"trade","XBT/USD"]') is None
    assert parse_kraken_book(b'{"channel":"heartbeat"}') is None
    assert parse_kraken_book(b'{"event":"heartbeat"}') is None
    bad = [b"", b"[", b'[1,{"a":[["1.0","2.0","3"]]},"book-10"', b'[1,{"a":[["1.0","2.0","3"]]},"book-10","X"] x',
           b'[1,{"a":[["1.0","2.0"]],"c":"1"},"book-10","X"]', b'[1,{"a":[[1.0,"2.0","3"]],"c":"1"},"book-10","X"]',
           b'[1,{"a":[["1.0","2.0","3"]]},"book-10","X"]', b'[1,7,"book-10","X"]', b'[1,{"a":[["1","2","x"]],"c":"1"},"book-10","X"]',
           b'{"channel":"book","type":"update","data":[{"symbol":"X","asks":[{"price":"1.0","qty":1}],"checksum":1}]}',
           b'{"channel":"book","type":"nope","data":[]}', b'{"channel":"book","type":"update","data":[{"symbol":"X","checksum":-1}]}',
           b'{"channel":"book","type":"update","data":[{"symbol":"X","checksum":1,"timestamp":"yesterday"}]}',
           b'[' * 10000, b'\xff\xfe', b'[1,{"a":[["1.0","2.0","3"]],"c":"99999999999999999999999"},"book-10","X"]']
    for frame in bad:
        with pytest.raises(ValueError):
            parse_kraken_book(frame)
    good = [VECTOR_D_FRAME, b'[1920,{"a":[["0.042990","364630.28272081","1618678145.920470"]]},{"b":[["0.042990","0.00000000","1618678145.920708"]],"c":"4105471083"},"book-1000","SC/EUR"]']
    for f in mutations(good, 3000, seed=4):  # truncations, flipped bytes; every outcome is a value or ValueError
        try:
            msgs = parse_kraken_book(f)
        except ValueError:
            continue
        for m in msgs or []:
            m.apply(OrderBook("kraken", "X", 1, 8, 10), BookRows(), 1, 1, 1)
    # apply: a value finer than the precision changes nothing
    [m] = parse_kraken_book(b'[7,{"a":[["100.05","1.00000000","1.1"]],"c":"1"},"book-10","XBT/USD"]')
    ob = OrderBook("kraken", "X", 1, 8, 10)
    status, *_, detail = m.apply(ob, BookRows(), 1, 1, 1)
    assert status == 2 and "pair_decimals 1" in detail and ob.ask_count == 0
    with pytest.raises(ValueError):
        kraken_wire_checksum(ob, 0, 8)


def test_v2_malformed_book_resyncs_that_pair():
    n, requests = normalizer()
    n.feed(_row("recv", VECTOR_D_FRAME))
    n.feed(_row("recv", b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","asks":[{"price":"45285.2","qty":1}],"bids":[],"checksum":1}]}'))
    assert [e[2] for e in n.out.events][-2:] == ["malformed", "resync"] and requests == [(REQUEST_RESUBSCRIBE, "XBT/USD")]
    n.feed(_row("recv", b'{"channel":"book","type":"upd'))
    assert n.out.events[-1][2] == "malformed"


def test_rust_path_equals_the_python_reference(tmp_path, monkeypatch):
    """The same raw rows through the Rust book path and through the Python reference path give
    identical book rows, events and stats (v1 with r levels and both-sides messages, faults)."""
    from lab.recorder.recorder import Recorder, RecordOptions

    root = str(tmp_path / "cap")
    with SimulatorThread("kraken", seed=21, rate=3000, faults={"bad_checksum_every": 30, "drop_every": 45}) as sim:
        Recorder(RecordOptions(venue="kraken", symbols=["XBT/USD", "ETH/USD"], root=root, rest_url=sim.url,
                               ws_url=sim.ws_url, depth=25, duration=2.0, status=False)).run()
    import sys

    sys.path.insert(0, "bench")
    from kraken_normalize import load_rows

    [(depth, rows)] = load_rows(root)

    def derive():
        n = K.Normalizer(depth=depth)
        for r in rows:
            n.feed(r)
        out = n.take()
        return {s: c.rows() for s, c in out.book.items()}, out.events, dict(n.stats)

    fast = derive()

    def refuse(payload):
        raise ValueError("reference path")

    monkeypatch.setattr(K, "parse_kraken_book", refuse)
    slow = derive()
    assert fast[2]["messages"] > 1000 and fast[2]["checksum_mismatches"] > 0
    assert fast == slow


# -- the simulator speaks v2 ---------------------------------------------------------------------

def test_simulator_v2_plain_client():
    """An independent v2 client (json with Decimal numbers, PROTOCOLS.md rules) keeps the
    simulator's checksum on every snapshot and update."""
    from decimal import Decimal

    import aiohttp

    async def run(url):
        books, seen, errors = {}, {"updates": 0, "snapshots": 0, "acks": 0, "pong": 0, "status": 0, "trades": 0}, []
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(url) as ws:
                await ws.send_str(json.dumps({"method": "ping", "req_id": 42}))
                await ws.send_str(json.dumps({"method": "subscribe", "params": {"channel": "book", "symbol": ["BTC/USD", "ETH/USD", "NOPE/USD"], "depth": 10}, "req_id": 1}))
                await ws.send_str(json.dumps({"method": "subscribe", "params": {"channel": "trade", "symbol": ["BTC/USD"]}}))
                while seen["updates"] < 1000:
                    msg = json.loads((await ws.receive()).data, parse_float=Decimal)
                    if msg.get("method") == "pong":
                        assert msg["req_id"] == 42
                        seen["pong"] += 1
                    elif msg.get("channel") == "status":
                        seen["status"] += 1
                        assert msg["data"][0]["api_version"] == "v2"
                    elif msg.get("method") == "subscribe":
                        if msg["success"]:
                            seen["acks"] += 1
                        else:
                            errors.append(msg["error"])
                    elif msg.get("channel") == "trade":
                        seen["trades"] += 1
                        assert isinstance(msg["data"][0]["trade_id"], int) and msg["data"][0]["symbol"] == "BTC/USD"
                    elif msg.get("channel") == "book":
                        [d] = msg["data"]
                        if msg["type"] == "snapshot":
                            books[d["symbol"]] = ({}, {})
                            seen["snapshots"] += 1
                        asks, bids = books[d["symbol"]]
                        for key, side in (("asks", asks), ("bids", bids)):
                            for lv in d[key]:
                                if lv["qty"] == 0:
                                    side.pop(lv["price"], None)
                                else:
                                    side[lv["price"]] = lv["qty"]
                        for side, rev in ((asks, False), (bids, True)):
                            for p in sorted(side, reverse=rev)[10:]:
                                del side[p]
                        a = [(str(p), str(q)) for p, q in sorted(asks.items())]
                        b = [(str(p), str(q)) for p, q in sorted(bids.items(), reverse=True)]
                        assert wire_checksum(a, b) == d["checksum"]
                        if msg["type"] == "update":
                            seen["updates"] += 1
        return seen, errors

    with SimulatorThread("kraken", seed=6, rate=4000) as sim:
        seen, errors = asyncio.run(run(sim.ws_url.replace("/ws", "/v2")))
    assert seen["pong"] == 1 and seen["status"] == 1 and seen["acks"] == 3 and seen["snapshots"] == 2 and seen["trades"] > 0
    assert errors == ["Currency pair not supported NOPE/USD"]


# -- end to end ----------------------------------------------------------------------------------

def record(root, url, ws_url, *extra):
    return json.loads(lab("record", "--venue", "kraken", "--symbol", "XBT/USD", "--symbol", "ETH/USD", "--ws-url", ws_url,
                          "--rest-url", url, "--duration", "5s", "--out", root, "--rotate", "2s", "--json", *extra).stdout)


def test_v2_record_verify_replay(tmp_path):
    root = tmp_path / "cap"
    with SimulatorThread("kraken", seed=31, rate=1500) as sim:
        summary = record(root, sim.url, sim.ws_url.replace("/ws", "/v2"), "--api", "v2", "--depth", "25")
        conn, report = check_clean_capture(root, sim, summary)
    for s in report["streams"].values():
        assert s["checksums_ok"] == s["messages"]  # v2: the snapshot is verified too
    [row] = query(root, "select count(*) n, count(distinct symbol || ':' || id) d from trades")  # trade_id is per pair
    assert row["n"] == row["d"] > 0
    kinds = {e["kind"] for e in query(root, "select distinct kind from events")}
    assert {"status", "subscribe", "snapshot"} <= kinds and "unknown_message" not in kinds


def test_v2_faults_show_as_events_and_the_rest_verifies(tmp_path):
    root = tmp_path / "cap"
    faults = {"bad_checksum_every": 40, "drop_every": 55, "malformed_every": 400, "disconnect_after": 1000}
    with SimulatorThread("kraken", seed=32, rate=1500, faults=faults) as sim:
        summary = record(root, sim.url, sim.ws_url.replace("/ws", "/v2"), "--api", "v2")
        conns = get(sim.url + "/control/stats")["connections"]
    injected = sum(c["bad_checksums"] + c["dropped"] for c in conns)
    assert injected > 0 and len(conns) >= 2 and summary["reconnects"] >= 1
    report = json.loads(lab("verify", root, "--json").stdout)
    assert report["ok"], report["problems"]
    events = {e["kind"]: e["n"] for e in query(root, "select kind, count(*) n from events group by kind")}
    mismatches = events.get("checksum_mismatch", 0)
    assert 0 < mismatches <= injected + sum(c["malformed"] for c in conns)
    assert events["resync"] == mismatches and events["disconnect"] >= 1 and events["malformed"] >= 1
    for s in report["streams"].values():
        assert s["checksums_bad"] == 0 and s["checksums_ok"] > 0


def test_verify_is_exact_with_krakens_wire_padding(tmp_path):
    """Real Kraken writes XBT/USD prices with 5 decimals (pair_decimals 1) and computes the CRC
    over those strings: the capture stores the venue's checksum, its book files say
    lab.wire_price_decimals = 5, and `lab verify` recomputes every one exactly."""
    root = tmp_path / "cap"
    with SimulatorThread("kraken", seed=33, rate=1500, wire_price_decimals={"XBT/USD": 5}) as sim:
        depth = get(sim.url + "/0/public/Depth?pair=XBTUSD&count=1")["result"]["XXBTZUSD"]
        assert len(depth["asks"][0][0].split(".")[1]) == 5
        summary = record(root, sim.url, sim.ws_url, "--depth", "10")
        [conn] = get(sim.url + "/control/stats")["connections"]
        want = get(f"{sim.url}/control/book?symbol=XBT/USD&seq={conn['last_seq']['XBT/USD']}")
    assert summary["checksum_mismatches"] == 0 and summary["resyncs"] == 0
    report = json.loads(lab("verify", root, "--json").stdout)
    assert report["ok"], report["problems"]
    s = report["streams"]["kraken/XBT-USD"]
    assert s["checksums_bad"] == 0 and s["checksums_ok"] == conn["book_messages"]["XBT/USD"]
    files = list((root / "book" / "venue=kraken" / "symbol=XBT-USD").rglob("*.parquet"))
    meta = pq.read_schema(files[0]).metadata
    assert meta[b"lab.wire_price_decimals"] == b"5" and meta[b"lab.wire_amount_decimals"] == b"8"
    assert meta[b"lab.price_precision"] == b"1"  # the schema (decimal columns) is unchanged
    [last] = query(root, "select checksum from book where symbol = 'XBT-USD' and checksum is not null order by rec_id desc limit 1")
    assert last["checksum"] == want["checksum"]  # the venue's value, padded strings and all
    eth = pq.read_schema(next((root / "book" / "venue=kraken" / "symbol=ETH-USD").rglob("*.parquet"))).metadata
    assert eth[b"lab.wire_price_decimals"] == b"2"
    # a checksum that does not recompute under the recorded padding is reported
    path = files[0]
    meta = dict(pq.read_schema(path).metadata)
    meta[b"lab.wire_price_decimals"] = b"4"
    t = pq.read_table(path)
    pq.write_table(t.replace_schema_metadata(meta), path)
    bad = json.loads(lab("verify", root, "--json", check=False).stdout)
    assert not bad["ok"] and bad["streams"]["kraken/XBT-USD"]["checksums_bad"] > 0


def test_idle_link_gets_pings_and_pongs_are_recorded(tmp_path):
    root = tmp_path / "cap"
    # the venue goes silent (no data, no heartbeats) for 3 s after 50 messages
    with SimulatorThread("kraken", seed=34, rate=200, faults={"stall_after": 50, "stall_seconds": 3}) as sim:
        summary = record(root, sim.url, sim.ws_url, "--ping-idle", "500ms")
    assert summary["connections"] == 1
    events = {e["kind"]: e["n"] for e in query(root, "select kind, count(*) n from events group by kind")}
    assert events.get("ping", 0) >= 2 and events.get("pong", 0) >= 2
    [p] = query(root, "select detail from events where kind = 'ping' limit 1")
    assert json.loads(p["detail"]) == {"event": "ping", "reqid": 1}
