"""Kraken's adapters (lab.venues.contract): WebSocket v1 (`KrakenV1`) and v2 (`KrakenV2`, which
extends v1 with v2's URL and subscribe / resubscribe / ping frames).

Both feed one normalizer (`feed.KrakenNormalizer` reads v1 and v2 frames). v2 subscribes symbols
under their v2 names (`XBT/USD` -> `BTC/USD`) while the capture keeps the AssetPairs wsname as the
venue symbol, so v1 and v2 captures share partitions.
"""
from __future__ import annotations

import bisect

import orjson
import pyarrow.parquet as pq

from lab.core.errors import VenueError
from lab.rust_book import kraken_wire_checksum
from lab.venues.contract import Option, Venue
from lab.venues.kraken import feed
from lab.venues.kraken.protocol import DEFAULT_DEPTH, E_RATE_LIMIT, PAIRS, VALID_DEPTHS, v1_symbol, v2_symbol

APIS = ("v1", "v2")


class KrakenV1(Venue):
    name = feed.VENUE
    api = "v1"
    default_rest_url = feed.DEFAULT_REST_URL
    default_ws_url = feed.DEFAULT_WS_URL
    simulator = "lab.venues.kraken.sim:KrakenVenue"
    connectors = {"kraken_auth": "lab.venues.kraken.auth:KrakenAuth"}
    paper_connector = "kraken_auth"
    # Kraken Pro spot, lowest volume tier (0.25% maker, 0.40% taker); `lab backtest --fees` overrides
    fees = ("0.0025", "0.0040")
    options = (Option("api", "WebSocket API version", APIS, "v1"),)
    instruments_path = feed.INSTRUMENTS_PATH
    default_depth = DEFAULT_DEPTH
    # App-level ping after this many seconds without any frame from the venue (its heartbeats
    # count: they come every second while subscribed); the connection is closed (and re-opened
    # with backoff) when nothing at all arrives for `ping_timeout` more seconds.
    ping_idle = 5.0
    ping_timeout = 10.0
    # heartbeats every second while subscribed; 10 s of silence (a ping at 5 s unanswered too)
    # is a stall: an event and a reconnect
    stall_timeout = 10.0
    # v1 has no sequence: `last_seq` in book is a per-pair counter of this connection, not
    # comparable across sessions (replay reads this when several sessions recorded one pair)
    sequence_scope = "counter"

    @classmethod
    def with_options(cls, options: dict[str, str]) -> Venue:
        cls.check_options(options)
        api = options.get("api", "v1") or "v1"
        return {"v1": KrakenV1, "v2": KrakenV2}[api](**options)

    # -- REST ----------------------------------------------------------------------------------
    def depth_path(self, symbol: str) -> str:
        return feed.depth_path(symbol)

    def parse_instruments(self, payload: bytes):
        return feed.parse_instruments(payload)

    def retry_after(self, status: int, body: bytes) -> float | None:
        """Kraken says `EAPI:Rate limit exceeded` in a 200 body (and 429 on some gateways)."""
        if status == 429 or (status == 200 and E_RATE_LIMIT.encode() in body[:200]):
            return 1.0
        return None

    def resolve_symbols(self, symbols: list[str], instruments) -> list[str]:
        """User symbols -> AssetPairs wsnames: `BTC/USD` (v2 style) is accepted for `XBT/USD`."""
        known = {i.venue_symbol for i in instruments}
        out = [s if s in known or v1_symbol(s) not in known else v1_symbol(s) for s in symbols]
        return list(dict.fromkeys(out))  # XBT/USD and BTC/USD are one pair

    # -- WebSocket -----------------------------------------------------------------------------
    def check_depth(self, depth: int) -> int:
        depth = depth or DEFAULT_DEPTH
        if depth not in VALID_DEPTHS:
            raise VenueError(f"{self.name}: book depth {depth} not supported (valid: {', '.join(map(str, VALID_DEPTHS))})")
        return depth

    def subscribe_frames(self, symbols: list[str], depth: int = 0) -> list[bytes]:
        """One `book` subscription for every pair (Kraken expects several pairs on one
        connection), then one `trade` subscription."""
        depth = self.check_depth(depth)
        return [
            orjson.dumps({"event": "subscribe", "pair": list(symbols), "subscription": {"name": "book", "depth": depth}}),
            orjson.dumps({"event": "subscribe", "pair": list(symbols), "subscription": {"name": "trade"}}),
        ]

    def resubscribe_frames(self, symbol: str, depth: int = 0) -> list[bytes]:
        """Resync one pair's book on the open connection: unsubscribe, subscribe (fresh snapshot)."""
        depth = self.check_depth(depth)
        sub = {"name": "book", "depth": depth}
        return [
            orjson.dumps({"event": "unsubscribe", "pair": [symbol], "subscription": sub}),
            orjson.dumps({"event": "subscribe", "pair": [symbol], "subscription": sub}),
        ]

    def ping_frame(self, reqid: int) -> bytes:
        return orjson.dumps({"event": "ping", "reqid": reqid})

    # -- normalizing and verifying ---------------------------------------------------------------
    def normalizer(self, **kwargs):
        return feed.KrakenNormalizer(**kwargs)

    def trade_ids_sequential(self, symbol: str, ids: list[str]) -> bool:
        """v2 `trade_id` is sequential (per pair); v1 ids are lab's 16-hex-digit hashes
        (`feed.trade_id`), never sequential."""
        return all(len(i) < 16 and i.isdigit() for i in ids)

    def checksum_function(self, book, files: list[str]):
        """Kraken computes its CRC over the wire strings: when the venue pads them beyond the
        pair's precisions (real XBT/USD prices carry 5 decimals, pair_decimals 1), the stored
        checksum is the venue's and the book file's `lab.wire_price_decimals` /
        `lab.wire_amount_decimals` say which decimals to recompute it with (per file: rows map
        to their file)."""
        ends, wire = [], []
        total = 0
        for f in files:
            md = pq.ParquetFile(f).metadata
            meta = md.metadata or {}
            total += md.num_rows
            ends.append(total)
            pd_, ad_ = meta.get(b"lab.wire_price_decimals"), meta.get(b"lab.wire_amount_decimals")
            wire.append((int(pd_), int(ad_)) if pd_ is not None and ad_ is not None else None)
        if not any(wire):
            return lambda row: book.kraken_checksum()

        def checksum(row: int) -> int:
            w = wire[min(bisect.bisect_right(ends, row), len(wire) - 1)]
            if w is None or w == (book.price_precision, book.amount_precision):
                return book.kraken_checksum()
            return kraken_wire_checksum(book, w[0], w[1])

        return checksum

    # -- wire-level replay (lab/venues/kraken/replay.py; v1 and v2 frames) --------------------------
    replay_protocol = "lab.venues.kraken.replay"

    def describe(self) -> dict:
        return {"apis": list(APIS), "symbols": "fetched from AssetPairs at record time (default: every pair)",
                "simulator_symbols": [p.wsname for p in PAIRS]}


class KrakenV2(KrakenV1):
    """WebSocket v2: one `book` subscription for every pair with `snapshot: true` (the snapshot
    carries a checksum), one `trade` subscription without a snapshot (PROTOCOLS.md, Kraken
    WebSocket v2). A pair is resynced on the open connection by `unsubscribe` + `subscribe`."""

    api = "v2"
    default_ws_url = "wss://ws.kraken.com/v2"

    def subscribe_frames(self, symbols: list[str], depth: int = 0) -> list[bytes]:
        depth = self.check_depth(depth)
        names = [v2_symbol(s) for s in symbols]
        return [
            orjson.dumps({"method": "subscribe", "params": {"channel": "book", "symbol": names, "depth": depth, "snapshot": True}, "req_id": 1}),
            orjson.dumps({"method": "subscribe", "params": {"channel": "trade", "symbol": names, "snapshot": False}, "req_id": 2}),
        ]

    def resubscribe_frames(self, symbol: str, depth: int = 0) -> list[bytes]:
        depth = self.check_depth(depth)
        name = [v2_symbol(symbol)]
        return [
            orjson.dumps({"method": "unsubscribe", "params": {"channel": "book", "symbol": name, "depth": depth}}),
            orjson.dumps({"method": "subscribe", "params": {"channel": "book", "symbol": name, "depth": depth, "snapshot": True}}),
        ]

    def ping_frame(self, reqid: int) -> bytes:
        return orjson.dumps({"method": "ping", "req_id": reqid})
