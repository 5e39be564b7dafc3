"""`lab info`: the summary agrees with DuckDB over the same files, to the row and the nanosecond."""
from __future__ import annotations

import glob
import json
import os

import pytest

from labcli import lab
from lab.datasets.catalog import query
from lab.recorder.recorder import Recorder, RecordOptions
from lab.venues.simulator import SimulatorThread


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    root = tmp_path_factory.mktemp("info") / "c"
    with SimulatorThread("mock", seed=3, rate=400) as sim:
        Recorder(RecordOptions(venue="mock", symbols=[], root=str(root), rest_url=sim.url, ws_url=sim.ws_url,
                               duration=3.0, status=False, compact=False, rotate_interval=1.0)).run()
    return str(root)


def test_info_matches_the_data(capture):
    report = json.loads(lab("info", capture, "--json").stdout)
    assert report["unreadable_files"] == [] and report["sessions"] == 1 and report["journals"] == 0
    (venue, v), = report["venues"].items()
    assert v["symbols"], "no symbols"
    for symbol, tables in v["symbols"].items():
        for table in ("book", "trades"):
            t = query(capture, f"select count(*) n, min(epoch_ns(local_timestamp)) lo, max(epoch_ns(local_timestamp)) hi "
                               f"from {table} where symbol = '{symbol}'").to_pylist()[0]
            e = tables[table]
            assert e["rows"] == t["n"] and e["files"] >= 1
            lo, hi = e["from"], e["to"]
            assert lo.endswith("Z") and int(lo[-10:-1]) == t["lo"] % 10**9 and int(hi[-10:-1]) == t["hi"] % 10**9
    assert v["tables"]["raw"]["rows"] == query(capture, "select count(*) n from raw").to_pylist()[0]["n"]
    assert report["from"] <= min(e["from"] for t in v["symbols"].values() for e in t.values())


def test_info_lists_an_unreadable_file_and_keeps_going(capture, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(capture, root)
    victim = sorted(glob.glob(str(root / "book" / "**" / "*.parquet"), recursive=True))[0]
    with open(victim, "r+b") as f:
        f.truncate(os.path.getsize(victim) // 2)
    r = lab("info", str(root))
    assert f"unreadable: {os.path.realpath(victim)}" in r.stdout or f"unreadable: {victim}" in r.stdout
    report = json.loads(lab("info", str(root), "--json").stdout)
    assert len(report["unreadable_files"]) == 1 and report["venues"]


def test_info_of_a_missing_root_is_one_line(tmp_path):
    r = lab("info", str(tmp_path / "nope"), check=False)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [f"lab: error: capture root {str(tmp_path / 'nope')!r} does not exist"]
