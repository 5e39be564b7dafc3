"""The backtester: strategy API and engine on hand-built books (conservation, determinism,
timers, latency), and `lab backtest` end to end on a recorded mock capture."""
import json
import os
from decimal import Decimal

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings, strategies as st

from labcli import lab
from lab.replay import backtest as bt
from lab.replay.fills import FeeSchedule, Latency, queue_model
from lab.rust_book import OrderBook

MS = 1_000_000
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def new_book(venue="x", symbol="A-B"):
    b = OrderBook(venue, symbol, 2, 4)
    b.synced = True
    return b


def set_book(b, t, bid, ask, size=10_000):
    """One level each side: bid and ask in ticks, `size` lots."""
    b.clear()
    b.apply(0, bid, size)
    b.apply(1, ask, size)
    b.timestamp = b.local_timestamp = t
    return b


class Scripted(bt.Strategy):
    """Places the orders it is given at given book counts."""
    balances = {"A": "5", "B": "10000"}

    def __init__(self, script=()):
        super().__init__()
        self.script = dict(script)
        self.n = 0
        self.events = []

    def on_start(self, ctx):
        self.events.append(("start", ctx.now()))

    def on_book(self, book):
        self.n += 1
        for side, kind, volume, price, tif in self.script.get(self.n, ()):
            self.ctx.place_order(book.venue, book.symbol, side, kind, volume, price, tif=tif)

    def on_fill(self, fill):
        self.events.append(("fill", fill.notify_ns, fill.side, fill.price, fill.amount))

    def on_timer(self, now_ns):
        self.events.append(("timer", now_ns))


def engine(strategy, session=None, **models):
    return bt.Engine(strategy, bt.Models(**models), lambda v: FeeSchedule(Decimal("0.001"), Decimal("0.002")),
                     session=session)


order_st = st.tuples(st.sampled_from(["buy", "sell"]), st.sampled_from(["market", "limit"]),
                     st.integers(1, 30_000).map(lambda n: str(Decimal(n).scaleb(-4))),
                     st.integers(9_900, 10_100).map(lambda n: str(Decimal(n).scaleb(-2))),
                     st.sampled_from(["gtc", "ioc"]))


@settings(max_examples=60, deadline=None)
@given(moves=st.lists(st.tuples(st.integers(9_900, 10_050), st.integers(1, 60)), min_size=2, max_size=40),
       script=st.dictionaries(st.integers(1, 40), st.lists(order_st, max_size=3), max_size=12),
       queue=st.sampled_from([None, "conservative"]), latency_ms=st.sampled_from([0, 3]))
def test_cash_and_positions_at_mid_change_only_by_fill_pnl_and_fees(moves, script, queue, latency_ms):
    s = Scripted({k: [(a, b, c, None if b == "market" else d, e) for a, b, c, d, e in v] for k, v in script.items()})
    e = engine(s, queue=queue_model(queue or "none"), latency=Latency(latency_ms * MS, latency_ms * MS))
    b = new_book()
    t = 1_000 * MS
    for bid, spread in moves:
        t += 2 * MS
        e.on_book(set_book(b, t, bid, bid + spread))
        acct = e.account("x")
        assert all(v >= 0 for v in acct.balances.values()), acct.balances
        assert all(v >= 0 for v in acct.reserved.values()), acct.reserved
        mid = e.mid("x", "A-B")
        fills = e.brokers["x"].fills
        pnl = sum(((1 if f.side == "buy" else -1) * Decimal(f.amount).scaleb(-4) * (mid - Decimal(f.price).scaleb(-2))
                   for f in fills), Decimal(0))
        fees = sum((f.fee for f in fills), Decimal(0))
        start = Decimal(10_000) + 5 * mid
        assert e.venue_equity("x", acct.balances) == start + pnl - fees
    if not any(o.live for o in e.brokers["x"].orders) if "x" in e.brokers else True:
        assert all(v == 0 for v in e.account("x").reserved.values())


def test_two_runs_give_identical_tables(tmp_path):
    script = {2: [("buy", "limit", "0.5", "99.00", "gtc")], 5: [("sell", "market", "0.3", None, "gtc")],
              7: [("sell", "limit", "0.2", "101.50", "gtc")]}
    outs = []
    for run in range(2):
        s = Scripted(script)
        e = engine(s, session="20261203T000000Z-000000", queue=queue_model("conservative"), latency=Latency(1 * MS, 1 * MS))
        b = new_book()
        for i, (bid, ask) in enumerate([(9_950, 10_050), (9_940, 10_040), (9_890, 9_990), (9_880, 9_900), (9_800, 9_850),
                                        (10_100, 10_160), (10_140, 10_200), (10_160, 10_220), (9_700, 9_750)]):
            e.on_book(set_book(b, 1_000 * MS + i * 10 * MS, bid, ask))
        e.finish()
        e.results = str(tmp_path / f"run{run}")
        paths = sorted(e.write(), key=lambda p: p.split("run")[1])
        outs.append([pq.read_table(p).to_pylist() for p in paths])
        outs[-1].append(e.summary() | {"session": None, "results": None})
    assert outs[0] == outs[1]
    assert outs[0][-1]["fills"] >= 3


def test_timers_fire_on_data_time_and_fills_arrive_after_response_latency():
    s = Scripted({1: [("buy", "market", "0.1", None, "gtc")]})
    s.timer_interval = 5 * MS
    e = engine(s, latency=Latency(2 * MS, 3 * MS))
    b = new_book()
    for i in range(6):
        e.on_book(set_book(b, 1_000 * MS + i * 4 * MS, 10_000, 10_010))
    kinds = [ev[0] for ev in s.events]
    assert kinds[0] == "start"
    assert [ev[1] for ev in s.events if ev[0] == "timer"] == [1_005 * MS, 1_010 * MS, 1_015 * MS, 1_020 * MS]
    fill = next(ev for ev in s.events if ev[0] == "fill")
    # decided at 1000 ms, reaches the venue at 1002 ms, meets the book of 1004 ms, heard at 1007 ms
    assert fill[1] == 1_007 * MS and fill[3] == Decimal("100.10")
    assert s.events.index(fill) > s.events.index(("timer", 1_005 * MS))


def test_an_unsynced_book_fills_nothing_until_it_resyncs():
    s = Scripted({1: [("buy", "limit", "0.1", "99.00", "gtc")]})
    e = engine(s)
    b = new_book()
    e.on_book(set_book(b, 1_000 * MS, 9_890, 9_910))
    b.synced = False
    e.on_book(set_book(b, 1_001 * MS, 9_800, 9_850))  # would cross, but the capture does not vouch for it
    assert e.brokers["x"].fills == []
    b.synced = True
    e.on_book(set_book(b, 1_002 * MS, 9_800, 9_850))
    assert len(e.brokers["x"].fills) == 1


def test_strategy_files_and_options_fail_in_one_line(tmp_path):
    with pytest.raises(bt.BacktestError, match="not found"):
        bt.load_strategy(str(tmp_path / "nope.py"))
    (tmp_path / "none.py").write_text("x = 1\n")
    with pytest.raises(bt.BacktestError, match="found none"):
        bt.load_strategy(str(tmp_path / "none.py"))
    (tmp_path / "two.py").write_text("from lab.replay.backtest import Strategy\nclass A(Strategy): pass\nclass B(Strategy): pass\n")
    with pytest.raises(bt.BacktestError, match="--class"):
        bt.load_strategy(str(tmp_path / "two.py"))
    assert type(bt.load_strategy(str(tmp_path / "two.py"), "B")).__name__ == "B"
    (tmp_path / "boom.py").write_text("raise RuntimeError('bad import')\n")
    with pytest.raises(bt.BacktestError, match="RuntimeError: bad import"):
        bt.load_strategy(str(tmp_path / "boom.py"))
    with pytest.raises(bt.BacktestError):
        bt.parse_balances(["USD=lots"])
    with pytest.raises(bt.BacktestError):
        bt.parse_params(["novalue"])
    default, per = bt.parse_fees(["0.001", "kraken:maker=0.0016,taker=0.0026"])
    assert default == FeeSchedule(Decimal("0.001"), Decimal("0.001"))
    assert per["kraken"].taker == Decimal("0.0026")


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    root = tmp_path_factory.mktemp("cap")
    lab("record", "--venue", "mock", "--duration", "4s", "--out", root, "--no-compact")
    return root


def test_lab_backtest_end_to_end_on_a_recorded_capture(capture, tmp_path):
    out = tmp_path / "results"
    plot = tmp_path / "mm.png"
    proc = lab("backtest", os.path.join(REPO, "examples", "market_maker.py"), capture, "--symbol", "btc-usd",
               "--queue", "conservative", "--latency", "2ms", "--sample", "200ms", "--out", out, "--json",
               *(("--plot", plot) if _has_matplotlib() else ()))
    summary = json.loads(proc.stdout)
    assert summary["book_messages"] > 500 and summary["orders"] > 10
    assert summary["fills"] > 0 and summary["maker_fills"] == summary["fills"]  # post-only quotes
    # the books' fills and fees agree with the tables, and equity explains itself
    rows = [json.loads(line) for line in lab("query", "--root", out, "--json",
                                             "SELECT count(*) AS n, sum(fee) AS fees FROM fills").stdout.splitlines()]
    assert rows[0]["n"] == summary["fills"]
    assert Decimal(str(rows[0]["fees"])) == Decimal(summary["fees"])
    eq = lab("query", "--root", out, "--csv", "SELECT count(*) FROM equity").stdout.split()
    assert int(eq[-1]) >= 5
    assert Decimal(summary["end_equity"]) - Decimal(summary["start_equity"]) == Decimal(summary["pnl"])
    if _has_matplotlib():
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a second run with the same models is the same to the last digit
    again = json.loads(lab("backtest", os.path.join(REPO, "examples", "market_maker.py"), capture, "--symbol", "BTC-USD",
                           "--queue", "conservative", "--latency", "2ms", "--sample", "200ms", "--out", tmp_path / "r2",
                           "--json").stdout)
    assert {k: v for k, v in again.items() if k not in ("session", "results", "plot")} == \
           {k: v for k, v in summary.items() if k not in ("session", "results", "plot")}


def test_lab_backtest_bad_input_is_one_clear_line(capture, tmp_path):
    mm = os.path.join(REPO, "examples", "market_maker.py")
    for args, text in ((("--latency", "fast"), "--latency"), (("--queue", "lifo"), "queue model"),
                       (("--fees", "maker=2"), "out of range"), (("--from", "yesterday-ish"), "--from"),
                       (("--balance", "USD"), "--balance")):
        proc = lab("backtest", mm, capture, "--out", tmp_path / "x", *args, check=False)
        assert proc.returncode != 0
        assert text in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    proc = lab("backtest", mm, tmp_path / "empty", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr


def _has_matplotlib():
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        return False


def test_the_same_strategy_class_runs_under_lab_paper_on_a_live_simulator(tmp_path):
    from lab.venues.kraken.sim import SIM_API_KEY, SIM_API_SECRET
    from lab.venues.simulator import SimulatorThread

    keys = tmp_path / "api_keys.properties"
    keys.write_text(f"KRAKEN_API_KEY={SIM_API_KEY}\nKRAKEN_API_SECRET={SIM_API_SECRET}\n")
    os.chmod(keys, 0o600)
    env = dict(os.environ, LAB_NONCE_DIR=str(tmp_path / "nonces"))
    with SimulatorThread("kraken", seed=5, rate=400) as sim:
        proc = lab("paper", "--venue", "kraken", "--symbol", "XBT/USD", "--keys", keys, "--rest-url", sim.url,
                   "--ws-url", sim.ws_url, "--strategy", os.path.join(REPO, "examples", "market_maker.py"),
                   "--param", "size=0.01", "--param", "requote_ticks=50", "--duration", "3s", "--out", tmp_path / "paper",
                   "--json", env=env)
    summary = json.loads(proc.stdout)
    assert summary["book_messages"] > 20 and summary["orders"] >= 2
    # every order went through Kraken's validate=true: none was refused for its form
    statuses = lab("query", "--root", tmp_path / "paper", "--csv", "SELECT DISTINCT status FROM orders").stdout.split()[1:]
    assert "rejected" not in statuses or summary["orders_rejected"] < summary["orders"]
    assert SIM_API_SECRET not in proc.stdout + proc.stderr


def test_orders_on_two_venues_keep_their_own_ids_precisions_and_accounts():
    class TwoLegs(bt.Strategy):
        balances = {"A": "5", "B": "10000"}

        def __init__(self):
            super().__init__()
            self.fills = []
            self.done = set()

        def on_book(self, book):
            if book.venue not in self.done:
                self.done.add(book.venue)
                self.ctx.place_order(book.venue, book.symbol, "buy", "market", "0.1")

        def on_fill(self, fill):
            self.fills.append(fill)

    s = TwoLegs()
    e = engine(s)
    x, y = new_book("x"), OrderBook("y", "A-B", 1, 4)
    y.synced = True
    e.on_book(set_book(x, 1_000 * MS, 10_000, 10_010))  # 100.00 / 100.10
    e.on_book(set_book(y, 1_001 * MS, 3_000, 3_001))  # 300.0 / 300.1
    e.finish()
    ids = [o.id for b in e.brokers.values() for o in b.orders]
    assert len(set(ids)) == 2
    assert sorted((f.venue, f.price) for f in s.fills) == [("x", Decimal("100.10")), ("y", Decimal("300.1"))]
    assert e.account("y").balances["B"] == Decimal(10000) - Decimal("30.01") - Decimal("30.01") * Decimal("0.002")


def test_a_strategy_that_raises_ends_the_run_with_one_line_naming_its_file_and_time(capture, tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from lab.replay.backtest import Strategy\n"
                   "class Bad(Strategy):\n"
                   "    def on_book(self, book):\n"
                   "        self.ctx.place_order(book.venue, book.symbol, 'buy', 'market', '0.000000001')\n")
    proc = lab("backtest", bad, capture, "--out", tmp_path / "r", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line and "Bad failed at 20" in line and "bad.py:4" in line and "precision" in line, line
