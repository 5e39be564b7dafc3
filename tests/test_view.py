"""`lab view`: the page logic (lab/view/model.py) and the Streamlit page itself through Streamlit's
own app-testing API (streamlit.testing.v1.AppTest), against real simulators on loopback."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from decimal import Decimal

import pytest

from lab import get_connector, list_connectors
from lab.view import model
from lab.venues.simulator import SimulatorThread

APP = os.path.join(os.path.dirname(__file__), "..", "lab", "view", "app.py")


def wait_for(pred, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


# -- pure logic -------------------------------------------------------------------------------------
def test_fixed_is_exact():
    assert model.fixed(299996, 1) == "29999.6"
    assert model.fixed(5, 8) == "0.00000005"
    assert model.fixed(-1234, 2) == "-12.34"
    assert model.fixed(7, 0) == "7"
    assert model.fixed(123456789012345678901234567890, 18) == "123456789012.345678901234567890"


class FakeBook:
    price_precision, amount_precision = 2, 8

    def __init__(self, bids, asks):
        self._b, self._a = bids, asks

    def bids_ticks(self):
        return self._b

    def asks_ticks(self):
        return self._a

    def top_ticks(self):
        return (self._b[0][0] if self._b else None, self._a[0][0] if self._a else None)


def test_quote_ladder_history_badge():
    book = FakeBook([(10001, 5), (10000, 100000000)], [(10004, 1)])
    q = model.quote(book)
    assert (q.bid, q.ask, q.spread, q.mid) == ("100.01", "100.04", "0.03", "100.025")
    assert model.quote(FakeBook([(10000, 1)], [(10002, 1)])).mid == "100.01"
    assert model.quote(FakeBook([], [(10002, 1)])).spread is None
    lad = model.ladder(book, 5)
    assert lad.rows() == [{"bid amount": "0.00000005", "bid": "100.01", "ask": "100.04", "ask amount": "0.00000001"},
                          {"bid amount": "1.00000000", "bid": "100.00", "ask": "", "ask amount": ""}]
    assert len(model.ladder(book, 1).bids) == 1
    h = model.History(window=10, interval=0.1, maxlen=50)
    for i in range(200):
        h.add(book, now=1000 + i * 0.05)
    assert len(h) <= 50 and all(p[0] >= 1000 + 199 * 0.05 - 10 for p in h.points())
    assert h.points()[-1][1:] == (100.01, 100.04, 100.025)
    from lab.recorder.health import Health

    health = Health()
    assert model.badge(health.status()).text == "STOPPED"
    health.on_start()
    health.on_open()
    health.on_close("x")
    b = model.badge(health.status())
    assert b.text == "RECONNECTING (attempt 1)" and b.colour == model.BADGE_COLOURS["RECONNECTING"]
    assert model.badge(None, replay=True, paused=True).text == "PAUSED"


def test_ladder_matches_the_venue_snapshot_exactly():
    with SimulatorThread("kraken", seed=2, rate=100) as sim:
        conn = get_connector("kraken", rest_url=sim.url, ws_url=sim.ws_url)
        book = conn.fetch_orderbook_sync("XBT/USD")
        lad = model.ladder(book, 10)
        assert [(Decimal(l.price), Decimal(l.amount)) for l in lad.bids] == book.bids[:10]
        assert [(Decimal(l.price), Decimal(l.amount)) for l in lad.asks] == book.asks[:10]
        assert all(len(l.price.split(".")[1]) == book.price_precision for l in lad.bids)


# -- the page (AppTest) -----------------------------------------------------------------------------
def app_test(monkeypatch, **env):
    from streamlit.testing.v1 import AppTest

    for k in ("VENUE", "SYMBOL", "REST_URL", "WS_URL", "CAPTURE", "KEYS", "STREAM"):
        monkeypatch.delenv("LAB_VIEW_" + k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv("LAB_VIEW_" + k.upper(), str(v))
    return AppTest.from_file(APP, default_timeout=30)


def markdown(at) -> str:
    return "\n".join(m.value for m in at.markdown)


def badge_state(at) -> str | None:
    m = re.search(r'data-state="([A-Z_]+)"', markdown(at))
    return m.group(1) if m else None


def ladder_bids(at) -> list[str]:
    return re.findall(r'class="lab-bid">([0-9.]*)<', markdown(at))


@pytest.fixture()
def kraken_sim():
    with SimulatorThread("kraken", seed=5, rate=200) as sim:
        yield sim


@pytest.mark.timeout(120)
def test_page_live_stream_and_snapshot(kraken_sim, monkeypatch):
    at = app_test(monkeypatch, venue="kraken", symbol="XBT/USD", rest_url=kraken_sim.url, ws_url=kraken_sim.ws_url)
    at.run()
    assert not at.exception, at.exception
    venue = at.sidebar.selectbox(key="venue")
    assert venue.value == "kraken" and venue.options == list_connectors()
    symbol = at.sidebar.selectbox(key="symbol")
    assert symbol.value == "XBT/USD" and "ETH/USD" in symbol.options
    assert badge_state(at) == "STOPPED"
    # one REST snapshot
    at.sidebar.button(key="fetch").click().run()
    assert not at.exception, at.exception
    bids = ladder_bids(at)
    assert len(bids) == 10 and all(re.fullmatch(r"\d+\.\d", b) for b in bids)
    assert [m.label for m in at.metric] == ["best bid", "best ask", "spread", "mid"]
    # streaming: LIVE and a ladder that changes
    at.sidebar.toggle(key="streaming").set_value(True).run()
    session = at.session_state["session"]
    assert session.streaming
    assert wait_for(lambda: session.status().state == "LIVE", 15)
    seen = set()

    def changed():
        at.run()
        seen.add(tuple(ladder_bids(at)) + tuple(m.value for m in at.metric))
        return badge_state(at) == "LIVE" and len(seen) >= 3

    assert wait_for(changed, 15, 0.2), (badge_state(at), len(seen))
    assert 'data-counter="messages"' in markdown(at)
    at.sidebar.toggle(key="streaming").set_value(False).run()
    assert not session.streaming and badge_state(at) == "STOPPED"


@pytest.mark.timeout(120)
def test_page_paper_orders_with_the_authenticated_connector(kraken_sim, monkeypatch, tmp_path):
    from lab.venues.kraken.sim import SIM_API_KEY, SIM_API_SECRET

    monkeypatch.setenv("LAB_NONCE_DIR", str(tmp_path / "nonces"))
    keys = tmp_path / "api_keys.properties"
    keys.write_text(f"KRAKEN_API_KEY={SIM_API_KEY}\nKRAKEN_API_SECRET={SIM_API_SECRET}\n")
    os.chmod(keys, 0o600)
    at = app_test(monkeypatch, venue="kraken_auth", symbol="XBT/USD", rest_url=kraken_sim.url, ws_url=kraken_sim.ws_url,
                  keys=keys)
    at.run()
    assert not at.exception, at.exception
    at.sidebar.button(key="fetch").click().run()
    at.button(key="balance").click().run()
    assert not at.exception, at.exception
    assert at.json[0].value and "XXBT" in at.json[0].value
    at.text_input(key="order_volume").input("0.01")
    submit = next(b for b in at.button if b.label == "Send (validate=true)")
    submit.click().run()
    assert not at.exception, at.exception
    result = at.session_state["order_result"]
    assert result["ok"], result
    assert result["venue"]["descr"]["order"].startswith("buy 0.01")
    assert result["order"]["status"] == "filled" and result["fills"]
    # a rejected order shows the venue's error
    at.text_input(key="order_volume").input("0.00001")
    next(b for b in at.button if b.label == "Send (validate=true)").click().run()
    assert at.session_state["order_result"]["ok"] is False
    assert "minimum" in at.session_state["order_result"]["venue"]
    page = markdown(at) + "".join(str(j.value) for j in at.json) + "".join(e.value for e in at.error)
    assert SIM_API_SECRET not in page and SIM_API_KEY not in page


@pytest.mark.timeout(180)
def test_page_replays_a_capture(monkeypatch, tmp_path):
    root = tmp_path / "cap"
    with SimulatorThread("kraken", seed=8, rate=300) as sim:
        r = subprocess.run([sys.executable, "-m", "lab.cli", "record", "--venue", "kraken", "--symbol", "XBT/USD",
                            "--duration", "3s", "--out", str(root), "--rest-url", sim.url, "--ws-url", sim.ws_url],
                           capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    at = app_test(monkeypatch, capture=root)
    at.run()
    assert not at.exception, at.exception
    session = at.session_state["replay"]
    assert session.symbols == ["XBT-USD"]
    at.sidebar.select_slider(key="replay_speed").set_value(100.0).run()
    at.sidebar.button(key="play").click().run()
    assert wait_for(lambda: session.books > 5, 30)
    at.run()
    assert badge_state(at) == "REPLAY" and len(ladder_bids(at)) == 10
    at.sidebar.button(key="pause").click().run()
    assert badge_state(at) == "PAUSED"
    n = session.books
    time.sleep(0.5)
    assert session.books - n <= 1
    at.sidebar.button(key="play").click().run()
    assert wait_for(lambda: session.books > n + 2 or session.done, 30)
    session.stop()


def test_lab_view_without_streamlit_says_how_to_install(monkeypatch):
    import importlib.util

    from click.testing import CliRunner

    from lab.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "streamlit" else real(name, *a))
    result = CliRunner().invoke(main, ["view", "--venue", "kraken"])
    assert result.exit_code == 2
    assert result.output.strip() == "lab view needs Streamlit: pip install 'lab[view]'"


def test_lab_view_command_line():
    from lab.view.cli import streamlit_command

    cmd = streamlit_command(venue="kraken", symbol="XBT/USD", port=9999, rest_url="http://h", stream=True)
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4].endswith(os.path.join("lab", "view", "app.py"))
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1" and cmd[cmd.index("--server.port") + 1] == "9999"
    assert cmd[cmd.index("--") + 1:] == ["--venue", "kraken", "--symbol", "XBT/USD", "--rest-url", "http://h", "--stream"]
