"""Kraken WebSocket v2 (`lab record --venue kraken --api v2`): the v1 feed module with v2's URL,
subscribe / resubscribe / ping frames. The normalizer is the same class (it reads v1 and v2
frames); symbols are subscribed under their v2 names (`XBT/USD` -> `BTC/USD`) while the capture
keeps the AssetPairs wsname as the venue symbol, so v1 and v2 captures share partitions.

Subscriptions (PROTOCOLS.md, Kraken WebSocket v2): one `book` subscription for every pair with
`snapshot: true` (the snapshot carries a checksum), one `trade` subscription without a snapshot.
A pair is resynced on the open connection by `unsubscribe` + `subscribe` of its book.
"""
from __future__ import annotations

import orjson

from lab.venues.kraken.feed import (  # noqa: F401  (the feed module interface)
    DEFAULT_DEPTH,
    DEFAULT_REST_URL,
    DEPTH_PATH,
    INSTRUMENTS_PATH,
    PING_IDLE,
    PING_TIMEOUT,
    VENUE,
    KrakenNormalizer,
    Normalizer,
    _check_depth,
    depth_path,
    for_api,
    parse_instruments,
    resolve_symbols,
    retry_after,
)
from lab.venues.kraken.protocol import v2_symbol

API = "v2"
DEFAULT_WS_URL = "wss://ws.kraken.com/v2"


def subscribe_frames(symbols: list[str], depth: int = 0) -> list[bytes]:
    depth = _check_depth(depth)
    names = [v2_symbol(s) for s in symbols]
    return [
        orjson.dumps({"method": "subscribe", "params": {"channel": "book", "symbol": names, "depth": depth, "snapshot": True}, "req_id": 1}),
        orjson.dumps({"method": "subscribe", "params": {"channel": "trade", "symbol": names, "snapshot": False}, "req_id": 2}),
    ]


def resubscribe_frames(symbol: str, depth: int = 0) -> list[bytes]:
    depth = _check_depth(depth)
    name = [v2_symbol(symbol)]
    return [
        orjson.dumps({"method": "unsubscribe", "params": {"channel": "book", "symbol": name, "depth": depth}}),
        orjson.dumps({"method": "subscribe", "params": {"channel": "book", "symbol": name, "depth": depth, "snapshot": True}}),
    ]


def ping_frame(reqid: int) -> bytes:
    return orjson.dumps({"method": "ping", "req_id": reqid})
