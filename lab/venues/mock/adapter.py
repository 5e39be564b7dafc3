"""The mock venue's adapter (lab.venues.contract): endpoints, subscription, sync rules."""
from __future__ import annotations

from lab.venues.contract import Venue
from lab.venues.mock import feed


class MockVenue(Venue):
    name = feed.VENUE
    default_rest_url = feed.DEFAULT_REST_URL
    default_ws_url = feed.DEFAULT_WS_URL
    embedded = True
    simulator = "lab.venues.mock.sim:MockVenue"
    instruments_path = feed.INSTRUMENTS_PATH
    stall_timeout = feed.STALL_TIMEOUT
    sequence_scope = "symbol"
    fees = ("0.0010", "0.0020")  # a made-up schedule of the made-up venue (maker, taker), so fees show in backtests

    def depth_path(self, symbol: str) -> str:
        return feed.depth_path(symbol)

    def subscribe_frames(self, symbols: list[str], depth: int = 0) -> list[bytes]:
        return feed.subscribe_frames(symbols, depth)

    def parse_instruments(self, payload: bytes):
        return feed.parse_instruments(payload)

    def normalizer(self, **kwargs):
        return feed.MockNormalizer(**kwargs)

    def trade_ids_sequential(self, symbol: str, ids: list[str]) -> bool:
        return True  # the mock's ids count up by one per symbol

    def checksum_function(self, book, files):
        return lambda row: book.mock_checksum()

    def describe(self) -> dict:
        return feed.describe()

    # -- wire-level replay (lab/venues/mock/replay.py) ---------------------------------------------
    replay_protocol = "lab.venues.mock.replay"
