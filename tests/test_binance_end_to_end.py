"""Binance spot end to end with the real CLI against the Binance simulator on loopback: record
BTCUSDT and ETHUSDT, `lab verify` healthy with zero gaps (exactly the injected ones with the
dropped-diff fault), `lab replay` at the simulator's final books; stale snapshots, a
`serverShutdown` and a disconnect recover without a gap; the simulator's REST weight limits."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

from lab.venues.simulator import SimulatorThread
from labcli import lab

SYMBOLS = ("BTCUSDT", "ETHUSDT")


def get(url: str):
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def query(root, sql) -> list[dict]:
    return [json.loads(line) for line in lab("query", sql, "--root", root, "--json").stdout.splitlines()]


def record(root, sim, ws_path="/ws", duration="4s"):
    ws = f"ws://{sim.simulator.host}:{sim.simulator.port}{ws_path}"
    return json.loads(lab("record", "--venue", "binance", "--symbol", "BTCUSDT", "--symbol", "eth-usdt",
                          "--ws-url", ws, "--rest-url", sim.url, "--duration", duration, "--out", root, "--json").stdout)


def final_books_match(root, sim) -> dict:
    conns = get(sim.url + "/control/stats")["connections"]
    last = conns[-1]["last_seq"]
    replay = json.loads(lab("replay", root, "--json").stdout)
    for sym in SYMBOLS:
        want = get(f"{sim.url}/control/book?symbol={sym}&seq={last[sym]}")
        stream = replay["streams"][f"binance/{sym[:3]}-{sym[3:]}"]
        assert stream["synced"] and stream["seq"] == want["lastUpdateId"]
        assert stream["best_bid"] == exact(want["bids"][0][0]) and stream["best_ask"] == exact(want["asks"][0][0])
    return replay


def exact(s: str) -> str:
    s = s.rstrip("0").rstrip(".")
    return s or "0"


def verify(root) -> dict:
    report = json.loads(lab("verify", root, "--json").stdout)
    assert report["ok"], report["problems"]
    return report


def test_record_verify_replay_combined_and_raw(tmp_path):
    for path in ("/ws", "/stream"):
        root = tmp_path / path.strip("/")
        with SimulatorThread("binance", seed=5, rate=400) as sim:
            summary = record(root, sim, path)
            final_books_match(root, sim)
            conn = get(sim.url + "/control/stats")["connections"][0]
        assert summary["gaps"] == 0 and summary["resyncs"] == 0 and summary["connections"] == 1
        report = verify(root)
        for sym in ("BTC-USDT", "ETH-USDT"):
            s = report["streams"][f"binance/{sym}"]
            assert s["gaps"] == 0 and s["resyncs"] == 0 and s["snapshots"] == 1
            assert report["trades"][f"binance/{sym}"]["trade_id_holes"] == 0
        books = {s: conn["book_messages"][s] for s in SYMBOLS}
        assert all(n > 50 for n in books.values())
    [inst] = query(root, "select symbol, price_precision, amount_precision from instruments where venue_symbol = 'BTCUSDT'")
    assert inst == {"symbol": "BTC-USDT", "price_precision": 2, "amount_precision": 5}
    [row] = query(root, "select count(*) n, count(distinct id) d from trades")
    assert row["n"] == row["d"] > 0


def test_a_base_url_gets_the_combined_stream_url(tmp_path):
    """`--ws-url ws://host:port` (no path): the recorder opens `/stream?streams=...` naming each
    symbol's depth and trade streams, sends no SUBSCRIBE, and the capture is whole."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "cap"
    with SimulatorThread("binance", seed=7, rate=400) as sim:
        summary = record(root, sim, ws_path="")
        final_books_match(root, sim)
    raw = pa.concat_tables([pq.read_table(f, columns=["kind", "payload"]) for f in sorted((root / "raw").rglob("*.parquet"))])
    rows = [(k, p) for k, p in zip(raw.column("kind").to_pylist(), raw.column("payload").to_pylist())]
    opened = [p.decode() for k, p in rows if k == "open"]
    assert opened and all(u.endswith("/stream?streams=btcusdt@depth@100ms/btcusdt@trade/ethusdt@depth@100ms/ethusdt@trade") for u in opened)
    assert not [p for k, p in rows if k == "send" and b"SUBSCRIBE" in p]
    assert summary["gaps"] == 0 and summary["resyncs"] == 0
    report = verify(root)
    assert all(s["gaps"] == 0 and s["snapshots"] == 1 for s in report["streams"].values())


def test_quotes_in_usdt_btc_eur_and_ticks_down_to_1e8(tmp_path):
    """Symbols priced in USDT, BTC and EUR, ticks from 0.1 down to 0.00000001 and whole-unit lots
    (SHIBUSDT: "0.00001234" x "1523.00000000"), over one combined-stream connection: every book
    syncs with zero gaps, precisions come from the filters, and replay ends at the simulator's books."""
    symbols = ("BTCUSDT", "ETHBTC", "BNBEUR", "SHIBUSDT")
    root = tmp_path / "cap"
    with SimulatorThread("binance", seed=8, rate=600, symbols=list(symbols)) as sim:
        args = ["record", "--venue", "binance", "--ws-url", sim.url.replace("http", "ws"), "--rest-url", sim.url,
                "--duration", "4s", "--out", root, "--json"]
        for s in symbols:
            args += ["--symbol", s]
        summary = json.loads(lab(*args).stdout)
        last = get(sim.url + "/control/stats")["connections"][-1]["last_seq"]
        replay = json.loads(lab("replay", root, "--json").stdout)
        for sym in symbols:
            want = get(f"{sim.url}/control/book?symbol={sym}&seq={last[sym]}")
            name = {"BTCUSDT": "BTC-USDT", "ETHBTC": "ETH-BTC", "BNBEUR": "BNB-EUR", "SHIBUSDT": "SHIB-USDT"}[sym]
            stream = replay["streams"][f"binance/{name}"]
            assert stream["synced"] and stream["seq"] == want["lastUpdateId"], sym
            assert stream["best_bid"] == exact(want["bids"][0][0]) and stream["best_ask"] == exact(want["asks"][0][0]), sym
    assert summary["gaps"] == 0 and summary["resyncs"] == 0
    report = verify(root)
    assert all(s["gaps"] == 0 and s["snapshots"] == 1 for s in report["streams"].values())
    precisions = {r["venue_symbol"]: (r["price_precision"], r["amount_precision"])
                  for r in query(root, "select venue_symbol, price_precision, amount_precision from instruments")}
    assert precisions == {"BTCUSDT": (2, 5), "ETHBTC": (5, 4), "BNBEUR": (1, 3), "SHIBUSDT": (8, 0)}
    [shib] = query(root, "select min(price) lo, max(amount) hi from book where symbol = 'SHIB-USDT' and amount > 0")
    assert 0 < float(shib["lo"]) < 0.0001 and float(shib["hi"]) >= 1000


def test_dropped_diffs_are_exactly_the_gaps(tmp_path):
    root = tmp_path / "cap"
    with SimulatorThread("binance", seed=6, rate=400, faults={"drop_every": 60}) as sim:
        summary = record(root, sim)
        final_books_match(root, sim)
        conns = get(sim.url + "/control/stats")["connections"]
    dropped = sum(c["dropped"] for c in conns)
    assert dropped > 0 and summary["gaps"] == dropped
    report = verify(root)
    assert sum(s["gaps"] for s in report["streams"].values()) == dropped
    events = {e["kind"]: e["n"] for e in query(root, "select kind, count(*) n from events group by kind")}
    assert events["gap"] == dropped and events["resync"] == dropped


def test_stale_snapshots_and_server_shutdown_recover_without_gaps(tmp_path):
    root = tmp_path / "cap"
    with SimulatorThread("binance", seed=7, rate=400, stale_snapshots=2, shutdown_after=1.5) as sim:
        summary = record(root, sim, "/stream", duration="5s")
        final_books_match(root, sim)
        conns = get(sim.url + "/control/stats")["connections"]
    assert len(conns) >= 2 and summary["reconnects"] >= 1
    assert summary["gaps"] == 0
    verify(root)
    events = {e["kind"]: e["n"] for e in query(root, "select kind, count(*) n from events group by kind")}
    assert events.get("stale_snapshot", 0) >= 1 and events.get("server_shutdown", 0) >= 1
    assert "gap" not in events


def test_24h_cut_time_compressed_leaves_no_gap(tmp_path):
    root = tmp_path / "cap"
    with SimulatorThread("binance", seed=9, rate=400, time_scale=86400 / 1.5) as sim:  # a day in 1.5 s
        summary = record(root, sim, "/stream", duration="4s")
        final_books_match(root, sim)
        conns = get(sim.url + "/control/stats")["connections"]
    assert len(conns) >= 2 and any(c["close_reason"] == "maximum connection age reached" for c in conns)
    assert summary["gaps"] == 0
    report = verify(root)
    assert all(s["gaps"] == 0 for s in report["streams"].values())


def test_disconnect_and_malformed_frames(tmp_path):
    root = tmp_path / "cap"
    with SimulatorThread("binance", seed=8, rate=400, faults={"disconnect_after": 500, "malformed_every": 170}) as sim:
        summary = record(root, sim, "/stream", duration="3s")
        final_books_match(root, sim)
        conns = get(sim.url + "/control/stats")["connections"]
    assert len(conns) >= 2 and summary["reconnects"] >= 1
    verify(root)
    events = {e["kind"]: e["n"] for e in query(root, "select kind, count(*) n from events group by kind")}
    assert events["malformed"] == sum(c["malformed"] for c in conns) > 0
    assert events.get("gap", 0) <= events["malformed"]  # a lost diff is a gap; a lost trade is not


def test_simulator_weights_429_then_418_and_the_cli(tmp_path):
    with SimulatorThread("binance", seed=1, rate=50, weight_limit=500, ban_after=1) as sim:
        info = get(sim.url + '/api/v3/exchangeInfo?symbols=["BTCUSDT","ETHUSDT"]')
        assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT", "ETHUSDT"]
        url = sim.url + "/api/v3/depth?symbol=BTCUSDT&limit=5000"
        statuses = []
        for _ in range(4):
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    statuses.append((r.status, None))
            except urllib.error.HTTPError as exc:
                statuses.append((exc.code, exc.headers.get("Retry-After")))
        assert [s for s, _ in statuses] == [200, 200, 429, 418] and all(r for _, r in statuses[2:])
    proc = subprocess.Popen([sys.executable, "-m", "lab.cli", "simulate", "--venue", "binance", "--port", "18911"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            try:
                info = get("http://127.0.0.1:18911/api/v3/exchangeInfo?symbol=BTCUSDT")
                break
            except OSError:
                time.sleep(0.1)
        assert info["symbols"][0]["filters"][0]["tickSize"] == "0.01000000"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
