"""lab: market-data recorder and replay backtesting pipeline."""
