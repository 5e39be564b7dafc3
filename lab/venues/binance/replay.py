"""What `lab serve-replay` needs to know of Binance spot's WebSocket (docs/BINANCE.md,
PROTOCOLS.md section 4): which stream a captured frame belongs to, which streams a client names
(in the URL at connect time, `/ws/<stream>` and `/stream?streams=a/b`, and in `SUBSCRIBE`
frames), and the answers the replay server gives itself.

Keys: `("depth", "BTCUSDT")` for `btcusdt@depth` / `btcusdt@depth@100ms`, `("trade", "BTCUSDT")`
for `btcusdt@trade` (the simulator's keys; the update speed is not told apart: a capture holds
the one it recorded). Combined frames `{"stream": ..., "data": ...}` are keyed by their stream,
raw frames by `e` and `s`. `{"result": ..., "id": N}` answers, `serverShutdown` and errors are
connection-level. Server pings are WebSocket control frames, not captured: the replay server's
aiohttp answers the client's own pings, and there is no text heartbeat.
"""
from __future__ import annotations

import orjson

from lab.venues.binance import protocol as P

_KINDS = {"depth": "depth", "depth@100ms": "depth", "depth@1000ms": "depth", "trade": "trade"}
_EVENTS = {"depthUpdate": "depth", "trade": "trade"}
_STREAM_NAMES = {"depth": "depth@100ms", "trade": "trade"}  # a key's stream, as the recorder names it


def stream_key(name: str) -> tuple[str, str] | None:
    """`btcusdt@depth@100ms` -> ("depth", "BTCUSDT"); None for a stream lab does not record."""
    if not isinstance(name, str):
        return None
    sym, _, kind = name.partition("@")
    kind = _KINDS.get(kind)
    if not sym or kind is None:
        return None
    return (kind, sym.upper())


def _loads(payload: bytes):
    try:
        return orjson.loads(payload)
    except ValueError:
        return None


def frame_keys(payload: bytes) -> frozenset | None:
    msg = _loads(payload)
    if not isinstance(msg, dict):
        return frozenset()
    if "stream" in msg and "data" in msg:
        key = stream_key(msg["stream"])
        return frozenset({key}) if key else frozenset()
    kind = _EVENTS.get(msg.get("e"))
    if kind is not None and isinstance(msg.get("s"), str):
        return frozenset({(kind, msg["s"])})
    return frozenset()


def request_keys(payload: bytes) -> tuple[str, frozenset] | None:
    msg = _loads(payload)
    if not isinstance(msg, dict) or msg.get("method") not in ("SUBSCRIBE", "UNSUBSCRIBE"):
        return None
    params = msg.get("params") if isinstance(msg.get("params"), list) else []
    keys = frozenset(k for k in map(stream_key, params) if k is not None)
    return msg["method"].lower(), keys


def url_keys(path: str, query: dict[str, str]) -> frozenset:
    """The streams a connection URL names: `/ws/<stream>[/<stream>...]`, `/stream?streams=a/b`."""
    names: list[str] = []
    if path.startswith("/stream"):
        names = [n for n in (query.get("streams") or "").split("/") if n]
    elif path.startswith("/ws/"):
        names = [n for n in path[4:].split("/") if n]
    return frozenset(k for k in map(stream_key, names) if k is not None)


def reply(payload: bytes, served: frozenset, subscribed: frozenset = frozenset()) -> list[bytes]:
    """Binance's answers to what the capture cannot answer: invalid JSON, an unknown method, a
    SUBSCRIBE naming a symbol the capture does not hold (the simulator's `Invalid request:
    unknown stream`; the streams it does hold are played with their captured ack), and
    LIST_SUBSCRIPTIONS (`{"result":[streams],"id":N}`, the connection's own)."""
    msg = _loads(payload)
    if not isinstance(msg, dict) or "method" not in msg:
        return [P.render_error(3, "Invalid JSON: expected {\"method\":...,\"params\":[...],\"id\":N}")]
    method, req_id = msg.get("method"), msg.get("id")
    if method == "LIST_SUBSCRIPTIONS":  # this connection's streams, as Binance names them
        names = sorted(f"{k[1].lower()}@{_STREAM_NAMES[k[0]]}" for k in subscribed if isinstance(k, tuple) and k[0] in _STREAM_NAMES)
        return [orjson.dumps({"result": names, "id": req_id})]
    if method not in ("SUBSCRIBE", "UNSUBSCRIBE"):
        return [orjson.dumps({"error": {"code": 1, "msg": f"Unknown method {str(method)[:40]}"}, "id": req_id})]
    params = msg.get("params") if isinstance(msg.get("params"), list) else None
    if params is None or any(stream_key(p) is None for p in params):
        return [orjson.dumps({"error": {"code": 2, "msg": "Invalid request: unknown stream"}, "id": req_id})]
    symbols = {k[-1] for k in served}
    if method == "SUBSCRIBE" and any(stream_key(p)[1] not in symbols for p in params):
        return [orjson.dumps({"error": {"code": 2, "msg": "Invalid request: stream not in the capture"}, "id": req_id})]
    return []


def rotate_notice() -> bytes:
    """`serverShutdown`: the recorder opens the successor and hands its books over (a captured
    make-before-break rotation replayed as one)."""
    import time

    return orjson.dumps({"e": "serverShutdown", "E": time.time_ns() // 1_000_000})


def rest_missing(path: str, query: dict[str, str]) -> tuple[int, bytes]:
    """Binance answers an unknown symbol with HTTP 400 `-1121 Invalid symbol.`"""
    if "symbol" in query or "symbols" in query:
        return 400, P.render_error(-1121, "Invalid symbol.")
    return 404, P.render_error(-1, f"not in the capture: {path}")
