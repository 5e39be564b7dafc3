"""Live connectors: the callback interface strategies use (`get_connector("mock")`).

A live stream runs the venue's own normalizer (the one the recorder and `lab normalize` run) on
frames as they arrive, in a background thread with its own event loop, and calls
`on_book(OrderBook)` after every applied message while the book is in sync.
"""
from __future__ import annotations

import asyncio
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

        def book_cb(book: OrderBook) -> None:
            self._latest = book
            on_book(book)

        ready = threading.Event()
        holder: dict = {}

        def runner() -> None:
            loop = asyncio.new_event_loop()
            stop = asyncio.Event()
            client_box: list[FeedClient] = []
            normalizer = self.module.Normalizer(on_book=book_cb, on_trade=on_trade, request=lambda a, s: client_box[0].request(a, s), depth=self.depth)
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
        self._streams.append((thread, holder["loop"], holder["stop"], holder["client"]))

    def latest_snapshot(self) -> OrderBook | None:
        book = self._latest
        return None if book is None else book.copy()

    def stop_stream(self) -> None:
        for thread, loop, stop, client in self._streams:
            if not loop.is_closed():
                loop.call_soon_threadsafe(stop.set)
                try:
                    asyncio.run_coroutine_threadsafe(client.close_ws(), loop)
                except RuntimeError:
                    pass
            thread.join(timeout=10)
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
