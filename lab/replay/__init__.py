from .connector import ReplayConnector

__all__ = ["ReplayConnector"]
