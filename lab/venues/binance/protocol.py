"""Binance spot wire protocol as data: exchangeInfo, depth snapshots, `depthUpdate` diffs,
`trade` events, combined-stream framing, SUBSCRIBE frames (PROTOCOLS.md section 4).

Binance pads every price and quantity to 8 decimals (`"61685.99000000"`): precisions come from
the `PRICE_FILTER` `tickSize` and `LOT_SIZE` `stepSize` filters, never from the strings' width.
"""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

import orjson

from lab.core.model import Instrument, canonical_symbol, wire_instrument
from lab.rust_book import parse_fixed

VENUE = "binance"
DEFAULT_REST_URL = "https://api.binance.com"
DEFAULT_WS_URL = "wss://stream.binance.com:9443/ws"
INSTRUMENTS_PATH = "/api/v3/exchangeInfo"
DEPTH_PATH = "/api/v3/depth"
SNAPSHOT_LIMIT = 5000
MAX_STREAMS = 1024
MAX_CONNECTION_AGE = 24 * 3600.0
# REQUEST_WEIGHT per minute and IP (exchangeInfo's rateLimits: 6000); the recorder spends 90% of
# it on snapshots, leaving room for exchangeInfo and whatever else shares the IP
WEIGHT_LIMIT = 6000
WEIGHT_PER_MINUTE = WEIGHT_LIMIT * 9 // 10


def depth_weight(limit: int) -> int:
    """Request weight of `GET /api/v3/depth?limit=N`."""
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


# -- symbols ---------------------------------------------------------------------------------------
def venue_symbol(symbol: str) -> str:
    """`btc-usdt`, `BTC/USDT`, `btcusdt` -> `BTCUSDT`."""
    return symbol.upper().replace("-", "").replace("/", "").replace("_", "")


def canonical(venue_sym: str, base: str = "", quote: str = "") -> str:
    """`BTCUSDT` -> `BTC-USDT` when base/quote are known, else the venue form."""
    if base and quote and venue_sym == f"{base}{quote}":
        return f"{base}-{quote}"
    return canonical_symbol(venue_sym)


def stream_names(symbol: str) -> list[str]:
    s = venue_symbol(symbol).lower()
    return [f"{s}@depth@100ms", f"{s}@trade"]


def is_base_url(ws_url: str) -> bool:
    """`ws://host:port` (or with a bare `/`): a URL that names no endpoint."""
    from urllib.parse import urlsplit

    parts = urlsplit(ws_url)
    return parts.path in ("", "/") and not parts.query


def connection_url(ws_url: str, symbols: list[str]) -> str:
    """The URL a connection for `symbols` opens: a base URL gets the combined-stream endpoint
    naming the symbols' streams; any other URL is used as given."""
    if not is_base_url(ws_url):
        return ws_url
    if not symbols:
        return ws_url.rstrip("/") + "/ws"
    streams = "/".join(name for symbol in symbols for name in stream_names(symbol))
    return f"{ws_url.rstrip('/')}/stream?streams={streams}"


def subscribe_frame(symbols: list[str], req_id: int = 1, method: str = "SUBSCRIBE") -> bytes:
    params = [n for s in symbols for n in stream_names(s)]
    return orjson.dumps({"method": method, "params": params, "id": req_id})


# -- exchangeInfo -----------------------------------------------------------------------------------
def decimals_of_step(step) -> int:
    """`"0.01000000"` -> 2, `"1.00000000"` -> 0; ValueError unless a positive power-of-ten step."""
    if not isinstance(step, str):
        raise ValueError(f"step {str(step)[:40]!r} is not a string")
    try:
        d = Decimal(step)
    except InvalidOperation:
        raise ValueError(f"step {step[:40]!r} is not a number") from None
    if not d.is_finite() or d <= 0:
        raise ValueError(f"step {step[:40]!r} is not positive")
    d = d.normalize()
    sign, digits, exp = d.as_tuple()
    if digits != (1,):
        raise ValueError(f"step {step[:40]!r} is not a power of ten")
    if -exp > 18:
        raise ValueError(f"step {step[:40]!r} out of range")
    return max(0, -exp)  # a tick of 10 still prices in whole units


def instrument(entry) -> Instrument:
    if not isinstance(entry, dict) or not isinstance(entry.get("symbol"), str) or not entry["symbol"]:
        raise ValueError(f"exchangeInfo entry without a symbol: {str(entry)[:80]}")
    filters = entry.get("filters")
    if not isinstance(filters, list):
        raise ValueError(f"{entry['symbol']}: no filters")
    by_type = {f.get("filterType"): f for f in filters if isinstance(f, dict)}
    try:
        pp = decimals_of_step(by_type["PRICE_FILTER"]["tickSize"])
        ap = decimals_of_step(by_type["LOT_SIZE"]["stepSize"])
    except KeyError as exc:
        raise ValueError(f"{entry['symbol']}: no {exc.args[0]} filter / step") from None
    base, quote = entry.get("baseAsset", ""), entry.get("quoteAsset", "")
    inst = wire_instrument(entry["symbol"], base, quote, pp, ap)
    sym = canonical(entry["symbol"], inst.base, inst.quote)
    if sym != inst.symbol:
        inst = Instrument(venue_symbol=inst.venue_symbol, symbol=sym, base=inst.base, quote=inst.quote,
                          price_precision=pp, amount_precision=ap)
    return inst


def parse_exchange_info(payload: bytes) -> list[Instrument]:
    doc = orjson.loads(payload)
    items = doc.get("symbols") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise ValueError("exchangeInfo: no list of symbols")
    return [instrument(i) for i in items]


def render_exchange_info(specs) -> bytes:
    """specs: (symbol, base, quote, price_precision, amount_precision)."""
    def step(n: int) -> str:
        return format(Decimal(1).scaleb(-n), "f") if n else "1"

    def pad(s: str) -> str:
        d = Decimal(s)
        return f"{d:.8f}" if d.as_tuple().exponent >= -8 else format(d, "f")

    out = []
    for sym, base, quote, pp, ap in specs:
        out.append({"symbol": sym, "status": "TRADING", "baseAsset": base, "quoteAsset": quote,
                    "baseAssetPrecision": 8, "quoteAssetPrecision": 8,
                    "filters": [{"filterType": "PRICE_FILTER", "minPrice": pad(step(pp)), "maxPrice": "1000000.00000000",
                                 "tickSize": pad(step(pp))},
                                {"filterType": "LOT_SIZE", "minQty": pad(step(ap)), "maxQty": "9000.00000000",
                                 "stepSize": pad(step(ap))}]})
    return orjson.dumps({"timezone": "UTC", "serverTime": 0, "rateLimits": [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000}],
        "symbols": out})


# -- numbers ------------------------------------------------------------------------------------------
def fmt(value: int, precision: int) -> str:
    """Ticks -> the wire's 8-decimal padded string (`6168599`, 2 -> `"61685.99000000"`)."""
    s = format(Decimal(value).scaleb(-precision), "f")
    if "." not in s:
        s += "."
    whole, _, frac = s.partition(".")
    return f"{whole}.{frac.ljust(max(8, len(frac)), '0')}"


def check_levels(levels, pp: int, ap: int, what: str) -> None:
    """ValueError unless `levels` is a list of [price, qty] strings exact at the precisions."""
    if not isinstance(levels, list):
        raise ValueError(f"{what} is not a list")
    for level in levels:
        if not isinstance(level, list) or len(level) != 2:
            raise ValueError(f"{what} level {str(level)[:40]} is not [price, qty]")
        p, a = level
        if not isinstance(p, str) or not isinstance(a, str):
            raise ValueError(f"{what} level {str(level)[:40]}: price and qty must be strings")
        if parse_fixed(p, pp) < 0 or parse_fixed(a, ap) < 0:
            raise ValueError(f"{what} level {str(level)[:40]}: negative")


def _int64(v) -> bool:
    return type(v) is int and 0 <= v < (1 << 63)


# -- frames ---------------------------------------------------------------------------------------------
def unwrap(msg):
    """A combined-stream frame `{"stream": ..., "data": {...}}` -> its data; raw frames unchanged."""
    if isinstance(msg, dict) and "stream" in msg and "data" in msg:
        return msg["data"]
    return msg


def check_diff(msg: dict, pp: int, ap: int) -> tuple[int, int, int]:
    """(U, u, E) of a `depthUpdate`, ValueError unless it can be applied exactly."""
    U, u, E = msg.get("U"), msg.get("u"), msg.get("E")
    if not (_int64(U) and _int64(u) and U <= u):
        raise ValueError(f"depthUpdate U {str(U)[:30]!r} / u {str(u)[:30]!r} are not ids with U <= u")
    if not _int64(E):
        raise ValueError(f"depthUpdate E {str(E)[:30]!r} is not a time")
    check_levels(msg.get("b"), pp, ap, "depthUpdate b")
    check_levels(msg.get("a"), pp, ap, "depthUpdate a")
    return U, u, E


def check_snapshot(msg, pp: int, ap: int) -> int:
    if not isinstance(msg, dict):
        raise ValueError("depth snapshot is not an object")
    lid = msg.get("lastUpdateId")
    if not _int64(lid):
        raise ValueError(f"depth lastUpdateId {str(lid)[:30]!r} is not an id")
    check_levels(msg.get("bids"), pp, ap, "depth bids")
    check_levels(msg.get("asks"), pp, ap, "depth asks")
    return lid


def parse_trade(msg: dict, pp: int, ap: int) -> tuple[int, int, str, int, int]:
    """(trade id, trade time ms, taker side, price ticks, qty lots) of a `trade` event."""
    t, T, m = msg.get("t"), msg.get("T"), msg.get("m")
    if not _int64(t) or not _int64(T):
        raise ValueError(f"trade t {str(t)[:30]!r} / T {str(T)[:30]!r} not integers")
    if type(m) is not bool:
        raise ValueError(f"trade m {str(m)[:30]!r} is not a boolean")
    p, q = msg.get("p"), msg.get("q")
    if not isinstance(p, str) or not isinstance(q, str):
        raise ValueError("trade p / q are not strings")
    price, qty = parse_fixed(p, pp), parse_fixed(q, ap)
    if price < 0 or qty < 0:
        raise ValueError("negative trade price / qty")
    return t, T, ("sell" if m else "buy"), price, qty


def render_diff(symbol: str, E: int, U: int, u: int, bids, asks, pp: int, ap: int, stream: bool = False) -> bytes:
    """bids/asks: [(price ticks, qty lots)]."""
    b = ",".join(f'["{fmt(p, pp)}","{fmt(a, ap)}"]' for p, a in bids)
    a = ",".join(f'["{fmt(p, pp)}","{fmt(q, ap)}"]' for p, q in asks)
    data = f'{{"e":"depthUpdate","E":{E},"s":"{symbol}","U":{U},"u":{u},"b":[{b}],"a":[{a}]}}'
    if stream:
        return f'{{"stream":"{symbol.lower()}@depth@100ms","data":{data}}}'.encode()
    return data.encode()


def render_trade(symbol: str, E: int, t: int, price: int, qty: int, buyer_maker: bool, pp: int, ap: int,
                 stream: bool = False) -> bytes:
    m = "true" if buyer_maker else "false"
    data = (f'{{"e":"trade","E":{E},"s":"{symbol}","t":{t},"p":"{fmt(price, pp)}","q":"{fmt(qty, ap)}",'
            f'"T":{E},"m":{m},"M":true}}')
    if stream:
        return f'{{"stream":"{symbol.lower()}@trade","data":{data}}}'.encode()
    return data.encode()


def render_depth(last_update_id: int, bids, asks, pp: int, ap: int) -> bytes:
    b = ",".join(f'["{fmt(p, pp)}","{fmt(a, ap)}"]' for p, a in bids)
    a = ",".join(f'["{fmt(p, pp)}","{fmt(q, ap)}"]' for p, q in asks)
    return f'{{"lastUpdateId":{last_update_id},"bids":[{b}],"asks":[{a}]}}'.encode()


def render_error(code: int, msg: str) -> bytes:
    return orjson.dumps({"code": code, "msg": msg})
