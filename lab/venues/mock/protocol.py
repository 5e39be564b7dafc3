"""The mock venue wire protocol, version 1 (docs/ARCHITECTURE.md), pure Python reference.

Prices and amounts are integers (ticks and lots) at the instrument's precisions; on the wire
they are decimal strings padded to exactly that precision. ``render_*`` functions produce the
exact bytes the mock venue sends (compact JSON, keys in the documented order, via orjson).
``parse_message`` turns any frame or REST body back into a message object and raises
``ValueError`` (never anything else) on a malformed one. Parsed messages keep prices and
amounts as the wire strings: the parser does not know the instrument's precisions, so
converting to integers (and deciding what to do with too many decimals) is the caller's job,
via ``parse_fixed`` or the ``*_ticks`` helpers.

``render_message(parse_message(b)) == b`` for every frame ``b`` that a ``render_*`` function
produced.
"""
from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Union

import orjson

PROTOCOL_VERSION = 1

CHANNELS = ("book", "trades")
SIDES = ("buy", "sell")

_NUMBER_RE = re.compile(r"-?[0-9]+(?:\.[0-9]+)?", re.ASCII)
_POW10 = [10**i for i in range(40)]


def _pow10(n: int) -> int:
    return _POW10[n] if n < 40 else 10**n


# --------------------------------------------------------------------------- fixed point


def format_fixed(value: int, precision: int) -> str:
    """Integer mantissa -> decimal string with exactly ``precision`` decimals.

    ``format_fixed(10025, 2) == "100.25"``, ``format_fixed(5, 8) == "0.00000005"``,
    ``format_fixed(7, 0) == "7"``.
    """
    if type(value) is not int:
        if isinstance(value, bool) or not hasattr(value, "__index__"):
            raise TypeError(f"format_fixed needs an int, got {type(value).__name__}")
        value = value.__index__()
    if precision < 0:
        raise ValueError(f"negative precision: {precision}")
    if precision == 0:
        return str(value)
    if value < 0:
        q, r = divmod(-value, _pow10(precision))
        return f"-{q}.{r:0{precision}d}"
    q, r = divmod(value, _pow10(precision))
    return f"{q}.{r:0{precision}d}"


def parse_fixed(text: str, precision: int) -> int:
    """Decimal string -> integer mantissa at ``precision``, exactly.

    Fewer decimals than ``precision`` are fine (``"100.2"`` at 2 is 10020); extra decimals are
    accepted only when they are zeros (``"100.250"`` at 2 is 10025). A nonzero digit beyond
    ``precision`` raises ``ValueError``: such a value is never rounded. Only plain ASCII
    decimals are accepted (optional ``-``, digits, optional ``.`` followed by digits).
    """
    if not isinstance(text, str):
        raise ValueError(f"not a decimal string: {text!r}")
    if precision < 0:
        raise ValueError(f"negative precision: {precision}")
    if _NUMBER_RE.fullmatch(text) is None:
        raise ValueError(f"not a decimal string: {text!r}")
    negative = text.startswith("-")
    if negative:
        text = text[1:]
    whole, _, frac = text.partition(".")
    if len(frac) > precision:
        extra = frac[precision:]
        if extra.strip("0"):
            raise ValueError(
                f"{'-' if negative else ''}{text!r} has more than {precision} decimals"
            )
        frac = frac[:precision]
    value = int(whole) * _pow10(precision) + (int(frac) * _pow10(precision - len(frac)) if frac else 0)
    return -value if negative else value


def _level_text(levels: Iterable[tuple[int, int]], price_precision: int, amount_precision: int) -> str:
    return "".join(
        f"{format_fixed(p, price_precision)}:{format_fixed(a, amount_precision)};" for p, a in levels
    )


def _sorted_levels(levels, descending: bool) -> list[tuple[int, int]]:
    if isinstance(levels, Mapping):
        items = list(levels.items())
    else:
        items = [(p, a) for p, a in levels]
    items = [(p, a) for p, a in items if a != 0]
    items.sort(reverse=descending)
    return items


def mock_checksum(bids, asks, price_precision: int, amount_precision: int) -> int:
    """CRC-32 (zlib) of every ask ascending then every bid descending as ``price:amount;``.

    ``bids`` and ``asks`` are integer levels: a mapping ``{price_ticks: amount_lots}`` or an
    iterable of ``(price_ticks, amount_lots)`` pairs, in any order (they are sorted here).
    Levels with amount 0 are not part of a book and are skipped.
    """
    text = _level_text(_sorted_levels(asks, False), price_precision, amount_precision)
    text += _level_text(_sorted_levels(bids, True), price_precision, amount_precision)
    return zlib.crc32(text.encode("ascii"))


def levels_to_ints(
    levels: Iterable[Sequence[str]], price_precision: int, amount_precision: int
) -> list[tuple[int, int]]:
    """Wire levels ``[["100.25", "0.5"], ...]`` -> ``[(10025, 50000000), ...]`` (exact)."""
    return [(parse_fixed(p, price_precision), parse_fixed(a, amount_precision)) for p, a in levels]


def levels_to_wire(
    levels: Iterable[tuple[int, int]], price_precision: int, amount_precision: int
) -> list[list[str]]:
    """Integer levels -> wire levels (strings at the fixed precisions)."""
    return [[format_fixed(p, price_precision), format_fixed(a, amount_precision)] for p, a in levels]


# --------------------------------------------------------------------------- messages

Level = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Hello:
    timestamp: int


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Client -> server: ``{"op":"subscribe","symbols":[...],"channels":[...]}``."""

    symbols: tuple[str, ...]
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Subscribed:
    symbols: tuple[str, ...]
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Error:
    """WebSocket error: ``{"type":"error","message":...}``."""

    message: str


@dataclass(frozen=True, slots=True)
class Heartbeat:
    timestamp: int


class _Levels:
    """Integer views of a message's `bids` / `asks` wire levels."""

    __slots__ = ()

    def bid_ints(self, price_precision: int, amount_precision: int) -> list[tuple[int, int]]:
        return levels_to_ints(self.bids, price_precision, amount_precision)

    def ask_ints(self, price_precision: int, amount_precision: int) -> list[tuple[int, int]]:
        return levels_to_ints(self.asks, price_precision, amount_precision)


@dataclass(frozen=True, slots=True)
class BookDelta(_Levels):
    symbol: str
    seq: int
    timestamp: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    checksum: int


@dataclass(frozen=True, slots=True)
class Trade:
    symbol: str
    id: int
    timestamp: int
    side: str  # taker side: "buy" or "sell"
    price: str
    amount: str

    def price_ticks(self, price_precision: int) -> int:
        return parse_fixed(self.price, price_precision)

    def amount_lots(self, amount_precision: int) -> int:
        return parse_fixed(self.amount, amount_precision)


@dataclass(frozen=True, slots=True)
class Depth(_Levels):
    """REST ``/api/depth`` body (also ``/control/book``): the whole book at ``seq``."""

    symbol: str
    seq: int
    timestamp: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    checksum: int


@dataclass(frozen=True, slots=True)
class Instrument:
    symbol: str
    base: str
    quote: str
    price_precision: int
    amount_precision: int


@dataclass(frozen=True, slots=True)
class Instruments:
    """REST ``/api/instruments`` body."""

    instruments: tuple[Instrument, ...]


@dataclass(frozen=True, slots=True)
class RestError:
    """REST error body ``{"error": ...}`` (404 unknown symbol, 429 rate limit)."""

    error: str


Message = Union[
    Hello, Subscribe, Subscribed, Error, Heartbeat, BookDelta, Trade, Depth, Instruments, RestError
]


# --------------------------------------------------------------------------- render

_dumps = orjson.dumps


def _wire_levels(levels, pp: int, ap: int) -> list[list[str]]:
    return [[format_fixed(p, pp), format_fixed(a, ap)] for p, a in levels]


def render_hello(timestamp: int) -> bytes:
    return _dumps({"type": "hello", "timestamp": timestamp})


def render_subscribe(symbols: Sequence[str], channels: Sequence[str] = CHANNELS) -> bytes:
    return _dumps({"op": "subscribe", "symbols": list(symbols), "channels": list(channels)})


def render_subscribed(symbols: Sequence[str], channels: Sequence[str]) -> bytes:
    return _dumps({"type": "subscribed", "symbols": list(symbols), "channels": list(channels)})


def render_error(message: str) -> bytes:
    return _dumps({"type": "error", "message": message})


def render_heartbeat(timestamp: int) -> bytes:
    return _dumps({"type": "heartbeat", "timestamp": timestamp})


def render_book(
    symbol: str,
    seq: int,
    timestamp: int,
    bids: Iterable[tuple[int, int]],
    asks: Iterable[tuple[int, int]],
    checksum: int,
    price_precision: int,
    amount_precision: int,
) -> bytes:
    """A book delta from integer levels (amount 0 deletes the level)."""
    return _dumps(
        {
            "type": "book",
            "symbol": symbol,
            "seq": seq,
            "timestamp": timestamp,
            "bids": _wire_levels(bids, price_precision, amount_precision),
            "asks": _wire_levels(asks, price_precision, amount_precision),
            "checksum": checksum,
        }
    )


def render_trade(
    symbol: str,
    id: int,
    timestamp: int,
    side: str,
    price: int,
    amount: int,
    price_precision: int,
    amount_precision: int,
) -> bytes:
    return _dumps(
        {
            "type": "trade",
            "symbol": symbol,
            "id": id,
            "timestamp": timestamp,
            "side": side,
            "price": format_fixed(price, price_precision),
            "amount": format_fixed(amount, amount_precision),
        }
    )


def render_depth(
    symbol: str,
    seq: int,
    timestamp: int,
    bids: Iterable[tuple[int, int]],
    asks: Iterable[tuple[int, int]],
    checksum: int,
    price_precision: int,
    amount_precision: int,
) -> bytes:
    """REST depth body: bids best first (descending), asks ascending; levels as given."""
    return _dumps(
        {
            "symbol": symbol,
            "seq": seq,
            "timestamp": timestamp,
            "bids": _wire_levels(bids, price_precision, amount_precision),
            "asks": _wire_levels(asks, price_precision, amount_precision),
            "checksum": checksum,
        }
    )


def render_instruments(instruments: Iterable[Instrument]) -> bytes:
    return _dumps(
        {
            "instruments": [
                {
                    "symbol": i.symbol,
                    "base": i.base,
                    "quote": i.quote,
                    "price_precision": i.price_precision,
                    "amount_precision": i.amount_precision,
                }
                for i in instruments
            ]
        }
    )


def render_rest_error(message: str) -> bytes:
    return _dumps({"error": message})


def render_message(msg: Message) -> bytes:
    """Render a message object (wire strings kept as they are) to its exact bytes."""
    if isinstance(msg, BookDelta):
        return _dumps(
            {
                "type": "book",
                "symbol": msg.symbol,
                "seq": msg.seq,
                "timestamp": msg.timestamp,
                "bids": [list(lv) for lv in msg.bids],
                "asks": [list(lv) for lv in msg.asks],
                "checksum": msg.checksum,
            }
        )
    if isinstance(msg, Trade):
        return _dumps(
            {
                "type": "trade",
                "symbol": msg.symbol,
                "id": msg.id,
                "timestamp": msg.timestamp,
                "side": msg.side,
                "price": msg.price,
                "amount": msg.amount,
            }
        )
    if isinstance(msg, Heartbeat):
        return render_heartbeat(msg.timestamp)
    if isinstance(msg, Hello):
        return render_hello(msg.timestamp)
    if isinstance(msg, Subscribed):
        return render_subscribed(msg.symbols, msg.channels)
    if isinstance(msg, Subscribe):
        return render_subscribe(msg.symbols, msg.channels)
    if isinstance(msg, Error):
        return render_error(msg.message)
    if isinstance(msg, Depth):
        return _dumps(
            {
                "symbol": msg.symbol,
                "seq": msg.seq,
                "timestamp": msg.timestamp,
                "bids": [list(lv) for lv in msg.bids],
                "asks": [list(lv) for lv in msg.asks],
                "checksum": msg.checksum,
            }
        )
    if isinstance(msg, Instruments):
        return render_instruments(msg.instruments)
    if isinstance(msg, RestError):
        return render_rest_error(msg.error)
    raise TypeError(f"not a mock protocol message: {type(msg).__name__}")


# --------------------------------------------------------------------------- parse


class _Bad(ValueError):
    pass


def _fail(what: str) -> None:
    raise _Bad(what)


def _exact_keys(doc: dict, keys: tuple[str, ...], kind: str) -> None:
    if len(doc) != len(keys) or any(k not in doc for k in keys):
        missing = [k for k in keys if k not in doc]
        extra = [k for k in doc if k not in keys]
        _fail(f"{kind}: missing fields {missing}, unexpected fields {extra}")


def _int(doc: dict, key: str, kind: str, lo: int = 0, hi: int = 2**63 - 1) -> int:
    v = doc[key]
    if type(v) is not int:
        _fail(f"{kind}: {key} must be an integer, got {v!r}")
    if not lo <= v <= hi:
        _fail(f"{kind}: {key} out of range: {v}")
    return v


def _str(doc: dict, key: str, kind: str) -> str:
    v = doc[key]
    if type(v) is not str:
        _fail(f"{kind}: {key} must be a string, got {v!r}")
    return v


def _number(v, kind: str, what: str) -> str:
    if type(v) is not str or _NUMBER_RE.fullmatch(v) is None:
        _fail(f"{kind}: {what} must be a decimal string, got {v!r}")
    return v


def _levels(doc: dict, key: str, kind: str) -> tuple[Level, ...]:
    v = doc[key]
    if type(v) is not list:
        _fail(f"{kind}: {key} must be a list of [price, amount]")
    out = []
    for lv in v:
        if type(lv) is not list or len(lv) != 2:
            _fail(f"{kind}: {key} level must be [price, amount], got {lv!r}")
        out.append((_number(lv[0], kind, "price"), _number(lv[1], kind, "amount")))
    return tuple(out)


def _str_list(doc: dict, key: str, kind: str) -> tuple[str, ...]:
    v = doc[key]
    if type(v) is not list or any(type(s) is not str for s in v):
        _fail(f"{kind}: {key} must be a list of strings, got {v!r}")
    return tuple(v)


def _parse_book_like(doc: dict, kind: str, cls):
    return cls(
        symbol=_str(doc, "symbol", kind),
        seq=_int(doc, "seq", kind),
        timestamp=_int(doc, "timestamp", kind),
        bids=_levels(doc, "bids", kind),
        asks=_levels(doc, "asks", kind),
        checksum=_int(doc, "checksum", kind, 0, 0xFFFFFFFF),
    )


_BOOK_KEYS = ("type", "symbol", "seq", "timestamp", "bids", "asks", "checksum")
_DEPTH_KEYS = ("symbol", "seq", "timestamp", "bids", "asks", "checksum")
_TRADE_KEYS = ("type", "symbol", "id", "timestamp", "side", "price", "amount")
_INSTRUMENT_KEYS = ("symbol", "base", "quote", "price_precision", "amount_precision")


def _parse_doc(doc) -> Message:
    if type(doc) is not dict:
        _fail(f"frame is not a JSON object: {type(doc).__name__}")
    t = doc.get("type")
    if t is not None:
        if t == "book":
            _exact_keys(doc, _BOOK_KEYS, "book")
            return _parse_book_like(doc, "book", BookDelta)
        if t == "trade":
            _exact_keys(doc, _TRADE_KEYS, "trade")
            side = _str(doc, "side", "trade")
            if side not in SIDES:
                _fail(f"trade: side must be buy or sell, got {side!r}")
            return Trade(
                symbol=_str(doc, "symbol", "trade"),
                id=_int(doc, "id", "trade"),
                timestamp=_int(doc, "timestamp", "trade"),
                side=side,
                price=_number(doc["price"], "trade", "price"),
                amount=_number(doc["amount"], "trade", "amount"),
            )
        if t == "heartbeat":
            _exact_keys(doc, ("type", "timestamp"), "heartbeat")
            return Heartbeat(_int(doc, "timestamp", "heartbeat"))
        if t == "hello":
            _exact_keys(doc, ("type", "timestamp"), "hello")
            return Hello(_int(doc, "timestamp", "hello"))
        if t == "subscribed":
            _exact_keys(doc, ("type", "symbols", "channels"), "subscribed")
            return Subscribed(_str_list(doc, "symbols", "subscribed"), _str_list(doc, "channels", "subscribed"))
        if t == "error":
            _exact_keys(doc, ("type", "message"), "error")
            return Error(_str(doc, "message", "error"))
        _fail(f"unknown message type: {t!r}")
    if "op" in doc:
        if doc["op"] != "subscribe":
            _fail(f"unknown op: {doc['op']!r}")
        _exact_keys(doc, ("op", "symbols", "channels"), "subscribe")
        return Subscribe(_str_list(doc, "symbols", "subscribe"), _str_list(doc, "channels", "subscribe"))
    if "instruments" in doc:
        _exact_keys(doc, ("instruments",), "instruments")
        items = doc["instruments"]
        if type(items) is not list:
            _fail("instruments: instruments must be a list")
        out = []
        for it in items:
            if type(it) is not dict:
                _fail(f"instruments: entry must be an object, got {it!r}")
            _exact_keys(it, _INSTRUMENT_KEYS, "instrument")
            out.append(
                Instrument(
                    symbol=_str(it, "symbol", "instrument"),
                    base=_str(it, "base", "instrument"),
                    quote=_str(it, "quote", "instrument"),
                    price_precision=_int(it, "price_precision", "instrument", 0, 30),
                    amount_precision=_int(it, "amount_precision", "instrument", 0, 30),
                )
            )
        return Instruments(tuple(out))
    if "error" in doc:
        _exact_keys(doc, ("error",), "rest error")
        return RestError(_str(doc, "error", "rest error"))
    if "seq" in doc and "bids" in doc:
        _exact_keys(doc, _DEPTH_KEYS, "depth")
        return _parse_book_like(doc, "depth", Depth)
    _fail(f"unrecognised frame with fields {sorted(doc)}")
    raise AssertionError  # unreachable


def parse_message(data: bytes | bytearray | memoryview | str) -> Message:
    """Parse one WebSocket frame or REST body of the mock protocol.

    Raises ``ValueError`` with a message starting ``malformed mock frame:`` on invalid JSON,
    an unknown type, a missing/extra/ill-typed field or a non-decimal price/amount string.
    """
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"malformed mock frame: invalid JSON: {exc}") from None
    except TypeError as exc:
        raise ValueError(f"malformed mock frame: {exc}") from None
    try:
        return _parse_doc(doc)
    except _Bad as exc:
        raise ValueError(f"malformed mock frame: {exc}") from None
