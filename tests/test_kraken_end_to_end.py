"""Kraken end to end with the real CLI against the Kraken simulator on loopback: record two pairs
on one connection, verify, replay to the simulator's book; with faults the injected ones are
events and everything else verifies; paper orders validated by the simulator; no secret leaks."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from decimal import Decimal

from lab.venues.kraken.sim import SIM_API_KEY, SIM_API_SECRET
from lab.venues.simulator import SimulatorThread
from labcli import LAB, lab  # noqa: F401


def get(url: str):
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def query(root, sql) -> list[dict]:
    return [json.loads(line) for line in lab("query", sql, "--root", root, "--json").stdout.splitlines()]


def record(root, sim, *extra):
    return json.loads(lab("record", "--venue", "kraken", "--symbol", "XBT/USD", "--symbol", "ETH/USD",
                          "--ws-url", sim.ws_url, "--rest-url", sim.url, "--duration", "5s", "--out", root,
                          "--rotate", "2s", "--json", *extra).stdout)


def check_clean_capture(root, sim, summary) -> tuple[dict, dict]:
    """A fault-free recording of XBT/USD and ETH/USD: the replay ends at the simulator's books,
    nothing was resynced, and verify counts every book message (+ the snapshot) and no anomaly.
    Returns the simulator's connection stats and the verify report."""
    [conn] = get(sim.url + "/control/stats")["connections"]  # both pairs, book and trades, one connection
    replay = json.loads(lab("replay", root, "--json").stdout)
    for pair, last_seq in conn["last_seq"].items():
        want = get(f"{sim.url}/control/book?symbol={pair}&seq={last_seq}")
        stream = replay["streams"][f"kraken/{pair.replace('/', '-')}"]
        assert stream["checksum"] == want["checksum"]
        # prices in --json are exact strings, the shortest form ("0", never "0E-8" or a float)
        assert stream["best_bid"] == exact(want["bids"][0][0]) and stream["best_ask"] == exact(want["asks"][0][0])
    assert summary["checksum_mismatches"] == 0 and summary["resyncs"] == 0 and summary["connections"] == 1
    report = json.loads(lab("verify", root, "--json").stdout)
    assert report["ok"], report["problems"]
    for pair in ("XBT/USD", "ETH/USD"):
        s = report["streams"][f"kraken/{pair.replace('/', '-')}"]
        assert s["checksums_bad"] == 0 and s["gaps"] == 0 and s["resyncs"] == 0
        assert s["messages"] == conn["book_messages"][pair] + 1  # + the snapshot
    return conn, report


def test_record_verify_replay(tmp_path):
    root = tmp_path / "cap"
    with SimulatorThread("kraken", seed=11, rate=1500) as sim:
        summary = record(root, sim, "--depth", "25")
        conn, report = check_clean_capture(root, sim, summary)
    for pair in ("XBT/USD", "ETH/USD"):
        s = report["streams"][f"kraken/{pair.replace('/', '-')}"]
        assert s["checksums_ok"] == conn["book_messages"][pair]  # every update verified
    [row] = query(root, "select count(*) n, count(distinct id) d from trades")
    assert row["n"] == row["d"] >= sum(conn["trades"].values())  # a trade message holds 1+ trades
    [inst] = query(root, "select price_precision, amount_precision from instruments where venue_symbol = 'XBT/USD'")
    assert inst == {"price_precision": 1, "amount_precision": 8}


def test_faults_show_as_events_and_the_rest_verifies(tmp_path):
    root = tmp_path / "cap"
    faults = {"bad_checksum_every": 40, "drop_every": 55, "malformed_every": 400, "disconnect_after": 1000, "rate_limit": 1}
    with SimulatorThread("kraken", seed=12, rate=1500, faults=faults) as sim:
        summary = record(root, sim)
        conns = get(sim.url + "/control/stats")["connections"]
    injected = sum(c["bad_checksums"] + c["dropped"] for c in conns)
    assert injected > 0 and len(conns) >= 2 and summary["reconnects"] >= 1
    report = json.loads(lab("verify", root, "--json").stdout)
    assert report["ok"], report["problems"]
    events = {(e["kind"]): e["n"] for e in query(root, "select kind, count(*) n from events group by kind")}
    mismatches = events.get("checksum_mismatch", 0)
    # every bad checksum / lost update that hit a synced book is a mismatch event, never more
    assert 0 < mismatches <= injected + sum(c["malformed"] for c in conns)
    assert events["resync"] == mismatches and events["disconnect"] >= 1 and events["malformed"] >= 1
    for s in report["streams"].values():
        assert s["checksums_bad"] == 0 and s["checksums_ok"] > 0
    # each resync is followed by a fresh snapshot (CLEAR) of that pair
    [row] = query(root, "select count(*) n from book where flags >= 2")
    assert row["n"] >= mismatches


def test_paper_orders_and_no_secrets_anywhere(tmp_path):
    root = tmp_path / "cap"
    keys = tmp_path / "api_keys.properties"
    keys.write_text(f"KRAKEN_API_KEY={SIM_API_KEY}\nKRAKEN_API_SECRET={SIM_API_SECRET}\n")
    os.chmod(keys, 0o600)
    env = dict(os.environ, LAB_NONCE_DIR=str(tmp_path / "nonces"))
    with SimulatorThread("kraken", seed=13, rate=1000) as sim:
        book = get(sim.url + "/0/public/Depth?pair=XBTUSD&count=1")["result"]["XXBTZUSD"]
        far = float(book["asks"][0][0]) + 1000
        proc = lab("paper", "--venue", "kraken", "--symbol", "XBT/USD", "--keys", keys, "--rest-url", sim.url,
                   "--ws-url", sim.ws_url, "--order", "buy market 0.01", "--order", "sell limit 0.02 1.0",
                   "--order", f"buy limit 0.5 {far:.1f}", "--order", "buy market 0.00001",
                   "--duration", "2s", "--out", root, "--json", env=env)
        rec = record(root, sim)
        assert rec["book_messages"] > 0
    out = json.loads(proc.stdout)
    status = [o["status"] for o in out["orders"]]
    assert status == ["filled", "filled", "filled", "rejected"]
    assert "Order minimum not met" in out["orders"][3]["reason"]
    assert out["orders"][0]["validation"] == "buy 0.01000000 XBTUSD @ market"
    orders = query(root, "select order_id, status, filled from orders order by order_id")
    assert [o["status"] for o in orders] == status
    fills = query(root, "select order_id, sum(amount) a from fills group by order_id order by order_id")
    assert [float(f["a"]) for f in fills] == [0.01, 0.02, 0.5]
    # the key, the secret and any signature never reach the capture root or the output
    from lab.venues.kraken.protocol import sign

    needles = [SIM_API_KEY, SIM_API_SECRET, SIM_API_SECRET[:20], sign("/0/private/AddOrder", "nonce=1", 1, SIM_API_SECRET)[:16]]
    haystacks = [proc.stdout, proc.stderr]
    for dirpath, _, files in os.walk(root):
        for f in files:
            with open(os.path.join(dirpath, f), "rb") as fh:
                haystacks.append(fh.read().decode("latin-1"))
    for h in haystacks:
        for n in needles:
            assert n not in h
    assert len(haystacks) > 5


def exact(text: str) -> str:
    """The venue's decimal text as `--json` prints it: exact, trailing zeros dropped."""
    out = format(Decimal(text), "f")
    return (out.rstrip("0").rstrip(".") if "." in out else out) or "0"
