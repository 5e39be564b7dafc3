"""`lab bench book --json`: the interface the acceptance checks read (one JSON line per engine
with engine, path, deltas, deltas_per_s, best_bid, best_ask), run small and without peers."""
from __future__ import annotations

import json
import subprocess
import sys

from lab.benchmarks.book import ratios


def test_bench_book_json_lines() -> None:
    out = subprocess.run([sys.executable, "-m", "lab.cli", "bench", "book", "--rows", "20000", "--json"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    engines = [line for line in lines if "engine" in line and "error" not in line]
    assert {e["engine"] for e in engines} >= {"lab rust_book.rebuild_book", "lab OrderBook.apply_rows", "python dict baseline"}
    workload = next(line for line in lines if line.get("metric") == "workload")
    for e in engines:
        assert {"engine", "path", "deltas", "deltas_per_s", "best_bid", "best_ask"} <= e.keys()
        assert e["path"] in ("bulk", "per-message")
        assert e["deltas"] == workload["rows"] and e["deltas_per_s"] > 0
        assert (e["best_bid"], e["best_ask"]) == (workload["best_bid"], workload["best_ask"]) and e["ok"]
    metrics = {line["metric"]: line for line in lines if "metric" in line}
    assert metrics["parquet_to_quotes"]["book_rows"] == workload["rows"]
    # DECIMAL(38, 18) FLBA prices and amounts (schema 2): 8.3 bytes/row at 2M rows, more on small files
    assert 0 < metrics["book_bytes_per_row"]["bytes_per_row"] < 11
    assert metrics["raw_vs_gzip"]["gzip_bytes"] > 0
    assert "bulk_vs_fastest_peer" not in metrics["ratios"]  # no peers, no ratio against one


def test_ratios_against_the_fastest_peer_per_path() -> None:
    engines = [
        {"engine": "lab rust_book.rebuild_book", "path": "bulk", "deltas_per_s": 90e6},
        {"engine": "lab OrderBook.apply_rows", "path": "per-message", "deltas_per_s": 20e6},
        {"engine": "python dict baseline", "path": "per-message", "deltas_per_s": 30e6},  # not a peer
        {"engine": "hftbacktest HashMapMarketDepthBacktest", "path": "bulk", "deltas_per_s": 15e6},
        {"engine": "NautilusTrader OrderBook L2_MBP", "path": "per-message", "deltas_per_s": 2.5e6},
        {"engine": "cryptofeed order-book (C extension)", "path": "per-message", "deltas_per_s": 0.5e6},
    ]
    r = ratios(engines)
    assert r["bulk_vs_fastest_peer"] == 6.0 and r["bulk_fastest_peer"].startswith("hftbacktest")
    assert r["per_message_vs_fastest_peer"] == 8.0 and r["per_message_fastest_peer"].startswith("Nautilus")
