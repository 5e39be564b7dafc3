"""The simulator framework and the mock venue, driven by real clients on loopback."""
from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time

import aiohttp
import orjson
import pytest

from lab.venues.mock import protocol as P
from lab.venues.mock.market import BookEvent, Market, SymbolSpec, TradeEvent
from lab.venues.simulator import SIMULATORS, Faults, SimClock, SimulatorThread, get_plugin_class, ws_frame

SYMBOLS = ("BTC-USD", "ETH-USD")
PREC = {"BTC-USD": (2, 8), "ETH-USD": (2, 8)}


# ----------------------------------------------------------------------------- market

def _key(ev):
    if isinstance(ev, BookEvent):
        return ("book", ev.symbol, ev.seq, tuple(ev.bids), tuple(ev.asks), ev.checksum, ev.timestamp)
    return ("trade", ev.symbol, ev.id, ev.side, ev.price, ev.amount, ev.timestamp)


def test_market_is_deterministic():
    a = [_key(e) for e in Market(seed=42).take(5000)]
    b = [_key(e) for e in Market(seed=42).take(5000)]
    c = [_key(e) for e in Market(seed=43).take(5000)]
    assert a == b
    assert a != c
    # the content does not depend on timing parameters (only the timestamps do)
    d = [_key(e)[:-1] for e in Market(seed=42, mean_interval_ns=10, start_ns=5).take(5000)]
    assert [k[:-1] for k in a] == d


def test_market_shape():
    m = Market(seed=7)
    events = m.take(6000)
    books = {s: (dict(m.book_at(s, 0).bids), dict(m.book_at(s, 0).asks)) for s in SYMBOLS}
    seqs = {s: 0 for s in SYMBOLS}
    trade_ids = {s: 0 for s in SYMBOLS}
    deletes = levels = 0
    last_ts = 0
    for ev in events:
        assert ev.timestamp >= last_ts
        last_ts = ev.timestamp
        bids, asks = books[ev.symbol]
        if isinstance(ev, TradeEvent):
            assert ev.id > trade_ids[ev.symbol]
            trade_ids[ev.symbol] = ev.id
            # at the touch, at most the level's amount
            touch = min(asks) if ev.side == "buy" else max(bids)
            assert ev.price == touch
            assert 0 < ev.amount <= (asks if ev.side == "buy" else bids)[touch]
            continue
        assert ev.seq == seqs[ev.symbol] + 1
        seqs[ev.symbol] = ev.seq
        assert 1 <= len(ev.bids) + len(ev.asks) <= 5
        for side, changes in ((bids, ev.bids), (asks, ev.asks)):
            for price, amount in changes:
                levels += 1
                if amount == 0:
                    deletes += 1
                    del side[price]
                else:
                    side[price] = amount
        assert len(bids) <= 50 and len(asks) <= 50
        assert max(bids) + 1 <= min(asks), "spread >= 1 tick"
        assert P.mock_checksum(bids, asks, 2, 8) == ev.checksum
    assert 0.15 < deletes / levels < 0.35
    assert sum(trade_ids.values()) > 300
    for s in SYMBOLS:
        snap = m.book(s)
        assert (dict(snap.bids), dict(snap.asks)) == books[s]
        assert list(snap.bids) == sorted(snap.bids, reverse=True)
        assert list(snap.asks) == sorted(snap.asks)
    # mids near the configured ones
    btc = m.book("BTC-USD")
    assert 5_900_000 < btc.bids[0][0] < 6_100_000
    assert 290_000 < m.book("ETH-USD").bids[0][0] < 310_000


def test_market_book_at_replays_history():
    m = Market(seed=5, checkpoint_every=100, max_checkpoints=8)  # forces thinning
    history = {s: {0: m.book(s)} for s in SYMBOLS}
    for _ in range(3000):
        ev = m.next_event()
        if isinstance(ev, BookEvent):
            history[ev.symbol][ev.seq] = m.book(ev.symbol)
    assert len(m._checkpoints) <= 9
    for s in SYMBOLS:
        for seq in (0, 1, 2, 99, 100, 101, 777, max(history[s]) - 1, max(history[s])):
            assert m.book_at(s, seq) == history[s][seq]
        with pytest.raises(LookupError):
            m.book_at(s, max(history[s]) + 1)
        with pytest.raises(LookupError):
            m.book_at(s, -1)
    with pytest.raises(KeyError):
        m.book("XRP-USD")


def test_market_custom_symbols():
    spec = SymbolSpec("SOL-USDT", "SOL", "USDT", 3, 4, "150.000", amount_scale="10")
    m = Market(seed=1, symbols=[spec])
    assert m.instruments() == [P.Instrument("SOL-USDT", "SOL", "USDT", 3, 4)]
    evs = m.take(500)
    assert {e.symbol for e in evs} == {"SOL-USDT"}
    b = m.book("SOL-USDT")
    assert b.checksum == P.mock_checksum(b.bids, b.asks, 3, 4)


# ----------------------------------------------------------------------------- framework units

def test_ws_frame_headers():
    assert ws_frame(b"ab") == b"\x81\x02ab"
    assert ws_frame(b"x" * 125)[:2] == b"\x81\x7d"
    assert ws_frame(b"x" * 126)[:4] == b"\x81\x7e\x00\x7e"
    assert ws_frame(b"x" * 70000)[:10] == b"\x81\x7f" + (70000).to_bytes(8, "big")


def test_faults_validation():
    f = Faults(drop_every=3)
    assert f.as_dict()["drop_every"] == 3
    f.update({"stall-seconds": 1.5, "drop_every": None})
    assert f.stall_seconds == 1.5 and f.drop_every == 0
    for bad in ({"nope": 1}, {"drop_every": -1}, {"drop_every": "3"}, {"drop_every": 1.5}, {"rate_limit": True}):
        with pytest.raises(ValueError):
            f.update(bad)


def test_clock_time_compression():
    c = SimClock(time_scale=3600.0, start_ns=0)
    t0 = c.now_ns(c.mono0)
    assert t0 == 0
    assert c.now_ns(c.mono0 + 1.0) == 3600 * 10**9
    assert abs(c.mono_at(7200 * 10**9) - (c.mono0 + 2.0)) < 1e-9
    assert c.wall_seconds(86400) == 24.0


def test_registry():
    from lab.venues.registry import simulated
    assert "mock" in simulated()
    from lab.venues.mock.sim import MockVenue
    assert get_plugin_class("mock") is MockVenue
    with pytest.raises(ValueError):
        get_plugin_class("nope")


# ----------------------------------------------------------------------------- a syncing client

class BookSync:
    """Binance-style sync of one symbol from REST depth + buffered deltas (a dict book)."""

    def __init__(self, symbol):
        self.symbol = symbol
        self.pp, self.ap = PREC[symbol]
        self.buffer: list[P.BookDelta] = []
        self.bids: dict[int, int] | None = None
        self.asks: dict[int, int] | None = None
        self.seq = None
        self.applied = 0
        self.checksums_ok = 0

    def load(self, depth: P.Depth):
        assert depth.symbol == self.symbol
        self.bids = dict(depth.bid_ints(self.pp, self.ap))
        self.asks = dict(depth.ask_ints(self.pp, self.ap))
        assert P.mock_checksum(self.bids, self.asks, self.pp, self.ap) == depth.checksum
        self.seq = depth.seq
        pending, self.buffer = self.buffer, []
        kept = [d for d in pending if d.seq > depth.seq]
        if kept:
            assert kept[0].seq == depth.seq + 1, (kept[0].seq, depth.seq)
        for d in kept:
            self.on_delta(d)

    def on_delta(self, d: P.BookDelta):
        if self.seq is None:
            self.buffer.append(d)
            return
        if d.seq <= self.seq:
            return
        assert d.seq == self.seq + 1, f"gap: {self.seq} -> {d.seq}"
        for side, levels in ((self.bids, d.bid_ints(self.pp, self.ap)), (self.asks, d.ask_ints(self.pp, self.ap))):
            for price, amount in levels:
                if amount:
                    side[price] = amount
                else:
                    del side[price]
        self.seq = d.seq
        self.applied += 1
        assert P.mock_checksum(self.bids, self.asks, self.pp, self.ap) == d.checksum, f"checksum at {d.seq}"
        self.checksums_ok += 1


async def _get(session, url):
    async with session.get(url) as r:
        return r.status, await r.read()


async def _sync_session(base, ws_url, seconds=1.0, symbols=SYMBOLS):
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(ws_url) as ws:
            hello = P.parse_message((await ws.receive()).data)
            assert isinstance(hello, P.Hello)
            await ws.send_bytes(P.render_subscribe(list(symbols)))
            sub = P.parse_message((await ws.receive()).data)
            assert sub == P.Subscribed(tuple(symbols), ("book", "trades"))
            syncs = {s: BookSync(s) for s in symbols}
            trades = {s: [] for s in symbols}
            counts = {"book": 0, "trade": 0, "heartbeat": 0}

            async def reader(deadline):
                while time.monotonic() < deadline:
                    m = await ws.receive(timeout=5)
                    assert m.type == aiohttp.WSMsgType.TEXT, m
                    msg = P.parse_message(m.data)
                    if isinstance(msg, P.BookDelta):
                        counts["book"] += 1
                        syncs[msg.symbol].on_delta(msg)
                    elif isinstance(msg, P.Trade):
                        counts["trade"] += 1
                        trades[msg.symbol].append(msg)
                    elif isinstance(msg, P.Heartbeat):
                        counts["heartbeat"] += 1

            task = asyncio.create_task(reader(time.monotonic() + seconds))
            await asyncio.sleep(0.05)  # let some deltas pile up in the buffer first
            for s in symbols:
                status, body = await _get(session, f"{base}/api/depth?symbol={s}")
                assert status == 200
                syncs[s].load(P.parse_message(body))
            await task
            for s in symbols:
                ids = [t.id for t in trades[s]]
                assert ids == sorted(ids) and len(set(ids)) == len(ids)
            # compare with the simulator's book at the last seq we applied
            for s, sync in syncs.items():
                status, body = await _get(session, f"{base}/control/book?symbol={s}&seq={sync.seq}")
                assert status == 200, body
                ref = P.parse_message(body)
                assert ref.seq == sync.seq
                assert dict(ref.bid_ints(2, 8)) == sync.bids
                assert dict(ref.ask_ints(2, 8)) == sync.asks
                assert ref.checksum == P.mock_checksum(sync.bids, sync.asks, 2, 8)
            status, body = await _get(session, f"{base}/control/stats")
            stats = orjson.loads(body)
            return syncs, counts, stats


def test_client_syncs_book_and_matches_control_book():
    with SimulatorThread("mock", seed=11, rate=4000) as st:
        syncs, counts, stats = asyncio.run(_sync_session(st.url, st.ws_url, seconds=1.0))
    for s in SYMBOLS:
        assert syncs[s].applied > 100, syncs[s].applied
        assert syncs[s].checksums_ok == syncs[s].applied
    assert counts["trade"] > 50
    conn = stats["connections"][0]
    # everything the server says it wrote (except the last in-flight batch) was received
    assert conn["book_messages"]["BTC-USD"] >= syncs["BTC-USD"].applied
    assert conn["last_seq"]["BTC-USD"] >= syncs["BTC-USD"].seq


def test_rest_endpoints():
    async def main(base):
        async with aiohttp.ClientSession() as session:
            status, body = await _get(session, f"{base}/api/instruments")
            assert status == 200
            assert P.parse_message(body) == P.Instruments((
                P.Instrument("BTC-USD", "BTC", "USD", 2, 8), P.Instrument("ETH-USD", "ETH", "USD", 2, 8)))
            status, body = await _get(session, f"{base}/api/depth?symbol=XRP-USD")
            assert (status, body) == (404, b'{"error":"unknown symbol: XRP-USD"}')
            status, body = await _get(session, f"{base}/api/depth?symbol=ETH-USD")
            depth = P.parse_message(body)
            assert 10 <= len(depth.bids) <= 50
            assert depth.checksum == P.mock_checksum(depth.bid_ints(2, 8), depth.ask_ints(2, 8), 2, 8)
            prices = [p for p, _ in depth.bid_ints(2, 8)]
            assert prices == sorted(prices, reverse=True)
            status, body = await _get(session, f"{base}/control/book?symbol=ETH-USD&seq=0")
            assert status == 200 and P.parse_message(body).seq == 0
            status, body = await _get(session, f"{base}/control/book?symbol=ETH-USD&seq=999999999")
            assert status == 404
            # the stream is the seeded market, whatever the rate and the wall clock
            ref = Market(seed=3).book_at("ETH-USD", 0)
            status, body = await _get(session, f"{base}/control/book?symbol=ETH-USD&seq=0")
            got = P.parse_message(body)
            assert got.bid_ints(2, 8) == list(ref.bids) and got.checksum == ref.checksum

    with SimulatorThread("mock", seed=3, rate=500) as st:
        asyncio.run(main(st.url))


def test_subscribe_errors_and_partial_subscription():
    async def main(base, ws_url):
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(ws_url) as ws:
                assert isinstance(P.parse_message((await ws.receive()).data), P.Hello)
                await ws.send_str('{"op":"subscribe","symbols":["XRP-USD"],"channels":["book"]}')
                assert P.parse_message((await ws.receive()).data) == P.Error("unknown symbol: XRP-USD")
                await ws.send_str('{"op":"subscribe","symbols":["ETH-USD"],"channels":["candles"]}')
                assert P.parse_message((await ws.receive()).data) == P.Error("unknown channel: candles")
                await ws.send_str("not json")
                err = P.parse_message((await ws.receive()).data)
                assert isinstance(err, P.Error) and err.message.startswith("invalid request")
                await ws.send_bytes(P.render_subscribe(["ETH-USD"], ["trades"]))
                assert P.parse_message((await ws.receive()).data) == P.Subscribed(("ETH-USD",), ("trades",))
                got = []
                while len(got) < 20:
                    msg = P.parse_message((await ws.receive(timeout=5)).data)
                    if not isinstance(msg, P.Heartbeat):
                        got.append(msg)
                assert all(isinstance(m, P.Trade) and m.symbol == "ETH-USD" for m in got)

    with SimulatorThread("mock", seed=4, rate=5000) as st:
        asyncio.run(main(st.url, st.ws_url))


def test_heartbeat_uses_simulated_time():
    async def main(ws_url):
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(ws_url) as ws:
                hello = P.parse_message((await ws.receive()).data)
                t0 = time.monotonic()
                hbs = []
                while len(hbs) < 3:
                    msg = P.parse_message((await ws.receive(timeout=2)).data)
                    assert isinstance(msg, P.Heartbeat)  # nothing subscribed: only heartbeats
                    hbs.append(msg.timestamp)
                wall = time.monotonic() - t0
                return hello.timestamp, hbs, wall

    # 1 s of simulated silence is 10 ms of wall time at time_scale 100: three heartbeats take
    # well under the 3 s they would take uncompressed, even on a loaded machine (whose late
    # ticks show up as longer simulated gaps, hence the loose upper bound)
    with SimulatorThread("mock", seed=1, rate=10, time_scale=100.0) as st:
        hello_ts, hbs, wall = asyncio.run(main(st.ws_url))
    assert wall < 2.0
    gaps = [b - a for a, b in zip([hello_ts] + hbs, hbs)]
    assert all(0.99e9 <= g <= 100e9 for g in gaps), gaps


# ----------------------------------------------------------------------------- faults

async def _collect(ws_url, n_data=None, seconds=3.0, symbols=SYMBOLS, channels=("book", "trades")):
    """Subscribe and record ``(wall_time, message or ValueError)`` until n data messages, close or timeout."""
    out = []
    close = None
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(ws_url) as ws:
            await ws.receive()  # hello
            await ws.send_bytes(P.render_subscribe(list(symbols), list(channels)))
            assert isinstance(P.parse_message((await ws.receive()).data), P.Subscribed)
            deadline = time.monotonic() + seconds
            data = 0
            while time.monotonic() < deadline and (n_data is None or data < n_data):
                try:
                    m = await ws.receive(timeout=max(0.01, deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    break
                if m.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                    close = (ws.close_code, m.extra)
                    break
                try:
                    msg = P.parse_message(m.data)
                except ValueError as exc:
                    msg = exc
                if not isinstance(msg, P.Heartbeat):
                    data += 1
                out.append((time.monotonic(), msg))
    return out, close


def _books(records, symbol="BTC-USD"):
    return [m for _, m in records if isinstance(m, P.BookDelta) and m.symbol == symbol]


def _stats(st):
    return st.stats()


def test_fault_drop_every_makes_a_seq_gap():
    with SimulatorThread("mock", seed=21, rate=3000, faults={"drop_every": 10}) as st:
        records, _ = asyncio.run(_collect(st.ws_url, n_data=400, symbols=["BTC-USD"], channels=["book"]))
        stats = _stats(st)
    seqs = [m.seq for m in _books(records)]
    steps = [b - a for a, b in zip(seqs, seqs[1:])]
    assert set(steps) == {1, 2}, set(steps)
    # every 10th book message on this connection is missing
    assert 30 <= steps.count(2) <= 45
    assert stats["connections"][0]["dropped"] >= steps.count(2)


def test_fault_bad_checksum_every_is_visible_and_book_stays_right():
    async def main(st):
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(st.ws_url) as ws:
                await ws.receive()
                await ws.send_bytes(P.render_subscribe(["ETH-USD"], ["book"]))
                await ws.receive()
                sync = BookSync("ETH-USD")
                first = P.parse_message((await ws.receive()).data)
                sync.on_delta(first)
                _, body = await _get(session, f"{st.url}/api/depth?symbol=ETH-USD")
                depth = P.parse_message(body)
                bad = ok = 0
                sync.seq = None
                sync.buffer = [first]
                while ok + bad < 300:
                    d = P.parse_message((await ws.receive(timeout=5)).data)
                    if sync.seq is None:
                        sync.buffer.append(d)
                        if d.seq > depth.seq:
                            sync.load(depth)
                            ok += 1
                        continue
                    try:
                        sync.on_delta(d)
                        ok += 1
                    except AssertionError as exc:
                        assert "checksum" in str(exc)
                        bad += 1
                        # the levels were right, only the checksum field lies
                        assert d.checksum != P.mock_checksum(sync.bids, sync.asks, 2, 8)
                        sync.seq = d.seq
                return ok, bad

    with SimulatorThread("mock", seed=22, rate=3000, faults={"bad_checksum_every": 7}) as st:
        ok, bad = asyncio.run(main(st))
        stats = _stats(st)
    assert 30 <= bad <= 50, (ok, bad)
    assert stats["connections"][0]["bad_checksums"] >= bad


def test_fault_malformed_every_sends_invalid_json():
    with SimulatorThread("mock", seed=23, rate=3000, faults={"malformed_every": 25}) as st:
        records, _ = asyncio.run(_collect(st.ws_url, n_data=200))
        stats = _stats(st)
    errors = [m for _, m in records if isinstance(m, ValueError)]
    assert len(errors) == 8, len(errors)
    assert all("invalid JSON" in str(e) for e in errors)
    assert stats["connections"][0]["malformed"] >= 8


def test_fault_disconnect_after_closes_each_connection():
    with SimulatorThread("mock", seed=24, rate=3000, faults={"disconnect_after": 50}) as st:
        for _ in range(2):
            records, close = asyncio.run(_collect(st.ws_url, seconds=5))
            data = [m for _, m in records if not isinstance(m, P.Heartbeat)]
            assert len(data) == 50
            assert close is not None and close[0] == 1001
        stats = _stats(st)
    assert [c["data_messages"] for c in stats["connections"]] == [50, 50]
    assert not any(c["open"] for c in stats["connections"])


def test_fault_stall_then_resume_with_backlog():
    # 5 simulated seconds of silence at time_scale 10 = 0.5 s of wall time
    faults = {"stall_after": 100, "stall_seconds": 5}
    with SimulatorThread("mock", seed=25, rate=2000, time_scale=10, faults=faults) as st:
        records, _ = asyncio.run(_collect(st.ws_url, n_data=400, seconds=5))
    times = [t for t, m in records]
    gaps = [b - a for a, b in zip(times, times[1:])]
    worst = max(range(len(gaps)), key=gaps.__getitem__)
    assert worst == 99, worst  # silent right after the 100th data message
    assert 0.4 <= gaps[worst] <= 1.5, gaps[worst]
    # no heartbeat during the stall, and the stream resumes without a gap
    seqs = [m.seq for m in _books(records)]
    assert all(b - a == 1 for a, b in zip(seqs, seqs[1:]))


def test_fault_rate_limit_and_control_faults_endpoint():
    async def main(base):
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{base}/control/faults", json={"rate_limit": 2}) as r:
                assert r.status == 200
                assert (await r.json())["faults"]["rate_limit"] == 2
            statuses = []
            for _ in range(3):
                status, body = await _get(session, f"{base}/api/depth?symbol=BTC-USD")
                statuses.append(status)
                if status == 429:
                    assert body == b'{"error":"rate limit exceeded"}'
                    assert P.parse_message(body) == P.RestError("rate limit exceeded")
            assert statuses == [429, 429, 200]
            # control endpoints are not rate limited
            async with session.post(f"{base}/control/faults", json={"rate_limit": 1}) as r:
                assert r.status == 200
            assert (await _get(session, f"{base}/control/stats"))[0] == 200
            assert (await _get(session, f"{base}/api/instruments"))[0] == 429
            async with session.post(f"{base}/control/faults", json={"bogus": 1}) as r:
                assert r.status == 400
            async with session.get(f"{base}/control/faults") as r:
                assert (await r.json())["faults"]["rate_limit"] == 0

    with SimulatorThread("mock", seed=26, rate=500) as st:
        asyncio.run(main(st.url))


def test_faults_switched_on_a_live_connection():
    async def main(st):
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(st.ws_url) as ws:
                await ws.receive()
                await ws.send_bytes(P.render_subscribe(["BTC-USD"], ["book"]))
                await ws.receive()
                seqs = []
                while len(seqs) < 400:
                    d = P.parse_message((await ws.receive(timeout=5)).data)
                    if isinstance(d, P.BookDelta):
                        seqs.append(d.seq)
                    if len(seqs) == 100:
                        async with session.post(f"{st.url}/control/faults", json={"drop_every": 5}) as r:
                            assert r.status == 200
                return seqs

    with SimulatorThread("mock", seed=27, rate=3000) as st:
        seqs = asyncio.run(main(st))
    steps = [b - a for a, b in zip(seqs, seqs[1:])]
    assert set(steps[:90]) == {1}
    assert steps[150:].count(2) >= 30


def test_slow_consumer_is_disconnected_not_buffered_forever():
    async def main(st):
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(st.ws_url, max_msg_size=0) as ws:
                await ws.receive()
                await ws.send_bytes(P.render_subscribe(list(SYMBOLS)))
                # read nothing until the server gives up on us
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    conns = (await asyncio.to_thread(st.stats))["connections"]
                    if conns and conns[0]["close_reason"]:
                        break
                    await asyncio.sleep(0.1)
                while time.monotonic() < deadline:
                    m = await ws.receive(timeout=5)
                    if m.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                        return ws.close_code
                return None

    with SimulatorThread("mock", seed=28, rate=50000, max_lag=5000, high_water=64 << 10) as st:
        code = asyncio.run(main(st))
        stats = _stats(st)
    assert code == 1008
    assert stats["connections"][0]["close_reason"] == "slow consumer"


# ----------------------------------------------------------------------------- process, signals, speed

def _start_process(*args):
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab.venues.simulator", "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    line = proc.stdout.readline()
    assert line.startswith("simulator mock listening on http://127.0.0.1:"), (line, proc.stderr.read())
    url = line.split()[4]
    assert line.strip().endswith(f"(ws ws://{url[len('http://'):]}/ws)")
    return proc, int(url.rsplit(":", 1)[1])


def _raw_ws(port, subscribe=True):
    """A minimal blocking WebSocket client: handshake, subscribe, then raw bytes."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.sendall(
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(4096)
    head, rest = buf.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 101"), head
    if subscribe:
        payload = P.render_subscribe(list(SYMBOLS))
        mask = b"\x01\x02\x03\x04"
        sock.sendall(bytes((0x81, 0x80 | len(payload))) + mask
                     + bytes(c ^ mask[i % 4] for i, c in enumerate(payload)))
    return sock, bytearray(rest)


def _count_frames(buf: bytearray) -> tuple[int, int]:
    """Complete frames at the start of buf and the bytes they take."""
    i, n, frames = 0, len(buf), 0
    while i + 2 <= n:
        length = buf[i + 1] & 0x7F
        head = 2
        if length == 126:
            if i + 4 > n:
                break
            length, head = int.from_bytes(buf[i + 2:i + 4], "big"), 4
        elif length == 127:
            if i + 10 > n:
                break
            length, head = int.from_bytes(buf[i + 2:i + 10], "big"), 10
        if i + head + length > n:
            break
        i += head + length
        frames += 1
    return frames, i


def test_sigterm_shuts_down_cleanly():
    proc, port = _start_process("--rate", "2000")
    try:
        sock, buf = _raw_ws(port)
        sock.settimeout(5)
        time.sleep(0.3)
        proc.send_signal(__import__("signal").SIGTERM)
        data = bytes(buf)
        while True:
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            data += chunk
            if b"\x88" in data[-200:]:
                # a close frame (opcode 8) with code 1001 is among the last bytes
                idx = data.rfind(b"\x88")
                if data[idx + 2:idx + 4] == (1001).to_bytes(2, "big"):
                    break
        assert b"\x88" in data
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_throughput_is_measured():
    """Messages/s actually sent to one raw client: a pre-rendered burst, then sustained."""
    prerender = 40_000
    proc, port = _start_process("--rate", "1000000", "--seed", "9", "--option", f"prerender={prerender}")
    try:
        sock, buf = _raw_ws(port)
        sock.settimeout(5)
        total = 0
        marks = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.2:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
            frames, used = _count_frames(buf)
            del buf[:used]
            total += frames
            marks.append((time.monotonic(), total))
        sock.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    # the burst: frames that were rendered before they fell due go out at wire speed
    start = next((t, n) for t, n in marks if n >= 1000)
    burst_end = next(((t, n) for t, n in marks if n >= prerender // 2), marks[-1])
    burst = (burst_end[1] - start[1]) / max(1e-6, burst_end[0] - start[0])
    tail = [(t, n) for t, n in marks if t >= marks[-1][0] - 0.5]
    sustained = (tail[-1][1] - tail[0][1]) / max(1e-6, tail[-1][0] - tail[0][0])
    print(f"\nsimulator throughput: pre-rendered burst {burst:,.0f} msgs/s, "
          f"sustained (generated live) {sustained:,.0f} msgs/s, {total} messages in 1.2 s")
    assert total > 20_000
    assert burst > sustained * 0.8 or burst > 50_000


def test_connection_age_limit_in_simulated_time():
    """A 24 h connection limit, tested in well under a second of wall time."""
    async def main(ws_url):
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(ws_url) as ws:
                t0 = time.monotonic()
                while True:
                    m = await ws.receive(timeout=5)
                    if m.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                        return time.monotonic() - t0, ws.close_code

    # 86400 simulated seconds at time_scale 200000 = 0.43 s of wall time
    with SimulatorThread("mock", seed=2, rate=100, time_scale=200_000.0, max_connection_age=86_400) as st:
        wall, code = asyncio.run(main(st.ws_url))
        reason = _stats(st)["connections"][0]["close_reason"]
    assert 0.3 < wall < 5.0, wall
    assert code == 1000 and reason == "maximum connection age reached"


# ----------------------------------------------------------------------------- another venue plugs in

class _TickerVenue:
    """A toy venue built on the framework: its own WS path, REST route, per-connection
    sequence numbers (like Coinbase's sequence_num), no checksum."""

    @staticmethod
    def make():
        from aiohttp import web

        from lab.venues.simulator import Item, VenuePlugin, json_response

        class TickerVenue(VenuePlugin):
            name = "ticker"
            ws_paths = ("/stream", "/stream/{channel}")
            shared_frames = False
            heartbeat_interval = None

            def __init__(self, sim, **options):
                super().__init__(sim, **options)
                self.n = 0
                self.next_ns = sim.clock.start_ns

            def next_due_ns(self):
                return self.next_ns

            def produce(self, until_ns, limit):
                out = []
                step = int(1e9 * self.sim.clock.time_scale / self.sim.rate)
                while self.next_ns <= until_ns and len(out) < limit:
                    self.n += 1
                    out.append(Item(orjson.dumps({"px": self.n}), "ticks", "book", "T", self.n, self.n))
                    self.next_ns += step
                return out

            def frame_for(self, conn, item):
                conn.state["sequence_num"] = conn.state.get("sequence_num", 0) + 1
                return ws_frame(orjson.dumps({"sequence_num": conn.state["sequence_num"], "px": item.event}))

            def routes(self):
                async def time_handler(request):
                    return json_response({"time": self.sim.clock.now_ns()})
                return [("GET", "/v1/time", time_handler)]

            def rate_limit_response(self, request):
                return web.Response(status=418, text="slow down")

            async def on_open(self, conn):
                if conn.request.match_info.get("channel") == "ticks":
                    conn.subscribe(["ticks"])  # subscribed by URL, Binance style

        return TickerVenue


def test_another_venue_plugs_into_the_framework():
    from lab.venues.simulator import register_simulator

    register_simulator("ticker-test", _TickerVenue.make())

    async def main(st):
        async with aiohttp.ClientSession() as session:
            assert st.ws_url.endswith("/stream")
            async with session.get(f"{st.url}/v1/time") as r:
                assert r.status == 200 and "time" in await r.json()
            async with session.ws_connect(f"{st.url.replace('http', 'ws')}/stream/ticks") as ws:
                got = [orjson.loads((await ws.receive(timeout=5)).data) for _ in range(40)]
            await asyncio.to_thread(st.set_faults, rate_limit=1)
            async with session.get(f"{st.url}/v1/time") as r:
                assert r.status == 418  # the venue's own rate-limit reply
            async with session.get(f"{st.url}/v1/time") as r:
                assert r.status == 200
        return got

    try:
        with SimulatorThread("ticker-test", rate=2000, faults={"drop_every": 4}) as st:
            got = asyncio.run(main(st))
    finally:
        SIMULATORS.pop("ticker-test", None)
    nums = [m["sequence_num"] for m in got]
    # per-connection numbering, with every 4th message lost in transit (a visible gap)
    assert nums[0] in (1, 2)
    steps = [b - a for a, b in zip(nums, nums[1:])]
    assert set(steps) == {1, 2} and 8 <= steps.count(2) <= 14
    assert [m["px"] - m["sequence_num"] for m in got] == [got[0]["px"] - got[0]["sequence_num"]] * len(got)

