"""The `lab view` page in a real browser: headless Chromium (Debian's `chromium`) driven over the
Chrome DevTools Protocol (tests/cdp.py) loads the page started by `lab view` against a Kraken
simulator, sees LIVE and a ladder that changes; the simulator stops and the badge turns
RECONNECTING within 3 s; the simulator comes back and the badge is LIVE again. Screenshots of
both states go to the test's tmp folder, and to docs/view-live.png and docs/view-reconnecting.png
when LAB_UPDATE_SCREENSHOTS=1 (so a test run leaves the tracked pictures alone)."""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from cdp import Browser, chromium_path  # noqa: E402

from lab.venues.simulator import SimulatorThread  # noqa: E402

pytest.importorskip("streamlit", reason="the page needs streamlit: pip install 'lab[view]'")
pytestmark = pytest.mark.skipif(chromium_path() is None, reason="no chromium on PATH (apt-get install chromium; .ci/run does)")

DOCS = os.path.join(os.path.dirname(__file__), "..", "docs")
SHOTS = DOCS if os.environ.get("LAB_UPDATE_SCREENSHOTS") == "1" else None
BADGE = "(() => { const b = document.querySelector('.lab-badge'); return b ? b.dataset.state + '|' + b.textContent : null; })()"
LADDER = "Array.from(document.querySelectorAll('.lab-ladder td')).map(td => td.textContent).join(' ')"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(url)


async def until(page, expression, pred, timeout, step=0.1):
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = await page.eval(expression)
        if pred(value):
            return value
        await asyncio.sleep(step)
    raise AssertionError(f"{expression} -> {value!r} after {timeout}s")


@pytest.mark.timeout(180)
def test_browser_live_reconnecting_live(tmp_path):
    shots = tmp_path
    sim = SimulatorThread("kraken", seed=9, rate=100)
    sim.start()
    sim_port = sim.port
    port = free_port()
    view = subprocess.Popen(
        [sys.executable, "-m", "lab.cli", "view", "--venue", "kraken", "--symbol", "XBT/USD", "--port", str(port),
         "--rest-url", sim.url, "--ws-url", sim.ws_url, "--stream"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/_stcore/health", 60)

        async def drive():
            nonlocal sim
            async with Browser() as browser:
                page = await browser.page(f"http://127.0.0.1:{port}/")
                await until(page, BADGE, lambda v: v and v.startswith("LIVE"), 60)
                ladders = set()
                t_end = time.monotonic() + 10
                while len(ladders) < 3 and time.monotonic() < t_end:
                    ladders.add(await page.eval(LADDER))
                    await asyncio.sleep(0.2)
                assert len(ladders) >= 3, "the ladder did not change while LIVE"
                assert all("." in l for l in ladders)
                await asyncio.sleep(1.5)  # let the chart gather a few points
                await page.screenshot(os.path.join(SHOTS or str(shots), "view-live.png"))

                t0 = time.monotonic()
                sim.stop()
                text = await until(page, BADGE, lambda v: v and v.startswith("RECONNECTING"), 3.0, 0.05)
                latency = time.monotonic() - t0
                print(f"\nbrowser: {text.split('|')[1]!r} {latency * 1000:.0f} ms after the simulator stopped")
                assert "attempt" in text
                await asyncio.sleep(0.5)
                await page.screenshot(os.path.join(SHOTS or str(shots), "view-reconnecting.png"))

                sim = SimulatorThread("kraken", seed=10, rate=100, port=sim_port)
                sim.start()
                t1 = time.monotonic()
                await until(page, BADGE, lambda v: v and v.startswith("LIVE"), 20)
                print(f"browser: LIVE again {(time.monotonic() - t1) * 1000:.0f} ms after the simulator restarted")
                counters = await page.eval("Array.from(document.querySelectorAll('[data-counter]')).map(b => b.dataset.counter + '=' + b.textContent).join(' ')")
                print("browser:", counters)
                assert "reconnects=0" not in counters
                await page.close()
                return latency

        asyncio.run(drive())
    finally:
        view.terminate()
        try:
            view.wait(10)
        except subprocess.TimeoutExpired:
            view.kill()
        sim.stop()
