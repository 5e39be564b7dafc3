"""Kraken golden cases: every documented message and vector of ../shared/PROTOCOLS.md sections 1-3,
fed to the real normalizer and checked against the real simulator."""
from __future__ import annotations

import json
import urllib.request
import zlib

import orjson
import pytest

from lab.core.model import RawRow
from lab.core.events import REQUEST_RESUBSCRIBE
from lab.rust_book import kraken_checksum
from lab.venues.kraken import feed as K
from lab.venues.kraken.adapter import KrakenV1
from lab.venues.kraken import protocol as P
from oracles.kraken import wire_checksum
from lab.venues.simulator import SimulatorThread

# -- PROTOCOLS.md vectors ---------------------------------------------------------------------

VECTOR_A_ASKS = ["0.05005", "0.05010", "0.05015", "0.05020", "0.05025", "0.05030", "0.05035", "0.05040", "0.05045", "0.05050"]
VECTOR_A_BIDS = ["0.05000", "0.04995", "0.04990", "0.04980", "0.04975", "0.04970", "0.04965", "0.04960", "0.04955", "0.04950"]
VECTOR_A_INPUT = "50055005010500501550050205005025500503050050355005040500504550050505005000500499550049905004980500497550049705004965500496050049555004950500"

VECTOR_D_ASKS = [("45285.2", "0.00100000"), ("45286.4", "1.54571953"), ("45286.6", "1.54571109"), ("45289.6", "1.54560911"),
                 ("45290.2", "0.15890660"), ("45291.8", "1.54553491"), ("45294.7", "0.04454749"), ("45296.1", "0.35380000"),
                 ("45297.5", "0.09945542"), ("45299.5", "0.18772827")]
VECTOR_D_BIDS = [("45283.5", "0.10000000"), ("45283.4", "1.54582015"), ("45282.1", "0.10000000"), ("45281.0", "0.10000000"),
                 ("45280.3", "1.54592586"), ("45279.0", "0.07990000"), ("45277.6", "0.03310103"), ("45277.5", "0.30000000"),
                 ("45277.3", "1.54602737"), ("45276.6", "0.15445238")]


def test_vector_a_wire_strings():
    asks = [(p, "0.00000500") for p in VECTOR_A_ASKS]
    bids = [(p, "0.00000500") for p in VECTOR_A_BIDS]
    assert zlib.crc32(VECTOR_A_INPUT.encode()) == 974947235
    assert wire_checksum(asks, bids) == 974947235
    assert kraken_checksum(asks, bids) == 974947235


def _feed_snapshot(n: K.KrakenNormalizer, pair: str, asks, bids, conn_seq=[0]) -> None:
    ts = "1534614248.123678"
    msg = [1, {"as": [[p, a, ts] for p, a in asks], "bs": [[p, a, ts] for p, a in bids]}, "book-10", pair]
    n.feed(_row("recv", orjson.dumps(msg)))


_rec = iter(range(10**9))


def _row(kind: str, payload: bytes, channel: str = "ws", symbol=None) -> RawRow:
    i = next(_rec)
    return RawRow(i, 1_700_000_000_000_000_000 + i, 1, i, kind, channel, symbol, payload)


def _asset_pairs(*specs) -> bytes:
    return orjson.dumps({"error": [], "result": {s.internal: s.asset_pair() for s in specs}})


def normalizer(specs=P.PAIRS, **kw) -> tuple[K.KrakenNormalizer, list]:
    requests = []
    n = K.KrakenNormalizer(request=lambda a, s: requests.append((a, s)), **kw)
    n.feed(_row("rest", _asset_pairs(*specs), K.INSTRUMENTS_PATH))
    return n, requests


def test_vector_a_through_the_book():
    spec = P.PairSpec("XTESTZEUR", "TESTEUR", "TEST/EUR", "XTEST", "ZEUR", 5, 8)
    n, _ = normalizer([spec])
    _feed_snapshot(n, "TEST/EUR", [(p, "0.00000500") for p in VECTOR_A_ASKS], [(p, "0.00000500") for p in VECTOR_A_BIDS])
    assert n.books["TEST/EUR"].synced
    assert n.books["TEST/EUR"].kraken_checksum() == 974947235


def test_vector_d_strings_and_book():
    a_str = "".join(p.replace(".", "").lstrip("0") + a.replace(".", "").lstrip("0") for p, a in VECTOR_D_ASKS)
    b_str = "".join(p.replace(".", "").lstrip("0") + a.replace(".", "").lstrip("0") for p, a in VECTOR_D_BIDS)
    assert a_str == "45285210000045286415457195345286615457110945289615456091145290215890660452918154553491452947445474945296135380000452975994554245299518772827"
    assert b_str == "452835100000004528341545820154528211000000045281010000000452803154592586452790799000045277633101034527753000000045277315460273745276615445238"
    assert wire_checksum(VECTOR_D_ASKS, VECTOR_D_BIDS) == 3310070434
    n, _ = normalizer()
    _feed_snapshot(n, "XBT/USD", VECTOR_D_ASKS, VECTOR_D_BIDS)
    assert n.books["XBT/USD"].kraken_checksum() == 3310070434


def test_documented_v1_messages():
    n, requests = normalizer()
    n.feed(_row("open", b"ws://x"))
    n.feed(_row("recv", b'{"connectionID":17843232920108168701,"event":"systemStatus","status":"online","version":"1.8.3"}'))
    n.feed(_row("recv", b'{"channelID":1664,"channelName":"book-1000","event":"subscriptionStatus","pair":"WAVES/EUR","status":"subscribed","subscription":{"depth":1000,"name":"book"}}'))
    n.feed(_row("recv", b'{"event":"heartbeat"}'))
    n.feed(_row("recv", b'{"event":"pong","reqid":42}'))
    n.feed(_row("recv", b'{"errorMessage":"Subscription depth not supported","event":"subscriptionStatus","pair":"XBT/USD","status":"error","subscription":{"depth":42,"name":"book"}}'))
    # the documented snapshot (XBT/USD, 5-decimal prices: the wire pads beyond pair_decimals 1)
    snap = b'[0,{"as":[["5541.30000","2.50700000","1534614248.123678"],["5541.80000","0.33000000","1534614098.345543"]],"bs":[["5541.20000","1.52900000","1534614248.765567"],["5539.90000","0.30000000","1534614241.769870"]]},"book-100","XBT/USD"]'
    n.feed(_row("recv", snap))
    book = n.books["XBT/USD"]
    assert book.synced
    assert book.bids_ticks() == [(55412, 152900000), (55399, 30000000)]
    assert book.asks_ticks() == [(55413, 250700000), (55418, 33000000)]
    kinds = [e[2] for e in n.out.events]
    assert kinds == ["connect", "status", "pong", "venue_error", "snapshot"]
    assert n.out.events[2][4] == "reqid 42"  # pongs are recorded (answers to the client's pings)
    assert n.out.events[3][3] == "XBT-USD" and "depth not supported" in n.out.events[3][4]
    # an update whose checksum is computed from the 5-decimal wire strings verifies
    asks = [("5541.30000", "2.50700000"), ("5541.80000", "0.33000000")]
    bids = [("5541.20000", "1.00000000"), ("5539.90000", "0.30000000")]
    crc = wire_checksum(asks, bids)
    n.feed(_row("recv", orjson.dumps([0, {"b": [["5541.20000", "1.00000000", "1534614250.000001"]], "c": str(crc)}, "book-100", "XBT/USD"])))
    assert book.synced and book.bids_ticks()[0] == (55412, 100000000)
    assert not requests
    rows = n.out.book["XBT-USD"]
    # the stored checksum is the venue's (over the 5-decimal wire strings), and the book files
    # say which decimals it was computed with, so `lab verify` recomputes it (docs/KRAKEN.md)
    assert rows.rows()[-1][8] == crc != book.kraken_checksum()
    assert n.take().book_meta == {"XBT-USD": {"wire_price_decimals": 5, "wire_amount_decimals": 8}}


def test_captured_both_sides_update():
    spec = P.PairSpec("SCEUR", "SCEUR", "SC/EUR", "SC", "ZEUR", 6, 8)
    n, requests = normalizer([spec])
    # a book where the both-sides capture applies: 0.042990 is a bid, and becomes an ask
    asks = [("0.043000", "100.00000000")]
    bids = [("0.042990", "5.00000000"), ("0.042980", "7.00000000")]
    _feed_snapshot(n, "SC/EUR", asks, bids)
    after_asks = [("0.042990", "364630.28272081"), ("0.043000", "100.00000000")]
    after_bids = [("0.042980", "7.00000000")]
    crc = wire_checksum(after_asks, after_bids)
    frame = ('[1920,{"a":[["0.042990","364630.28272081","1618678145.920470"]]},{"b":[["0.042990","0.00000000","1618678145.920708"]],"c":"%d"},"book-1000","SC/EUR"]' % crc).encode()
    n.feed(_row("recv", frame))
    book = n.books["SC/EUR"]
    assert book.synced, n.out.events
    assert book.asks_ticks()[0] == (42990, 36463028272081)
    assert book.bids_ticks() == [(42980, 700000000)]
    cols = n.out.book["SC-EUR"]
    # rows in wire order: the asks dict, then the bids dict; one LAST at the end
    rows = cols.rows()
    assert [r[3] for r in rows[-2:]] == ["ask", "bid"] and [r[9] for r in rows[-2:]] == [0, 1]
    # and the real captured checksum is a mismatch against this synthetic book: event + resync
    n.feed(_row("recv", b'[1920,{"a":[["0.042990","1.00000000","1618678146.0"]],"c":"4105471083"},"book-1000","SC/EUR"]'))
    kinds = [e[2] for e in n.out.events]
    assert kinds[-2:] == ["checksum_mismatch", "resync"]
    assert requests == [(REQUEST_RESUBSCRIBE, "SC/EUR")]
    assert not book.synced


def test_republish_repeated_prices_and_truncation():
    n, _ = normalizer(depth=10)
    asks = [(f"{100 + i}.0", "1.00000000") for i in range(10)]
    bids = [(f"{90 - i}.0", "1.00000000") for i in range(10)]
    _feed_snapshot(n, "XBT/USD", asks, bids)
    book = n.books["XBT/USD"]
    # delete the best ask, republish the 11th ("r"), then change 101.0 twice (in order) and
    # insert a better bid that pushes 81.0 out of the depth (no delete for it)
    new_asks = [(f"{100 + i}.0", "1.00000000") for i in range(1, 11)]
    new_asks[0] = ("101.0", "3.00000000")
    new_bids = [("95.0", "2.00000000")] + bids[:9]
    crc = wire_checksum(new_asks, new_bids)
    msg = [7, {"a": [["100.0", "0.00000000", "1.1"], ["110.0", "1.00000000", "1.1", "r"], ["101.0", "2.00000000", "1.2"], ["101.0", "3.00000000", "1.3"]]},
           {"b": [["95.0", "2.00000000", "1.4"]], "c": str(crc)}, "book-10", "XBT/USD"]
    n.feed(_row("recv", orjson.dumps(msg)))
    assert book.synced, n.out.events
    assert book.asks_ticks(2) == [(1010, 300000000), (1020, 100000000)]
    assert len(book.bids_ticks()) == 10 and book.bids_ticks()[-1] == (820, 100000000)


def test_precision_event_and_malformed():
    n, requests = normalizer()
    _feed_snapshot(n, "XBT/USD", [("100.0", "1.00000000")], [("99.0", "1.00000000")])
    n.feed(_row("recv", b'[7,{"a":[["100.05","1.00000000","1.1"]],"c":"1"},"book-10","XBT/USD"]'))
    assert [e[2] for e in n.out.events][-2:] == ["precision", "resync"]
    n.feed(_row("recv", b'[7,{"a":[["100.0'))
    assert n.out.events[-1][2] == "malformed"
    assert requests == [(REQUEST_RESUBSCRIBE, "XBT/USD")]


def test_trades_ids_and_dedup_across_reconnect():
    n, _ = normalizer()
    msg = b'[42,[["5541.2","0.15850568","1534614057.321597","s","l",""],["5541.2","0.15850568","1534614057.321597","s","l",""],["5542.0","0.1","1534614057.5","b","m",""]],"trade","XBT/USD"]'
    n.feed(_row("recv", msg))
    n.feed(_row("close", b"gone"))
    n.feed(_row("open", b"ws://x"))
    n.feed(_row("recv", msg))  # the same trades again after a reconnect: written once
    t = n.out.trades["XBT-USD"]
    assert len(t.id) == 3 and len(set(t.id)) == 3
    assert t.side == ["sell", "sell", "buy"]
    assert t.price == [55412, 55412, 55420] and t.amount[2] == 10000000
    assert t.timestamp[0] == 1534614057321597000
    assert t.id[0] == K.trade_id("XBT/USD", ["5541.2", "0.15850568", "1534614057.321597", "s", "l"], 0)
    assert n.stats["duplicate_trades"] == 3


def test_rest_depth_and_errors():
    n, _ = normalizer()
    body = b'{"error":[],"result":{"XXBTZUSD":{"asks":[["30384.10000","2.059",1688671659],["30387.90000","1.500",1688671380],["30393.70000","9.871",1688671261]],"bids":[["30297.00000","1.115",1688671636],["30296.70000","2.002",1688671674],["30289.80000","5.001",1688671673]]}}}'
    n.feed(_row("rest", body, K.depth_path("XBT/USD"), "XBT/USD"))
    book = n.books["XBT/USD"]
    assert book.synced and book.best_bid_ticks() == (302970, 111500000) and book.best_ask_ticks() == (303841, 205900000)
    n.feed(_row("rest", b'{"error":["EQuery:Unknown asset pair"]}', K.depth_path("XBT/USD"), "XBT/USD"))
    assert n.out.events[-1][2] == "venue_error" and "EQuery:Unknown asset pair" in n.out.events[-1][4]
    with pytest.raises(Exception, match="Rate limit"):
        K.parse_instruments(b'{"error":["EAPI:Rate limit exceeded"]}')
    assert KrakenV1().retry_after(200, b'{"error":["EAPI:Rate limit exceeded"]}') is not None
    assert KrakenV1().retry_after(200, body) is None


def test_asset_pairs_mapping():
    insts = {i.venue_symbol: i for i in K.parse_instruments(_asset_pairs(*P.PAIRS))}
    assert insts["XBT/USD"].symbol == "XBT-USD" and insts["XBT/USD"].price_precision == 1 and insts["XBT/USD"].amount_precision == 8
    assert insts["ETH/USD"].price_precision == 2
    assert K.depth_path("XBT/USD").startswith("/0/public/Depth?pair=XBTUSD")
    frames = [orjson.loads(f) for f in KrakenV1().subscribe_frames(["XBT/USD", "ETH/USD"], 25)]
    assert frames[0] == {"event": "subscribe", "pair": ["XBT/USD", "ETH/USD"], "subscription": {"name": "book", "depth": 25}}
    assert frames[1]["subscription"] == {"name": "trade"}
    with pytest.raises(Exception, match="not supported"):
        KrakenV1().subscribe_frames(["XBT/USD"], 42)


# -- the simulator speaks the same protocol ------------------------------------------------------


def get(url: str):
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def test_simulator_rest():
    with SimulatorThread("kraken", seed=1, rate=500) as sim:
        pairs = get(sim.url + "/0/public/AssetPairs")["result"]
        assert pairs["XXBTZUSD"]["wsname"] == "XBT/USD" and pairs["XXBTZUSD"]["pair_decimals"] == 1
        depth = get(sim.url + "/0/public/Depth?pair=XBTUSD&count=10")
        [(key, book)] = depth["result"].items()
        assert key == "XXBTZUSD" and len(book["asks"]) == 10
        assert float(book["asks"][0][0]) > float(book["bids"][0][0])
        assert get(sim.url + "/0/public/Depth?pair=NOPE") == {"error": ["EQuery:Unknown asset pair"]}
        sim.set_faults(rate_limit=1)
        assert get(sim.url + "/0/public/AssetPairs") == {"error": ["EAPI:Rate limit exceeded"]}
        assert get(sim.url + "/0/public/AssetPairs")["error"] == []


@pytest.mark.parametrize("depth", [10, 25])
def test_simulator_ws_checksums_hold_for_a_plain_client(depth):
    """A minimal independent client (wire strings in dicts, PROTOCOLS.md rules) keeps the
    simulator's checksum on every update, including r levels and both-sides messages."""
    import asyncio

    import aiohttp

    async def run(url):
        books = {}
        seen = {"updates": 0, "r": 0, "both": 0, "acks": 0, "pong": 0, "status": 0}
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(url) as ws:
                await ws.send_str(json.dumps({"event": "ping", "reqid": 42}))
                await ws.send_str(json.dumps({"event": "subscribe", "pair": ["XBT/USD", "ETH/USD"], "subscription": {"name": "book", "depth": depth}}))
                await ws.send_str(json.dumps({"event": "subscribe", "pair": ["NOPE/USD"], "subscription": {"name": "book", "depth": depth}}))
                errors = []
                while seen["updates"] < 1500:
                    msg = json.loads((await ws.receive()).data)
                    if isinstance(msg, dict):
                        if msg.get("event") == "pong":
                            assert msg == {"event": "pong", "reqid": 42}
                            seen["pong"] += 1
                        elif msg.get("event") == "systemStatus":
                            seen["status"] += 1
                        elif msg.get("status") == "subscribed":
                            seen["acks"] += 1
                            assert msg["channelName"] == f"book-{depth}"
                        elif msg.get("status") == "error":
                            errors.append(msg["errorMessage"])
                        continue
                    pair = msg[-1]
                    if "as" in msg[1]:
                        books[pair] = ({p: a for p, a, _ in msg[1]["as"]}, {p: a for p, a, _ in msg[1]["bs"]})
                        assert len(msg[1]["as"]) == depth
                        continue
                    asks, bids = books[pair]
                    crc = None
                    if len(msg) == 5:
                        seen["both"] += 1
                    for d in msg[1:-2]:
                        for key, side in (("a", asks), ("b", bids)):
                            for level in d.get(key, []):
                                if len(level) == 4:
                                    assert level[3] == "r"
                                    seen["r"] += 1
                                if float(level[1]) == 0:
                                    side.pop(level[0], None)
                                else:
                                    side[level[0]] = level[1]
                        crc = d.get("c", crc)
                    for side, rev in ((asks, False), (bids, True)):
                        for p in sorted(side, key=float, reverse=rev)[depth:]:
                            del side[p]
                    a = sorted(asks.items(), key=lambda kv: float(kv[0]))
                    b = sorted(bids.items(), key=lambda kv: -float(kv[0]))
                    assert wire_checksum(a, b) == int(crc)
                    seen["updates"] += 1
        return seen, errors

    with SimulatorThread("kraken", seed=5, rate=4000) as sim:
        seen, errors = asyncio.run(run(sim.ws_url))
    assert seen["pong"] == 1 and seen["status"] == 1 and seen["acks"] == 2
    assert errors == ["Currency pair not supported NOPE/USD"]
    assert seen["r"] > 0 and seen["both"] > 0


def test_simulator_resubscribe_and_heartbeat():
    import asyncio

    import aiohttp

    async def run(url):
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(url) as ws:
                sub = {"event": "subscribe", "pair": ["XBT/USD"], "subscription": {"name": "book", "depth": 10}}
                await ws.send_str(json.dumps(sub))
                await ws.send_str(json.dumps(sub))
                await ws.send_str(json.dumps({**sub, "event": "unsubscribe"}))
                await ws.send_str(json.dumps(sub))
                got = []
                for _ in range(60):
                    msg = json.loads((await ws.receive(timeout=5)).data)
                    if isinstance(msg, dict):
                        ev = msg.get("event")
                        got.append(ev if ev in ("systemStatus", "heartbeat") else msg.get("status"))
                    elif "as" in msg[1]:
                        got.append("snapshot")
                    if got.count("heartbeat") >= 1:
                        break
                return got

    with SimulatorThread("kraken", seed=2, rate=1, time_scale=20) as sim:
        got = asyncio.run(run(sim.ws_url))
    assert got[:7] == ["systemStatus", "subscribed", "snapshot", "error", "unsubscribed", "subscribed", "snapshot"]
    assert "heartbeat" in got
