"""What `lab serve-replay` needs to know of the mock venue's wire protocol (docs/ARCHITECTURE.md,
"The mock venue wire protocol"): which subscription a captured frame belongs to, how a subscribe
request names them, and the venue's own answers the replay server gives itself.

Subscription keys are `(channel, symbol)` with the channels of the subscribe request (`book`,
`trades`). `hello`, `heartbeat` and `error` frames are connection-level (every client gets them);
the captured `subscribed` ack belongs to every key it lists (a client subscribed to one of them
gets it as captured, listing the captured set).
"""
from __future__ import annotations

import time

import orjson

from lab.venues.mock import protocol as P

_CHANNEL_OF_TYPE = {"book": "book", "trade": "trades"}


def frame_keys(payload: bytes) -> frozenset | None:
    try:
        msg = orjson.loads(payload)
    except ValueError:
        return frozenset()
    if not isinstance(msg, dict):
        return frozenset()
    kind = msg.get("type")
    channel = _CHANNEL_OF_TYPE.get(kind)
    if channel is not None and isinstance(msg.get("symbol"), str):
        return frozenset({(channel, msg["symbol"])})
    if kind == "subscribed":
        symbols, channels = msg.get("symbols"), msg.get("channels")
        if isinstance(symbols, list) and isinstance(channels, list):
            return frozenset((c, s) for c in channels for s in symbols if isinstance(c, str) and isinstance(s, str))
    return frozenset()


def _request(payload: bytes) -> dict | None:
    try:
        msg = orjson.loads(payload)
    except ValueError:
        return None
    return msg if isinstance(msg, dict) else None


def request_keys(payload: bytes) -> tuple[str, frozenset] | None:
    msg = _request(payload)
    if msg is None or msg.get("op") not in ("subscribe", "unsubscribe"):
        return None
    symbols = [s for s in msg.get("symbols") or [] if isinstance(s, str)]
    channels = [c for c in msg.get("channels") or ["book", "trades"] if isinstance(c, str)]
    return msg["op"], frozenset((c, s) for c in channels for s in symbols)


def reply(payload: bytes, served: frozenset, subscribed: frozenset = frozenset()) -> list[bytes]:
    """The venue's `error` frame for a symbol or channel the capture does not hold (the real venue
    then subscribes to nothing; the replay server sends the captured frames of the keys it has)."""
    req = request_keys(payload)
    if req is None:
        return [] if _request(payload) is not None else [P.render_error("invalid request: not JSON")]
    symbols = {s for _, s in served}
    channels = {c for c, _ in served}
    out = []
    for channel, symbol in sorted(req[1] - served):
        what = f"unknown symbol: {symbol}" if symbol not in symbols else f"unknown channel: {channel}"
        if channel in channels and symbol in symbols:
            what = f"not in the capture: {channel} {symbol}"
        out.append(P.render_error(what))
    return list(dict.fromkeys(out))


def heartbeat(ws_path: str = "/ws") -> bytes:
    return P.render_heartbeat(time.time_ns())


def rest_missing(path: str, query: dict[str, str]) -> tuple[int, bytes]:
    if "symbol" in query:
        return 404, P.render_rest_error(f"unknown symbol: {query['symbol']}")
    return 404, P.render_rest_error(f"not in the capture: {path}")
