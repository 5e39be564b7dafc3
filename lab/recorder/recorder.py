"""`lab record`: one venue, one session, the WebSockets of the venue's connection plan; raw and derived tables into the root.

Threads: the asyncio loop (socket reader, REST) stamps rows into a bounded queue; one writer
thread journals, normalizes and rotates. The reader never waits on disk. SIGINT/SIGTERM stop the
reader, drain the queue and rotate the last segment, so nothing received is lost.
"""
from __future__ import annotations

import asyncio
import collections
import errno
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

from lab.core.model import RawRow
from lab.datasets.store import new_session_id
from lab.datasets.writer import CaptureWriter, recover
from lab.recorder.feed import FeedClient, VenueError
from lab.venues.registry import adapter


class DiskFull(RuntimeError):
    """The recorder stopped because the disk is (almost) full; the message says what is where."""


@dataclass
class RecordOptions:
    venue: str
    symbols: list[str]
    root: str
    rest_url: str | None = None
    ws_url: str | None = None
    depth: int = 0
    api: str | None = None  # the venue's API version (an adapter option: `lab venues --json`)
    options: dict = field(default_factory=dict)  # venue options (`--opt KEY=VALUE`)
    ping_idle: float | None = None  # app-level ping after this many idle seconds (None: venue default)
    duration: float | None = None
    flush_interval: float = 1.0
    rotate_interval: float = 60.0
    rotate_rows: int = 250_000
    max_queue: int = 1_000_000
    min_free_bytes: int = 64 << 20
    status: bool = True
    # recompress finished segments' raw files at zstd 19 in the background (idle priority)
    compact: bool = True


class Recorder:
    def __init__(self, opts: RecordOptions):
        self.opts = opts
        self.venue = adapter(opts.venue, **{**opts.options, **({"api": opts.api} if opts.api else {})})
        if not opts.depth:  # the venue's default depth is what the capture's metadata must say
            opts.depth = self.venue.default_depth
        self.session = new_session_id()
        self.queue: collections.deque[RawRow] = collections.deque()
        self.dropped = 0
        self.overflows = 0
        self.error: BaseException | None = None
        self.recovered: list[dict] = []
        self.client = FeedClient(
            self.venue,
            opts.symbols,
            rest_url=opts.rest_url or self.venue.default_rest_url,
            ws_url=opts.ws_url or self.venue.default_ws_url,
            sink=self._sink,
            depth=opts.depth,
            ping_idle=opts.ping_idle,
            first_attempts=4,  # no frame in the first 4 connections: a wrong URL, exit with the reason
        )
        self.normalizer = self.venue.normalizer(request=self.client.request, depth=opts.depth)
        self._writer_done = threading.Event()
        self._drain = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer: CaptureWriter | None = None
        self._watermark: str | None = None  # set once the free-space watermark stopped the recorder

    # -- the queue between the reader and the writer ------------------------------------------
    def _sink(self, row: RawRow) -> None:
        q = self.queue
        if len(q) >= self.opts.max_queue:
            self.dropped += 1
            return
        q.append(row)
        if self.dropped and len(q) < self.opts.max_queue // 2:
            dropped, self.dropped = self.dropped, 0
            self.overflows += 1
            self.client.note("overflow", f"{dropped} frames dropped: writer queue full")

    def _writer_loop(self, writer: CaptureWriter) -> None:
        q = self.queue
        append = writer.append
        # free space is read every flush interval (one statvfs), not only at rotation
        next_check = time.monotonic() + min(writer.flush_interval, 1.0)
        try:
            while True:
                if q:
                    for _ in range(min(len(q), 20000)):
                        append(q.popleft())
                elif self._drain.is_set():
                    break
                else:
                    time.sleep(0.002)
                now = time.monotonic()
                if now >= next_check:
                    next_check = now + min(writer.flush_interval, 1.0)
                    self._watch_disk(writer)
                writer.tick()
            writer.close()
        except OSError as exc:
            self.error = exc
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                self.error = DiskFull(
                    f"disk full under {self.opts.root} ({exc.strerror}"
                    + (f": {exc.filename}" if exc.filename else "")
                    + "); stopped writing. Everything fsynced is kept in Parquet or the journal: "
                    f"free some space, then `lab verify {self.opts.root} --repair`"
                )
            self._stop_writer(writer)
        except BaseException as exc:  # surfaced by run(); the journal keeps what was received
            self.error = exc
            self._stop_writer(writer)
        finally:
            self._writer_done.set()

    def _stop_writer(self, writer: CaptureWriter) -> None:
        writer.release_reserve()  # the room kept back for this: the note and the journal's tail
        try:
            # an event row in the journal (recovery turns it into `events`)
            writer.journal.append(self.client.note_row("disk_full" if isinstance(self.error, DiskFull) else "writer_error", str(self.error)))
        except Exception:
            pass
        try:
            writer.journal.sync()
        except Exception:
            pass
        if writer.compactor is not None:
            try:  # stopped now, its half-written .tmp removed (it may have hit the full disk too)
                writer.compactor.close()
            except Exception:
                pass
        self._request_stop()

    def _request_stop(self) -> None:
        """Stop the reader from the writer thread (a no-op once the loop has finished: the
        final drain runs after it)."""
        loop = self._loop
        if loop is not None and self._stop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:  # closed in between
                pass

    def free_bytes(self) -> int:
        st = os.statvfs(self.opts.root)
        return st.f_bavail * st.f_frsize

    def _watch_disk(self, writer: CaptureWriter) -> None:
        """The watermark: stop while there is still room to rotate the open segment into
        Parquet (its journal size is reserved on top of --min-free), so a watermark stop is clean:
        an `events` row (kind `watermark`), the last segment in Parquet, no journal left."""
        if self._watermark is not None:
            return
        free = self.free_bytes()
        need = self.opts.min_free_bytes + writer.segment_bytes
        if free >= need:
            return
        self._watermark = (
            f"disk almost full under {self.opts.root}: {free / 2**20:.1f} MiB free, below the "
            f"{self.opts.min_free_bytes / 2**20:.0f} MiB watermark plus {writer.segment_bytes / 2**20:.1f} MiB reserved "
            "for the last rotation; stopped writing cleanly"
        )
        self.client.note("watermark", self._watermark)
        self._request_stop()

    # -- main ---------------------------------------------------------------------------------
    def run(self) -> dict:
        os.makedirs(self.opts.root, exist_ok=True)
        self.recovered = recover(self.opts.root)
        writer = CaptureWriter(
            self.opts.root, self.opts.venue, self.session, self.normalizer, depth=self.opts.depth,
            flush_interval=self.opts.flush_interval, rotate_interval=self.opts.rotate_interval,
            rotate_rows=self.opts.rotate_rows, compact=self.opts.compact,
        )
        self._writer = writer
        thread = threading.Thread(target=self._writer_loop, args=(writer,), name="lab-writer", daemon=True)
        thread.start()
        started = time.monotonic()
        try:
            asyncio.run(self._main())
        finally:
            self._drain.set()
            thread.join()
        elapsed = time.monotonic() - started
        if self.error is not None:
            raise self.error
        if self._watermark is not None:
            raise DiskFull(self._watermark)
        stats = self.normalizer.stats
        return {
            "venue": self.opts.venue,
            "session": self.session,
            "root": self.opts.root,
            "seconds": round(elapsed, 3),
            "raw_rows": writer.stats.rows,
            "frames": self.client.frames,
            "book_messages": stats["messages"],
            "gaps": stats["gaps"],
            "resyncs": stats["resyncs"],
            "checksum_mismatches": stats["checksum_mismatches"],
            "malformed": stats["malformed"],
            "connections": self.client.connections,
            "reconnects": max(0, self.client.connections - max(1, len(self.client._slots))),
            "planned_connections": max(1, len(self.client._slots)),
            "rotations": self.client.rotations,
            "handovers": getattr(self.normalizer, "handovers", 0),
            "overflows": self.overflows,
            "stalls": self.client.stalls,
            "messages_too_large": self.client.too_large,
            "files": writer.stats.files,
            "bytes": writer.stats.bytes,
            "recovered_journals": len(self.recovered),
            "compacted_files": writer.compactor.compacted if writer.compactor else 0,
            "compact_errors": writer.compactor.errors if writer.compactor else [],
        }

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        status = asyncio.ensure_future(self._status(stop)) if self.opts.status and sys.stderr.isatty() else None
        feed = asyncio.ensure_future(self._feed(stop))
        waiter = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({feed, waiter}, timeout=self.opts.duration, return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        await self.client.close_ws()
        await feed  # re-raises VenueError from instrument checks
        waiter.cancel()
        if status is not None:
            status.cancel()
            sys.stderr.write("\n")

    async def _feed(self, stop: asyncio.Event) -> None:
        import aiohttp

        async with aiohttp.ClientSession(headers={"User-Agent": "lab-recorder/0.1"}) as http:
            self.client._http = http
            instruments = await self.client.fetch_instruments()
        if self.opts.symbols:
            self.client.symbols = self.opts.symbols = self.venue.resolve_symbols(self.opts.symbols, instruments)
        known = {i.venue_symbol for i in instruments}
        if not self.opts.symbols:
            self.client.symbols = self.opts.symbols = sorted(known)
        else:  # the canonical spelling (XBT-USD) and any case name the venue's symbol too
            from lab.symbols import key

            by_key: dict[str, list[str]] = {}
            for k in known:
                by_key.setdefault(key(k), []).append(k)
            self.client.symbols = self.opts.symbols = [
                s if s in known or len(by_key.get(key(s), ())) != 1 else by_key[key(s)][0] for s in self.opts.symbols
            ]
        unknown = [s for s in self.opts.symbols if s not in known]
        if unknown:
            raise VenueError(
                f"unknown symbol {', '.join(unknown)} for venue {self.opts.venue} (known: {', '.join(sorted(known)[:20])})"
            )
        await self.client.run(stop)

    async def _status(self, stop: asyncio.Event) -> None:
        last_frames, last_t = 0, time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(1.0)
            now = time.monotonic()
            frames = self.client.frames
            rate = (frames - last_frames) / (now - last_t)
            last_frames, last_t = frames, now
            s = self.normalizer.stats
            w = self._writer.stats
            sys.stderr.write(
                f"\r{self.opts.venue} {rate:>9,.0f} msg/s  frames {frames:,}  gaps {s['gaps']}  resyncs {s['resyncs']}  bad {s['checksum_mismatches'] + s['malformed']}"
                f"  reconnects {max(0, self.client.connections - max(1, len(self.client._slots)))}  files {w.files}  {w.bytes / 1e6:,.1f} MB"
                f"  queue {len(self.queue):,}   "
            )
            sys.stderr.flush()
