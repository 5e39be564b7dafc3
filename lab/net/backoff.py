"""One backoff-and-retry helper for every loop that reconnects or retries.

Exponential backoff with full jitter (AWS style): the n-th retry (n from 0) sleeps
``uniform(0, min(cap, base * 2**n))``. After a healthy period (a connection that stayed up for
`reset_after` seconds, or an explicit `reset()`) the attempt count starts again at 0.

HTTP 429, 418 and 503 answers with a `Retry-After` header (delta-seconds or an HTTP-date) wait
``max(retry_after, jittered backoff)``. Rng and clock are injectable for tests; `attempt` is the
number of consecutive failures so far (a status page shows "RECONNECTING (attempt N)").
"""
from __future__ import annotations

import email.utils
import random
import time
from typing import Callable, Mapping

RETRY_AFTER_STATUSES = frozenset({429, 418, 503})


class RetriesExhausted(Exception):
    """`max_attempts` failures in a row."""


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """A `Retry-After` header value in seconds from `now` (wall clock): delta-seconds or an
    HTTP-date; None when absent or unparseable. Never negative."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # HTTP-dates are GMT
        import datetime as _dt
        when = when.replace(tzinfo=_dt.timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def retry_after_from(status: int, headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """The `Retry-After` of an HTTP answer, honoured only on 429, 418 and 503."""
    if status not in RETRY_AFTER_STATUSES or not headers:
        return None
    value = headers.get("Retry-After")
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    return parse_retry_after(value, now=now)


class Backoff:
    def __init__(
        self,
        base: float = 0.25,
        cap: float = 30.0,
        *,
        max_attempts: int | None = None,
        reset_after: float | None = 10.0,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if base < 0 or cap < 0:
            raise ValueError("backoff base and cap must be >= 0")
        self.base = float(base)
        self.cap = float(cap)
        self.max_attempts = max_attempts
        self.reset_after = reset_after
        self.rng = rng or random.Random()
        self.clock = clock
        self.attempt = 0  # consecutive failures so far
        self.total = 0  # delays handed out over the helper's life
        self._healthy_since: float | None = None
        self.last_delay = 0.0

    # -- state ----------------------------------------------------------------------------------
    def reset(self) -> None:
        self.attempt = 0
        self._healthy_since = None

    def healthy(self) -> None:
        """Call when a connection is up (or a call succeeded): after `reset_after` seconds of
        health the next failure starts from attempt 0 again."""
        self._healthy_since = self.clock()

    @property
    def exhausted(self) -> bool:
        return self.max_attempts is not None and self.attempt >= self.max_attempts

    def ceiling(self, attempt: int | None = None) -> float:
        """The upper bound of the jittered delay of this attempt: min(cap, base * 2**attempt)."""
        n = self.attempt if attempt is None else attempt
        return min(self.cap, self.base * (2.0 ** min(n, 64)))

    # -- delays ---------------------------------------------------------------------------------
    def next_delay(self, retry_after: float | None = None) -> float:
        """Seconds to wait before the next attempt (counts one failure). RetriesExhausted after
        `max_attempts` failures in a row."""
        if self._healthy_since is not None:
            if self.reset_after is not None and self.clock() - self._healthy_since >= self.reset_after:
                self.attempt = 0
            self._healthy_since = None
        if self.exhausted:
            raise RetriesExhausted(f"gave up after {self.attempt} attempts")
        delay = self.rng.uniform(0.0, self.ceiling())
        if retry_after is not None:
            delay = max(float(retry_after), delay)
        self.attempt += 1
        self.total += 1
        self.last_delay = delay
        return delay

    def delay_for(self, status: int, headers: Mapping[str, str] | None = None,
                  body_retry_after: float | None = None) -> float:
        """The delay after an HTTP answer: `Retry-After` on 429/418/503 and a venue's
        body-declared wait both count as the floor of the jittered backoff."""
        waits = [w for w in (retry_after_from(status, headers), body_retry_after) if w is not None]
        return self.next_delay(max(waits) if waits else None)
