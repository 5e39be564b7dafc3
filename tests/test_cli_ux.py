"""The `lab` command as a user meets it in a terminal: output that fits, progress bars only on a
TTY, the embedded default in one command, `lab demo`, and the small things (--version, -m, help).
Every test runs the real CLI as a subprocess against a real recording of the embedded simulator."""
from __future__ import annotations

import csv
import io
import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from importlib.metadata import version

import pytest
from labcli import lab as run_lab

pytestmark = pytest.mark.timeout(300)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def env(**extra) -> dict:
    e = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    e.pop("COLUMNS", None)
    e.update({k: str(v) for k, v in extra.items()})
    return e


def lab(*args, check=True, timeout=120, **extra_env) -> subprocess.CompletedProcess:
    return run_lab(*args, check=check, timeout=timeout, env=env(**extra_env), module="lab")  # `python -m lab`, as users may


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    """`lab record --venue mock --duration 10s --out D` with nothing else running."""
    root = tmp_path_factory.mktemp("ux") / "cap"
    p = lab("record", "--venue", "mock", "--duration", "10s", "--out", root, timeout=90)
    m = re.search(r"no URL given: started the embedded mock simulator on 127\.0\.0\.1:(\d+)", p.stderr)
    assert m and int(m.group(1)) != 8765, p.stderr  # a free port, not the default one
    assert "book messages" in p.stdout and "0 gaps" in p.stdout
    return root


def test_record_embedded_mock_works_alone(capture):
    report = json.loads(lab("verify", capture, "--json").stdout)
    assert report["ok"], report["problems"]
    assert set(report["streams"]) == {"mock/BTC-USD", "mock/ETH-USD"}
    assert all(s["messages"] > 1000 and s["checksums_ok"] == s["messages"] for s in report["streams"].values())


def test_record_that_fails_at_start_leaves_no_files(tmp_path):
    dead = "127.0.0.1:9"  # discard port: nothing listens
    fresh = tmp_path / "fresh"
    p = lab("record", "--venue", "mock", "--rest-url", f"http://{dead}", "--ws-url", f"ws://{dead}/ws", "--duration", "2s", "--out", fresh, check=False)
    assert p.returncode == 1 and p.stderr.strip().count("\n") == 0 and "unreachable" in p.stderr
    assert not fresh.exists()
    # into a root that holds something else: that stays, nothing of the failed session is added
    kept = tmp_path / "kept"
    (kept / "notes").mkdir(parents=True)
    (kept / "notes" / "a.txt").write_text("mine")
    p = lab("record", "--venue", "mock", "--rest-url", f"http://{dead}", "--ws-url", f"ws://{dead}/ws", "--duration", "2s", "--out", kept, check=False)
    assert p.returncode == 1
    assert sorted(str(f.relative_to(kept)) for f in kept.rglob("*") if f.is_file()) == ["notes/a.txt"]


def test_record_real_venue_keeps_its_real_endpoint(tmp_path):
    info = {json.loads(line)["venue"]: json.loads(line) for line in lab("venues", "--json").stdout.splitlines()}
    assert info["kraken"]["rest_url"] == "https://api.kraken.com" and info["kraken"]["ws_url"].startswith("wss://")
    assert "AssetPairs" in info["kraken"]["symbols"] and "XBT/USD" in info["kraken"]["simulator_symbols"]
    assert info["mock"]["symbols"] == ["BTC-USD", "ETH-USD"] and info["mock"]["embedded"] is True
    assert lab("venues").stdout.split() == sorted(info)


def test_query_fits_the_terminal_and_never_cuts_numbers(capture):
    sql = "select * from book order by all limit 20"  # a total order: rows that tie are identical
    full = list(csv.DictReader(io.StringIO(lab("query", sql, "--root", capture, "--csv").stdout)))
    for width in (60, 100, 160):
        out = lab("query", sql, "--root", capture, COLUMNS=width).stdout.splitlines()
        table = out[:22]
        assert all(len(line) <= width for line in table), (width, max(map(len, table)))
        header = re.split(r"\s{2,}", table[0].strip())
        assert {"price", "amount"} <= set(header), (width, header)
        for line, row in zip(table[2:], full):
            cells = re.split(r"\s{2,}", line.strip())
            values = dict(zip(header, cells)) if len(cells) == len(header) else {}
            assert values.get("price") == row["price"] and values.get("amount") == row["amount"], (width, line, row)
        if width < 160:
            assert re.search(r"\d+ more columns not shown: ", "\n".join(out))
    # piped (no terminal): every column, every value in full
    piped = lab("query", sql, "--root", capture).stdout.splitlines()
    assert re.split(r"\s{2,}", piped[0].strip()) == list(full[0].keys())


def test_query_text_is_cut_with_an_ellipsis(capture):
    out = lab("query", "select kind, payload from raw where kind = 'recv' limit 3", "--root", capture, COLUMNS=60).stdout.splitlines()
    assert all(len(line) <= 60 for line in out[:5]) and any(line.endswith("\u2026") for line in out[2:5])


def test_query_derived_table_not_built_yet_gets_a_hint(capture, tmp_path):
    p = lab("query", "select * from quotes", "--root", capture, check=False)
    assert p.returncode == 1 and p.stderr.strip() == f"lab: error: no `quotes` in {capture} yet: run `lab rebuild {capture}`"
    p = lab("query", "select * from book_snapshot_10", "--root", capture, check=False)
    assert p.returncode == 1 and f"run `lab rebuild {capture} --depth 10`" in p.stderr and p.stderr.count("\n") == 1
    p = lab("query", "selec 1", "--root", capture, check=False)
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and "syntax error" in p.stderr
    p = lab("query", "select * from nowhere", "--root", capture, check=False)
    assert p.returncode == 1 and "no table `nowhere`" in p.stderr and "book" in p.stderr and p.stderr.count("\n") == 1


def test_no_progress_output_when_not_a_terminal(capture, tmp_path):
    import shutil

    root = tmp_path / "copy"  # compact, rebuild and normalize change a capture: not the shared one
    shutil.copytree(capture, root)
    for args in (("verify", root), ("replay", root), ("compact", root), ("rebuild", root), ("normalize", root)):
        p = lab(*args, TERM="xterm")
        assert p.stderr == "", (args, p.stderr)
        assert not ANSI.search(p.stdout), args


def _run_on_pty(args, timeout=60.0) -> tuple[str, str, int]:
    """stderr on a pseudo-terminal (as in a real shell), stdout piped."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "lab", *map(str, args)], stdout=subprocess.PIPE, stderr=slave,
                            env=env(TERM="xterm", COLUMNS=120))
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed its end
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    out = proc.stdout.read().decode()
    return seen.decode(errors="replace"), out, proc.wait(timeout)


def test_progress_bar_renders_on_a_terminal(capture):
    # --speed 10: the 10 s capture in about 1 s, paced, so the bar is drawn several times
    err, out, rc = _run_on_pty(["replay", capture, "--speed", "10"])
    assert rc == 0 and out.startswith("replayed ")
    plain = ANSI.sub("", err)
    assert "replay" in plain and "events/s" in plain and "ETA" in plain, plain[-400:]
    counts = [tuple(map(int, m)) for m in re.findall(r"(\d+)/(\d+)", plain)]
    assert counts and counts[-1][0] == counts[-1][1] and len(set(counts)) >= 2  # it moved, and it finished
    assert not ANSI.search(out)  # stdout (a pipe) stays clean


def test_version_and_python_m_lab():
    want = version("lab")
    assert lab("--version").stdout.strip() == f"lab {want}"
    p = subprocess.run([sys.executable, "-m", "lab", "-V"], capture_output=True, text=True, env=env())
    assert p.returncode == 0 and p.stdout.strip() == f"lab {want}"


def test_help_has_examples_and_uncut_descriptions():
    top = lab("--help", COLUMNS=80).stdout
    commands = top.split("Commands:")[1].split("Examples:")[0]
    lines = [line for line in commands.splitlines() if line.strip()]
    assert len(lines) >= 12 and not any(line.rstrip().endswith("...") for line in lines), commands
    assert "Examples:" in top
    names = [line.split()[0] for line in lines]
    for name in names:
        sub = lab(name, "--help").stdout
        if name == "bench":
            sub = lab("bench", "book", "--help").stdout
        assert "Examples:" in sub and f"lab {name}" in sub.split("Examples:")[1], name


def test_replay_connector_repr(capture):
    sys.path.insert(0, ROOT)
    from lab import ReplayConnector

    conn = ReplayConnector(str(capture), speed=2.0)
    text = repr(conn)
    assert text.startswith("<ReplayConnector ") and "speed=2.0" in text and "mock/BTC-USD" in text and "ready" in text
    conn.speed = None
    conn.run()
    assert repr(conn).endswith("done>")


def test_demo_refuses_a_non_empty_out_and_cleans_its_temp_folder(tmp_path):
    out = tmp_path / "occupied"
    out.mkdir()
    (out / "x").write_text("mine")
    p = lab("demo", "--out", out, "--duration", "1s", check=False)
    assert p.returncode == 1 and "not empty" in p.stderr and p.stderr.count("\n") == 1
    p = lab("demo", "--out", out, "--duration", "1s", "--force", check=False)
    assert p.returncode == 1 and "no lab capture" in p.stderr and (out / "x").read_text() == "mine"
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    p = lab("demo", "--duration", "3s", TMPDIR=tmp, timeout=120)
    assert "same book as the simulator" in p.stdout and "healthy" in p.stdout
    # the figures are explained and reconciled: sent = stored + before the snapshot + in flight
    for m in re.finditer(r"the simulator sent ([\d,]+) deltas \(seq (\d+)\.\.(\d+)\): ([\d,]+) are stored(.*)", p.stdout):
        sent, stored = (int(m.group(i).replace(",", "")) for i in (1, 4))
        rest = m.group(5)
        before = int((re.search(r"([\d,]+) came before the first snapshot", rest) or [0, "0"])[1].replace(",", ""))
        flight = int((re.search(r"([\d,]+) were still in flight", rest) or [0, "0"])[1].replace(",", ""))
        assert "unexplained" not in rest and sent == stored + before + flight
    assert p.stdout.count("the simulator sent") == 2
    assert os.listdir(tmp) == []  # its temporary capture is gone
