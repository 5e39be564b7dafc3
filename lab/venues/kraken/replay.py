"""What `lab serve-replay` needs to know of Kraken's WebSocket (PROTOCOLS.md, Kraken v1 and v2):
which subscription a captured frame belongs to, how a subscribe request names them, and the
answers the replay server gives itself (pong, the venue's subscription errors).

Keys: v1 `(channelName, pair)` with the channel name as the frames carry it (`book-10`, `trade`;
a `{"name":"book","depth":25}` subscription is `book-25`), v2 `("v2:book" | "v2:trade", symbol)`.
`systemStatus` / `status`, heartbeats and errors without a pair are connection-level; captured
pongs answered the original client's pings and are not replayed (the server answers the new
client's own pings). The captured frames are sent as they are: the `channelID`s of the captured
`subscriptionStatus` acks and the book checksums stay consistent with the data frames.
"""
from __future__ import annotations

import orjson

from lab.venues.kraken.protocol import DEFAULT_DEPTH, E_UNKNOWN_PAIR, WS_PAIR_NOT_SUPPORTED


def _loads(payload: bytes):
    try:
        return orjson.loads(payload)
    except ValueError:
        return None


def _v1_channel(sub) -> str | None:
    if not isinstance(sub, dict) or not isinstance(sub.get("name"), str):
        return None
    if sub["name"] == "book":
        return f"book-{sub.get('depth') or DEFAULT_DEPTH}"
    return sub["name"]


def frame_keys(payload: bytes) -> frozenset | None:
    msg = _loads(payload)
    if isinstance(msg, list):  # v1 data: [channelID, ..., channelName, pair]
        if len(msg) >= 4 and isinstance(msg[-1], str) and isinstance(msg[-2], str):
            return frozenset({(msg[-2], msg[-1])})
        return frozenset()
    if not isinstance(msg, dict):
        return frozenset()
    event = msg.get("event")
    if event is not None:  # v1 event
        if event == "pong":
            return None
        pair = msg.get("pair")
        if event == "subscriptionStatus" and isinstance(pair, str):
            name = msg.get("channelName") if isinstance(msg.get("channelName"), str) else _v1_channel(msg.get("subscription"))
            if name is not None:
                return frozenset({(name, pair)})
        return frozenset()
    method = msg.get("method")
    if method == "pong":
        return None
    if method in ("subscribe", "unsubscribe"):  # v2 ack / error
        result = msg.get("result") if isinstance(msg.get("result"), dict) else {}
        channel, symbol = result.get("channel"), result.get("symbol") or msg.get("symbol")
        if isinstance(channel, str) and isinstance(symbol, str):
            return frozenset({("v2:" + channel, symbol)})
        return frozenset()
    channel = msg.get("channel")
    if channel in ("book", "trade") and isinstance(msg.get("data"), list):
        return frozenset(("v2:" + channel, d["symbol"]) for d in msg["data"]
                         if isinstance(d, dict) and isinstance(d.get("symbol"), str))
    return frozenset()


def request_keys(payload: bytes) -> tuple[str, frozenset] | None:
    msg = _loads(payload)
    if not isinstance(msg, dict):
        return None
    event = msg.get("event")
    if event in ("subscribe", "unsubscribe"):
        name = _v1_channel(msg.get("subscription"))
        pairs = [p for p in msg.get("pair") or [] if isinstance(p, str)]
        return event, frozenset((name, p) for p in pairs) if name else frozenset()
    method = msg.get("method")
    if method in ("subscribe", "unsubscribe"):
        params = msg.get("params") if isinstance(msg.get("params"), dict) else {}
        channel = params.get("channel")
        symbols = [s for s in params.get("symbol") or [] if isinstance(s, str)]
        return method, frozenset(("v2:" + channel, s) for s in symbols) if isinstance(channel, str) else frozenset()
    return None


def reply(payload: bytes, served: frozenset, subscribed: frozenset = frozenset()) -> list[bytes]:
    """A pong for a ping (v1 and v2); for a subscription the capture does not hold, Kraken's
    `subscriptionStatus` error (v1) / `success: false` answer (v2)."""
    msg = _loads(payload)
    if not isinstance(msg, dict):
        return [orjson.dumps({"errorMessage": "Malformed request", "event": "error"})]
    extra = {"reqid": msg["reqid"]} if "reqid" in msg else {}
    if msg.get("event") == "ping":
        return [orjson.dumps({"event": "pong", **extra})]
    if msg.get("method") == "ping":
        return [orjson.dumps({"method": "pong", "req_id": msg.get("req_id")})]
    req = request_keys(payload)
    if req is None or req[0] != "subscribe":
        return []
    pairs = {p for _, p in served}
    out = []
    for channel, pair in sorted(req[1] - served):
        why = f"{WS_PAIR_NOT_SUPPORTED} {pair}" if pair not in pairs else f"Subscription {channel} not in the capture"
        if channel.startswith("v2:"):
            out.append(orjson.dumps({"error": why, "method": "subscribe", "success": False, "symbol": pair,
                                     "req_id": msg.get("req_id")}))
        else:
            out.append(orjson.dumps({"errorMessage": why, "event": "subscriptionStatus", "pair": pair,
                                     "status": "error", "subscription": msg.get("subscription"), **extra}))
    return out


def heartbeat(ws_path: str) -> bytes:
    """v1's heartbeat, or v2's on a connection to `/v2`."""
    return b'{"channel":"heartbeat"}' if ws_path.rstrip("/").endswith("/v2") else b'{"event":"heartbeat"}'


def rest_missing(path: str, query: dict[str, str]) -> tuple[int, bytes]:
    """Kraken answers an unknown pair (or anything it cannot) with HTTP 200 and an error list."""
    return 200, orjson.dumps({"error": [E_UNKNOWN_PAIR if "pair" in query else f"EGeneral:Unknown method (not in the capture: {path})"]})
