"""The real CLI against the real mock simulator on loopback: record, replay, query, verify, kill."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from decimal import Decimal

import pytest

from lab.venues.simulator import SimulatorThread
from labcli import LAB, lab  # noqa: F401


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def query(root, sql) -> list[list[str]]:
    import csv

    return list(csv.reader(lab("query", sql, "--root", root, "--csv").stdout.strip().splitlines()))[1:]


def assert_replay_matches_simulator(root, sim) -> dict:
    replay = json.loads(lab("replay", root, "--json").stdout)
    sent = get(sim.url + "/control/stats")["connections"][-1]
    for symbol, last_seq in sent["last_seq"].items():
        stream = replay["streams"][f"mock/{symbol}"]
        want = get(f"{sim.url}/control/book?symbol={symbol}&seq={last_seq}")
        assert stream["seq"] == last_seq and stream["synced"]
        assert stream["checksum"] == want["checksum"]
        # prices in --json are exact strings, the shortest form ("0", never "0E-8" or a float)
        assert stream["best_bid"] == exact(want["bids"][0][0]) and stream["best_ask"] == exact(want["asks"][0][0])
    return replay


def test_record_replay_query_verify(tmp_path):
    root = tmp_path / "cap"
    with SimulatorThread("mock", seed=3, rate=2000) as sim:
        lab("record", "--venue", "mock", "--duration", "5s", "--out", root, "--rest-url", sim.url, "--ws-url", sim.ws_url, "--rotate", "2s")
        assert_replay_matches_simulator(root, sim)
        sent = get(sim.url + "/control/stats")["connections"][-1]
    # every frame the simulator wrote is in raw, exactly once, gap-free per connection
    [[frames, conn_seqs, lo, hi]] = query(root, "select count(*), count(distinct conn_seq), min(conn_seq), max(conn_seq) from raw where conn_id = 1")
    assert int(frames) == int(conn_seqs) == int(hi) - int(lo) + 1
    [[recv]] = query(root, "select count(*) from raw where kind = 'recv'")
    assert int(recv) == sent["messages"]
    # every delta after the snapshot is a book message: counts match what was sent
    for symbol, last_seq in sent["last_seq"].items():
        [[snap_seq, deltas]] = query(root, f"select min(last_seq) filter (where is_snapshot), count(distinct last_seq) filter (where not is_snapshot) from book where symbol = '{symbol}'")
        assert int(deltas) == last_seq - int(snap_seq)
    [[trades]] = query(root, "select count(*) from trades")
    assert int(trades) == sum(sent["trades"].values())
    table = lab("query", "select * from book limit 3", "--root", root).stdout  # ns timestamps print in full
    assert table.count(".") >= 6 and "+0000" in table
    report = json.loads(lab("verify", root, "--json").stdout)
    assert report["ok"]
    for stream in report["streams"].values():
        assert stream["checksums_bad"] == 0 and stream["checksums_ok"] == stream["messages"]
    # re-deriving from raw gives the same derived rows
    before = query(root, "select symbol, count(*), sum(amount) from book group by 1 order by 1")
    lab("normalize", root)
    assert query(root, "select symbol, count(*), sum(amount) from book group by 1 order by 1") == before


def test_faults_become_events_and_resyncs(tmp_path):
    root = tmp_path / "cap"
    with SimulatorThread("mock", seed=5, rate=2000, faults=dict(drop_every=500, bad_checksum_every=700, malformed_every=900)) as sim:
        lab("record", "--venue", "mock", "--duration", "5s", "--out", root, "--rest-url", sim.url, "--ws-url", sim.ws_url)
        assert_replay_matches_simulator(root, sim)
    kinds = dict((k, int(n)) for k, n in query(root, "select kind, count(*) from events group by kind"))
    assert kinds.get("gap", 0) >= 1 and kinds.get("checksum_mismatch", 0) >= 1 and kinds.get("malformed", 0) >= 1
    assert kinds["resync"] >= kinds["gap"] + kinds["checksum_mismatch"]
    report = json.loads(lab("verify", root, "--json").stdout)
    assert report["ok"], report["problems"]
    assert sum(s["gaps"] for s in report["streams"].values()) == kinds["gap"]
    assert lab("verify", root, "--strict", check=False).returncode == 1


def test_disconnects_reconnect_with_backoff(tmp_path):
    root = tmp_path / "cap"
    with SimulatorThread("mock", seed=9, rate=1000, faults=dict(disconnect_after=1500)) as sim:
        lab("record", "--venue", "mock", "--duration", "5s", "--out", root, "--rest-url", sim.url, "--ws-url", sim.ws_url)
        assert_replay_matches_simulator(root, sim)
    [[opens]] = query(root, "select count(*) from events where kind = 'connect'")
    assert int(opens) >= 2
    assert json.loads(lab("verify", root, "--json").stdout)["ok"]


def _spawn_recorder(root, sim) -> subprocess.Popen:
    return subprocess.Popen([*LAB, "record", "--venue", "mock", "--out", str(root), "--rest-url", sim.url, "--ws-url", sim.ws_url, "--rotate", "2s"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_lose_nothing(tmp_path, sig):
    root = tmp_path / "cap"
    with SimulatorThread("mock", seed=11, rate=3000) as sim:
        proc = _spawn_recorder(root, sim)
        time.sleep(5)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        sent = get(sim.url + "/control/stats")["connections"][-1]
        assert not sent["open"]
    [[recv]] = query(root, "select count(*) from raw where kind = 'recv'")
    assert int(recv) == sent["messages"]
    assert not os.listdir(root / ".journal")


def test_sigkill_loses_at_most_one_flush_interval(tmp_path):
    root = tmp_path / "cap"
    rate = 3000
    with SimulatorThread("mock", seed=13, rate=rate) as sim:
        proc = _spawn_recorder(root, sim)
        time.sleep(5)
        proc.kill()
        proc.wait(timeout=30)
        time.sleep(0.5)
        sent = get(sim.url + "/control/stats")["connections"][-1]
    assert os.listdir(root / ".journal"), "a killed recorder leaves its journal"
    assert lab("verify", root, check=False).returncode == 1  # unhealthy until repaired
    repaired = json.loads(lab("verify", root, "--repair", "--json").stdout)
    assert repaired["ok"], repaired["problems"]
    [[recv]] = query(root, "select count(*) from raw where kind = 'recv'")
    lost = sent["messages"] - int(recv)
    assert 0 <= lost <= rate * 1.5, f"lost {lost} frames, more than one flush interval at {rate}/s"
    # derived tables were re-derived from the recovered raw rows
    [[book_rows]] = query(root, "select count(*) from book")
    assert int(book_rows) > 0


def test_bad_input_gets_one_clear_line(tmp_path):
    with SimulatorThread("mock", seed=1, rate=200) as sim:
        p = lab("record", "--venue", "mock", "--symbol", "NOPE-USD", "--duration", "2s", "--out", tmp_path / "c", "--rest-url", sim.url, "--ws-url", sim.ws_url, check=False)
        assert p.returncode == 1 and p.stderr.strip().count("\n") == 0 and "unknown symbol NOPE-USD" in p.stderr
    p = lab("record", "--venue", "nasdaq", "--duration", "1s", "--out", tmp_path / "c", check=False)
    assert p.returncode == 1 and "unknown venue 'nasdaq'" in p.stderr and p.stderr.strip().count("\n") == 0
    p = lab("query", "select * from nowhere", "--root", tmp_path, check=False)
    assert p.returncode == 1 and p.stderr.strip().count("\n") == 0 and "nowhere" in p.stderr


def test_truncated_parquet_is_reported_not_crashed(tmp_path):
    root = tmp_path / "cap"
    with SimulatorThread("mock", seed=2, rate=1000) as sim:
        lab("record", "--venue", "mock", "--duration", "3s", "--out", root, "--rest-url", sim.url, "--ws-url", sim.ws_url)
    victim = sorted((root / "book").rglob("*.parquet"))[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    p = lab("verify", root, check=False)
    assert p.returncode == 1 and "unreadable" in p.stdout
    p = lab("replay", root, check=False)
    assert p.returncode == 1 and p.stderr.strip().count("\n") == 0 and str(victim.name) in p.stderr


def test_disk_full_watermark_stops_cleanly_and_keeps_the_journal(tmp_path):
    root = tmp_path / "cap"
    with SimulatorThread("mock", seed=2, rate=500) as sim:
        p = lab("record", "--venue", "mock", "--duration", "3s", "--out", root, "--rest-url", sim.url, "--ws-url", sim.ws_url,
                "--rotate", "1s", "--min-free", str(1 << 40), check=False)
    assert p.returncode == 1 and p.stderr.strip().count("\n") == 0 and "disk almost full" in p.stderr
    # what was received is in the journal, and repair turns it into Parquet
    assert json.loads(lab("verify", root, "--repair", "--json").stdout)["ok"]
    [[recv]] = query(root, "select count(*) from raw where kind = 'recv'")
    assert int(recv) > 0


def test_record_compacts_finished_segments_in_the_background(tmp_path):
    """By default the recorder recompresses finished segments' raw files (zstd 19, idle
    priority) while it records; what it did not get to, `lab compact` finishes; the capture
    replays, verifies and re-derives the same either way."""
    import glob

    import pyarrow.parquet as pq

    root = tmp_path / "cap"

    def compacted():
        return [f for f in glob.glob(str(root / "raw" / "**" / "*.parquet"), recursive=True)
                if b"lab.compacted" in (pq.read_schema(f).metadata or {})]

    with SimulatorThread("mock", seed=6, rate=2000) as sim:
        out = lab("record", "--venue", "mock", "--duration", "5s", "--out", root, "--rest-url", sim.url, "--ws-url", sim.ws_url,
                  "--rotate", "1s", "--json")
        summary = json.loads(out.stdout)
        assert summary["compact_errors"] == []
        # a file renamed just before the stop's kill may miss its report line: at most that many
        assert 1 <= len(compacted()) and len(compacted()) - 1 <= summary["compacted_files"] <= len(compacted())
        assert_replay_matches_simulator(root, sim)
    book = query(root, "select * exclude (date) from book order by rec_id, price, side")
    assert json.loads(lab("verify", root, "--json").stdout)["ok"]
    lab("compact", root)
    assert len(compacted()) == len(glob.glob(str(root / "raw" / "**" / "*.parquet"), recursive=True))
    lab("normalize", root)
    assert query(root, "select * exclude (date) from book order by rec_id, price, side") == book


def test_compact_keeps_raw_content_and_replays_verifies_renormalizes_identically(tmp_path):
    import glob

    import pyarrow.parquet as pq

    root = tmp_path / "cap"

    def raw_files():
        return sorted(f for f in glob.glob(str(root / "raw" / "**" / "*.parquet"), recursive=True))

    def contents(table: str, order: str) -> list:
        return query(root, f"select * exclude (date) from {table} order by {order}")

    with SimulatorThread("mock", seed=5, rate=2000) as sim:
        lab("record", "--venue", "mock", "--duration", "4s", "--out", root, "--rest-url", sim.url, "--ws-url", sim.ws_url, "--rotate", "1s",
            "--no-compact")
        raw_before = {f: pq.read_table(f) for f in raw_files()}
        sizes_before = sum(os.path.getsize(f) for f in raw_before)
        book = contents("book", "rec_id, price, side")
        events = contents("events", "rec_id, kind")
        [report] = [json.loads(line) for line in lab("compact", root, "--json").stdout.splitlines()]
        assert report["files"] == len(raw_before) > 1 and report["bytes_before"] == sizes_before
        assert report["bytes_after"] < sizes_before
        for f, table in raw_before.items():  # same rows, schema and metadata, compacted
            after = pq.read_table(f)
            assert after.equals(table)
            meta = after.schema.metadata
            assert meta[b"lab.compacted"] == b"zstd-19"
            assert {k: v for k, v in meta.items() if k != b"lab.compacted"} == table.schema.metadata
        # idempotent
        [again] = [json.loads(line) for line in lab("compact", root, "--json").stdout.splitlines()]
        assert again["files"] == 0 and again["bytes_after"] == report["bytes_after"]
        assert_replay_matches_simulator(root, sim)
    assert json.loads(lab("verify", root, "--json").stdout)["ok"]
    lab("normalize", root)
    assert contents("book", "rec_id, price, side") == book
    assert contents("events", "rec_id, kind") == events
    for f in raw_files():  # re-derivation keeps the raw files compacted
        assert pq.read_schema(f).metadata[b"lab.compacted"] == b"zstd-19"


def exact(text: str) -> str:
    """The venue's decimal text as `--json` prints it: exact, trailing zeros dropped."""
    out = format(Decimal(text), "f")
    return (out.rstrip("0").rstrip(".") if "." in out else out) or "0"
