"""Redundant recording: two `lab record` processes of the same symbols into one root, against one
mock simulator. Replay keeps each session's book apart and delivers one session per time range;
every delivered book must be the simulator's book at the delivered seq, and the seq of a stream
never goes backwards (docs/DATASET.md, "Overlapping sessions")."""
from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import urllib.request
from decimal import Decimal

import pytest

from lab import ReplayConnector
from lab.venues.simulator import SimulatorThread

LAB = [sys.executable, "-m", "lab.cli"]


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def _record(root, sim, duration: str) -> subprocess.Popen:
    return subprocess.Popen([*LAB, "record", "--venue", "mock", "--duration", duration, "--out", str(root), "--rest-url", sim.url,
                             "--ws-url", sim.ws_url, "--rotate", "2s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _two_sessions(root, sim, stagger: float = 1.5) -> None:
    first = _record(root, sim, "6s")
    time.sleep(stagger)
    second = _record(root, sim, "6s")
    for proc in (first, second):
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err


def _replay_and_check(root, sim, samples: int = 200) -> dict:
    conn = ReplayConnector(str(root))
    seen: dict[str, list] = {}

    def on_book(book):
        seen.setdefault(book.symbol, []).append((book.seq, book.top(), book.synced))

    for symbol in conn.list_symbols():
        conn.start_stream(symbol, on_book)
    summary = conn.run()
    assert set(seen) == set(conn.list_symbols())
    rng = random.Random(1)
    checked = wrong = 0
    for symbol, calls in seen.items():
        seqs = [seq for seq, _, _ in calls]
        backwards = sum(b < a for a, b in zip(seqs, seqs[1:]))
        assert backwards == 0, f"{symbol}: seq went backwards {backwards} times"
        assert all(synced for _, _, synced in calls)
        picks = sorted(set(rng.sample(range(len(calls)), min(samples // len(seen), len(calls)))) | {0, len(calls) - 1})
        for i in picks:
            seq, (bid, ask), _ = calls[i]
            want = get(f"{sim.url}/control/book?symbol={symbol}&seq={seq}")
            checked += 1
            wrong += (Decimal(str(bid)), Decimal(str(ask))) != (Decimal(want["bids"][0][0]), Decimal(want["asks"][0][0]))
    assert checked >= 100 and wrong == 0, f"{wrong} of {checked} sampled callbacks saw a wrong book"
    return summary


def test_two_overlapping_sessions_replay_right_books(tmp_path):
    root = tmp_path / "cap"
    with SimulatorThread("mock", seed=21, rate=2000) as sim:
        _two_sessions(root, sim)
        summary = _replay_and_check(root, sim)
        replay = json.loads(subprocess.run([*LAB, "replay", str(root), "--speed", "max", "--json"], capture_output=True, text=True,
                                           check=True, timeout=120).stdout)
        for name, stream in replay["streams"].items():
            assert stream["sessions"] == 2
            want = get(f"{sim.url}/control/book?symbol={stream['symbol']}&seq={stream['seq']}")
            assert (Decimal(stream["best_bid"]), Decimal(stream["best_ask"])) == (Decimal(want["bids"][0][0]), Decimal(want["asks"][0][0]))
        # the later-ending session takes over when the first one ends: its last seq is the stream's
        sent = get(sim.url + "/control/stats")["connections"]
        for symbol in ("BTC-USD", "ETH-USD"):
            assert replay["streams"][f"mock/{symbol}"]["seq"] == max(c["last_seq"].get(symbol, 0) for c in sent)
    assert summary["streams"]["mock/BTC-USD"]["session_switches"] >= 1


def test_overlapping_sessions_with_gaps_switch_to_the_synced_one(tmp_path):
    """Every connection drops messages (a gap, then a resync): while one session is unsynced the
    other delivers; seq never goes backwards and every book is right."""
    root = tmp_path / "cap"
    with SimulatorThread("mock", seed=22, rate=2000, faults=dict(drop_every=1500)) as sim:
        _two_sessions(root, sim, stagger=1.0)
        summary = _replay_and_check(root, sim)
    assert summary["gaps"] >= 2
    assert any(s["session_switches"] >= 2 for s in summary["streams"].values()), summary["streams"]


@pytest.mark.parametrize("kinds", [("ask", "bid")])
def test_selector_rule(kinds):
    """The selection rule on its own: stay with the active session while it is synced and has
    messages; switch only to a synced session whose seq is past the last delivered one."""
    from lab.datasets.reader import SessionSelector

    class B:
        def __init__(self):
            self.synced, self.seq = True, 0

    a, b = B(), B()
    sel = SessionSelector({"a": a, "b": b}, {"a": 3, "b": 4})
    a.seq = 10
    assert sel.deliver("a")
    b.seq = 10
    assert not sel.deliver("b")  # a is synced: b waits
    a.synced, a.seq = False, 11
    assert not sel.deliver("a")  # unsynced books are not delivered
    b.seq = 11
    assert sel.deliver("b") and sel.active == "b"  # switched at b's message boundary
    a.synced, a.seq = True, 11
    assert not sel.deliver("a")  # a is back, but b still delivers (and a has no messages left)
    b.seq = 12
    assert sel.deliver("b")
    b.synced = False
    b.seq = 13
    assert not sel.deliver("b")
    assert sel.switches == 1 and sel.last_seq == 12
