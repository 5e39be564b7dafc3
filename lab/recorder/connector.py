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

from lab.core.model import RawRow
from lab.recorder.feed import FeedClient, VenueError
from lab.recorder.health import Health, Status
from lab.core.model import Trade
from lab.rust_book import OrderBook
from lab.core.errors import UnknownVenue
from lab.venues import registry
from lab.venues.registry import adapter


log = logging.getLogger("lab.live")


class Dispatcher:
    """Runs a stream's callbacks on their own thread, off the socket's, with its own book.

    The socket thread does not copy books: after each frame it hands over the `book` rows the
    normalizer wrote (`BookRows`) and, in order, a marker per message the normalizer delivered
    (synced) and the trades. This thread applies the same rows to its own `OrderBook` (the
    view the callback gets, reused between calls, as on replay) and calls `on_book` after every
    message: a callback that keeps up sees every book.

    Coalescing happens only behind a callback that is really slower than the stream: when the
    oldest waiting frame arrived more than `max_lag` seconds ago AND calling `on_book` once per
    waiting book would, at the callback's own measured cost, take more than `max_lag` too (or
    more than `max_backlog` books wait). Then this thread applies everything waiting and calls
    `on_book` once with the newest book. A fast callback that lags because its thread did not get
    the GIL (other threads, a loaded machine) is not slow: skipping its calls would save nothing,
    so it still gets every book and catches up.
    The skipped books are counted in `coalesced` and reported once (a warning naming the
    callback's measured time per book against the stream's rate). Trades are never coalesced;
    beyond `max_trades` waiting they are counted in `dropped_trades` and reported once."""

    def __init__(self, on_book, on_trade, name: str, book: OrderBook | None = None,
                 max_lag: float = 0.1, max_backlog: int = 100_000, max_trades: int = 100_000):
        self.on_book = on_book
        self.on_trade = on_trade
        self.book = book  # the callback's view; set before the first batch
        self.max_backlog = max_backlog
        self.max_lag_ns = int(max_lag * 1e9)
        self.max_trades = max_trades
        self.applied = 0  # messages applied to the view
        self.delivered = 0  # on_book calls
        self.coalesced = 0  # synced books applied but not delivered because the callback was behind
        self.dropped_trades = 0
        self.callback_ns = 0  # time spent in on_book
        self._cb_ewma_ns = 0.0  # recent on_book cost per call
        self._batches: collections.deque = collections.deque()
        self._pending_books = 0
        self._pending_trades = 0
        self._first_ns: int | None = None
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def push(self, rows, items: list, view: OrderBook | None = None) -> None:
        """One frame's output: `rows` (BookRows or None) and `items`, in order, either
        `(row_end, timestamp, local_timestamp, seq)` for a delivered message whose rows end
        at `row_end`, or a Trade. `view`: a new book for the callback from these rows on."""
        books = sum(1 for i in items if type(i) is tuple)
        trades = len(items) - books
        room = self.max_trades - self._pending_trades
        if trades > room:  # a slow on_trade: keep every book marker, drop the newest trades
            kept, over = [], 0
            for i in items:
                if type(i) is tuple or room > 0:
                    kept.append(i)
                    room -= type(i) is not tuple
                else:
                    over += 1
            self.dropped_trades += over
            if self.dropped_trades == over:
                log.warning("%s: on_trade is %d trades behind; newer trades are dropped (counted in dropped_trades)",
                            self._thread.name, self.max_trades)
            items, trades = kept, trades - over
        with self._cv:
            now = time.perf_counter_ns()
            if self._first_ns is None:
                self._first_ns = now
            self._batches.append((rows, items, now, view))
            self._pending_books += books
            self._pending_trades += trades
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._batches and not self._closed:
                    self._cv.wait()
                if not self._batches:
                    return
                # Behind: everything waiting is applied now and only its newest book delivered.
                behind = self._pending_books > self.max_backlog or (
                    time.perf_counter_ns() - self._batches[0][2] > self.max_lag_ns
                    and self._cb_ewma_ns * self._pending_books > self.max_lag_ns)
                batches = list(self._batches) if behind else [self._batches.popleft()]
                if behind:
                    self._batches.clear()
                for _, items, _, _ in batches:
                    books = sum(1 for i in items if type(i) is tuple)
                    self._pending_books -= books
                    self._pending_trades -= len(items) - books
            try:
                last = None
                for rows, items, _, view in batches:
                    if view is not None:
                        self.book = view
                    last = self._apply(rows, items, behind, last)
                if last is not None:
                    if self._at_marker:
                        self._deliver(self.book)
                    else:  # unsynced rows came after the newest synced book: nothing valid to show
                        self._coalesce()
            except Exception:
                log.exception("%s: applying a batch failed", self._thread.name)

    _at_marker = False

    def _apply(self, rows, items: list, behind: bool, last):
        """Apply one frame's rows; deliver after each delivered message unless `behind`, in
        which case return the newest delivered marker (the caller delivers it)."""
        book, pos = self.book, 0
        n = len(rows) if rows is not None else 0
        for item in items:
            if type(item) is not tuple:
                if self.on_trade is not None:
                    self._call(self.on_trade, item)
                continue
            end, ts, local_ts, seq = item
            while pos < end:  # rows of messages the normalizer did not deliver (unsynced) first
                pos = book.apply_book_rows(rows, pos)
                self.applied += 1
                book.synced = pos == end
            book.timestamp, book.local_timestamp, book.seq = ts, local_ts, seq
            if behind:
                if last is not None:
                    self._coalesce()
                last = item
                self._at_marker = True
            else:
                self._deliver(book)
        while pos < n:
            pos = book.apply_book_rows(rows, pos)
            self.applied += 1
            book.synced = False
            self._at_marker = False
        return last

    def _coalesce(self) -> None:
        self.coalesced += 1
        if self.coalesced == 1:
            elapsed = max(time.perf_counter_ns() - (self._first_ns or 0), 1)
            rate = self.applied / (elapsed / 1e9)
            log.warning(
                "%s: on_book is slower than the stream (it takes %.0f us a book, the stream sends %.0f books/s, "
                "it fell more than %.0f ms behind); it now gets the newest book, skipped books are counted in `coalesced`",
                self._thread.name, self._cb_ewma_ns / 1e3, rate, self.max_lag_ns / 1e6)

    def _deliver(self, book: OrderBook) -> None:
        t0 = time.perf_counter_ns()
        self._call(self.on_book, book)
        dt = time.perf_counter_ns() - t0
        self.callback_ns += dt
        self._cb_ewma_ns += (dt - self._cb_ewma_ns) * 0.125
        self.delivered += 1

    def _call(self, fn, arg) -> None:
        try:
            fn(arg)
        except Exception:
            log.exception("%s: callback raised", self._thread.name)

    def stats(self) -> dict:
        return {"applied": self.applied, "delivered": self.delivered, "coalesced": self.coalesced,
                "dropped_trades": self.dropped_trades, "callback_ns": self.callback_ns}

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued, then stop."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)


class LiveConnector:
    backoff_max = 30.0  # the reconnect backoff's ceiling, seconds (a page may want less)

    def __init__(self, venue: str, rest_url: str | None = None, ws_url: str | None = None, depth: int = 0,
                 options: dict[str, str] | None = None):
        self.adapter = adapter(venue, **(options or {}))
        self.venue = venue
        self.rest_url = (rest_url or self.adapter.default_rest_url).rstrip("/")
        self.ws_url = ws_url or self.adapter.default_ws_url
        self.depth = depth or self.adapter.default_depth
        self._streams: list[tuple[threading.Thread, asyncio.AbstractEventLoop, asyncio.Event, FeedClient]] = []
        self._latest_book: Dispatcher | None = None
        self._dispatchers: dict[str, Dispatcher] = {}  # by thread name; kept after stop_stream for stats()
        self._lock = threading.Lock()
        self._health: dict[str, Health] = {}  # by venue symbol: status()
        self._last_health: Health | None = None

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
        return sorted(i.venue_symbol for i in self.adapter.parse_instruments(self._get(self.adapter.instruments_path)))

    def fetch_orderbook_sync(self, symbol: str) -> OrderBook:
        normalizer = self.adapter.normalizer(depth=self.depth)
        normalizer.feed(self._row("rest", self.adapter.instruments_path, None, self._get(self.adapter.instruments_path)))
        from lab.symbols import UnknownSymbol, resolve

        try:
            symbol = resolve(symbol, normalizer.books, f"venue {self.venue}")
        except UnknownSymbol as exc:
            raise VenueError(str(exc)) from None
        path = self.adapter.depth_path(symbol)
        normalizer.feed(self._row("rest", path, symbol, self._get(path)))
        book = normalizer.books[symbol]
        if not book.synced:
            events = "; ".join(e[4] for e in normalizer.out.events)
            raise VenueError(f"{self.venue}: snapshot of {symbol} did not verify: {events}")
        return book.copy()

    def _resolve(self, symbol: str) -> str:
        """The venue's spelling of `symbol` (venue or canonical spelling accepted)."""
        from lab.symbols import UnknownSymbol, resolve

        try:
            return resolve(symbol, self.list_symbols(), f"venue {self.venue}")
        except UnknownSymbol as exc:
            raise VenueError(str(exc)) from None

    def start_stream(self, symbol: str, on_book: Callable[[OrderBook], None], on_trade: Callable[[Trade], None] | None = None) -> None:
        """`on_book(book)` after every applied message while in sync. `book` is one
        `OrderBook` view reused between calls and valid during the call (as on replay):
        `book.copy()` keeps one."""
        symbol = self._resolve(symbol)
        dispatcher = Dispatcher(on_book, on_trade, name=f"lab-callbacks-{self.venue}-{symbol}")
        self._dispatchers[dispatcher._thread.name] = dispatcher
        ready = threading.Event()
        holder: dict = {}
        health = self._health[symbol] = self._last_health = Health()
        health.on_start()

        def runner() -> None:
            loop = asyncio.new_event_loop()
            stop = asyncio.Event()
            client_box: list[FeedClient] = []
            items: list = []  # this frame's delivered-message markers and trades, in order
            source: list = [None]  # the normalizer's book the callback's book mirrors
            normalizer = self.adapter.normalizer(request=lambda a, s: client_box[0].request(a, s), depth=self.depth)

            def book_cb(book: OrderBook) -> None:
                cols = normalizer.out.book.get(book.symbol)
                items.append((len(cols), book.timestamp, book.local_timestamp, book.seq))

            normalizer.on_book = book_cb
            normalizer.on_trade = items.append if on_trade is not None else None

            open_conns: set[int] = set()  # a make-before-break successor overlaps its predecessor

            def sink(row: RawRow) -> None:
                kind = row.kind
                if kind == "recv":
                    health.on_message()
                elif kind == "open":
                    open_conns.add(row.conn_id)
                    if len(open_conns) == 1:
                        health.on_open()
                elif kind == "close":
                    open_conns.discard(row.conn_id)
                    if not open_conns:
                        health.on_close(bytes(row.payload).decode(errors="replace"))
                try:
                    normalizer.feed(row)
                finally:
                    out = normalizer.out
                    for event in out.events:
                        if event[2] == "connect_failed":
                            health.on_connect_failed(event[4])
                        else:
                            health.on_event(event[2], event[4])
                    src = normalizer.books.get(symbol)
                    health.on_synced(src is not None and src.synced, sum(1 for i in items if type(i) is tuple))
                    if not out.is_empty():
                        normalizer.take()  # the live side writes nothing: rows go to the dispatcher only
                        src = normalizer.books.get(symbol)
                        view = None
                        if src is not None and src is not source[0]:
                            # first instrument, or a precision change (a new book in the
                            # normalizer): the callback's book follows, from the next rows on
                            source[0] = src
                            view = OrderBook(src.venue, src.symbol, src.price_precision, src.amount_precision, src.depth)
                            view.synced = False
                        rows = out.book.get(src.symbol) if src is not None else None
                        if rows is not None or items or view is not None:
                            dispatcher.push(rows, items.copy(), view)
                            self._latest_book = dispatcher
                    items.clear()

            client = FeedClient(self.adapter, [symbol], rest_url=self.rest_url, ws_url=self.ws_url, sink=sink, depth=self.depth,
                                backoff_max=self.backoff_max)
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

    def stats(self) -> dict:
        """Per stream: messages applied to the callback's book, books delivered, books
        coalesced (skipped because on_book was behind), trades dropped, time spent in on_book."""
        return {name.removeprefix("lab-callbacks-"): d.stats() for name, d in self._dispatchers.items()}

    def status(self, symbol: str | None = None) -> Status:
        """The stream's health (lab.recorder.health): LIVE only while books arrive and the book
        is in sync; RECONNECTING (with the attempt) while backing off; STALE after 2 s without a
        frame; OUT_OF_SYNC between a gap and its resync; counters. `symbol`: that stream's
        (default: the newest stream's); STOPPED when there is none."""
        health = self._health.get(symbol) if symbol is not None else self._last_health
        if health is None and symbol is not None:
            health = self._health.get(self._resolve(symbol))
        return (health or Health()).status()

    def latest_snapshot(self) -> OrderBook | None:
        """A copy of the newest book the callbacks were given (None before the first)."""
        d = self._latest_book
        if d is None or d.book is None or d.delivered == 0:
            return None
        return d.book.copy()

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
        for health in self._health.values():
            health.on_stop()


_EXTENDED: dict[str, type] = {}  # connector name -> the mixin over LiveConnector


def get_connector(name: str, **kwargs):
    """The live connector `name` (a venue, or an extra connector a venue declares, such as
    `kraken_auth`); UnknownVenue for a name no venue provides."""
    try:
        venue, mixin_ref = registry.connectors()[name]
    except KeyError:
        raise UnknownVenue(f"unknown connector {name!r} (known: {', '.join(list_connectors())})") from None
    if mixin_ref is None:
        return LiveConnector(venue, **kwargs)
    cls = _EXTENDED.get(name)
    if cls is None:
        mixin = registry.connector_mixin(mixin_ref)
        # the venue's mixin (its private API) over the public live connector
        cls = _EXTENDED[name] = type(mixin.__name__ + "Connector", (mixin, LiveConnector), {"__module__": mixin.__module__})
    return cls(**kwargs)


def list_connectors() -> list[str]:
    names = registry.venues()
    return names + [n for n in registry.connectors() if n not in names]
