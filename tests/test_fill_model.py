"""The paper broker's fill models on hand-built books: latency, queue position, fees, accounts,
time in force. Prices at 2 decimals (ticks of 0.01), amounts at 4 (lots of 0.0001)."""
from decimal import Decimal

import pyarrow.parquet as pq
import pytest

from lab.core.model import Trade
from lab.replay.fills import (Account, ConservativeQueue, FeeSchedule, Latency, PowerProbQueue,
                              queue_model)
from lab.replay.paper import PaperBroker
from lab.rust_book import OrderBook

MS = 1_000_000


def book(bids=(), asks=(), t=1_000 * MS, feed_ns=0):
    b = OrderBook("x", "A-B", 2, 4)
    for price, amount in bids:
        b.apply(0, price, amount)
    for price, amount in asks:
        b.apply(1, price, amount)
    b.synced = True
    b.timestamp, b.local_timestamp = t - feed_ns, t
    return b


def move(b, t, bids=(), asks=()):
    for price, amount in bids:
        b.apply(0, price, amount)
    for price, amount in asks:
        b.apply(1, price, amount)
    b.timestamp = b.local_timestamp = t
    return b


def trade(t, side, price, amount):
    return Trade("x", "A-B", t, t, f"T{t}", side, Decimal(price), Decimal(amount))


def test_defaults_keep_the_first_broker_taking_whole_crossing_liquidity():
    b = book(bids=[(9900, 10000)], asks=[(10000, 5000), (10100, 5000)])
    p = PaperBroker("x")
    o = p.submit(b, "AB", "buy", "limit", "0.8", "101.00")
    assert [(f.price, f.amount, f.liquidity) for f in p.fills] == [(10000, 5000, "taker"), (10100, 3000, "taker")]
    assert o.status == "filled"


def test_entry_latency_meets_the_book_of_arrival_time_not_of_decision_time():
    b = book(bids=[(9900, 10000)], asks=[(10000, 5000)], t=1_000 * MS)
    p = PaperBroker("x", latency=Latency(entry_ns=5 * MS, response_ns=2 * MS), clock="book")
    p.on_book(b)
    o = p.submit(b, "AB", "buy", "market", "0.5")
    assert o.status == "pending" and o.arrival_ns == 1_005 * MS and not p.fills
    # 3 ms later the ask moved up: not yet arrived
    assert p.on_book(move(b, 1_003 * MS, asks=[(10000, 0), (10200, 5000)])) == []
    fills = p.on_book(move(b, 1_006 * MS))
    assert [(f.price, f.amount) for f in fills] == [(10200, 5000)]
    assert fills[0].notify_ns == 1_008 * MS
    assert p.due(1_007 * MS) == [] and p.due(1_008 * MS) == fills


def test_feed_latency_multiplier_uses_the_recorded_feed_delay():
    b = book(asks=[(10000, 5000)], t=1_000 * MS, feed_ns=4 * MS)
    lat = Latency.parse("feed*1.5+1ms")
    assert lat.entry(b) == 7 * MS and lat.response(b) == 7 * MS


def test_conservative_queue_fills_as_maker_after_the_displayed_amount_ahead_trades():
    b = book(bids=[(10000, 10000)], asks=[(10100, 10000)])
    p = PaperBroker("x", queue=ConservativeQueue(), fees=FeeSchedule(Decimal("-0.0001"), Decimal("0.001")), clock="book")
    o = p.submit(b, "AB", "buy", "limit", "0.5", "100.00")
    assert o.status == "open" and o.ahead == 10000 and not p.fills
    assert p.on_trade(trade(1_001 * MS, "sell", "100.00", "0.6")) == []  # 0.4 still ahead of us
    assert p.on_trade(trade(1_002 * MS, "buy", "100.00", "5")) == []  # a buyer does not trade with bids
    fills = p.on_trade(trade(1_003 * MS, "sell", "100.00", "0.6"))  # 0.2 past our place
    assert [(f.price, f.amount, f.liquidity) for f in fills] == [(10000, 2000, "maker")]
    assert fills[0].fee == Decimal("-0.002")  # a maker rebate: 100.00 * 0.2 * -0.0001
    assert o.status == "open" and o.remaining == 3000
    fills = p.on_trade(trade(1_004 * MS, "sell", "99.99", "0.01"))  # a trade through our price
    assert [(f.price, f.amount) for f in fills] == [(10000, 3000)] and o.status == "filled"


def test_whole_fills_only_when_partial_fills_are_off():
    b = book(bids=[(10000, 10000)], asks=[(10100, 10000)])
    p = PaperBroker("x", queue=ConservativeQueue(), partial_fills=False)
    o = p.submit(b, "AB", "buy", "limit", "0.5", "100.00")
    fills = p.on_trade(trade(1_001 * MS, "sell", "100.00", "1.1"))
    assert [f.amount for f in fills] == [5000] and o.status == "filled"


def test_conservative_queue_caps_ahead_at_a_shrunk_level_and_the_other_side_reaching_us_fills():
    b = book(bids=[(10000, 10000)], asks=[(10100, 10000)])
    p = PaperBroker("x", queue=ConservativeQueue())
    o = p.submit(b, "AB", "buy", "limit", "0.5", "100.00")
    p.on_book(move(b, 1_001 * MS, bids=[(10000, 3000)]))
    assert o.ahead == 3000
    p.on_book(move(b, 1_002 * MS, bids=[(10000, 9000)]))  # growth queues behind us
    assert o.ahead == 3000
    fills = p.on_book(move(b, 1_003 * MS, asks=[(10000, 2000)]))  # an ask at our price
    assert [(f.price, f.amount, f.liquidity) for f in fills] == [(10000, 5000, "maker")]


def test_power_probability_queue_moves_us_forward_on_cancels_deterministically():
    q = PowerProbQueue(2.0)
    # 1.0 ahead, 1.0 behind, 0.5 cancelled: half of it is ahead of us
    assert q.on_level(10000, 20000, 15000, 0) == 7500
    # the same digits on every run, never more than what is displayed
    assert q.on_level(10000, 20000, 15000, 0) == 7500
    assert q.on_level(10000, 10000, 4000, 0) == 4000  # nobody behind: all of it was ahead
    assert ConservativeQueue().on_level(10000, 20000, 15000, 0) == 10000
    b = book(bids=[(10000, 10000)], asks=[(10100, 10000)])
    p = PaperBroker("x", queue=queue_model("prob:2"))
    o = p.submit(b, "AB", "buy", "limit", "0.5", "100.00")
    p.on_book(move(b, 1_001 * MS, bids=[(10000, 20000)]))
    p.on_book(move(b, 1_002 * MS, bids=[(10000, 15000)]))
    assert o.ahead == 7500


def test_an_unsynced_book_forgets_the_queue_position_and_it_rejoins_at_the_back():
    b = book(bids=[(10000, 10000)], asks=[(10100, 10000)])
    p = PaperBroker("x", queue=ConservativeQueue())
    o = p.submit(b, "AB", "buy", "limit", "0.5", "100.00")
    p.on_trade(trade(1_001 * MS, "sell", "100.00", "0.9"))
    assert o.ahead == 1000
    b.synced = False
    assert p.on_book(move(b, 1_002 * MS, asks=[(9900, 10000)])) == []  # an unsynced book fills nothing
    assert o.ahead is None
    b.apply(1, 9900, 0)
    b.synced = True
    p.on_book(move(b, 1_003 * MS, bids=[(10000, 12000)]))
    assert o.ahead == 12000 and not p.fills


def test_time_in_force_and_post_only():
    b = book(bids=[(9900, 10000)], asks=[(10000, 3000), (10100, 3000)])
    p = PaperBroker("x")
    ioc = p.submit(b, "AB", "buy", "limit", "0.5", "100.00", tif="ioc")
    assert ioc.filled == 3000 and ioc.status == "cancelled" and "immediate-or-cancel" in ioc.reason
    fok = p.submit(b, "AB", "buy", "limit", "0.5", "100.00", tif="fok")
    assert fok.filled == 0 and fok.status == "cancelled" and "fill-or-kill" in fok.reason
    fok2 = p.submit(b, "AB", "buy", "limit", "0.5", "101.00", tif="fok")
    assert fok2.status == "filled"
    post = p.submit(b, "AB", "buy", "limit", "0.1", "100.00", post_only=True)
    assert post.status == "rejected" and "post-only" in post.reason
    resting = p.submit(b, "AB", "buy", "limit", "0.1", "99.00", post_only=True)
    assert resting.status == "open"
    with pytest.raises(ValueError, match="post_only"):
        p.submit(b, "AB", "buy", "market", "0.1", post_only=True)


def test_account_refuses_what_it_cannot_pay_and_books_fills_with_fees():
    b = book(bids=[(9900, 10000)], asks=[(10000, 50000)])
    acct = Account({"B": Decimal("100")})
    p = PaperBroker("x", fees=FeeSchedule(Decimal("0.001"), Decimal("0.002")), account=acct)
    too_big = p.submit(b, "AB", "buy", "limit", "1", "100.00")  # 100 + 0.2 fee > 100
    assert too_big.status == "rejected" and too_big.reason == "insufficient balance"
    assert acct.reserved.get("B", 0) == 0
    o = p.submit(b, "AB", "buy", "market", "0.5")
    assert o.status == "filled"
    assert acct.balances["A"] == Decimal("0.5")
    assert acct.balances["B"] == Decimal("100") - Decimal("50") - Decimal("0.1")
    assert acct.reserved["B"] == 0
    rest = p.submit(b, "AB", "buy", "limit", "0.1", "98.00")
    assert acct.reserved["B"] > 0
    assert p.cancel(rest.id) and rest.status == "cancelled" and acct.reserved["B"] == 0
    short = p.submit(b, "AB", "sell", "limit", "1", "99.00")
    assert short.status == "rejected"  # only 0.5 A held, no margin


def test_a_cancel_travels_with_entry_latency_and_the_order_can_fill_before_it_lands():
    b = book(bids=[(9900, 10000)], asks=[(10100, 10000)], t=1_000 * MS)
    p = PaperBroker("x", latency=Latency(entry_ns=5 * MS), clock="book")
    p.on_book(b)
    o = p.submit(b, "AB", "buy", "limit", "0.5", "100.00")
    p.on_book(move(b, 1_006 * MS))
    assert o.status == "open"
    assert p.cancel(o.id) and o.status == "open" and o.cancel_at == 1_011 * MS
    fills = p.on_book(move(b, 1_008 * MS, asks=[(10000, 10000)]))  # crosses before the cancel lands
    assert [f.amount for f in fills] == [5000] and o.status == "filled"
    o2 = p.submit(b, "AB", "buy", "limit", "0.5", "90.00")
    p.on_book(move(b, 1_014 * MS))
    p.cancel(o2.id)
    p.on_book(move(b, 1_020 * MS))
    assert o2.status == "cancelled"


def test_parsers_give_one_line_errors():
    assert Latency.parse("5ms") == Latency(5 * MS, 5 * MS)
    assert Latency.parse("entry=250us,response=1s") == Latency(250_000, 1_000_000_000)
    assert FeeSchedule.parse("maker=0.0016,taker=0.0026") == FeeSchedule(Decimal("0.0016"), Decimal("0.0026"))
    assert FeeSchedule.parse("10bps") == FeeSchedule(Decimal("0.001"), Decimal("0.001"))
    for bad, call in [("5 parsecs", Latency.parse), ("entry=5ms,exit=1ms", Latency.parse), ("-1ms", Latency.parse),
                      ("feed/2", Latency.parse), ("2", FeeSchedule.parse), ("maker=x", FeeSchedule.parse),
                      ("fifo", queue_model)]:
        with pytest.raises(ValueError) as exc:
            call(bad)
        assert "\n" not in str(exc.value)


def test_fills_table_carries_liquidity_and_exact_fees(tmp_path):
    b = book(bids=[(10000, 10000)], asks=[(10100, 10000)])
    p = PaperBroker("x", root=str(tmp_path), queue=ConservativeQueue(),
                    fees=FeeSchedule(Decimal("0.0016"), Decimal("0.0026")))
    p.submit(b, "AB", "buy", "market", "0.3")
    p.submit(b, "AB", "buy", "limit", "0.2", "100.00")
    p.on_trade(trade(1_001 * MS, "sell", "100.00", "1.2"))
    p.write()
    table = pq.read_table(str(tmp_path / "fills")).sort_by("fill_id").to_pylist()
    got = sorted((r["liquidity"], r["fee"]) for r in table)
    assert got == [("maker", Decimal("0.032")), ("taker", Decimal("0.07878"))]
