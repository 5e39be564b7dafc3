"""The one registry of venues: name -> adapter class (lab.venues.contract.Venue).

Adding a venue is one line here (docs/ARCHITECTURE.md, "Add a venue"). The recorder, the live
connectors, the simulators, `lab verify`, replay and the CLI all find a venue through this module.
"""
from __future__ import annotations

import functools
import importlib

from lab.core.errors import UnknownVenue
from lab.venues.contract import Venue

ADAPTERS = {
    "mock": "lab.venues.mock.adapter:MockVenue",
    "kraken": "lab.venues.kraken.adapter:KrakenV1",
    "binance": "lab.venues.binance.adapter:BinanceSpot",
}


def _load(ref: str):
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def venues() -> list[str]:
    return sorted(ADAPTERS)


def adapter_class(venue: str) -> type[Venue]:
    try:
        ref = ADAPTERS[venue]
    except (KeyError, TypeError):
        raise UnknownVenue(f"unknown venue {venue!r} (known: {', '.join(venues())})") from None
    return _load(ref)


def adapter(venue: str, **options: str) -> Venue:
    """The adapter serving `venue` with these options (`api="v2"`, or any `--opt KEY=VALUE`)."""
    return adapter_class(venue).with_options({k: v for k, v in options.items() if v is not None})


@functools.lru_cache(maxsize=None)
def rules(venue: str) -> Venue:
    """The default adapter of `venue` (what the dataset layer reads: lab.datasets.venue_rules)."""
    return adapter_class(venue)()


def connectors() -> dict[str, tuple[str, str | None]]:
    """Connector name -> (venue, "module:Mixin" or None): every venue, plus the extra connectors
    venues declare (`kraken_auth`)."""
    out: dict[str, tuple[str, str | None]] = {v: (v, None) for v in venues()}
    for v in venues():
        for name, ref in adapter_class(v).connectors.items():
            out[name] = (v, ref)
    return out


def connector_mixin(ref: str):
    return _load(ref)


def simulator_class(venue: str):
    """The simulator plugin class of `venue` (UnknownVenue when it has none)."""
    ref = adapter_class(venue).simulator
    if ref is None:
        raise UnknownVenue(f"no simulator for venue {venue!r} (known: {', '.join(simulated())})")
    return _load(ref)


def simulated() -> list[str]:
    return [v for v in venues() if adapter_class(v).simulator]


def embedded_venue() -> str:
    """The venue `lab record` / `lab simulate` use with no URL and no venue: the first venue
    whose simulator is embedded."""
    return next(v for v in venues() if adapter_class(v).embedded)


def paper_venue() -> str | None:
    """The default venue of `lab paper`: the first that validates orders."""
    return next((v for v in venues() if adapter_class(v).paper_connector), None)
