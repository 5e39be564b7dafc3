"""lab: market-data recorder and replay backtesting pipeline.

    from lab import get_connector, list_connectors, ReplayConnector
"""
from lab.recorder.connector import LiveConnector, get_connector, list_connectors
from lab.replay.connector import ReplayConnector
from lab.rust_book import OrderBook

__all__ = ["get_connector", "list_connectors", "ReplayConnector", "LiveConnector", "OrderBook"]
