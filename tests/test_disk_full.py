"""Disk full on a real small filesystem (an 8 MiB tmpfs), recording the mock simulator until it fills.

- the watermark stop is clean: exit 1 with one line, an `events` row (kind `watermark`), the last
  segment rotated into Parquet, no journal left, verify healthy;
- ENOSPC (the disk filled by someone else) is the same clean stop: one line, nothing durable
  lost; `verify --repair` on the full disk reports and changes nothing; once space is free, the
  repair keeps every journaled row.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from lab.datasets.journal import read_journal
from lab.venues.simulator import SimulatorThread

LAB = [sys.executable, "-m", "lab.cli"]


def lab(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([*LAB, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def assert_one_error_line(p, *needles):
    err = p.stderr.strip()
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr and err.count("\n") == 0 and err.startswith("lab: error: "), err
    for needle in needles:
        assert needle in err, (needle, err)


@pytest.fixture
def small_fs(tmp_path):
    """An 8 MiB tmpfs (root, as here and in CI). Without the right to mount, skip with the reason."""
    if shutil.which("mount") is None:
        pytest.skip("no mount(8) on this machine")
    mnt = tmp_path / "small"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {p.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def journals(root) -> dict[str, bytes]:
    d = root / ".journal"
    return {p.name: p.read_bytes() for p in sorted(d.glob("*.journal"))} if d.exists() else {}


def tmp_files(root) -> list:
    return sorted(p for p in root.rglob(".*.tmp"))


def count(root, sql) -> int:
    p = lab("query", sql, "--root", root, "--csv")
    assert p.returncode == 0, p.stderr
    return int(p.stdout.splitlines()[1])


def free_mib(path) -> float:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize / 2**20


def test_watermark_stop_is_clean_event_rotated_no_journal(small_fs):
    root = small_fs / "cap"
    with SimulatorThread("mock", seed=7, rate=4000) as sim:
        p = lab("record", "--venue", "mock", "--out", root, "--rest-url", sim.url, "--ws-url", sim.ws_url,
                "--duration", "90s", "--rotate", "30s", "--min-free", "2")
    assert_one_error_line(p, "disk almost full", "watermark")
    assert journals(root) == {} and tmp_files(root) == []  # the last segment went to Parquet
    assert free_mib(small_fs) > 1.0  # stopped before the disk was full, with room to spare
    assert count(root, "select count(*) from events where kind = 'watermark'") == 1
    assert count(root, "select count(*) from raw where kind = 'recv'") > 1000
    v = lab("verify", root, "--json")
    assert v.returncode == 0 and json.loads(v.stdout)["ok"], v.stdout


def _fill(path, keep: int = 0) -> None:
    """Fill the filesystem, leaving `keep` bytes."""
    with open(path, "wb") as f:
        block = b"\0" * (64 << 10)
        try:
            while free_mib(os.path.dirname(path)) * 2**20 > keep + len(block):
                f.write(block)
                f.flush()
            f.write(b"\0" * max(0, int(free_mib(os.path.dirname(path)) * 2**20) - keep))
            f.flush()
            os.fsync(f.fileno())
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def test_enospc_is_a_clean_stop_and_repair_on_a_full_disk_changes_nothing(small_fs):
    root = small_fs / "cap"
    filler = small_fs / "filler"
    with SimulatorThread("mock", seed=8, rate=2000) as sim:
        rec = subprocess.Popen([*LAB, "record", "--venue", "mock", "--out", str(root), "--rest-url", sim.url,
                                "--ws-url", sim.ws_url, "--duration", "60s", "--rotate", "1s", "--min-free", "0",
                                "--flush-interval", "200ms"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while not list((root / "raw").rglob("*.parquet")) and time.monotonic() < deadline:
            time.sleep(0.1)  # until a first segment is in Parquet
        time.sleep(1.5)
        _fill(filler)  # somebody else takes every byte left
        out, err = rec.communicate(timeout=60)
    p = subprocess.CompletedProcess(rec.args, rec.returncode, out, err)
    assert_one_error_line(p, "disk")
    assert tmp_files(root) == []
    parquet_recv = count(root, "select count(*) from raw where kind = 'recv'")
    assert parquet_recv > 0  # the segments rotated before the disk filled are intact
    held = journals(root)
    journal_rows = sum(len(read_journal(str(root / ".journal" / name)).rows) for name in held)

    assert held  # the segment that could not rotate stays in its journal
    # repair on the full disk: reports, keeps every journal byte, leaves no .tmp
    _fill(str(filler) + "2")
    r = lab("verify", root, "--repair")
    assert_one_error_line(r, "disk full")
    assert journals(root) == held and tmp_files(root) == []
    os.remove(str(filler) + "2")

    os.remove(filler)
    r = lab("verify", root, "--repair", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert journals(root) == {}
    total = count(root, "select count(*) from raw")
    # nothing durable lost: every row in Parquet before, plus every intact journaled row
    assert total >= parquet_recv + journal_rows  # the journals' rows are all raw rows now
    assert count(root, "select count(*) from raw where kind = 'recv'") >= parquet_recv
    # the space kept back (the session's .reserve) let the stop's note reach the journal
    assert count(root, "select count(*) from events where kind = 'disk_full'") == 1
    assert not [n for n in os.listdir(root / ".journal") if n.endswith(".reserve")]
