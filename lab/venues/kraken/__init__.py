"""Kraken: public market data (REST + WebSocket v1), the simulator, and private REST auth."""
