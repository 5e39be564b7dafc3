"""`lab paper`: a live book from the venue, orders validated by the venue, filled by PaperBroker."""
from __future__ import annotations

import time
from decimal import Decimal

from lab.replay.paper import PaperBroker
from lab.venues import registry


def parse_order(text: str) -> tuple[str, str, str, str | None]:
    parts = text.split()
    if len(parts) not in (3, 4) or parts[0] not in ("buy", "sell") or parts[1] not in ("market", "limit"):
        raise ValueError(f"--order {text!r}: expected 'buy|sell market|limit VOLUME [PRICE]'")
    if parts[1] == "limit" and len(parts) != 4:
        raise ValueError(f"--order {text!r}: a limit order needs a price")
    return parts[0], parts[1], parts[2], parts[3] if len(parts) == 4 else None


def paper_connector(venue: str) -> str:
    """The connector that validates `venue`'s orders (ValueError, naming the venues that can)."""
    connector = registry.adapter_class(venue).paper_connector
    if connector is None:
        able = [v for v in registry.venues() if registry.adapter_class(v).paper_connector]
        raise ValueError(f"lab paper: venue {venue!r} has no order validation yet (venues with it: {', '.join(able)})")
    return connector


def run_paper(venue: str, symbol: str, *, keys=None, rest_url=None, ws_url=None, depth=0, orders=(), duration=10.0,
              root=None, ready_timeout: float = 20.0) -> dict:
    from lab import get_connector

    specs = [parse_order(o) for o in orders]
    connector = paper_connector(venue)
    conn = get_connector(connector, keys=keys, rest_url=rest_url, ws_url=ws_url, depth=depth)
    broker = PaperBroker(venue, validator=conn.validate_order, root=root)
    conn.start_stream(symbol, broker.on_book)
    try:
        deadline = time.monotonic() + ready_timeout
        while conn.latest_snapshot() is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no synced {symbol} book from {conn.ws_url} within {ready_timeout:.0f}s")
            time.sleep(0.02)
        placed = []
        for side, ordertype, volume, price in specs:
            placed.append(broker.submit(conn.latest_snapshot(), symbol, side, ordertype, volume, price))
        end = time.monotonic() + (duration or 0)
        while time.monotonic() < end and any(o.status == "open" for o in placed):
            time.sleep(0.05)
    finally:
        conn.stop_stream()
    paths = broker.write()
    return {
        "venue": venue, "symbol": symbol, "root": root, "session": broker.session, "files": paths,
        "orders": [
            {"id": o.id, "side": o.side, "ordertype": o.ordertype, "volume": str(o.decimal_volume()),
             "price": None if o.price is None else str(Decimal(o.price).scaleb(-o.price_precision)),
             "status": o.status, "filled": str(Decimal(o.filled).scaleb(-o.amount_precision)), "reason": o.reason,
             "validation": o.validation}
            for o in broker.orders
        ],
        "fills": [
            {"order_id": f.order_id, "price": str(Decimal(f.price).scaleb(-broker.orders[0].price_precision)),
             "amount": str(Decimal(f.amount).scaleb(-broker.orders[0].amount_precision))}
            for f in broker.fills
        ],
    }


def run_paper_strategy(strategy, venue: str, symbols: list[str], *, keys=None, rest_url=None, ws_url=None, depth=0,
                       duration=10.0, models=None, results=None, ready_timeout: float = 20.0):
    """The backtest's strategy class on live books: each order validated by the venue
    (validate=true), filled by the same broker and models as `lab backtest`. Returns the engine."""
    from lab import get_connector
    from lab.replay.backtest import Engine, Models, venue_fees

    connector = paper_connector(venue)
    conns = [get_connector(connector, keys=keys, rest_url=rest_url, ws_url=ws_url, depth=depth) for _ in symbols]
    engine = Engine(strategy, models or Models(), venue_fees, results=results, validator=conns[0].validate_order)
    for conn, symbol in zip(conns, symbols):
        conn.start_stream(symbol, engine.on_book, engine.on_trade)
    try:
        deadline = time.monotonic() + ready_timeout
        while any(c.latest_snapshot() is None for c in conns):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no synced book of {', '.join(symbols)} from {conns[0].ws_url} within {ready_timeout:.0f}s")
            time.sleep(0.02)
        time.sleep(duration or 0)
    finally:
        for c in conns:
            c.stop_stream()
    with engine.lock:
        engine.finish()
    return engine
