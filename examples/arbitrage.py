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
        self.fee = {}

    def on_book(self, book):
        ctx = self.ctx
        if len(self.legs) < 2:
            key = (book.venue, book.symbol)
            if key not in self.legs and all(v != book.venue for v, _ in self.legs):
                self.legs.append(key)
            return
        (va, sa), (vb, sb) = self.legs
        if (book.venue, book.symbol) not in ((va, sa), (vb, sb)):
            return
        if ctx.now() - self.last_trade_ns < self.cooldown_ns:
            return
        ba, bb = ctx.book(va, sa), ctx.book(vb, sb)
        if ba is None or bb is None or not ba.synced or not bb.synced:
            return
        a_bid, a_ask = ba.best_bid(), ba.best_ask()
        b_bid, b_ask = bb.best_bid(), bb.best_ask()
        if None in (a_bid, a_ask, b_bid, b_ask):
            return
        for (buy_v, buy_s, ask), (sell_v, sell_s, bid) in (((va, sa, a_ask), (vb, sb, b_bid)), ((vb, sb, b_ask), (va, sa, a_bid))):
            cost = ask[0] * (1 + self._taker(buy_v)) * (1 + self.min_edge)
            proceeds = bid[0] * (1 - self._taker(sell_v))
            if proceeds <= cost:
                continue
            # a lot both venues accept: the coarser of the two amount precisions, rounded down
            lot = Decimal(1).scaleb(-min(ba.amount_precision, bb.amount_precision))
            size = min(self.size, ask[1], bid[1]).quantize(lot, rounding=ROUND_DOWN)
            if size <= 0 or ctx.available(sell_v, split_symbol(sell_s)[0]) < size:
                continue
            self.signals += 1
            ctx.place_order(buy_v, buy_s, "buy", "limit", size, ask[0], tif="ioc")
            ctx.place_order(sell_v, sell_s, "sell", "limit", size, bid[0], tif="ioc")
            self.last_trade_ns = ctx.now()
            return

    def _taker(self, venue):
        if venue not in self.fee:
            self.fee[venue] = self.ctx.fees(venue).taker
        return self.fee[venue]
