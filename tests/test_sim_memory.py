"""The Binance simulator's memory stays bounded at a high rate, with a client and after it left.

`lab simulate --venue binance --rate 60000` used to keep every diff it generated (for
`/control/book?seq=`), ~25 MB/s, and reached 14.5 GB in 18 minutes. The history is now a bounded
window (`book_history` diffs per symbol, whole chunks of HISTORY_CHUNK) and a client that stops
reading is cut after `max_backlog` messages, which frees the frames it pinned on the tape.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import threading
import time
import tracemalloc
import urllib.error
import urllib.request
from types import SimpleNamespace

import aiohttp

from lab.venues.binance.sim import HISTORY_CHUNK
from lab.venues.simulator import SimulatorThread

HISTORY = 2 * HISTORY_CHUNK


def get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def read_client(url: str, seconds: float) -> int:
    async def main() -> int:
        n = 0
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(url + "/stream?streams=btcusdt@depth@100ms/ethusdt@trade") as ws:
                t0 = time.monotonic()
                while time.monotonic() - t0 < seconds:
                    msg = await ws.receive(timeout=5)
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    n += 1
        return n

    return asyncio.run(main())


def retained(st) -> dict:
    sim = st.simulator
    return st.call(lambda: {
        "diffs": {s: b.retained_diffs() for s, b in sim.plugin.books.items()},
        "oldest": {s: b.oldest_id for s, b in sim.plugin.books.items()},
        "last": {s: b.update_id for s, b in sim.plugin.books.items()},
        "tape": sum(len(b.items) for b in sim._tape),
        "open": len(sim.connections),
        "produced": sim._produced,
    })


def test_history_and_tape_stay_bounded_with_and_without_a_client():
    with SimulatorThread("binance", seed=3, rate=60000, book_history=HISTORY) as st:
        time.sleep(1.5)  # fills the windows (~12000 diffs per symbol per second)
        got = {}
        t = threading.Thread(target=lambda: got.setdefault("n", read_client(st.url, 2.0)))
        t.start()
        t.join(15)
        assert got.get("n", 0) > 1000
        time.sleep(0.5)
        r = retained(st)
        assert r["open"] == 0 and r["tape"] == 0  # the closed client's backlog went with it
        assert r["produced"] > 100_000
        for sym, n in r["diffs"].items():
            assert HISTORY <= n <= HISTORY + HISTORY_CHUNK, (sym, n)

        # the control endpoints still answer inside the window, and say why outside it
        status, stats = get(st.url + "/control/stats")
        assert status == 200 and stats["connections"][-1]["close_reason"] == "client closed"
        # the handler of /control/book on the loop thread: over HTTP, at this rate, the loop may
        # produce the diffs that push a given id out of the window before the request is served
        sim = st.simulator

        def control_book(seq: int):
            res = sim.plugin.control_book(SimpleNamespace(query={"symbol": "btcusdt", "seq": str(seq)}))
            return res.status, json.loads(res.body)

        def oldest_and_newest():
            b = sim.plugin.books["BTCUSDT"]
            return control_book(b.oldest_id), control_book(b.update_id), b.oldest_id, b.update_id

        (s1, b1), (s2, b2), oldest, newest = st.call(oldest_and_newest)
        assert s1 == 200 and b1["lastUpdateId"] == oldest
        assert s2 == 200 and b2["lastUpdateId"] == newest and newest - oldest > HISTORY
        status, body = get(f"{st.url}/control/book?symbol=BTCUSDT&seq={r['oldest']['BTCUSDT'] - 1}")
        assert status == 404 and "older than the retained history" in body["msg"]
        book = sim.plugin.books["ETHUSDT"]
        now, at = st.call(lambda: (book.snapshot(), book.at(book.update_id)))
        assert now == at

        # steady state: traced memory does not grow with the messages produced. Only allocations
        # made after tracemalloc.start() count, so the chunks allocated since then show (~55 B a
        # message, 0.8 diffs of ~8 int64 each) while freeing older ones does not; the old unbounded
        # history grew ~480 B a message (a list of tuples per diff, kept forever)
        tracemalloc.start()
        try:
            time.sleep(0.5)
            p1, (m1, _) = retained(st)["produced"], tracemalloc.get_traced_memory()
            time.sleep(3.0)
            p2, (m2, _) = retained(st)["produced"], tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert p2 - p1 > 5000
        assert (m2 - m1) / (p2 - p1) < 160, (m2 - m1, p2 - p1)
        for sym, n in retained(st)["diffs"].items():
            assert n <= HISTORY + HISTORY_CHUNK, (sym, n)


def test_a_client_that_stops_reading_is_cut_and_its_backlog_freed():
    with SimulatorThread("binance", seed=4, rate=60000, max_backlog=20_000) as st:
        s = socket.create_connection(("127.0.0.1", st.port))
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            key = base64.b64encode(os.urandom(16)).decode()
            s.sendall((f"GET /stream?streams=btcusdt@depth@100ms/ethusdt@depth@100ms HTTP/1.1\r\nHost: x\r\n"
                       f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                       f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
            deadline = time.monotonic() + 10
            reason = None
            while time.monotonic() < deadline and reason is None:
                time.sleep(0.2)
                conns = st.stats()["connections"]
                reason = conns[0]["close_reason"] if conns else None
            assert reason == "slow consumer"
            time.sleep(0.5)
            r = retained(st)
            assert r["tape"] <= 20_000 + 8192, r["tape"]  # at most a couple of batches pending
        finally:
            s.close()
        deadline = time.monotonic() + 6  # the close handshake times out (3 s) for a client that does not read
        while time.monotonic() < deadline:
            r = retained(st)
            if r["open"] == 0:
                break
            time.sleep(0.2)
        assert r["open"] == 0 and r["tape"] == 0
