"""`lab serve-replay` over real loopback, no mocks: record a simulator, serve that capture with the
real CLI, record it again from the replay server with an unmodified `lab record`, and the second
capture must hold the same final books, verified checksums, trade ids (and disconnects) as the
first. Plus subscriptions honoured per connection, the captured pacing, and bad input."""
from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import time
import urllib.request

import pytest

from lab.venues.simulator import SimulatorThread
from labcli import LAB, lab


def get(url: str):
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def query(root, sql) -> list[dict]:
    return [json.loads(line) for line in lab("query", sql, "--root", root, "--json").stdout.splitlines()]


class ReplayServer:
    """`lab serve-replay ROOT --venue V --port 0` in a subprocess; the port from its first line."""

    def __init__(self, root, venue, speed="max", *extra):
        self.args = [*LAB, "serve-replay", str(root), "--venue", venue, "--port", "0", "--speed", speed, *extra]
        self.lines: list[str] = []

    def __enter__(self) -> "ReplayServer":
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = self.proc.stdout.readline()
        m = re.search(r"on (http://127\.0\.0\.1:(\d+))", first)
        assert m, (first, self.proc.stderr.read() if self.proc.poll() is not None else "")
        self.lines.append(first)
        self.url = m.group(1)
        self.ws_url = f"ws://127.0.0.1:{m.group(2)}/ws"
        return self

    def status(self) -> dict:
        return get(self.url + "/control/replay")

    def __exit__(self, *exc) -> None:
        self.proc.send_signal(signal.SIGINT)
        out, err = self.proc.communicate(timeout=15)
        self.lines += out.splitlines()
        self.stderr = err


def rerecord(server: ReplayServer, root, venue, *symbols, extra: tuple = (), timeout: float = 60.0) -> dict:
    """`lab record` from the replay server until the whole capture has been served (then SIGINT:
    the recorder stops cleanly); its --json summary."""
    args = [*LAB, "record", "--venue", venue, "--ws-url", server.ws_url, "--rest-url", server.url,
            "--duration", "120s", "--out", str(root), "--json", *extra]
    for s in symbols:
        args += ["--symbol", s]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    try:
        while not server.status()["finished"]:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, server.status()
            time.sleep(0.1)
        time.sleep(1.0)  # the tail reaches the recorder; a quiet venue after that, never a stall
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, (out, err)
    return json.loads(out)


def books(root) -> dict:
    streams = json.loads(lab("replay", root, "--json").stdout)["streams"]
    return {name: {k: s.get(k) for k in ("best_bid", "best_ask", "checksum", "seq", "synced", "bids", "asks")}
            for name, s in streams.items()}


def healthy(root) -> dict:
    report = json.loads(lab("verify", root, "--json").stdout)
    assert report["ok"], report["problems"]
    for name, s in report["streams"].items():
        assert s["gaps"] == 0 and s["checksums_bad"] == 0, (name, s)
    return report


def trades(root) -> list[tuple]:
    return [(r["symbol"], r["id"]) for r in query(root, "select symbol, id from trades order by symbol, local_timestamp, id")]


def assert_same_capture(original, again) -> None:
    want, got = books(original), books(again)
    assert got == want and all(s["synced"] for s in got.values())
    a, b = healthy(original), healthy(again)
    for name, s in a["streams"].items():
        assert b["streams"][name]["checksums_ok"] == s["checksums_ok"] > 0, name
        assert b["streams"][name]["messages"] == s["messages"], name
    ids = trades(original)
    assert ids and trades(again) == ids


def test_kraken_capture_served_and_recorded_again(tmp_path):
    original, again = tmp_path / "orig", tmp_path / "again"
    with SimulatorThread("kraken", seed=21, rate=1200) as sim:
        lab("record", "--venue", "kraken", "--symbol", "XBT/USD", "--symbol", "ETH/USD", "--ws-url", sim.ws_url,
            "--rest-url", sim.url, "--duration", "8s", "--out", original)
    [frames] = query(original, "select count(*) n from raw where kind = 'recv'")
    with ReplayServer(original, "kraken") as server:
        summary = rerecord(server, again, "kraken", "XBT/USD", "ETH/USD")
        status = server.status()
    assert status["frames_served"] == status["frames"] == frames["n"]  # no captured pong in a clean run
    assert summary["gaps"] == 0 and summary["resyncs"] == 0 and summary["checksum_mismatches"] == 0
    assert_same_capture(original, again)
    played = [line for line in server.lines if "played out" in line]
    assert len(played) == 1 and "frames/s" in played[0], server.lines

    # one pair only: the served connection carries only that pair's frames (+ connection-level)
    only = tmp_path / "eth"
    with ReplayServer(original, "kraken") as server:
        rerecord(server, only, "kraken", "ETH/USD")
    assert set(books(only)) == {"kraken/ETH-USD"}
    assert books(only)["kraken/ETH-USD"] == books(original)["kraken/ETH-USD"]
    assert trades(only) == [t for t in trades(original) if t[0] == "ETH-USD"]
    [row] = query(only, "select count(*) n from raw where kind = 'recv' and cast(payload as varchar) like '%XBT/USD%'")
    assert row["n"] == 0


def test_kraken_v2_capture_served_and_recorded_again(tmp_path):
    original, again = tmp_path / "orig", tmp_path / "again"
    with SimulatorThread("kraken", seed=25, rate=800) as sim:
        lab("record", "--venue", "kraken", "--api", "v2", "--symbol", "XBT/USD", "--symbol", "ETH/USD",
            "--ws-url", sim.url.replace("http", "ws") + "/v2", "--rest-url", sim.url, "--duration", "4s", "--out", original)
    with ReplayServer(original, "kraken") as server:
        port = server.url.rsplit(":", 1)[1]
        server.ws_url = f"ws://127.0.0.1:{port}/v2"  # the captured path is served too
        rerecord(server, again, "kraken", "XBT/USD", "ETH/USD", extra=("--api", "v2"))
    assert_same_capture(original, again)


def test_kraken_pacing_follows_the_capture(tmp_path):
    original, again = tmp_path / "orig", tmp_path / "again"
    with SimulatorThread("kraken", seed=22, rate=500) as sim:
        lab("record", "--venue", "kraken", "--symbol", "XBT/USD", "--ws-url", sim.ws_url,
            "--rest-url", sim.url, "--duration", "4s", "--out", original)
    [span] = query(original, "select (max(epoch_ns(local_timestamp)) - min(epoch_ns(local_timestamp))) / 1e9 s "
                             "from raw where kind in ('open', 'recv')")
    with ReplayServer(original, "kraken", "4") as server:
        rerecord(server, again, "kraken", "XBT/USD")
    [line] = [line for line in server.lines if "played out" in line]
    took = float(re.search(r"in ([\d.]+)s", line).group(1))
    assert span["s"] / 4 * 0.8 <= took <= span["s"] / 4 + 1.0, (span, line)
    assert books(again) == books(original)


def test_mock_capture_with_disconnects_served_and_recorded_again(tmp_path):
    original, again = tmp_path / "orig", tmp_path / "again"
    with SimulatorThread("mock", seed=23, rate=1500, faults={"disconnect_after": 5000}) as sim:
        lab("record", "--venue", "mock", "--ws-url", sim.ws_url, "--rest-url", sim.url, "--duration", "9s",
            "--out", original)
    [orig_conns] = query(original, "select count(*) n from raw where kind = 'open'")
    assert orig_conns["n"] >= 2  # the capture holds venue disconnects
    with ReplayServer(original, "mock") as server:
        summary = rerecord(server, again, "mock")
        status = server.status()
    assert status["connections_served"] == status["connections"] == orig_conns["n"]
    # each captured venue disconnect (code 1001) is one of the served connection, then a reconnect
    closes = "select count(*) n from raw where kind = 'close' and cast(payload as varchar) like '%code 1001%'"
    [captured] = query(original, closes)
    assert query(again, closes) == [captured] and captured["n"] >= 1
    assert summary["reconnects"] == captured["n"] and summary["gaps"] == 0
    assert_same_capture(original, again)
    # every REST snapshot the second recorder got is a captured body: same seqs, same order
    sql = "select decode(payload) p from raw where kind = 'rest' and channel like '/api/depth%' order by rec_id"
    assert [json.loads(r["p"])["seq"] for r in query(again, sql)] == [json.loads(r["p"])["seq"] for r in query(original, sql)]


@pytest.mark.parametrize("case", ["unknown venue", "empty root", "missing root", "venue not in capture", "bad speed"])
def test_bad_input_is_one_clear_line(tmp_path, case):
    root = tmp_path / "cap"
    venue, speed = "mock", "max"
    if case == "unknown venue":
        root.mkdir()
        venue = "nasdaq"
    elif case == "empty root":
        root.mkdir()
    elif case == "venue not in capture":
        with SimulatorThread("mock", seed=24, rate=500) as sim:
            lab("record", "--venue", "mock", "--ws-url", sim.ws_url, "--rest-url", sim.url, "--duration", "1s", "--out", root)
        venue = "kraken"
    elif case == "bad speed":
        root.mkdir()
        speed = "0"
    p = lab("serve-replay", root, "--venue", venue, "--port", "0", "--speed", speed, check=False, timeout=30)
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lab: error: "), p.stderr
    expect = {"unknown venue": "unknown venue 'nasdaq'", "empty root": "no raw frames under",
              "missing root": "does not exist", "venue not in capture": "no kraken frames in",
              "bad speed": "--speed '0'"}[case]
    assert expect in lines[0]
    if case == "venue not in capture":
        assert "venues there: mock" in lines[0]


def assert_same_binance_capture(original, again) -> None:
    want, got = books(original), books(again)
    assert got == want and want and all(s["synced"] for s in got.values())
    a, b = healthy(original), healthy(again)
    for name, s in a["streams"].items():
        assert b["streams"][name]["messages"] == s["messages"] > 0, name
        assert b["streams"][name]["resyncs"] == s["resyncs"] == 0, name
    ids = trades(original)
    assert ids and trades(again) == ids


def test_binance_capture_served_and_recorded_again(tmp_path):
    original, again = tmp_path / "orig", tmp_path / "again"
    with SimulatorThread("binance", seed=26, rate=600) as sim:
        lab("record", "--venue", "binance", "--symbol", "BTCUSDT", "--symbol", "ETHUSDT", "--ws-url", sim.ws_url,
            "--rest-url", sim.url, "--duration", "8s", "--out", original)
    [frames] = query(original, "select count(*) n from raw where kind = 'recv'")
    with ReplayServer(original, "binance") as server:
        server.ws_url = server.url.replace("http", "ws")  # the venue's root path is served too
        summary = rerecord(server, again, "binance", "BTCUSDT", "ETHUSDT")
        status = server.status()
    assert status["frames_served"] == status["frames"] == frames["n"]
    assert summary["gaps"] == 0 and summary["resyncs"] == 0
    assert_same_binance_capture(original, again)
    # the replayed client got the captured snapshots (same lastUpdateIds, same order)
    sql = "select decode(payload) p from raw where kind = 'rest' and channel like '/api/v3/depth%' order by rec_id"
    snaps = [json.loads(r["p"])["lastUpdateId"] for r in query(original, sql)]
    assert len(snaps) == 2 and [json.loads(r["p"])["lastUpdateId"] for r in query(again, sql)] == snaps


def test_binance_several_connections_matched_by_streams(tmp_path):
    """3 symbols at 2 streams per connection: 3 concurrent connections, each played to the client
    connection that subscribed the same streams (whatever order they open in), on `/stream`."""
    original, again = tmp_path / "orig", tmp_path / "again"
    symbols = ("BTCUSDT", "ETHUSDT", "ETHBTC")
    opt = ("--opt", "streams_per_connection=2")
    with SimulatorThread("binance", seed=27, rate=600) as sim:
        args = ["record", "--venue", "binance", "--ws-url", sim.url.replace("http", "ws") + "/stream",
                "--rest-url", sim.url, "--duration", "8s", "--out", original, *opt]
        for s in symbols:
            args += ["--symbol", s]
        lab(*args)
    [conns] = query(original, "select count(distinct conn_id) n from raw where kind = 'open'")
    assert conns["n"] == 3
    with ReplayServer(original, "binance") as server:
        server.ws_url = server.url.replace("http", "ws") + "/stream"
        summary = rerecord(server, again, "binance", *symbols, extra=opt)
        status = server.status()
    assert status["connections_served"] == status["connections"] == 3
    assert status["frames_served"] == status["frames"]
    assert summary["gaps"] == 0 and summary["resyncs"] == 0
    assert_same_binance_capture(original, again)
    # each served connection carried the streams of one symbol, the one it subscribed
    sql = ("select conn_id, count(distinct regexp_extract(decode(payload), '\"stream\":\"([a-z]+)@', 1)) n "
           "from raw where kind = 'recv' and decode(payload) like '{\"stream\"%' group by conn_id")
    assert [r["n"] for r in query(again, sql)] == [1, 1, 1]


def test_binance_streams_named_in_the_url(tmp_path):
    """A capture whose client named its streams in the combined-stream URL (the recorder builds
    it from a base `--ws-url`): a client connecting with the same URL is subscribed at connect
    time and gets every captured frame; LIST_SUBSCRIPTIONS lists a connection's own streams."""
    original, again = tmp_path / "orig", tmp_path / "again"
    with SimulatorThread("binance", seed=28, rate=500) as sim:
        lab("record", "--venue", "binance", "--symbol", "BTCUSDT", "--symbol", "ETHUSDT",
            "--ws-url", sim.url.replace("http", "ws"), "--rest-url", sim.url, "--duration", "5s", "--out", original)
    with ReplayServer(original, "binance") as server:
        server.ws_url = server.url.replace("http", "ws")
        summary = rerecord(server, again, "binance", "BTCUSDT", "ETHUSDT")
        status = server.status()
        listed = asyncio.run(_list_subscriptions(server.url.replace("http", "ws") + "/stream?streams=btcusdt@trade"))
    assert status["frames_served"] == status["frames"]
    assert summary["gaps"] == 0 and summary["resyncs"] == 0
    assert_same_binance_capture(original, again)
    assert listed == [{"result": ["btcusdt@trade"], "id": 7},
                      {"result": ["btcusdt@trade", "ethusdt@depth@100ms"], "id": 8}]


async def _list_subscriptions(url: str) -> list:
    from lab.net import websocket

    got: list = []
    ws = await websocket.connect(url)
    ws.start(lambda payload, _: got.append(json.loads(payload)))

    async def answer(req_id):
        for _ in range(200):
            hit = [m for m in got if isinstance(m, dict) and m.get("id") == req_id and "result" in m]
            if hit:
                return hit[0]
            await asyncio.sleep(0.01)
        raise AssertionError(f"no answer to request {req_id}: {got[-5:]}")

    ws.send_text(b'{"method":"LIST_SUBSCRIPTIONS","id":7}')
    first = await answer(7)
    ws.send_text(b'{"method":"SUBSCRIBE","params":["ethusdt@depth@100ms"],"id":1}')
    ws.send_text(b'{"method":"LIST_SUBSCRIPTIONS","id":8}')
    second = await answer(8)
    ws.close()
    return [first, second]


def test_binance_make_before_break_rotation_replayed(tmp_path):
    """A capture whose recorder replaced its connection make-before-break (`max_connection_age=3`):
    where each successor opened the replay sends `serverShutdown`, the client opens its own
    successor, gets the captured one, and hands its books over: no resync, no snapshot beyond the
    captured ones, the same books and trade ids."""
    original, again = tmp_path / "orig", tmp_path / "again"
    with SimulatorThread("binance", seed=29, rate=400) as sim:
        lab("record", "--venue", "binance", "--symbol", "BTCUSDT", "--symbol", "ETHUSDT", "--ws-url", sim.ws_url,
            "--rest-url", sim.url, "--duration", "7s", "--out", original, "--opt", "max_connection_age=3", timeout=120)
    [conns] = query(original, "select count(*) n from raw where kind = 'open'")
    assert conns["n"] >= 3
    with ReplayServer(original, "binance") as server:
        summary = rerecord(server, again, "binance", "BTCUSDT", "ETHUSDT")
        status = server.status()
    assert status["connections_served"] == status["connections"] == conns["n"]
    assert status["rest_served"] == 3  # exchangeInfo and one snapshot per book, as captured
    assert summary["gaps"] == 0 and summary["resyncs"] == 0
    assert summary["rotations"] == conns["n"] - 1 and summary["handovers"] == 2 * (conns["n"] - 1)
    assert_same_binance_capture(original, again)
