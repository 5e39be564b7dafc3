"""The `lab view` page's logic, without Streamlit: what the page shows, computed from a connector.

- `ladder(book, n)`: the top `n` levels each side with exact price and amount strings (from the
  book's integer ticks at the instrument's precision: nothing goes through a float).
- `quote(book)`: best bid/ask, spread and mid as exact strings.
- `History`: a bounded series of best bid, best ask and mid over the last minutes (the chart).
- `badge(status)`: the status badge's text and colour (`lab.recorder.health`).
- `LiveSession`: one connector and its stream (toggle on/off), the latest trades, the history, a
  paper broker for connectors that validate orders.
- `ReplaySession`: a capture played through `ReplayConnector` with play/pause and speed.

Venue names come from the registry (`lab.list_connectors()`); nothing here names one.
"""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal

from lab.recorder.health import CONNECTING, LIVE, OUT_OF_SYNC, RECONNECTING, STALE, STOPPED, Status

REPLAY = "REPLAY"
PAUSED = "PAUSED"

BADGE_COLOURS = {
    LIVE: "#1a7f37",  # green
    STALE: "#bf8700",  # amber
    OUT_OF_SYNC: "#d1242f",  # red
    RECONNECTING: "#d1242f",
    CONNECTING: "#6e7781",  # grey
    STOPPED: "#6e7781",
    REPLAY: "#0969da",  # blue
    PAUSED: "#6e7781",
}


def fixed(ticks: int, precision: int) -> str:
    """`ticks` / 10**precision as an exact decimal string with `precision` digits."""
    sign = "-" if ticks < 0 else ""
    digits = str(abs(int(ticks)))
    if precision <= 0:
        return sign + digits + "0" * (-precision)
    digits = digits.rjust(precision + 1, "0")
    return f"{sign}{digits[:-precision]}.{digits[-precision:]}"


@dataclass(frozen=True)
class Level:
    price: str
    amount: str


@dataclass(frozen=True)
class Ladder:
    bids: list[Level]  # best first
    asks: list[Level]  # best first

    def rows(self) -> list[dict]:
        """One row per rank: bid amount, bid price, ask price, ask amount ('' where a side is short)."""
        out = []
        for i in range(max(len(self.bids), len(self.asks))):
            b = self.bids[i] if i < len(self.bids) else Level("", "")
            a = self.asks[i] if i < len(self.asks) else Level("", "")
            out.append({"bid amount": b.amount, "bid": b.price, "ask": a.price, "ask amount": a.amount})
        return out


def ladder(book, n: int = 10) -> Ladder:
    pp, ap = book.price_precision, book.amount_precision
    bids = [Level(fixed(p, pp), fixed(a, ap)) for p, a in book.bids_ticks()[:n]]
    asks = [Level(fixed(p, pp), fixed(a, ap)) for p, a in book.asks_ticks()[:n]]
    return Ladder(bids, asks)


@dataclass(frozen=True)
class Quote:
    bid: str | None
    ask: str | None
    spread: str | None
    mid: str | None
    crossed: bool = False


def quote(book) -> Quote:
    """Best bid/ask, spread (ask - bid) and mid ((bid + ask) / 2, one digit more), exact."""
    pp = book.price_precision
    bid, ask = book.top_ticks()
    b = None if bid is None else fixed(bid, pp)
    a = None if ask is None else fixed(ask, pp)
    if bid is None or ask is None:
        return Quote(b, a, None, None)
    mid = fixed((bid + ask) // 2, pp) if (bid + ask) % 2 == 0 else fixed((bid + ask) * 5, pp + 1)
    return Quote(b, a, fixed(ask - bid, pp), mid, ask <= bid)


class History:
    """Best bid, best ask and mid over the last `window` seconds, at most one point per
    `interval` seconds (so a fast stream cannot grow it), bounded by `maxlen` points."""

    def __init__(self, window: float = 300.0, interval: float = 0.1, maxlen: int = 5000):
        self.window = window
        self.interval = interval
        self._points: collections.deque = collections.deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self._last = float("-inf")

    def add(self, book, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        if now - self._last < self.interval:
            return False
        bid, ask = book.top_ticks()
        if bid is None or ask is None:
            return False
        scale = Decimal(1).scaleb(-book.price_precision)
        b, a = float(bid * scale), float(ask * scale)
        with self._lock:
            self._last = now
            self._points.append((now, b, a, (b + a) / 2))
            while self._points and self._points[0][0] < now - self.window:
                self._points.popleft()
        return True

    def __len__(self) -> int:
        return len(self._points)

    def points(self) -> list[tuple[float, float, float, float]]:
        with self._lock:
            return list(self._points)

    def columns(self) -> dict[str, list]:
        pts = self.points()
        return {"time": [p[0] for p in pts], "bid": [p[1] for p in pts], "ask": [p[2] for p in pts], "mid": [p[3] for p in pts]}

    def clear(self) -> None:
        with self._lock:
            self._points.clear()
            self._last = float("-inf")


@dataclass(frozen=True)
class Badge:
    text: str
    colour: str
    state: str


def badge(status: Status | None, *, replay: bool = False, paused: bool = False) -> Badge:
    if replay:
        state = PAUSED if paused else REPLAY
        return Badge(state, BADGE_COLOURS[state], state)
    if status is None:
        return Badge(STOPPED, BADGE_COLOURS[STOPPED], STOPPED)
    return Badge(status.label(), BADGE_COLOURS.get(status.state, "#6e7781"), status.state)


def counters(status: Status | None) -> dict[str, int]:
    if status is None:
        return {"messages": 0, "gaps": 0, "resyncs": 0, "reconnects": 0}
    return {"messages": status.messages, "gaps": status.gaps, "resyncs": status.resyncs, "reconnects": status.reconnects}


def trade_row(trade, price_precision: int | None = None) -> dict:
    return {"time": time.strftime("%H:%M:%S", time.gmtime(trade.timestamp / 1e9)) + f".{trade.timestamp // 1_000_000 % 1000:03d}",
            "side": trade.side, "price": str(trade.price), "amount": str(trade.amount), "id": str(trade.id)}


@dataclass
class LiveSession:
    """One connector (`lab.get_connector(name, ...)`), one symbol, one optional stream."""
    connector: object
    symbol: str
    max_trades: int = 30
    history: History = field(default_factory=History)
    snapshot: object | None = None  # the last "Fetch snapshot now" book (a copy)
    broker: object | None = None  # a PaperBroker for connectors that validate orders

    def __post_init__(self):
        self.trades: collections.deque = collections.deque(maxlen=self.max_trades)
        self.streaming = False
        self.error = ""

    @property
    def can_trade(self) -> bool:
        return hasattr(self.connector, "validate_order") and hasattr(self.connector, "get_account_balance")

    def _on_book(self, book) -> None:
        self.history.add(book)
        if self.broker is not None:
            self.broker.on_book(book)

    def _on_trade(self, trade) -> None:
        self.trades.appendleft(trade)

    def start(self) -> None:
        if not self.streaming:
            self.history.clear()
            self.connector.start_stream(self.symbol, self._on_book, self._on_trade)
            self.streaming = True

    def stop(self) -> None:
        if self.streaming:
            self.connector.stop_stream()
            self.streaming = False

    def fetch_snapshot(self):
        self.snapshot = self.connector.fetch_orderbook_sync(self.symbol)
        return self.snapshot

    def book(self):
        """What the page shows: the stream's newest book while streaming, else the last snapshot."""
        if self.streaming:
            return self.connector.latest_snapshot()
        return self.snapshot

    def status(self) -> Status | None:
        return self.connector.status() if hasattr(self.connector, "status") else None

    # -- paper orders (connectors that validate orders) -------------------------------------------
    def balance(self) -> dict:
        return self.connector.get_account_balance()

    def send_order(self, side: str, ordertype: str, volume: str, price: str | None = None) -> dict:
        """The venue validates the order (validate=true: nothing executes) and, when it accepts
        it, the local paper broker fills it against the current book. Returns
        `{"venue": <the venue's answer or error>, "ok": bool, "order": ..., "fills": [...]}`."""
        from lab.replay.paper import PaperBroker

        if not self.can_trade:
            raise ValueError("this connector does not validate orders")
        book = self.book()
        if book is None:
            raise ValueError("no book yet: fetch a snapshot or start streaming first")
        try:
            answer = self.connector.validate_order(self.symbol, side, ordertype, volume, price)
        except Exception as exc:  # the venue said no
            return {"ok": False, "venue": str(exc), "order": None, "fills": []}
        if self.broker is None:
            self.broker = PaperBroker(self.connector.venue)
        before = len(self.broker.fills)
        order = self.broker.submit(book, self.symbol, side, ordertype, volume, price)
        pp, ap = order.price_precision, order.amount_precision
        fills = [{"price": fixed(f.price, pp), "amount": fixed(f.amount, ap), "liquidity": getattr(f, "liquidity", "")}
                 for f in self.broker.fills[before:]]
        return {"ok": True, "venue": answer, "order": {"id": order.id, "status": order.status,
                                                      "filled": fixed(order.filled, ap), "reason": order.reason},
                "fills": fills}


class ReplaySession:
    """A capture played through `ReplayConnector` on the page, paced here (so speed can change
    and the replay can pause mid-run): the callback sleeps until the book's local time, scaled by
    `speed`, has come; while paused it waits."""

    def __init__(self, root: str, symbol: str | None = None, venue: str | None = None, speed: float = 1.0):
        from lab.replay.connector import ReplayConnector

        self.root, self.venue = root, venue
        probe = ReplayConnector(root, venue=venue)
        self.symbols = probe.list_symbols()
        self.symbol = symbol or (self.symbols[0] if self.symbols else None)
        self.speed = speed
        self.history = History(interval=0.0)
        self.trades: collections.deque = collections.deque(maxlen=30)
        self._play = threading.Event()
        self._play.set()
        self._stopped = threading.Event()
        self._anchor: tuple[int, float] | None = None  # (data ns, wall s) the pacing counts from
        self._book = None
        self._lock = threading.Lock()
        self.books = 0
        self.connector = None
        self.done = False

    @property
    def paused(self) -> bool:
        return not self._play.is_set()

    def set_speed(self, speed: float) -> None:
        if speed != self.speed:
            self.speed = speed
            self._anchor = None  # re-anchor at the next book

    def pause(self) -> None:
        self._play.clear()

    def play(self) -> None:
        self._anchor = None
        self._play.set()

    def _pace(self, local_ns: int) -> None:
        while not self._play.is_set() and not self._stopped.is_set():
            self._play.wait(0.1)
        if self._anchor is None:
            self._anchor = (local_ns, time.monotonic())
            return
        t_ns, t_wall = self._anchor
        delay = (local_ns - t_ns) / 1e9 / max(self.speed, 1e-9) - (time.monotonic() - t_wall)
        if delay > 0:
            self._stopped.wait(min(delay, 5.0))

    def _on_book(self, book) -> None:
        if self._stopped.is_set():
            return  # stop_stream ends the replay at the next event
        self._pace(book.local_timestamp)
        with self._lock:
            self._book = book.copy()
            self.books += 1
        self.history.add(book, now=book.local_timestamp / 1e9)

    def _on_trade(self, trade) -> None:
        self.trades.appendleft(trade)

    def start(self) -> None:
        from lab.replay.connector import ReplayConnector

        self.stop()
        self._stopped.clear()
        self.done = False
        self.connector = ReplayConnector(self.root, venue=self.venue, symbols=[self.symbol] if self.symbol else None)
        self.connector.start_stream(self.symbol, self._on_book, self._on_trade)

        def run():
            try:
                self.connector.run()
            finally:
                self.done = True

        threading.Thread(target=run, name="lab-view-replay", daemon=True).start()

    def stop(self) -> None:
        if self.connector is not None:
            self._stopped.set()
            self._play.set()
            self.connector.stop_stream()
            self.connector = None

    def book(self):
        with self._lock:
            return self._book
