"""The live side's connection: REST calls and one WebSocket, every frame stamped into a raw row.

The read loop does nothing but stamp (`rec_id`, local time, connection sequence) and hand the row
to a sink; decoding happens behind the queue. Reconnects use exponential backoff with full jitter.
"""
from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time
from types import ModuleType
from typing import Callable

import aiohttp

from lab.datasets.journal import RawRow
from lab.recorder.sync import REQUEST_RESUBSCRIBE, REQUEST_SNAPSHOT, Instrument

REST_CONN_ID = 0


class VenueError(RuntimeError):
    """The venue answered with an error the user has to act on (unknown symbol, bad URL, ...)."""


class FeedClient:
    def __init__(
        self,
        module: ModuleType,
        symbols: list[str],
        *,
        rest_url: str,
        ws_url: str,
        sink: Callable[[RawRow], None],
        depth: int = 0,
        backoff_initial: float = 0.25,
        backoff_max: float = 30.0,
    ):
        self.module = module
        self.symbols = list(symbols)
        self.rest_url = rest_url.rstrip("/")
        self.ws_url = ws_url
        self.sink = sink
        self.depth = depth
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._rec_ids = itertools.count()
        self._conn_ids = itertools.count(REST_CONN_ID + 1)
        self._rest_seq = itertools.count()
        self._rest_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
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
        import orjson

        with self._rest_lock:
            seq = next(self._rest_seq)
        self.stamp(REST_CONN_ID, seq, "note", "recorder", symbol, orjson.dumps({"kind": kind, "symbol": symbol, "detail": detail}))

    # -- REST ---------------------------------------------------------------------------------
    async def rest_get(self, path: str, symbol: str | None = None) -> tuple[int, bytes]:
        assert self._http is not None
        url = self.rest_url + path
        try:
            async with self._http.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
                body = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            self.note("rest_failed", f"GET {path}: {type(exc).__name__}: {exc}", symbol)
            return 0, b""
        self.stamp(REST_CONN_ID, next(self._rest_seq), "rest" if status < 400 else "rest_error", path, symbol, body)
        return status, body

    async def fetch_instruments(self) -> list[Instrument]:
        retry_after = getattr(self.module, "retry_after", None)
        for attempt in range(6):
            status, body = await self.rest_get(self.module.INSTRUMENTS_PATH)
            wait = retry_after(status, body) if retry_after is not None else None
            if wait is None or attempt == 5:
                break
            await asyncio.sleep(wait * (1 + random.random()))  # rate limited: back off, retry
        if status != 200:
            raise VenueError(f"{self.module.VENUE}: instruments request to {self.rest_url} failed (HTTP {status or 'unreachable'})")
        return self.module.parse_instruments(body)

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
            frames = getattr(self.module, "resubscribe_frames", None)
            if frames is None or symbol is None:
                asyncio.ensure_future(self._ws.close())  # resync everything: reconnect
            else:
                # the venue resyncs one symbol on the open connection (Kraken: unsubscribe +
                # subscribe gives a fresh snapshot); the other symbols keep streaming
                asyncio.ensure_future(self._send_frames(self._ws, self._ws_conn, frames(symbol, self.depth)))

    async def _fetch_snapshot(self, symbol: str) -> None:
        delay = 0.05
        for _ in range(20):
            status, _ = await self.rest_get(self.module.depth_path(symbol), symbol)
            if status == 200:
                return
            if status == 404:
                return  # the normalizer has recorded the venue's answer
            await asyncio.sleep(delay * random.random() + delay)
            delay = min(delay * 2, 5.0)

    # -- WebSocket ----------------------------------------------------------------------------
    async def _send_frames(self, ws, conn, frames: list[bytes]) -> None:
        if conn is None or ws is not self._ws or ws.closed:
            return
        conn_id, conn_seq = conn
        try:
            for frame in frames:
                await ws.send_str(frame.decode())
                self.stamp(conn_id, next(conn_seq), "send", "ws", None, frame)
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            self.note("send_failed", f"{type(exc).__name__}: {exc}")

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = stop
        backoff = self.backoff_initial
        async with aiohttp.ClientSession(headers={"User-Agent": "lab-recorder/0.1"}) as http:
            self._http = http
            while not stop.is_set():
                started = time.monotonic()
                await self._connection(http, stop)
                if stop.is_set():
                    break
                if time.monotonic() - started > 10:
                    backoff = self.backoff_initial
                delay = random.uniform(0, backoff)  # full jitter
                backoff = min(backoff * 2, self.backoff_max)
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
            # autoclose off: the read loop sees the venue's CLOSE itself, so a stop can send CLOSE
            # first and keep reading what was already in flight until the venue's answer.
            ws = await http.ws_connect(self.ws_url, heartbeat=None, max_msg_size=0, autoping=True, autoclose=False,
                                       timeout=aiohttp.ClientWSTimeout(ws_close=2))
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            self.note("connect_failed", f"{self.ws_url}: {type(exc).__name__}: {exc}")
            return
        self._ws = ws
        self._ws_conn = (conn_id, conn_seq)
        self.connections += 1
        self.stamp(conn_id, next(conn_seq), "open", "ws", None, self.ws_url.encode())
        reason = "closed by venue"
        try:
            for frame in self.module.subscribe_frames(self.symbols, self.depth):
                await ws.send_str(frame.decode())  # every venue's subscribe is a JSON text frame
                self.stamp(conn_id, next(conn_seq), "send", "ws", None, frame)
            receive = ws.receive
            stamp = self.stamp
            TEXT, BINARY = aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY
            while True:
                msg = await receive()
                if msg.type is TEXT:
                    data = msg.data.encode()
                elif msg.type is BINARY:
                    data = msg.data
                else:
                    if msg.type is aiohttp.WSMsgType.ERROR:
                        reason = f"error: {msg.data}"
                    elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                        reason = f"closed by venue (code {ws.close_code})" if not stop.is_set() else "recorder stopping"
                    break
                stamp(conn_id, next(conn_seq), "recv", "ws", None, data)
                self.frames += 1
                self.bytes += len(data)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
        finally:
            self._ws = None
            if not ws.closed:
                await ws.close()
            self.stamp(conn_id, next(conn_seq), "close", "ws", None, reason.encode())

    async def close_ws(self, timeout: float = 3.0) -> None:
        """Stop gracefully: send CLOSE, keep reading until the venue's CLOSE, so frames already in
        flight are recorded too (a SIGTERM loses nothing the venue sent)."""
        ws = self._ws
        if ws is None or ws.closed:
            return
        writer = getattr(ws, "_writer", None)
        if writer is None:
            await ws.close()
            return
        try:
            await writer.close(1000, b"recorder stopping")
        except Exception:
            await ws.close()
            return
        deadline = time.monotonic() + timeout
        while self._ws is ws and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._ws is ws and not ws.closed:
            await ws.close()

