"""A simple market maker with inventory skew: one bid and one ask around the mid, shifted
against the inventory so a long position quotes lower (sells sooner, buys later).

    lab backtest examples/market_maker.py CAPTURE --symbol BTC-USD --queue conservative --latency 5ms --plot mm.png

Params (`--param KEY=VALUE`): venue, symbol, size (base units), spread_ticks (half-spread),
skew_ticks (ticks per unit of size held), max_position (in sizes), requote_ticks (how far the
target moves before the quotes are replaced).
"""
from decimal import Decimal

from lab.replay.backtest import Strategy


class MarketMaker(Strategy):
    balances = {"USD": "100000", "BTC": "2", "XBT": "2", "ETH": "20"}

    def __init__(self, venue="", symbol="", size="0.01", spread_ticks="20", skew_ticks="10", max_position="5",
                 requote_ticks="5"):
        super().__init__()
        self.venue, self.symbol = venue, symbol
        self.size = Decimal(size)
        self.spread_ticks, self.skew_ticks = int(spread_ticks), int(skew_ticks)
        self.max_position, self.requote_ticks = int(max_position), int(requote_ticks)
        self.bid_id = self.ask_id = None
        self.quoted = None  # (bid ticks, ask ticks) of the resting quotes
        self.start_position = None

    def on_book(self, book):
        if self.venue and book.venue != self.venue or self.symbol and book.symbol != self.symbol:
            return
        self.venue, self.symbol = book.venue, book.symbol  # the first stream, when none is named
        if not book.synced:
            return
        bid, ask = book.top_ticks()
        if bid is None or ask is None:
            return
        ctx = self.ctx
        position = ctx.position(book.venue, book.symbol)
        if self.start_position is None:
            self.start_position = position
        inventory = int((position - self.start_position) / self.size)  # in sizes
        mid2 = bid + ask  # twice the mid, in ticks
        skew = inventory * self.skew_ticks
        want_bid = (mid2 // 2) - self.spread_ticks - skew
        want_ask = (mid2 + 1) // 2 + self.spread_ticks - skew
        if self.quoted and abs(self.quoted[0] - want_bid) < self.requote_ticks and abs(self.quoted[1] - want_ask) < self.requote_ticks:
            if self._live(self.bid_id) or self._live(self.ask_id):
                return
        for oid in (self.bid_id, self.ask_id):
            if self._live(oid):
                ctx.cancel(oid)
        scale = Decimal(1).scaleb(-book.price_precision)
        self.bid_id = self.ask_id = None
        if inventory < self.max_position:
            self.bid_id = ctx.place_order(book.venue, book.symbol, "buy", "limit", self.size, want_bid * scale, post_only=True)
        if inventory > -self.max_position:
            self.ask_id = ctx.place_order(book.venue, book.symbol, "sell", "limit", self.size, want_ask * scale, post_only=True)
        self.quoted = (want_bid, want_ask)

    def _live(self, oid):
        o = self.ctx.order(oid) if oid else None
        return o is not None and o.live
