"""The request-weight budget (lab.net.ratelimit) on a fake clock, and the recorder spending it:
Binance snapshots beyond the budget wait (a note says so) instead of drawing a 429."""
from __future__ import annotations

import asyncio
import json

import pytest

from lab.net.ratelimit import WeightBudget
from lab.venues.simulator import SimulatorThread
from labcli import lab


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_budget_starts_full_refills_linearly_and_lets_an_oversized_request_through_when_full():
    clock = FakeClock()
    b = WeightBudget(600, clock)  # 10 a second
    assert b.wait_for(250) == 0
    b.take(250)
    b.take(250)
    assert b.wait_for(250) == pytest.approx(15.0)  # 100 left, 150 to go at 10/s
    clock.t += 6
    assert b.wait_for(250) == pytest.approx(9.0)
    clock.t += 100
    assert b.tokens <= 600 and b.wait_for(600) == 0  # never above the budget
    assert b.wait_for(5000) == 0  # heavier than the budget: through once full
    with pytest.raises(ValueError):
        WeightBudget(0)


def test_acquire_waits_for_the_refill_and_serves_in_order():
    b = WeightBudget(6000)  # 100 a second
    b.take(6000)

    async def main():
        order = []

        async def ask(name, w):
            await b.acquire(w)
            order.append(name)

        await asyncio.gather(ask("heavy", 10), ask("light", 1))
        return order

    assert asyncio.run(main()) == ["heavy", "light"]
    assert 0.05 <= b.waited <= 1.0


def test_the_recorder_stays_under_the_weight_budget_and_says_which_snapshot_waits(tmp_path):
    root = tmp_path / "cap"
    # the simulator refuses past 800 a minute; the recorder may spend 500: two snapshots of 250 at
    # once, the third waits ~30 s (past the recording) instead of drawing a 429
    with SimulatorThread("binance", seed=3, rate=200, weight_limit=800) as sim:
        ws = f"ws://{sim.simulator.host}:{sim.simulator.port}/ws"
        out = json.loads(lab("record", "--venue", "binance", "--symbol", "BTCUSDT", "--symbol", "ETHUSDT", "--symbol", "ETHBTC",
                             "--opt", "weight_per_minute=500", "--ws-url", ws, "--rest-url", sim.url, "--duration", "3s",
                             "--out", root, "--json").stdout)
        rest = sim.call(lambda: dict(sim.simulator.plugin.rest_stats))
    assert rest["weight_429"] == 0 and rest["banned_418"] == 0, rest
    notes = [json.loads(line) for line in lab("query", "--root", root, "--json",
                                               "SELECT symbol, detail FROM events WHERE kind = 'rate_budget'").stdout.splitlines()]
    assert len(notes) == 1 and "waits" in notes[0]["detail"] and "250 of 500/min" in notes[0]["detail"], notes
    synced = [json.loads(line)["symbol"] for line in lab("query", "--root", root, "--json",
                                                          "SELECT DISTINCT symbol FROM book").stdout.splitlines()]
    assert len(synced) == 2 and notes[0]["symbol"] not in synced
    assert out["book_messages"] > 0
    bad = lab("record", "--venue", "binance", "--opt", "weight_per_minute=lots", "--duration", "1s", "--out", tmp_path / "x",
              check=False)
    assert bad.returncode != 0 and "weight_per_minute" in bad.stderr and "Traceback" not in bad.stderr
