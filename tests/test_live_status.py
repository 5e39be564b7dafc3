"""LiveConnector.status() against a real simulator on loopback: LIVE while books arrive, RECONNECTING
(with the attempt count) within 3 s of the simulator going away, LIVE again once it is back."""
from __future__ import annotations

import time

import pytest

from lab import get_connector
from lab.recorder.health import Health, LIVE, OUT_OF_SYNC, RECONNECTING, STALE, STOPPED
from lab.venues.simulator import SimulatorThread


def wait_for(pred, timeout: float, step: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    return pred()


def test_health_states_unit():
    now = [100.0]
    h = Health(clock=lambda: now[0])
    assert h.status().state == STOPPED
    h.on_start()
    h.on_open()
    assert h.status().state == OUT_OF_SYNC
    h.on_message()
    h.on_synced(True, 1)
    assert h.status().state == LIVE
    now[0] += 2.5
    assert h.status().state == STALE and h.status().label().startswith("STALE")
    h.on_message()
    h.on_event("gap", "seq 5 after 3")
    assert h.status().state == OUT_OF_SYNC and h.status().gaps == 1
    h.on_event("resync", "")
    h.on_synced(True, 1)
    assert h.status().state == LIVE and h.status().resyncs == 1
    h.on_close("gone")
    h.on_connect_failed("refused")
    s = h.status()
    assert s.state == RECONNECTING and s.attempt == 2 and s.label() == "RECONNECTING (attempt 2)"
    h.on_open()
    assert h.status().reconnects == 1
    h.on_stop()
    assert h.status().state == STOPPED


@pytest.mark.timeout(60)
@pytest.mark.parametrize("venue,symbol", [("mock", "BTC-USD"), ("kraken", "XBT/USD")])
def test_status_through_a_simulator_restart(venue, symbol):
    sim = SimulatorThread(venue, seed=3, rate=200)
    sim.start()
    port = sim.port
    conn = get_connector(venue, rest_url=sim.url, ws_url=sim.ws_url)
    conn.backoff_max = 1.0
    assert conn.status().state == STOPPED
    conn.start_stream(symbol, lambda book: None)
    try:
        assert wait_for(lambda: conn.status().state == LIVE, 15), conn.status()
        before = conn.status()
        assert before.messages > 0 and before.books > 0 and before.reconnects == 0

        t0 = time.monotonic()
        sim.stop()
        assert wait_for(lambda: conn.status().state == RECONNECTING, 3), conn.status()
        latency = time.monotonic() - t0
        print(f"{venue}: RECONNECTING {latency * 1000:.0f} ms after the simulator stopped")
        assert wait_for(lambda: conn.status().attempt >= 2, 5), conn.status()
        assert conn.status().label().startswith("RECONNECTING (attempt ")

        sim = SimulatorThread(venue, seed=4, rate=200, port=port)
        sim.start()
        assert wait_for(lambda: conn.status().state == LIVE, 15), conn.status()
        after = conn.status()
        assert after.reconnects >= 1 and after.messages > before.messages
        assert conn.latest_snapshot() is not None
    finally:
        conn.stop_stream()
        sim.stop()
    assert conn.status().state == STOPPED


@pytest.mark.timeout(60)
def test_gaps_and_resyncs_are_counted_and_out_of_sync_shows():
    with SimulatorThread("mock", seed=5, rate=300) as sim:
        conn = get_connector("mock", rest_url=sim.url, ws_url=sim.ws_url)
        states = set()
        conn.start_stream("BTC-USD", lambda book: None)
        try:
            assert wait_for(lambda: conn.status().state == LIVE, 15), conn.status()
            sim.set_faults(drop_every=40)

            def seen():
                s = conn.status()
                states.add(s.state)
                return s.gaps >= 2 and s.resyncs >= 2 and OUT_OF_SYNC in states

            assert wait_for(seen, 20, 0.002), (conn.status(), states)
            sim.set_faults(drop_every=None)
            assert wait_for(lambda: conn.status().state == LIVE, 15), conn.status()
            assert conn.status().reconnects == 0
        finally:
            conn.stop_stream()
