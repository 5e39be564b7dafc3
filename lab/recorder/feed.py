"""The live side's connection: REST calls and one WebSocket, every frame stamped into a raw row.

The read loop does nothing but stamp (`rec_id`, local time, connection sequence) and hand the row
to a sink; decoding happens behind the queue. Reconnects use exponential backoff with full jitter.
"""
from __future__ import annotations

import asyncio
import itertools
import threading
import time
from typing import Callable

import aiohttp

from lab.core.errors import VenueError  # noqa: F401  (raised here, caught by callers)
from lab.core.model import RawRow
from lab.net import websocket
from lab.net.backoff import Backoff, retry_after_from
from lab.net.ratelimit import WeightBudget
from lab.venues.contract import Venue
from lab.core.events import REQUEST_RESUBSCRIBE, REQUEST_SNAPSHOT
from lab.core.model import Instrument

REST_CONN_ID = 0


class FeedClient:
    def __init__(
        self,
        venue: Venue,
        symbols: list[str],
        *,
        rest_url: str,
        ws_url: str,
        sink: Callable[[RawRow], None],
        depth: int = 0,
        backoff_initial: float = 0.25,
        backoff_max: float = 30.0,
        ping_idle: float | None = None,
        ping_timeout: float | None = None,
        first_attempts: int = 0,
        stall_timeout: float | None = None,
        max_message: int | None = None,
        max_connection_age: float | None = None,
    ):
        self.venue = venue
        self.symbols = list(symbols)
        self.rest_url = rest_url.rstrip("/")
        self.ws_url = ws_url
        self.sink = sink
        self.depth = depth
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        # the reconnect loop's backoff (lab.net.backoff): `backoff.attempt` = failed attempts in a row
        self.backoff = Backoff(backoff_initial, backoff_max, reset_after=10.0)
        self._rest_headers: dict = {}
        # snapshots spend the venue's published request weight (lab.net.ratelimit)
        per_minute = getattr(venue, "rest_weight_per_minute", None)
        self.weights = WeightBudget(per_minute) if per_minute else None
        # app-level pings (venues with `ping_frame`): after `ping_idle` s without a frame, one
        # ping per `ping_idle`; nothing for `ping_timeout` s more closes the connection
        self.ping_idle = ping_idle if ping_idle is not None else venue.ping_idle
        self.ping_timeout = ping_timeout if ping_timeout is not None else venue.ping_timeout
        # A venue that never sent a single frame in the first `first_attempts` connections is a
        # misconfiguration (wrong URL, wrong path, nothing listening): the recorder exits with
        # the reason. Once frames have flowed, a lost venue is retried with backoff forever.
        self.first_attempts = first_attempts
        # no frame at all for this long while subscribed = a stall: an event and a reconnect
        self.stall_timeout = stall_timeout if stall_timeout is not None else venue.stall_timeout
        # one message's total size (all fragments); larger = an event and a reconnect
        self.max_message = max_message or venue.max_message or websocket.MAX_MESSAGE
        # the venue closes connections older than this: reconnect (a note event) before it does
        self.max_connection_age = max_connection_age if max_connection_age is not None else venue.max_connection_age
        self.aged_reconnects = 0
        self._aged = False
        self.stalls = 0
        self.too_large = 0
        self.last_failure = ""
        self._ping_ids = itertools.count(1)
        self.pings = 0
        self._rec_ids = itertools.count()
        self._conn_ids = itertools.count(REST_CONN_ID + 1)
        self._rest_seq = itertools.count()
        self._rest_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws: websocket.WebSocket | None = None
        self._ws_conn: tuple | None = None  # (conn_id, conn_seq counter) of the open WebSocket
        self._stopping: asyncio.Event | None = None
        self._snapshot_tasks: dict[str, asyncio.Task] = {}
        self.connections = 0
        self.frames = 0
        self.bytes = 0

    # -- stamping -----------------------------------------------------------------------------
    def stamp(self, conn_id: int, conn_seq: int, kind: str, channel: str, symbol: str | None, payload: bytes) -> None:
        self.sink(RawRow(next(self._rec_ids), time.time_ns(), conn_id, conn_seq, kind, channel, symbol, payload))

    def note(self, kind: str, detail: str, symbol: str | None = None) -> None:
        self.sink(self.note_row(kind, detail, symbol))

    def note_row(self, kind: str, detail: str, symbol: str | None = None) -> RawRow:
        """A recorder note (an `events` row once normalized), stamped but not queued."""
        import orjson

        with self._rest_lock:
            seq = next(self._rest_seq)
        return RawRow(next(self._rec_ids), time.time_ns(), REST_CONN_ID, seq, "note", "recorder", symbol,
                      orjson.dumps({"kind": kind, "symbol": symbol, "detail": detail}))

    # -- REST ---------------------------------------------------------------------------------
    async def rest_get(self, path: str, symbol: str | None = None) -> tuple[int, bytes]:
        assert self._http is not None
        url = self.rest_url + path
        try:
            async with self._http.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
                body = await resp.read()
                status = resp.status
                self._rest_headers = dict(resp.headers)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            self.note("rest_failed", f"GET {path}: {type(exc).__name__}: {exc}", symbol)
            return 0, b""
        self.stamp(REST_CONN_ID, next(self._rest_seq), "rest" if status < 400 else "rest_error", path, symbol, body)
        return status, body

    async def fetch_instruments(self) -> list[Instrument]:
        # rate limited (the venue's body hook, or Retry-After on 429/418/503): back off, retry
        retry = Backoff(0.5, 10.0, max_attempts=5, reset_after=None)
        while True:
            status, body = await self.rest_get(self.venue.instruments_path)
            wait = self.venue.retry_after(status, body)
            header_wait = retry_after_from(status, self._rest_headers)
            if (wait is None and header_wait is None) or retry.exhausted:
                break
            await asyncio.sleep(retry.delay_for(status, self._rest_headers, wait))
        if status != 200:
            raise VenueError(f"{self.venue.name}: instruments request to {self.rest_url} failed (HTTP {status or 'unreachable'})")
        return self.venue.parse_instruments(body)

    def request(self, action: str, symbol: str) -> None:
        """Called by the normalizer, from any thread."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._on_request, action, symbol)

    def _on_request(self, action: str, symbol: str) -> None:
        if self._stopping is None or self._stopping.is_set():
            return
        if action == REQUEST_SNAPSHOT:
            task = self._snapshot_tasks.get(symbol)
            if task is None or task.done():
                self._snapshot_tasks[symbol] = asyncio.ensure_future(self._fetch_snapshot(symbol))
        elif action == REQUEST_RESUBSCRIBE and self._ws is not None:
            frames = self.venue.resubscribe_frames
            if frames is None or symbol is None:
                self._ws.close()  # resync everything: the reconnect resubscribes
            else:
                # the venue resyncs one symbol on the open connection (Kraken: unsubscribe +
                # subscribe gives a fresh snapshot); the other symbols keep streaming
                self._send_frames(self._ws, self._ws_conn, frames(symbol, self.depth))

    async def _fetch_snapshot(self, symbol: str) -> None:
        retry = Backoff(0.1, 5.0, max_attempts=20, reset_after=None)
        while not retry.exhausted:
            if self.weights is not None:  # stay under the venue's published weight limit
                weight = self.venue.snapshot_weight(symbol)
                delay = self.weights.wait_for(weight)
                if delay > 0.5:
                    self.note("rate_budget", f"snapshot waits {delay:.1f}s for request weight "
                              f"({weight} of {self.weights.per_minute:.0f}/min)", symbol)
                await self.weights.acquire(weight)
            status, body = await self.rest_get(self.venue.depth_path(symbol), symbol)
            if status == 200 and self.venue.retry_after(status, body) is None:
                return
            if status == 404:
                return  # the normalizer has recorded the venue's answer
            await asyncio.sleep(retry.delay_for(status, self._rest_headers, self.venue.retry_after(status, body)))

    # -- WebSocket ----------------------------------------------------------------------------
    def _send_frames(self, ws, conn, frames: list[bytes]) -> None:
        if conn is None or ws is not self._ws or ws.closed.done():
            return
        conn_id, conn_seq = conn
        for frame in frames:
            ws.send_text(frame)
            self.stamp(conn_id, next(conn_seq), "send", "ws", None, frame)

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = stop
        self.backoff = backoff = Backoff(self.backoff_initial, self.backoff_max, reset_after=10.0,
                                         rng=self.backoff.rng, clock=self.backoff.clock)
        attempts = 0
        async with aiohttp.ClientSession(headers={"User-Agent": "lab-recorder/0.1"}) as http:
            self._http = http
            while not stop.is_set():
                await self._connection(http, stop)
                attempts += 1
                if stop.is_set():
                    break
                if not self.frames and self.first_attempts and attempts >= self.first_attempts:
                    for task in self._snapshot_tasks.values():
                        task.cancel()
                    self._http = None
                    raise VenueError(
                        f"no data from the WebSocket {self.ws_url} after {attempts} attempts: {self.last_failure or 'closed without a frame'}"
                    )
                if self._aged:  # a planned reconnect before the venue's maximum age: no wait
                    self._aged = False
                    backoff.reset()
                    continue
                delay = backoff.next_delay()  # full jitter; attempt 0 again after 10 s connected
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                except asyncio.TimeoutError:
                    pass
            for task in self._snapshot_tasks.values():
                task.cancel()
            self._http = None

    async def _connection(self, http: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        conn_id = next(self._conn_ids)
        conn_seq = itertools.count()
        try:
            ws = await websocket.connect(self.ws_url, headers={"User-Agent": "lab-recorder/0.1"}, max_message=self.max_message)
        except (OSError, asyncio.TimeoutError, websocket.HandshakeError) as exc:
            self.last_failure = str(exc) or type(exc).__name__
            if isinstance(exc, ConnectionRefusedError):
                self.last_failure = "connection refused (nothing listening there?)"
            self.note("connect_failed", f"{self.ws_url}: {type(exc).__name__}: {exc}")
            return
        self._ws = ws
        self._ws_conn = (conn_id, conn_seq)
        self.connections += 1
        self.backoff.healthy()
        stamp = self.stamp
        stamp(conn_id, next(conn_seq), "open", "ws", None, self.ws_url.encode())

        def on_message(payload: bytes, is_text: bool) -> None:
            # The read loop: stamp and hand over, nothing else.
            stamp(conn_id, next(conn_seq), "recv", "ws", None, payload)
            self.frames += 1
            self.bytes += len(payload)

        ws.start(on_message)
        for frame in self.venue.subscribe_frames(self.symbols, self.depth):
            ws.send_text(frame)  # every venue's subscribe is a JSON text frame
            stamp(conn_id, next(conn_seq), "send", "ws", None, frame)
        pinger = watchdog = None
        if self.ping_idle and self.venue.ping_frame is not None:
            pinger = asyncio.ensure_future(self._pinger(ws, (conn_id, conn_seq)))
        if self.stall_timeout:
            watchdog = asyncio.ensure_future(self._watchdog(ws, float(self.stall_timeout)))
        ager = None
        if self.max_connection_age:
            ager = asyncio.ensure_future(self._ager(ws, float(self.max_connection_age)))
        try:
            reason = await ws.closed
        finally:
            for task in (pinger, watchdog, ager):
                if task is not None:
                    task.cancel()
        if ws.too_large is not None:
            self.too_large += 1
            self.note("message_too_large", f"{ws.too_large}; reconnecting")
        if stop.is_set() and ws._close_sent:
            reason = f"recorder stopping ({reason})"
        self._ws = None
        self.last_failure = f"connected, then {reason}"
        stamp(conn_id, next(conn_seq), "close", "ws", None, reason.encode())

    async def _ager(self, ws, max_age: float) -> None:
        """Reconnect before the venue's maximum connection age (at 90 %, at most 5 min early):
        a note event, a close, and the run loop reconnects at once (no backoff). The reconnect
        resubscribes and resyncs like any other (break-before-make: a short gap, noted)."""
        after = max(max_age * 0.9, max_age - 300.0)
        await asyncio.sleep(after)
        if ws.closed.done():
            return
        self.aged_reconnects += 1
        self._aged = True
        self.note("max_age_reconnect", f"connection open {after:g}s (venue maximum {max_age:g}s); reconnecting before the venue closes it")
        ws.close()
        try:  # a venue that does not answer the CLOSE is cut
            await asyncio.wait_for(asyncio.shield(ws.closed), 3.0)
        except asyncio.TimeoutError:
            ws.abort()

    async def _watchdog(self, ws, timeout: float) -> None:
        """Stall detection: subscribed and nothing at all received for `timeout` s (heartbeats
        count) = an event and a reconnect (which resubscribes and resyncs every book)."""
        tick = min(timeout / 5, 0.5)
        seen = self.frames
        quiet_since = time.monotonic()
        while not ws.closed.done():
            await asyncio.sleep(tick)
            now = time.monotonic()
            if self.frames != seen:
                seen, quiet_since = self.frames, now
            elif now - quiet_since >= timeout:
                self.stalls += 1
                self.note("stall", f"nothing received for {now - quiet_since:.1f}s while subscribed (stall timeout {timeout:g}s); reconnecting")
                ws.abort()
                return

    async def _pinger(self, ws, conn) -> None:
        """Ping when the link is idle (no frame at all for `ping_idle` s); the pong is recorded
        like any frame. The read loop is not touched: idleness is read off the frame counter."""
        idle = float(self.ping_idle)
        timeout = float(self.ping_timeout or 0)
        tick = min(idle / 4, 0.5)
        seen = self.frames
        quiet_since = last_ping = time.monotonic()
        while not ws.closed.done():
            await asyncio.sleep(tick)
            now = time.monotonic()
            if self.frames != seen:
                seen = self.frames
                quiet_since = now
                continue
            if timeout and now - quiet_since >= idle + timeout:
                self.note("ping_timeout", f"nothing received for {now - quiet_since:.1f}s; closing the connection")
                ws.abort()
                return
            if now - quiet_since >= idle and now - last_ping >= idle:
                last_ping = now
                self.pings += 1
                self._send_frames(ws, conn, [self.venue.ping_frame(next(self._ping_ids))])

    async def close_ws(self, timeout: float = 3.0) -> None:
        """Stop gracefully: send CLOSE and keep reading until the venue's CLOSE, so frames already
        in flight are recorded too (a SIGTERM loses nothing the venue sent)."""
        ws = self._ws
        if ws is None or ws.closed.done():
            return
        ws.close()
        try:
            await asyncio.wait_for(asyncio.shield(ws.closed), timeout)
        except asyncio.TimeoutError:
            ws.abort()
        while self._ws is ws:  # let _connection record the close row
            await asyncio.sleep(0.005)
