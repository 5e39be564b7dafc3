"""lab.net.backoff: full jitter bounds, reset, max attempts, Retry-After (seconds, HTTP-date) on 429/418/503."""
from __future__ import annotations

import email.utils
import random

import pytest

from lab.net.backoff import Backoff, RetriesExhausted, parse_retry_after, retry_after_from


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_full_jitter_bounds_with_a_seeded_rng():
    b = Backoff(0.5, 8.0, rng=random.Random(7))
    ref = random.Random(7)
    for n in range(10):
        ceiling = min(8.0, 0.5 * 2 ** n)
        assert b.ceiling() == ceiling
        d = b.next_delay()
        assert 0.0 <= d <= ceiling
        assert d == ref.uniform(0, ceiling)  # exactly AWS full jitter
        assert b.attempt == n + 1
    # many samples fill the interval (not just the top half)
    b = Backoff(1.0, 1.0, rng=random.Random(1))
    xs = [b.next_delay() for _ in range(500)]
    assert min(xs) < 0.1 and max(xs) > 0.9 and all(0 <= x <= 1.0 for x in xs)


def test_reset_after_a_healthy_period_and_explicit_reset():
    clock = Clock()
    b = Backoff(1.0, 100.0, reset_after=10.0, rng=random.Random(0), clock=clock)
    for _ in range(4):
        b.next_delay()
    assert b.attempt == 4
    b.healthy()
    clock.t += 3.0  # up for 3 s: not healthy long enough
    b.next_delay()
    assert b.attempt == 5
    b.healthy()
    clock.t += 10.0
    assert b.next_delay() <= 1.0 and b.attempt == 1  # started again at attempt 0
    b.reset()
    assert b.attempt == 0


def test_max_attempts():
    b = Backoff(0.01, 0.1, max_attempts=3, rng=random.Random(0))
    for _ in range(3):
        b.next_delay()
    assert b.exhausted
    with pytest.raises(RetriesExhausted, match="3 attempts"):
        b.next_delay()


def test_retry_after_seconds_and_http_date():
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(30.0)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0  # past: no wait


@pytest.mark.parametrize("status", [429, 418, 503])
def test_retry_after_honoured_on_429_418_503(status):
    b = Backoff(0.01, 0.02, rng=random.Random(0))
    assert retry_after_from(status, {"Retry-After": "3"}) == 3.0
    assert retry_after_from(status, {"retry-after": "2"}) == 2.0  # any header case
    assert b.delay_for(status, {"Retry-After": "3"}) == 3.0  # max(retry_after, jitter)
    assert b.attempt == 1


@pytest.mark.parametrize("status", [200, 400, 500, 502])
def test_retry_after_ignored_on_other_statuses(status):
    assert retry_after_from(status, {"Retry-After": "3"}) is None
    b = Backoff(0.01, 0.02, rng=random.Random(0))
    assert b.delay_for(status, {"Retry-After": "3"}) <= 0.01


def test_jitter_wins_when_larger_than_retry_after():
    b = Backoff(100.0, 100.0, rng=random.Random(3))
    d = b.delay_for(429, {"Retry-After": "0"})
    assert d == random.Random(3).uniform(0, 100.0) and d > 0
    # a venue's body-declared wait is a floor too
    assert Backoff(0.01, 0.01).delay_for(200, None, body_retry_after=1.5) == 1.5


# -- the recorder's reconnect loop uses the helper -------------------------------------------------

class RecordingRandom(random.Random):
    def __init__(self, seed):
        super().__init__(seed)
        self.calls = []

    def uniform(self, a, b):
        x = super().uniform(a, b)
        self.calls.append((a, b, x))
        return x


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _client(port, sink, **kw):
    from lab.recorder.feed import FeedClient
    from lab.venues import registry

    return FeedClient(registry.adapter("mock"), ["BTC-USD"], rest_url=f"http://127.0.0.1:{port}",
                      ws_url=f"ws://127.0.0.1:{port}/ws", sink=sink, **kw)


async def _stop_when(client, stop, task, done, polls: int) -> None:
    """Poll `done()` every 10 ms (at most `polls` times), then stop the client and await its run."""
    import asyncio

    for _ in range(polls):
        if done():
            break
        await asyncio.sleep(0.01)
    stop.set()
    await client.close_ws()
    await task


def test_recorder_reconnect_uses_the_backoff_helper():
    """A venue that refuses connections a few times, then comes up: every refusal is one attempt
    of lab.net.backoff (full-jitter delays within min(cap, base*2**n)), then the connection opens."""
    import asyncio
    import json

    from lab.venues.simulator import SimulatorThread

    port = _free_port()
    rows = []
    client = _client(port, rows.append, backoff_initial=0.02, backoff_max=0.16)
    rng = client.backoff.rng = RecordingRandom(5)
    seen_attempts = []

    async def main():
        stop = asyncio.Event()
        task = asyncio.ensure_future(client.run(stop))
        while client.backoff.attempt < 5:
            await asyncio.sleep(0.005)
        seen_attempts.append(client.backoff.attempt)  # what a status page shows: RECONNECTING (attempt N)
        with SimulatorThread("mock", seed=1, rate=50, port=port):
            await _stop_when(client, stop, task, lambda: client.frames, 1000)

    asyncio.run(main())
    failed = [r for r in rows if r.kind == "note" and json.loads(r.payload)["kind"] == "connect_failed"]
    assert seen_attempts[0] >= 5
    assert client.connections >= 1 and client.frames > 0
    assert len(rng.calls) == len(failed) >= 5  # one jittered delay per refused connection
    for n, (lo, hi, x) in enumerate(rng.calls):
        assert lo == 0.0 and hi == min(0.16, 0.02 * 2 ** n) and 0.0 <= x <= hi


def test_reconnect_before_the_maximum_connection_age():
    """A venue's max_connection_age: the recorder reconnects before it (a note event), at once."""
    import asyncio
    import json

    from lab.venues.simulator import SimulatorThread

    rows = []
    with SimulatorThread("mock", seed=1, rate=50) as st:
        from lab.recorder.feed import FeedClient
        from lab.venues import registry

        client = FeedClient(registry.adapter("mock"), ["BTC-USD"], rest_url=st.url, ws_url=st.ws_url,
                            sink=rows.append, max_connection_age=0.5)

        async def main():
            stop = asyncio.Event()
            await _stop_when(client, stop, asyncio.ensure_future(client.run(stop)), lambda: client.connections >= 3, 500)

        asyncio.run(main())
    notes = [json.loads(r.payload) for r in rows if r.kind == "note"]
    aged = [n for n in notes if n["kind"] == "max_age_reconnect"]
    assert client.connections >= 3 and len(aged) >= 2, notes
    assert "venue maximum 0.5s" in aged[0]["detail"]
    assert client.backoff.attempt == 0  # a planned reconnect is not a failure
