"""Live connectors: the callback interface strategies use (`get_connector("mock")`).

A live stream runs the venue's own normalizer (the one the recorder and `lab normalize` run) on
frames as they arrive, in a background thread with its own event loop, and calls
`on_book(OrderBook)` after every applied message while the book is in sync.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
import urllib.error
import urllib.request
from typing import Callable

from lab.datasets.journal import RawRow
from lab.recorder.feed import FeedClient, VenueError
from lab.recorder.sync import Trade
from lab.rust_book import OrderBook
from lab.venues.registry import feed_module


log = logging.getLogger("lab.live")


class Dispatcher:
    """Runs a stream's callbacks on their own thread, off the socket's.

    Items are delivered in arrival order. A book that arrives while the previous book is still
    waiting replaces it (the consumer gets the newest state, `coalesced` counts the skipped ones,
    and the first skip is logged); trades queue up to `max_trades`, beyond which they are
    counted in `dropped_trades` and logged. A slow strategy never stalls the socket reader."""

    _BOOK, _TRADE = 0, 1

    def __init__(self, on_book, on_trade, name: str, max_trades: int = 100_000):
        self.on_book = on_book
        self.on_trade = on_trade
        self.max_trades = max_trades
        self.coalesced = 0
        self.dropped_trades = 0
        self._items: collections.deque = collections.deque()
        self._trades = 0
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def book(self, snapshot: OrderBook) -> None:
        """`snapshot` must be the caller's own copy: the consumer reads it on another thread."""
        with self._cv:
            if self._items and self._items[-1][0] == self._BOOK:
                self._items[-1] = (self._BOOK, snapshot)
                self.coalesced += 1
                if self.coalesced == 1:
                    log.warning("%s: the on_book callback is slower than the stream; books are coalesced", self._thread.name)
            else:
                self._items.append((self._BOOK, snapshot))
            self._cv.notify()

    def trade(self, trade: Trade) -> None:
        if self.on_trade is None:
            return
        with self._cv:
            if self._trades >= self.max_trades:
                self.dropped_trades += 1
                if self.dropped_trades == 1:
                    log.warning("%s: the on_trade callback is too slow; trades are being dropped", self._thread.name)
                return
            self._items.append((self._TRADE, trade))
            self._trades += 1
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._items and not self._closed:
                    self._cv.wait()
                if not self._items:
                    return
                kind, item = self._items.popleft()
                if kind == self._TRADE:
                    self._trades -= 1
            try:
                (self.on_book if kind == self._BOOK else self.on_trade)(item)
            except Exception:
                log.exception("%s: callback raised", self._thread.name)

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued, then stop."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)


class LiveConnector:
    def __init__(self, venue: str, rest_url: str | None = None, ws_url: str | None = None, depth: int = 0):
        self.module = feed_module(venue)
        self.venue = venue
        self.rest_url = (rest_url or self.module.DEFAULT_REST_URL).rstrip("/")
        self.ws_url = ws_url or self.module.DEFAULT_WS_URL
        self.depth = depth or getattr(self.module, "DEFAULT_DEPTH", 0)
        self._streams: list[tuple[threading.Thread, asyncio.AbstractEventLoop, asyncio.Event, FeedClient]] = []
        self._latest: OrderBook | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LiveConnector(venue={self.venue!r}, rest_url={self.rest_url!r}, ws_url={self.ws_url!r})"

    def _get(self, path: str) -> bytes:
        try:
            with urllib.request.urlopen(self.rest_url + path, timeout=10) as resp:
                return resp.read()
        except urllib.error.HTTPError as exc:
            raise VenueError(f"{self.venue}: GET {path} -> HTTP {exc.code}: {exc.read()[:200].decode(errors='replace')}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise VenueError(f"{self.venue}: cannot reach {self.rest_url}: {exc}") from None

    def _row(self, kind: str, channel: str, symbol: str | None, payload: bytes) -> RawRow:
        return RawRow(0, time.time_ns(), 0, 0, kind, channel, symbol, payload)

    def list_symbols(self) -> list[str]:
        return sorted(i.venue_symbol for i in self.module.parse_instruments(self._get(self.module.INSTRUMENTS_PATH)))

    def fetch_orderbook_sync(self, symbol: str) -> OrderBook:
        normalizer = self.module.Normalizer(depth=self.depth)
        normalizer.feed(self._row("rest", self.module.INSTRUMENTS_PATH, None, self._get(self.module.INSTRUMENTS_PATH)))
        if symbol not in normalizer.books:
            raise VenueError(f"unknown symbol {symbol!r} for venue {self.venue}")
        path = self.module.depth_path(symbol)
        normalizer.feed(self._row("rest", path, symbol, self._get(path)))
        book = normalizer.books[symbol]
        if not book.synced:
            events = "; ".join(e[4] for e in normalizer.out.events)
            raise VenueError(f"{self.venue}: snapshot of {symbol} did not verify: {events}")
        return book.copy()

    def start_stream(self, symbol: str, on_book: Callable[[OrderBook], None], on_trade: Callable[[Trade], None] | None = None) -> None:
        if symbol not in self.list_symbols():
            raise VenueError(f"unknown symbol {symbol!r} for venue {self.venue}")

        dispatcher = Dispatcher(on_book, on_trade, name=f"lab-callbacks-{self.venue}-{symbol}")

        def book_cb(book: OrderBook) -> None:
            snapshot = book.copy()
            self._latest = snapshot
            dispatcher.book(snapshot)

        ready = threading.Event()
        holder: dict = {}

        def runner() -> None:
            loop = asyncio.new_event_loop()
            stop = asyncio.Event()
            client_box: list[FeedClient] = []
            normalizer = self.module.Normalizer(on_book=book_cb, on_trade=dispatcher.trade, request=lambda a, s: client_box[0].request(a, s), depth=self.depth)
            client = FeedClient(self.module, [symbol], rest_url=self.rest_url, ws_url=self.ws_url, sink=normalizer.feed, depth=self.depth)
            client_box.append(client)
            holder.update(loop=loop, stop=stop, client=client)
            ready.set()

            async def main() -> None:
                import aiohttp

                async with aiohttp.ClientSession() as http:
                    client._http = http
                    await client.fetch_instruments()
                await client.run(stop)

            try:
                loop.run_until_complete(main())
            finally:
                loop.close()

        thread = threading.Thread(target=runner, name=f"lab-live-{self.venue}-{symbol}", daemon=True)
        thread.start()
        ready.wait()
        self._streams.append((thread, holder["loop"], holder["stop"], holder["client"], dispatcher))

    def latest_snapshot(self) -> OrderBook | None:
        book = self._latest
        return None if book is None else book.copy()

    def stop_stream(self) -> None:
        for thread, loop, stop, client, dispatcher in self._streams:
            if not loop.is_closed():
                loop.call_soon_threadsafe(stop.set)
                try:
                    asyncio.run_coroutine_threadsafe(client.close_ws(), loop)
                except RuntimeError:
                    pass
            thread.join(timeout=10)
            dispatcher.close()
        self._streams.clear()


def get_connector(name: str, **kwargs):
    if name == "kraken_auth":
        from lab.venues.kraken.auth import KrakenAuthConnector

        return KrakenAuthConnector(**kwargs)
    return LiveConnector(name, **kwargs)


def list_connectors() -> list[str]:
    from lab.venues.registry import venues

    names = venues()
    if "kraken" in names:
        names.append("kraken_auth")
    return names
