"""Kraken wire protocol pieces shared by the client (feed.py) and the simulator (sim.py).

Everything here follows ../shared/PROTOCOLS.md sections 1-3 (the official docs win where they
differ). Numbers that are prices and volumes are kept as the exact wire strings; the engine works
in integer ticks at the pair's `pair_decimals` / `lot_decimals` from `AssetPairs`.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

VALID_DEPTHS = (10, 25, 100, 500, 1000)
DEFAULT_DEPTH = 10
DEFAULT_DEPTH_COUNT = 100  # REST Depth `count` default

# subscriptionStatus / REST error strings (PROTOCOLS.md section 1 and 2)
E_UNKNOWN_PAIR = "EQuery:Unknown asset pair"
E_RATE_LIMIT = "EAPI:Rate limit exceeded"
E_INVALID_KEY = "EAPI:Invalid key"
E_INVALID_SIGNATURE = "EAPI:Invalid signature"
E_INVALID_NONCE = "EAPI:Invalid nonce"
E_INVALID_ARGUMENTS = "EGeneral:Invalid arguments"
E_PERMISSION = "EGeneral:Permission denied"
E_ORDER_MINIMUM = "EOrder:Order minimum not met"
E_INVALID_PRICE = "EOrder:Invalid price"
WS_DEPTH_NOT_SUPPORTED = "Subscription depth not supported"
WS_PAIR_NOT_SUPPORTED = "Currency pair not supported"


@dataclass(frozen=True)
class PairSpec:
    """One row of `AssetPairs` (the fields lab uses)."""

    internal: str  # result key of AssetPairs and Depth: XXBTZUSD
    altname: str  # XBTUSD (what REST `pair=` and AddOrder take)
    wsname: str  # XBT/USD (WS v1 pair name; lab's venue symbol)
    base: str  # XXBT
    quote: str  # ZUSD
    pair_decimals: int
    lot_decimals: int
    ordermin: str = "0.0001"

    def asset_pair(self) -> dict:
        return {
            "altname": self.altname,
            "wsname": self.wsname,
            "aclass_base": "currency",
            "base": self.base,
            "aclass_quote": "currency",
            "quote": self.quote,
            "lot": "unit",
            "cost_decimals": 5,
            "pair_decimals": self.pair_decimals,
            "lot_decimals": self.lot_decimals,
            "lot_multiplier": 1,
            "fees": [[0, 0.26], [50000, 0.24]],
            "fees_maker": [[0, 0.16], [50000, 0.14]],
            "fee_volume_currency": "ZUSD",
            "margin_call": 80,
            "margin_stop": 40,
            "ordermin": self.ordermin,
            "tick_size": str(10 ** -self.pair_decimals) if self.pair_decimals else "1",
            "status": "online",
        }


# The real mapping of PROTOCOLS.md section 1 (AssetPairs, 2021).
PAIRS = (
    PairSpec("XXBTZUSD", "XBTUSD", "XBT/USD", "XXBT", "ZUSD", 1, 8),
    PairSpec("XETHZUSD", "ETHUSD", "ETH/USD", "XETH", "ZUSD", 2, 8, "0.002"),
    PairSpec("XXBTZEUR", "XBTEUR", "XBT/EUR", "XXBT", "ZEUR", 1, 8),
    PairSpec("XBTUSDT", "XBTUSDT", "XBT/USDT", "XXBT", "USDT", 1, 8),
    PairSpec("ETHUSDT", "ETHUSDT", "ETH/USDT", "XETH", "USDT", 2, 8, "0.002"),
)


# WebSocket v2 names assets as the world does (BTC/USD); v1 and AssetPairs' wsname use Kraken's
# own codes (XBT/USD). The codes that differ:
V1_TO_V2_ASSET = {"XBT": "BTC", "XDG": "DOGE"}
V2_TO_V1_ASSET = {v: k for k, v in V1_TO_V2_ASSET.items()}


def v2_symbol(wsname: str) -> str:
    """v1 pair name -> v2 symbol: XBT/USD -> BTC/USD, XDG/EUR -> DOGE/EUR, ETH/USD unchanged."""
    return "/".join(V1_TO_V2_ASSET.get(a, a) for a in wsname.split("/"))


def v1_symbol(symbol: str) -> str:
    """v2 symbol -> v1 pair name (the inverse of `v2_symbol`)."""
    return "/".join(V2_TO_V1_ASSET.get(a, a) for a in symbol.split("/"))


def sign(uri_path: str, postdata: str, nonce: str | int, secret_b64: str | bytes) -> str:
    """API-Sign = base64(HMAC-SHA512(base64decode(secret), uri_path + SHA256(nonce + postdata)))."""
    digest = hashlib.sha256((str(nonce) + postdata).encode()).digest()
    mac = hmac.new(base64.b64decode(secret_b64), uri_path.encode() + digest, hashlib.sha512)
    return base64.b64encode(mac.digest()).decode()
