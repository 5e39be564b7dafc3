"""A request-weight budget: a token bucket that a client waits on before it sends, so it stays
under a venue's published limit instead of learning it from a 429 (and, repeated, a 418 ban).

`WeightBudget(per_minute)` starts full (a fresh client has used nothing) and refills continuously
at `per_minute / 60` a second; `acquire(weight)` waits until `weight` is available and takes it.
A request heavier than the whole budget is let through once the bucket is full (it can never fit
otherwise). Many symbols asking for snapshots at once are thereby staggered: Binance's 6000 a
minute at 250 a snapshot lets 24 go at once and one every 2.5 s after.
"""
from __future__ import annotations

import asyncio
import time
from typing import Callable


class WeightBudget:
    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic):
        if not per_minute > 0:
            raise ValueError(f"weight budget must be > 0 a minute, got {per_minute!r}")
        self.per_minute = float(per_minute)
        self.clock = clock
        self.tokens = self.per_minute
        self.stamp = clock()
        self.waited = 0.0  # seconds spent waiting, in all (what a status or a note reports)
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.per_minute, self.tokens + (now - self.stamp) * self.per_minute / 60.0)
        self.stamp = now

    def wait_for(self, weight: float) -> float:
        """Seconds until `weight` could be taken (0: now)."""
        self._refill()
        need = min(weight, self.per_minute) - self.tokens
        return 0.0 if need <= 0 else need * 60.0 / self.per_minute

    def take(self, weight: float) -> None:
        self._refill()
        self.tokens -= min(weight, self.per_minute)

    async def acquire(self, weight: float) -> float:
        """Wait until `weight` fits, take it; returns the seconds waited. Callers are served in
        the order they asked (one lock), so a heavy request is not starved by light ones."""
        waited = 0.0
        async with self._lock:
            while True:
                delay = self.wait_for(weight)
                if delay <= 0:
                    break
                await asyncio.sleep(delay)
                waited += delay
            self.take(weight)
        self.waited += waited
        return waited
