"""The live side's connections: REST calls and the WebSockets of the venue's connection plan,
every frame stamped into a raw row.

The read loop does nothing but stamp (`rec_id`, local time, connection sequence) and hand the row
to a sink; decoding happens behind the queue. Symbols spread over connections as
`Venue.connection_plan` says (a venue that caps streams per connection); each entry has its own
reconnect loop with exponential backoff and full jitter. Before the venue's maximum connection age
(and when the venue announces a close) a venue that declares `make_before_break` gets its
successor connection opened and subscribed before the old one is closed (docs/ARCHITECTURE.md,
"Connections: plan and rotation").
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
from lab.core.events import REQUEST_OVERLAP, REQUEST_RESUBSCRIBE, REQUEST_ROTATE, REQUEST_SNAPSHOT
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
        handover_timeout: float = 10.0,
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
        self._slots: list[_Slot] = []  # one per entry of the venue's connection plan
        self._open: dict[int, _Conn] = {}  # conn_id -> every open WebSocket (successors too)
        # make-before-break (venues with `make_before_break`): rotations started, and how long a
        # successor may take to overlap every book before the old connection is closed anyway
        self.rotations = 0
        self.handover_timeout = handover_timeout
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
        elif action == REQUEST_RESUBSCRIBE and symbol is None:
            for slot in self._slots:  # resync everything: every reconnect resubscribes
                if slot.conn is not None:
                    slot.conn.ws.close()
        elif action == REQUEST_RESUBSCRIBE:
            slot = self._slot_of(symbol)
            conn = slot.conn if slot is not None else None
            if conn is None:
                return
            frames = self.venue.resubscribe_frames
            if frames is None or symbol is None:
                conn.ws.close()  # resync everything: the reconnect resubscribes
            else:
                # the venue resyncs one symbol on the open connection (Kraken: unsubscribe +
                # subscribe gives a fresh snapshot); the other symbols keep streaming
                self._send_frames(conn.ws, conn, frames(symbol, self.depth))
        elif action == REQUEST_OVERLAP:
            self._on_overlap(symbol)
        elif action == REQUEST_ROTATE and self.venue.make_before_break:
            # the venue announced it will close a connection (a `serverShutdown` event):
            # `symbol` carries that connection's id
            conn = self._open.get(int(symbol)) if str(symbol).isdigit() else None
            if conn is not None and conn.slot.conn is conn:
                self._start_rotation(conn, "the venue announced it will close it")

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
    @property
    def _ws(self):
        """The first plan entry's open WebSocket (None when it has none): one-connection venues."""
        conn = self._slots[0].conn if self._slots else None
        return conn.ws if conn is not None else None

    def _slot_of(self, symbol: str | None) -> "_Slot | None":
        for slot in self._slots:
            if symbol is None or symbol in slot.symbols:
                return slot
        return None

    def _send_frames(self, ws, conn, frames: list[bytes]) -> None:
        if conn is None or ws.closed.done() or conn.conn_id not in self._open:
            return
        for frame in frames:
            ws.send_text(frame)
            self.stamp(conn.conn_id, next(conn.seq), "send", "ws", None, frame)

    async def run(self, stop: asyncio.Event) -> None:
        """One reconnect loop per entry of the venue's connection plan (`Venue.connection_plan`):
        each with its own connection id, subscribe frames, pinger / watchdog / ager and backoff."""
        self._loop = asyncio.get_running_loop()
        self._stopping = stop
        self.backoff = Backoff(self.backoff_initial, self.backoff_max, reset_after=10.0,
                               rng=self.backoff.rng, clock=self.backoff.clock)
        plan = self.venue.connection_plan(list(self.symbols)) or [[]]
        self._slots = [
            _Slot(i, list(symbols), self.backoff if i == 0 else
                  Backoff(self.backoff_initial, self.backoff_max, reset_after=10.0, clock=self.backoff.clock))
            for i, symbols in enumerate(plan)
        ]
        async with aiohttp.ClientSession(headers={"User-Agent": "lab-recorder/0.1"}) as http:
            self._http = http
            tasks = [asyncio.ensure_future(self._slot_loop(slot, stop)) for slot in self._slots]
            try:
                await asyncio.gather(*tasks)
            except BaseException:
                for conn in list(self._open.values()):
                    conn.ws.abort()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
            finally:
                for task in self._snapshot_tasks.values():
                    task.cancel()
                self._http = None

    async def _slot_loop(self, slot: "_Slot", stop: asyncio.Event) -> None:
        backoff = slot.backoff
        attempts = 0
        while not stop.is_set():
            conn = await self._open_conn(slot)
            attempts += 1
            while conn is not None:
                slot.conn = conn
                await self._serve(conn, stop)
                if slot.rotation is not None:  # a make-before-break in progress: let it settle
                    try:
                        await asyncio.shield(slot.rotation)
                    except Exception as exc:  # noqa: BLE001  (a rotation bug must not stop the recorder)
                        self.note("handover_failed", f"rotation failed: {type(exc).__name__}: {exc}")
                        slot.rotation = None
                conn, slot.successor = slot.successor, None  # open and subscribed already
                if conn is not None:
                    backoff.reset()
            if stop.is_set():
                break
            if not self.frames and self.first_attempts and attempts >= self.first_attempts:
                raise VenueError(
                    f"no data from the WebSocket {self.ws_url} after {attempts} attempts: {self.last_failure or 'closed without a frame'}"
                )
            if slot.aged:  # a planned reconnect before the venue's maximum age: no wait
                slot.aged = False
                backoff.reset()
                continue
            delay = backoff.next_delay()  # full jitter; attempt 0 again after 10 s connected
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass

    async def _open_conn(self, slot: "_Slot") -> "_Conn | None":
        """Connect, stamp `open`, start reading, subscribe the slot's symbols, start the
        connection's pinger / watchdog / ager. None when the connection failed."""
        conn_id = next(self._conn_ids)
        conn_seq = itertools.count()
        try:
            url, frames = self.venue.ws_connection(self.ws_url, slot.symbols, self.depth)
            ws = await websocket.connect(url, headers={"User-Agent": "lab-recorder/0.1"}, max_message=self.max_message)
        except (OSError, asyncio.TimeoutError, websocket.HandshakeError) as exc:
            self.last_failure = str(exc) or type(exc).__name__
            if isinstance(exc, ConnectionRefusedError):
                self.last_failure = "connection refused (nothing listening there?)"
            self.note("connect_failed", f"{url}: {type(exc).__name__}: {exc}")
            return None
        conn = _Conn(conn_id, conn_seq, ws, slot)
        self._open[conn_id] = conn
        self.connections += 1
        slot.backoff.healthy()
        stamp = self.stamp
        stamp(conn_id, next(conn_seq), "open", "ws", None, url.encode())

        def on_message(payload: bytes, is_text: bool) -> None:
            # The read loop: stamp and hand over, nothing else.
            stamp(conn_id, next(conn_seq), "recv", "ws", None, payload)
            conn.frames += 1
            self.frames += 1
            self.bytes += len(payload)

        ws.start(on_message)
        for frame in frames:
            ws.send_text(frame)  # every venue's subscribe is a JSON text frame
            stamp(conn_id, next(conn_seq), "send", "ws", None, frame)
        if self.ping_idle and self.venue.ping_frame is not None:
            conn.tasks.append(asyncio.ensure_future(self._pinger(ws, conn)))
        if self.stall_timeout:
            conn.tasks.append(asyncio.ensure_future(self._watchdog(ws, float(self.stall_timeout), conn)))
        if self.max_connection_age:
            conn.tasks.append(asyncio.ensure_future(self._ager(ws, float(self.max_connection_age), conn)))
        return conn

    async def _serve(self, conn: "_Conn", stop: asyncio.Event) -> None:
        """Until the connection closes; then its `close` row."""
        ws = conn.ws
        try:
            if stop is not None and not ws.closed.done():
                # a connection that opened while the recorder was stopping is closed here too
                stopping = asyncio.ensure_future(stop.wait())
                try:
                    await asyncio.wait({asyncio.shield(ws.closed), stopping}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stopping.cancel()
                if not ws.closed.done():
                    await self._close_conn(ws)
            reason = await asyncio.shield(ws.closed)
        finally:
            for task in conn.tasks:
                task.cancel()
        if ws.too_large is not None:
            self.too_large += 1
            self.note("message_too_large", f"{ws.too_large}; reconnecting")
        if stop.is_set() and ws._close_sent:
            reason = f"recorder stopping ({reason})"
        self.last_failure = f"connected, then {reason}"
        self.stamp(conn.conn_id, next(conn.seq), "close", "ws", None, reason.encode())
        self._open.pop(conn.conn_id, None)
        if conn.slot.conn is conn:
            conn.slot.conn = None

    async def _ager(self, ws, max_age: float, conn: "_Conn | None" = None) -> None:
        """Replace the connection before the venue's maximum connection age (at 90 %, at most
        5 min early). Venues that declare `make_before_break`: the successor is opened and
        subscribed first and the old connection closed once the normalizer saw the successor's
        stream overlap every book (or `handover_timeout` passed); other venues: a note event, a
        close, and the run loop reconnects at once (no backoff), a resync (break-before-make)."""
        after = max(max_age * 0.9, max_age - 300.0)
        await asyncio.sleep(after)
        if ws.closed.done():
            return
        self.aged_reconnects += 1
        why = f"connection open {after:g}s (venue maximum {max_age:g}s)"
        if conn is not None and self.venue.make_before_break:
            self._start_rotation(conn, why)
            return
        if conn is not None:
            conn.slot.aged = True
        self._aged = True
        self.note("max_age_reconnect", f"{why}; reconnecting before the venue closes it")
        await self._close_conn(ws)

    async def _close_conn(self, ws, timeout: float = 3.0) -> None:
        ws.close()
        try:  # a venue that does not answer the CLOSE is cut
            await asyncio.wait_for(asyncio.shield(ws.closed), timeout)
        except asyncio.TimeoutError:
            ws.abort()

    def _start_rotation(self, old: "_Conn", why: str) -> None:
        slot = old.slot
        if slot.rotation is not None and not slot.rotation.done():
            return
        if old.conn_id not in self._open or old.ws.closed.done() or self._stopping is None or self._stopping.is_set():
            return
        slot.rotation = asyncio.ensure_future(self._rotate(old, why))

    async def _rotate(self, old: "_Conn", why: str) -> None:
        """Make-before-break: open and subscribe the successor, wait until the normalizer saw
        its stream overlap every book of the entry (REQUEST_OVERLAP), then close the old one.
        The normalizer applies each update once (by the venue's sequence) and hands every book
        over at the old connection's `close` row. A successor that cannot connect is a
        break-before-make (`handover_failed`); one that does not overlap in time is closed over
        anyway (`handover_timeout`: the normalizer checks continuity and notes any gap)."""
        slot = old.slot
        self.rotations += 1
        self.note("rotate", f"conn {old.conn_id}: {why}; opening its successor first (make-before-break)")
        slot.waiting = set(slot.symbols)
        slot.ready = asyncio.Event()
        new = await self._open_conn(slot)
        if new is None:
            self.note("handover_failed", f"conn {old.conn_id}: the successor did not connect; "
                      "break-before-make (the books resync)")
            slot.aged = True
            if not old.ws.closed.done():
                await self._close_conn(old.ws)
            slot.rotation = None
            return
        slot.successor = new
        if not slot.waiting:
            slot.ready.set()
        deadline = time.monotonic() + self.handover_timeout
        while not (slot.ready.is_set() or old.ws.closed.done() or new.ws.closed.done()):
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.01)
        if new.ws.closed.done():  # the successor died first: the old one keeps serving
            self.note("handover_failed", f"conn {old.conn_id}: successor conn {new.conn_id} closed before the "
                      "handover; break-before-make (the books resync)")
            slot.successor = None
            await self._serve(new, self._stopping)
            slot.aged = True
        elif not slot.ready.is_set() and not old.ws.closed.done() and not new.frames:
            self.note("handover_failed", f"conn {old.conn_id}: successor conn {new.conn_id} received nothing within "
                      f"{self.handover_timeout:g}s; closing conn {old.conn_id} anyway, break-before-make (the books resync)")
        elif not slot.ready.is_set() and not old.ws.closed.done():
            self.note("handover_timeout", f"conn {old.conn_id}: successor conn {new.conn_id} did not overlap "
                      f"{', '.join(sorted(slot.waiting)[:20])} within {self.handover_timeout:g}s; handing over anyway "
                      "(the normalizer checks continuity and notes any gap)")
        if not old.ws.closed.done():
            await self._close_conn(old.ws)
        slot.rotation = None

    def _on_overlap(self, symbol: str) -> None:
        for slot in self._slots:
            if slot.successor is not None and symbol in slot.waiting:
                slot.waiting.discard(symbol)
                if not slot.waiting and slot.ready is not None:
                    slot.ready.set()

    async def _watchdog(self, ws, timeout: float, conn: "_Conn | None" = None) -> None:
        """Stall detection: subscribed and nothing at all received for `timeout` s (heartbeats
        count) = an event and a reconnect (which resubscribes and resyncs every book)."""
        tick = min(timeout / 5, 0.5)
        frames = (lambda: conn.frames) if conn is not None else (lambda: self.frames)
        seen = frames()
        quiet_since = time.monotonic()
        while not ws.closed.done():
            await asyncio.sleep(tick)
            now = time.monotonic()
            if frames() != seen:
                seen, quiet_since = frames(), now
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
        seen = conn.frames
        quiet_since = last_ping = time.monotonic()
        while not ws.closed.done():
            await asyncio.sleep(tick)
            now = time.monotonic()
            if conn.frames != seen:
                seen = conn.frames
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
        """Stop gracefully: send CLOSE on every connection and keep reading until the venue's
        CLOSE, so frames already in flight are recorded too (a SIGTERM loses nothing the venue
        sent)."""
        conns = [c for c in self._open.values() if not c.ws.closed.done()]
        if not conns:
            return
        await asyncio.gather(*(self._close_conn(c.ws, timeout) for c in conns))
        deadline = time.monotonic() + timeout + 2.0
        while any(c.conn_id in self._open for c in conns) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)  # let the slot loops record the close rows


class _Conn:
    """One WebSocket connection of a plan entry."""

    __slots__ = ("conn_id", "seq", "ws", "slot", "frames", "tasks")

    def __init__(self, conn_id: int, seq, ws, slot: "_Slot"):
        self.conn_id = conn_id
        self.seq = seq  # the connection's gap-free conn_seq counter
        self.ws = ws
        self.slot = slot
        self.frames = 0
        self.tasks: list[asyncio.Task] = []


class _Slot:
    """One entry of the connection plan: its symbols, the connection serving them, its backoff,
    and a make-before-break in progress (the successor, the symbols it has not overlapped yet)."""

    def __init__(self, index: int, symbols: list[str], backoff: Backoff):
        self.index = index
        self.symbols = symbols
        self.backoff = backoff
        self.conn: _Conn | None = None
        self.successor: _Conn | None = None
        self.rotation: asyncio.Task | None = None
        self.waiting: set[str] = set()
        self.ready: asyncio.Event | None = None
        self.aged = False
