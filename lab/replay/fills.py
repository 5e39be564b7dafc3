"""The paper broker's fill models: latency, queue position on L2, fees, accounts.

Venue-agnostic: a venue enters only through the parameters (its fee schedule, the latency its
feed shows). Everything is integer ticks and lots, or `Decimal` for money; the one float is the
probabilistic queue model's estimate, floored to whole lots, so two runs give the same digits.

Queue models (what happens to the displayed amount *ahead* of a resting order at its level):
- `ConservativeQueue`: only trades at the order's price advance it; a decrease of the level
  caps it at the new displayed amount (cancels are assumed to come from behind us, unless the
  level shrinks below our place). hftbacktest calls this the risk-averse model.
- `PowerProbQueue(n)`: a decrease not explained by trades is split between ahead and behind in
  proportion `f(behind) / (f(ahead) + f(behind))` with `f(x) = x**n` (hftbacktest's power
  probability model); trades advance it as above.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal


@dataclass(frozen=True)
class Latency:
    """Order latency: `entry` from the strategy's decision to the venue's matching, `response`
    from the venue's answer (ack, fill) to the strategy. Constant ns, or, with `feed_multiplier`,
    the recorded feed latency of the book in hand (`local_timestamp - timestamp`) times the
    multiplier, plus the constant."""
    entry_ns: int = 0
    response_ns: int = 0
    feed_multiplier: float | None = None

    def __post_init__(self):
        if self.entry_ns < 0 or self.response_ns < 0 or (self.feed_multiplier is not None and self.feed_multiplier < 0):
            raise ValueError("latencies must be >= 0")

    def _feed(self, book) -> int:
        if self.feed_multiplier is None or book is None or not book.timestamp or not book.local_timestamp:
            return 0
        return max(0, int((book.local_timestamp - book.timestamp) * self.feed_multiplier))

    def entry(self, book) -> int:
        return self.entry_ns + self._feed(book)

    def response(self, book) -> int:
        return self.response_ns + self._feed(book)

    @classmethod
    def parse(cls, text: str) -> "Latency":
        """`--latency` forms: `5ms` (both ways), `entry=5ms,response=2ms`, `feed*1.5` or
        `feed*1.5+1ms` (recorded feed latency times 1.5, plus a constant)."""
        text = text.strip()
        if text.startswith("feed"):
            rest = text[4:]
            mult, _, plus = rest.partition("+")
            m = float(mult[1:]) if mult.startswith("*") else (1.0 if mult == "" else None)
            if m is None:
                raise ValueError(f"--latency {text!r}: expected feed, feed*K or feed*K+DURATION")
            const = _duration_ns(plus) if plus else 0
            return cls(const, const, m)
        if "=" in text:
            parts = dict(p.split("=", 1) for p in text.split(","))
            unknown = set(parts) - {"entry", "response"}
            if unknown:
                raise ValueError(f"--latency {text!r}: unknown part(s) {', '.join(sorted(unknown))} (entry=, response=)")
            return cls(_duration_ns(parts.get("entry", "0")), _duration_ns(parts.get("response", "0")))
        ns = _duration_ns(text)
        return cls(ns, ns)


_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000}


def _duration_ns(text: str) -> int:
    text = text.strip()
    for unit in sorted(_UNITS, key=len, reverse=True):
        if text.endswith(unit):
            number = text[: -len(unit)]
            try:
                value = Decimal(number)
            except ArithmeticError:
                break
            if not value.is_finite() or value < 0:
                break
            return int(value * _UNITS[unit])
    if text == "0":
        return 0
    raise ValueError(f"--latency {text!r}: expected a duration like 0, 250us, 5ms, 1s")


class ConservativeQueue:
    name = "conservative"

    def on_level(self, ahead: int, old_amount: int, new_amount: int, traded: int) -> int:
        return min(ahead, new_amount)

    def on_trade(self, ahead: int, amount: int) -> int:
        return ahead - amount


@dataclass(frozen=True)
class PowerProbQueue:
    n: float = 2.0
    name = "prob"

    def on_level(self, ahead: int, old_amount: int, new_amount: int, traded: int) -> int:
        change = old_amount - new_amount - traded  # what cancels took, trades already counted
        if change <= 0:
            return min(ahead, new_amount)
        behind = max(old_amount - ahead, 0)
        fa, fb = float(ahead) ** self.n, float(behind) ** self.n
        p_behind = 1.0 if fa + fb == 0 else fb / (fa + fb)
        estimate = ahead - (1.0 - p_behind) * change + min(behind - p_behind * change, 0.0)
        return max(0, min(int(estimate), new_amount))  # floored: never ahead of where we may be

    def on_trade(self, ahead: int, amount: int) -> int:
        return ahead - amount


def queue_model(name: str | None):
    if name in (None, "", "none"):
        return None
    if name in ("conservative", "risk_averse"):
        return ConservativeQueue()
    if name.startswith("prob"):
        _, _, n = name.partition(":")
        return PowerProbQueue(float(n) if n else 2.0)
    raise ValueError(f"queue model {name!r}: expected none, conservative, prob or prob:N")


@dataclass(frozen=True)
class FeeSchedule:
    """Maker and taker fees as fractions of the notional, charged in the quote currency."""
    maker: Decimal = Decimal(0)
    taker: Decimal = Decimal(0)

    def fee(self, notional: Decimal, liquidity: str) -> Decimal:
        return notional * (self.maker if liquidity == "maker" else self.taker)

    @classmethod
    def parse(cls, text: str) -> "FeeSchedule":
        """`--fees maker=0.0016,taker=0.0026` or `0.001` for both; `bps` suffix allowed (`10bps`)."""
        def num(v: str) -> Decimal:
            v = v.strip()
            d = Decimal(v[:-3]) / 10000 if v.endswith("bps") else Decimal(v)
            if not d.is_finite() or d < -1 or d > 1:
                raise ValueError(f"fee {v!r} out of range")
            return d
        try:
            if "=" in text:
                parts = dict(p.split("=", 1) for p in text.split(","))
                return cls(num(parts.get("maker", "0")), num(parts.get("taker", "0")))
            d = num(text)
            return cls(d, d)
        except (ArithmeticError, ValueError) as exc:
            raise ValueError(f"--fees {text!r}: {exc}; expected maker=F,taker=F or F (fractions, or NNbps)") from None


def split_symbol(symbol: str) -> tuple[str, str]:
    """Base and quote of a canonical symbol (`BTC-USD`)."""
    base, sep, quote = symbol.partition("-")
    if not sep:
        base, sep, quote = symbol.partition("/")
    return (base, quote) if sep else (symbol, "?")


@dataclass
class Account:
    """Cash and positions of one venue: asset -> Decimal. Balances never go negative unless
    `margin` is set; `reserved` holds what open orders have promised."""
    balances: dict[str, Decimal] = field(default_factory=dict)
    margin: bool = False
    reserved: dict[str, Decimal] = field(default_factory=dict)

    def available(self, asset: str) -> Decimal:
        return self.balances.get(asset, Decimal(0)) - self.reserved.get(asset, Decimal(0))

    def reserve(self, asset: str, amount: Decimal) -> bool:
        if not self.margin and self.available(asset) < amount:
            return False
        self.reserved[asset] = self.reserved.get(asset, Decimal(0)) + amount
        return True

    def release(self, asset: str, amount: Decimal) -> None:
        self.reserved[asset] = self.reserved.get(asset, Decimal(0)) - amount

    def add(self, asset: str, amount: Decimal) -> None:
        self.balances[asset] = self.balances.get(asset, Decimal(0)) + amount
