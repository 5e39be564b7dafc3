"""lab: market-data recorder and replay backtesting pipeline.

    from lab import get_connector, list_connectors, ReplayConnector
"""
from lab.datasets import venue_rules as _venue_rules
from lab.venues import registry as _registry

# the dataset layer (recovery, `lab normalize`, `lab verify`) reads venue rules from the registry
_venue_rules.install(_registry.rules)

from lab.recorder.connector import LiveConnector, get_connector, list_connectors  # noqa: E402
from lab.replay.connector import ReplayConnector  # noqa: E402
from lab.rust_book import OrderBook  # noqa: E402

__all__ = ["get_connector", "list_connectors", "ReplayConnector", "LiveConnector", "OrderBook"]
