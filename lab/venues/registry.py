"""Which venues exist and where their client-side modules live.

A feed module provides: VENUE, DEFAULT_REST_URL, DEFAULT_WS_URL, INSTRUMENTS_PATH,
depth_path(symbol), subscribe_frames(symbols, depth), parse_instruments(payload) and Normalizer.
"""
from __future__ import annotations

import importlib
from types import ModuleType

FEEDS = {
    "mock": "lab.venues.mock.feed",
    "kraken": "lab.venues.kraken.feed",
}


class UnknownVenue(ValueError):
    pass


def venues() -> list[str]:
    return sorted(FEEDS)


def feed_module(venue: str) -> ModuleType:
    try:
        return importlib.import_module(FEEDS[venue])
    except KeyError:
        raise UnknownVenue(f"unknown venue {venue!r} (known: {', '.join(venues())})") from None
