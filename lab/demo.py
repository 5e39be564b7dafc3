"""`lab demo`: the whole loop on the embedded default, the mock venue simulator on loopback.

Start the simulator, record it, replay the capture through the Rust book, check the final books
against what the simulator says it sent, query the capture with DuckDB, verify it.
"""
from __future__ import annotations

import json
import tempfile
import urllib.request

from lab.datasets.catalog import query
from lab.datasets.verify import verify
from lab.recorder.recorder import Recorder, RecordOptions
from lab.replay.connector import ReplayConnector
from lab.venues.simulator import SimulatorThread


def run_demo(root: str | None, seconds: float, rate: float, echo=print) -> bool:
    root = root or tempfile.mkdtemp(prefix="lab-demo-")
    with SimulatorThread("mock", seed=7, rate=rate) as sim:
        echo(f"1/5 simulator: mock venue on {sim.url} ({rate:,.0f} msg/s)")
        echo(f"2/5 recording {seconds:.0f}s into {root} ...")
        summary = Recorder(RecordOptions(
            venue="mock", symbols=[], root=root, rest_url=sim.url, ws_url=sim.ws_url,
            duration=seconds, rotate_interval=5.0, status=True,
        )).run()
        echo(f"    {summary['frames']:,} frames, {summary['book_messages']:,} book messages, "
             f"{summary['files']} files, {summary['bytes'] / 1e6:.1f} MB")

        echo("3/5 replaying through the Rust book ...")
        result = ReplayConnector(root).run()
        sent = _get(sim.url + "/control/stats")["connections"][-1]
        ok = True
        for symbol, last_seq in sorted(sent["last_seq"].items()):
            stream = result["streams"].get(f"mock/{symbol}")
            want = _get(f"{sim.url}/control/book?symbol={symbol}&seq={last_seq}")
            match = stream is not None and stream["seq"] == last_seq and stream["checksum"] == want["checksum"]
            ok &= match
            echo(f"    {symbol}: simulator sent {sent['book_messages'][symbol]:,} deltas up to seq {last_seq}; replay ends at "
                 f"seq {stream and stream['seq']}, bid {stream and stream['best_bid']}, ask {stream and stream['best_ask']}: "
                 f"{'same book as the simulator' if match else 'MISMATCH'}")

    echo("4/5 DuckDB over the capture:")
    for row in query(root, "select symbol, count(*) as rows, count(distinct rec_id) as messages, "
                           "min(price_float) as low, max(price_float) as high from book group by symbol order by symbol").to_pylist():
        echo(f"    {row['symbol']}: {row['rows']:,} book rows in {row['messages']:,} messages, prices {row['low']:.2f}..{row['high']:.2f}")
    report = verify(root)
    echo(f"5/5 verify: {'healthy' if report['ok'] else 'UNHEALTHY: ' + '; '.join(report['problems'])}")
    echo(f"capture kept at {root}; try: lab query \"select * from events\" --root {root}")
    return ok and report["ok"]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())
