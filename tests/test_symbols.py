"""One symbol model: venue spelling (`XBT/USD`) and canonical (`XBT-USD`) accepted everywhere,
case-insensitively; outputs show the canonical spelling."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from lab import ReplayConnector, get_connector
from lab.core.errors import VenueError
from lab.recorder.recorder import Recorder, RecordOptions
from lab.datasets.reader import CaptureError
from lab.symbols import UnknownSymbol, key, resolve
from lab.venues.simulator import SimulatorThread


def test_resolve_spellings():
    known = ["XBT/USD", "ETH/USD", "BTCUSDT"]
    for spelling in ("XBT/USD", "XBT-USD", "xbt/usd", "xbt-usd", " Xbt_Usd "):
        assert resolve(spelling, known) == "XBT/USD"
    assert resolve("btcusdt", known) == "BTCUSDT"
    assert key("eth/usd") == key("ETH-USD") == "ETH-USD"
    with pytest.raises(UnknownSymbol, match=r"unknown symbol 'DOGE/USD' for kraken \(has: BTCUSDT, ETH/USD, XBT/USD\)"):
        resolve("DOGE/USD", known, "kraken")
    with pytest.raises(UnknownSymbol, match="ambiguous"):
        resolve("a-b", ["A/B", "A_B"])


def test_every_spelling_live_record_and_replay(tmp_path):
    root = str(tmp_path / "cap")
    with SimulatorThread("kraken", seed=2, rate=400) as sim:
        c = get_connector("kraken", rest_url=sim.url, ws_url=sim.ws_url)
        for spelling in ("XBT/USD", "XBT-USD", "xbt/usd"):
            assert c.fetch_orderbook_sync(spelling).symbol == "XBT-USD"
        with pytest.raises(VenueError, match="unknown symbol 'NOPE/USD'"):
            c.start_stream("NOPE/USD", print)
        seen = []
        c.start_stream("xbt-usd", lambda b: seen.append(b.symbol))
        time.sleep(1.0)
        c.stop_stream()
        assert seen and set(seen) == {"XBT-USD"}
        # record with the canonical spelling, lower case
        Recorder(RecordOptions(venue="kraken", symbols=["xbt-usd"], root=root, rest_url=sim.url, ws_url=sim.ws_url,
                               duration=2, status=False)).run()
    for spelling in ("XBT/USD", "XBT-USD", "xbt/usd"):
        r = ReplayConnector(root, symbols=[spelling])
        assert r.list_symbols() == ["XBT-USD"]
        books = []
        r.start_stream(spelling, lambda b: books.append(b.seq))
        assert r.run()["messages"] == len(books) > 0
    with pytest.raises(CaptureError, match="unknown symbol 'ETH/USD' for the capture"):
        ReplayConnector(root).start_stream("ETH/USD", print)
    out = subprocess.run([sys.executable, "-m", "lab.cli", "replay", root, "--symbol", "XBT/USD", "--speed", "max", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    [(name, stream)] = summary["streams"].items()
    assert name == "kraken/XBT-USD" and stream["symbol"] == "XBT-USD" and stream["seq"] > 0
    assert isinstance(stream["best_bid"], str) and isinstance(stream["best_ask"], str)
    assert "E" not in stream["best_bid"] and float(stream["best_bid"]) < float(stream["best_ask"])
    out = subprocess.run([sys.executable, "-m", "lab.cli", "rebuild", root, "--symbol", "xbt/usd", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    [line] = out.stdout.splitlines()
    assert json.loads(line)["symbol"] == "XBT-USD"
