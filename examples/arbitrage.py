"""Cross-venue arbitrage, the original lab's purpose: buy where it is cheap, sell where it is
dear, only when the edge beats both venues' taker fees plus a margin for the latency.

    lab backtest examples/arbitrage.py CAPTURE --param a=mock:BTC-USD --param b=binance:BTC-USDT --latency 20ms --plot arb.png

Each leg is an immediate-or-cancel limit order at the price seen, so a book that moved during
the entry latency leaves the leg unfilled rather than filled at a worse price. Inventory is
held on both venues (see `balances`); a leg that fails leaves a position the next opposite
signal unwinds. Equity marks each venue's inventory at that venue's own mid, so an edge that
stays open (on lab's simulators the venues walk independently: mock BTC-USD starts at 60000,
binance BTCUSDT at 61686) shows as fees until the prices meet; USD and USDT count at par. Params: a, b (VENUE:SYMBOL; default: the first two streams of the capture),
size (base units), min_edge_bps (beyond fees), cooldown_ms.
"""
from decimal import ROUND_DOWN, Decimal

from lab.replay.backtest import Strategy
from lab.replay.fills import split_symbol


class Arbitrage(Strategy):
    balances = {"USD": "1000000", "BTC": "5", "XBT": "5", "ETH": "50"}

    def __init__(self, a="", b="", size="0.05", min_edge_bps="2", cooldown_ms="50"):
        super().__init__()
        self.legs = [tuple(x.split(":", 1)) for x in (a, b) if x]
        self.size = Decimal(size)
        self.min_edge = Decimal(min_edge_bps) / 10000
        self.cooldown_ns = int(cooldown_ms) * 1_000_000
        self.last_trade_ns = 0
        self.signals = 0

    def on_start(self, ctx):
        self.legs = [(v, ctx.symbol(s)) for v, s in self.legs]  # any spelling: BTCUSDT, btc-usdt, ...
        self.fee = {}
        self._factor = None  # per leg: the float that turns a best price in ticks into cost / proceeds
        self._base = {}  # leg -> its base currency

    def on_book(self, book):
        ctx = self.ctx
        if len(self.legs) < 2:
            key = (book.venue, book.symbol)
            if key not in self.legs and all(v != book.venue for v, _ in self.legs):
                self.legs.append(key)
            return
        (va, sa), (vb, sb) = self.legs
        if (book.venue, book.symbol) not in self.legs:
            return
        if ctx.now() - self.last_trade_ns < self.cooldown_ns:
            return
        ba, bb = ctx.book(va, sa), ctx.book(vb, sb)
        if ba is None or bb is None or not ba.synced or not bb.synced:
            return
        a_bid, a_ask = ba.top_ticks()
        b_bid, b_ask = bb.top_ticks()
        if a_bid is None or a_ask is None or b_bid is None or b_ask is None:
            return
        if self._factor is None:
            # the edge test runs on every book message, so it compares floats of the prices
            # (a signal; the orders carry the exact prices seen, as Decimals)
            self._factor = [(10.0 ** -b.price_precision * float((1 + self._taker(v)) * (1 + self.min_edge)),
                             10.0 ** -b.price_precision * float(1 - self._taker(v))) for b, (v, _) in ((ba, self.legs[0]), (bb, self.legs[1]))]
        (a_buy, a_sell), (b_buy, b_sell) = self._factor
        if b_bid * b_sell > a_ask * a_buy:
            self._cross(ctx, ba, (va, sa), bb, (vb, sb))
        elif a_bid * a_sell > b_ask * b_buy:
            self._cross(ctx, bb, (vb, sb), ba, (va, sa))

    def _cross(self, ctx, buy_book, buy_leg, sell_book, sell_leg):
        """Buy at `buy_book`'s best ask and sell at `sell_book`'s best bid, both legs ioc."""
        base = self._base.get(sell_leg)
        if base is None:
            base = self._base[sell_leg] = split_symbol(sell_leg[1])[0]
        available = ctx.available(sell_leg[0], base)
        if available <= 0:  # nothing to sell there (the check below, first because it is cheap)
            return
        ask, bid = buy_book.best_ask(), sell_book.best_bid()
        # exactly, in Decimals, before committing: the float test is only the trigger
        cost = ask[0] * (1 + self._taker(buy_leg[0])) * (1 + self.min_edge)
        if bid[0] * (1 - self._taker(sell_leg[0])) <= cost:
            return
        # a lot both venues accept: the coarser of the two amount precisions, rounded down
        lot = Decimal(1).scaleb(-min(buy_book.amount_precision, sell_book.amount_precision))
        size = min(self.size, ask[1], bid[1]).quantize(lot, rounding=ROUND_DOWN)
        if size <= 0 or available < size:
            return
        self.signals += 1
        ctx.place_order(buy_leg[0], buy_leg[1], "buy", "limit", size, ask[0], tif="ioc")
        ctx.place_order(sell_leg[0], sell_leg[1], "sell", "limit", size, bid[0], tif="ioc")
        self.last_trade_ns = ctx.now()

    def _taker(self, venue):
        if venue not in self.fee:
            self.fee[venue] = self.ctx.fees(venue).taker
        return self.fee[venue]
