"""The write-ahead journal under corruption, truncation, lost markers and kill -9 (issue 8).

Journals here are written by the real `JournalWriter` from real raw rows of a short real mock
recording; recovery writes real Parquet; `lab verify` reads it back. Each test counts what survives
against what was written: every record whose bytes were not touched must survive, and every loss
must be reported (an `events` row, verify non-healthy).
"""
from __future__ import annotations

import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from lab.datasets import schema as S
from lab.datasets.journal import MAGIC, JournalWriter, encode, encode_header, read_journal
from lab.datasets.store import JOURNAL_DIR, atomic_write, raw_rows
from lab.datasets.verify import verify
from lab.datasets.writer import DAMAGE_KIND, TORN_KIND, CaptureWriter, recover
from lab.venues.mock.feed import Normalizer
from lab.venues.simulator import SimulatorThread
from labcli import LAB, lab  # noqa: F401


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """(root, raw rows sorted by rec_id) of a real 2 s mock recording."""
    root = tmp_path_factory.mktemp("rec") / "cap"
    with SimulatorThread("mock", seed=5, rate=2000) as sim:
        lab("record", "--venue", "mock", "--duration", "2s", "--out", root, "--rest-url", sim.url, "--ws-url", sim.ws_url)
    rows = []
    for f in sorted(glob.glob(str(root / "raw" / "**" / "*.parquet"), recursive=True)):
        rows.extend(raw_rows(pq.read_table(f)))
    rows.sort(key=lambda r: r.rec_id)
    assert len(rows) > 1000
    return root, rows


def write_journal(root, session, rows, header=True, marker=True, seq=0) -> str:
    jdir = os.path.join(root, JOURNAL_DIR)
    os.makedirs(jdir, exist_ok=True)
    path = os.path.join(jdir, f"{session}-{seq:06d}.journal")
    w = JournalWriter(path, {"venue": "mock", "depth": 0, "session": session} if header else None)
    for r in rows:
        w.append(r)
    w.close()
    if marker:
        with open(os.path.join(jdir, f"{session}.session.json"), "w") as f:
            json.dump({"venue": "mock", "depth": 0}, f)
    return path


def spans(rows, header_len) -> list[tuple[int, int, int]]:
    """(start, end, rec_id) of each record in a journal file."""
    out, pos = [], header_len
    for r in rows:
        n = len(encode(r))
        out.append((pos, pos + n, r.rec_id))
        pos += n
    return out


def raw_ids(root, session) -> list[int]:
    ids = []
    for f in glob.glob(os.path.join(root, "raw", "venue=*", "date=*", f"{session}-*.parquet")):
        ids.extend(pq.read_table(f, columns=["rec_id"]).column("rec_id").to_pylist())
    return sorted(ids)


def loss_events(root, session) -> list[dict]:
    out = []
    for f in glob.glob(os.path.join(root, "events", "venue=*", "date=*", f"{session}-*.parquet")):
        t = pq.read_table(f)
        for kind, detail in zip(t.column("kind").to_pylist(), t.column("detail").to_pylist()):
            if kind in (DAMAGE_KIND, TORN_KIND):
                out.append({"kind": kind, **json.loads(detail)})
    return out


def flip(path, positions) -> None:
    with open(path, "r+b") as f:
        for p in positions:
            f.seek(p)
            b = f.read(1)
            f.seek(p)
            f.write(bytes([b[0] ^ 0xFF]))


# -- every byte, every cut --------------------------------------------------------------------

def test_every_single_byte_flip_loses_only_the_touched_record(recording, tmp_path):
    """Through `read_journal`, every position of a 40-record journal (v1 and v2 headers)."""
    _, rows = recording
    small = rows[:40]
    for header in (False, True):
        path = write_journal(tmp_path, f"h{int(header)}", small, header=header, marker=False)
        data = open(path, "rb").read()
        hlen = len(MAGIC) if not header else len(encode_header({"venue": "mock", "depth": 0, "session": "h1"}))
        sp = spans(small, hlen)
        assert sp[-1][1] == len(data)
        for p in range(len(data)):
            d = bytearray(data)
            d[p] ^= 0xFF
            with open(path, "wb") as f:
                f.write(d)
            scan = read_journal(path)
            touched = {rid for a, b, rid in sp if a <= p < b}
            assert [r.rec_id for r in scan.rows] == [r.rec_id for r in small if r.rec_id not in touched], p
            by_id = {r.rec_id: r for r in small}
            assert all(r == by_id[r.rec_id] for r in scan.rows), p  # never garbage
            assert not scan.clean and scan.skipped_bytes > 0, p  # the loss is reported
            if touched:
                (a, b, _), = [s for s in sp if s[2] in touched]
                assert any(g["start"] <= a and g["end"] >= b for g in scan.skipped), (p, scan.skipped)
                assert scan.est_lost_records == 1, (p, scan.skipped)


def test_every_truncation_keeps_every_whole_record(recording, tmp_path):
    _, rows = recording
    small = rows[:40]
    path = write_journal(tmp_path, "t", small, marker=False)
    data = open(path, "rb").read()
    hlen = len(encode_header({"venue": "mock", "depth": 0, "session": "t"}))
    sp = spans(small, hlen)
    ends = {b for _, b, _ in sp} | {hlen}
    for cut in range(len(data)):
        with open(path, "wb") as f:
            f.write(data[:cut])
        scan = read_journal(path)
        whole = [rid for a, b, rid in sp if b <= cut]
        assert [r.rec_id for r in scan.rows] == whole, cut
        if cut in ends or cut == 0:
            assert scan.clean, cut  # a cut on a record boundary leaves nothing to see
        else:
            assert not scan.clean and scan.skipped[-1]["tail"] and scan.skipped[-1]["end"] == cut, cut


def test_every_single_byte_flip_through_recovery(recording, tmp_path):
    """Every position of a small real journal through `recover()` and `verify()`: one session
    per flipped position, all in one root; raw must hold every untouched record, and the loss
    must be an events row and make verify non-healthy."""
    _, rows = recording
    small = rows[:4]  # rest (instruments), open, recv, send: real rows of every early kind
    probe = write_journal(tmp_path / "probe", "P", small, marker=False)
    size = os.path.getsize(probe)
    root = tmp_path / "cap"
    expect = {}
    for p in range(size):
        session = f"S{p:05d}"
        path = write_journal(root, session, small)
        flip(path, [p])
        hlen = len(encode_header({"venue": "mock", "depth": 0, "session": session}))
        expect[session] = (p, [rid for a, b, rid in spans(small, hlen) if not a <= p < b])
    reports = recover(str(root))
    assert not os.listdir(root / JOURNAL_DIR), "every journal recovered (markers give the venue)"
    assert sum(r["skipped_bytes"] > 0 for r in reports) == size
    for session, (p, want) in expect.items():
        assert raw_ids(root, session) == want, (p, raw_ids(root, session), want)
        ev = loss_events(root, session)
        assert len(ev) == 1 and ev[0]["bytes"] > 0, (p, ev)
    report = verify(str(root))
    assert not report["ok"] and report["health"] in ("degraded", "unhealthy")
    assert report["unrecoverable_bytes"] > 0


# -- the reproductions ----------------------------------------------------------------

def test_a_trade_lost_in_journal_damage_is_explained_by_the_damage(recording, tmp_path):
    """The lost record is a trade frame: its trade-id hole is the damage already reported
    (degraded, exit 2), not a second, unexplained problem."""
    _, rows = recording
    root = tmp_path / "cap"
    path = write_journal(root, "S", rows)
    hlen = len(encode_header({"venue": "mock", "depth": 0, "session": "S"}))
    by_id = {r.rec_id: r for r in rows}
    trades = [(a, b, rid) for a, b, rid in spans(rows, hlen) if by_id[rid].kind == "recv" and b'"type":"trade"' in by_id[rid].payload]
    a, b, rid = trades[len(trades) // 2]
    flip(path, range(a + 12, a + 20))  # inside the record's body
    p = lab("verify", root, "--repair", "--json", check=False)
    report = json.loads(p.stdout)
    assert p.returncode == 2 and report["health"] == "degraded", report["problems"]
    assert rid not in raw_ids(root, "S")
    holes = [t for t in report["trades"].values() if t["trade_id_holes"]]
    assert holes and all(t["unexplained_trade_id_holes"] == 0 for t in holes), report["trades"]


def test_sixteen_flipped_bytes_mid_journal(recording, tmp_path):
    """Issue 8: 16 flipped bytes in the middle used to lose every row after them (13,797 of
    27,625) and report healthy."""
    _, rows = recording
    root = tmp_path / "cap"
    path = write_journal(root, "S", rows)
    size = os.path.getsize(path)
    hlen = len(encode_header({"venue": "mock", "depth": 0, "session": "S"}))
    mid = size // 2
    flip(path, range(mid, mid + 16))
    touched = {rid for a, b, rid in spans(rows, hlen) if a < mid + 16 and b > mid}
    p = lab("verify", root, "--repair", "--json", check=False)
    report = json.loads(p.stdout)
    assert p.returncode == 2 and report["health"] == "degraded", p.stdout
    assert report["unrecoverable_bytes"] >= 16
    assert raw_ids(root, "S") == [r.rec_id for r in rows if r.rec_id not in touched]
    assert len(touched) <= 2
    [ev] = loss_events(root, "S")
    assert ev["kind"] == DAMAGE_KIND and ev["est_records"] == len(touched)
    text = lab("verify", root, check=False)
    assert text.returncode == 2 and "DEGRADED" in text.stdout and "bytes unrecoverable" in text.stdout
    # re-deriving keeps the damage on record
    lab("normalize", root)
    assert len(loss_events(root, "S")) == 1 and lab("verify", root, check=False).returncode == 2


def test_flip_at_byte_12_of_an_old_format_journal(recording, tmp_path):
    """Issue 8: a flip at byte 12 (the first record's CRC in the v1 format) lost everything."""
    _, rows = recording
    root = tmp_path / "cap"
    path = write_journal(root, "S", rows, header=False)
    flip(path, [12])
    reports = recover(str(root))
    assert reports[0]["rows"] == len(rows) - 1 and reports[0]["est_lost_records"] == 1
    assert raw_ids(root, "S") == [r.rec_id for r in rows[1:]]
    assert verify(str(root))["health"] == "degraded"


def test_missing_marker_loses_nothing(recording, tmp_path):
    """Issue 8: without `.session.json` every row was dropped (and reported as recovered)."""
    _, rows = recording
    root = tmp_path / "cap"
    write_journal(root, "S", rows, marker=False)  # v2 header names the venue
    recover(str(root))
    assert raw_ids(root, "S") == [r.rec_id for r in rows]
    assert verify(str(root))["ok"]
    # an old-format journal without a marker: the venue comes from the session's raw files
    write_journal(root, "S", rows[:10], header=False, marker=False, seq=1)
    recover(str(root))
    assert raw_ids(root, "S") == sorted([r.rec_id for r in rows] + [r.rec_id for r in rows[:10]])
    # a damaged marker is ignored, the header decides
    write_journal(root, "T", rows[:10])
    with open(root / JOURNAL_DIR / "T.session.json", "w") as f:
        f.write("{not json")
    recover(str(root))
    assert raw_ids(root, "T") == [r.rec_id for r in rows[:10]]


def test_undeterminable_venue_keeps_the_journal_and_says_so(recording, tmp_path):
    _, rows = recording
    root = tmp_path / "cap"
    path = write_journal(root, "U", rows[:10], header=False, marker=False)
    reports = recover(str(root))
    assert os.path.exists(path) and "journal kept" in reports[0]["kept"]
    report = verify(str(root))
    assert not report["ok"] and report["journals"] == [path]
    p = lab("verify", root, "--repair", check=False)
    assert p.returncode == 1 and "journal kept" in p.stdout and os.path.exists(path)


def test_recovery_is_idempotent_by_rec_id(recording, tmp_path):
    """A crash after rotation wrote the segment's raw but before it removed the journal: the
    raw rows and the journal rows are merged, none lost or doubled."""
    rec_root, rows = recording
    root = tmp_path / "cap"
    write_journal(root, "S", rows[:600])
    recover(str(root))
    write_journal(root, "S", rows)  # same segment again, now with more rows
    recover(str(root))
    assert raw_ids(root, "S") == [r.rec_id for r in rows]
    recover(str(root))  # nothing left to do
    assert raw_ids(root, "S") == [r.rec_id for r in rows]
    assert verify(str(root))["ok"]


# -- live sessions, stray tmp files -----------------------------------------------------------

def test_live_session_journal_and_tmp_are_left_alone(recording, tmp_path):
    from lab.venues.mock.feed import Normalizer

    _, rows = recording
    root = tmp_path / "cap"
    writer = CaptureWriter(str(root), "mock", "LIVE", Normalizer(depth=0))
    try:
        for r in rows[:50]:
            writer.append(r)
        writer.journal.sync()
        raw_dir = root / "raw" / "venue=mock" / "date=2026-01-01"
        raw_dir.mkdir(parents=True)
        live_tmp = raw_dir / ".LIVE-000000.parquet.tmp"
        dead_tmp = raw_dir / ".DEAD-000003.parquet.tmp"
        other = raw_dir / ".notours.tmp"
        for p in (live_tmp, dead_tmp, other):
            p.write_bytes(b"partial")
        report = verify(str(root), repair=True)
        assert report["ok"], report["problems"]
        assert report["live_journals"] == [writer.journal.path] and report["journals"] == []
        assert live_tmp.exists() and other.exists() and not dead_tmp.exists()
        assert os.path.exists(writer.journal.path)
    finally:
        writer.close()
    assert raw_ids(root, "LIVE") == [r.rec_id for r in rows[:50]]


def test_a_stale_marker_without_journal_is_removed(tmp_path):
    root = tmp_path / "cap"
    (root / JOURNAL_DIR).mkdir(parents=True)
    (root / JOURNAL_DIR / "X.session.json").write_text('{"venue": "mock", "depth": 0}')
    recover(str(root))
    assert not os.listdir(root / JOURNAL_DIR)


# -- trade ids --------------------------------------------------------------------------------

def test_trade_id_hole_is_a_verify_finding(recording, tmp_path):
    rec_root, _ = recording
    root = tmp_path / "cap"
    shutil.copytree(rec_root, root)
    assert verify(str(root))["ok"]
    victim = max(glob.glob(str(root / "trades" / "**" / "*.parquet"), recursive=True), key=os.path.getsize)
    pf = pq.ParquetFile(victim)
    t = pf.read()
    assert t.num_rows >= 3
    keep = [i for i in range(t.num_rows) if i != t.num_rows // 2]
    atomic_write(t.take(keep), victim, dict(pf.schema_arrow.metadata))
    report = verify(str(root))
    assert not report["ok"] and any("trade-id holes" in p for p in report["problems"])


# -- kill -9 in a loop ------------------------------------------------------------------------

def test_kill_9_at_random_points_then_repair_loses_nothing_intact(tmp_path):
    rng = random.Random(8)
    root = tmp_path / "cap"
    rate = 2000
    with SimulatorThread("mock", seed=21, rate=rate) as sim:
        for i in range(3):
            proc = subprocess.Popen([*LAB, "record", "--venue", "mock", "--out", str(root), "--rest-url", sim.url,
                                     "--ws-url", sim.ws_url, "--rotate", "1s", "--flush-interval", "200ms"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 60  # a random point after the recorder is connected
            while len(json.loads(_get(sim.url + "/control/stats"))["connections"]) <= i and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(rng.uniform(0.2, 2.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        time.sleep(0.3)
        conns = [c for c in json.loads(_get(sim.url + "/control/stats"))["connections"]]
    p = lab("verify", root, "--repair", "--json", check=False)
    report = json.loads(p.stdout)
    # a kill leaves at most a torn tail; no intact record is ever skipped
    assert report["damage"] == [] and p.returncode == 0, report["problems"]
    assert not os.listdir(root / JOURNAL_DIR)
    assert not glob.glob(str(root / "**" / ".*.tmp"), recursive=True)
    per_session = {}
    for f in glob.glob(str(root / "raw" / "**" / "*.parquet"), recursive=True):
        t = pq.read_table(f, columns=["session", "conn_id", "conn_seq", "kind", "rec_id"])
        for s, c, q, k, r in zip(*(t.column(n).to_pylist() for n in ("session", "conn_id", "conn_seq", "kind", "rec_id"))):
            per_session.setdefault(s, []).append((c, q, k, r))
    assert len(per_session) == 3
    for s, recs in per_session.items():
        recs.sort(key=lambda x: x[3])
        # rec_ids are gap-free from 0 up to the last durable one: nothing in the middle lost
        assert [x[3] for x in recs] == list(range(len(recs))), s
        ws = sorted(q for c, q, k, r in recs if c == 1)
        assert ws == list(range(ws[0], ws[0] + len(ws))), s
    # each session kept what the simulator sent it up to at most a flush interval (plus the
    # writer's queue) before the kill
    assert len(conns) == 3
    sent = [c["messages"] for c in conns]  # in connection order = session order (ids sort by time)
    got = [sum(1 for c, q, k, r in per_session[s] if k == "recv" and c == 1) for s in sorted(per_session)]
    for g, n in zip(got, sent):
        assert 0 < g <= n and n - g <= rate * 1.0, (got, sent)


def _get(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read()


# -- lab normalize is additive ----------------------------------------------------------------

@pytest.fixture(scope="module")
def segmented(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg") / "cap"
    with SimulatorThread("mock", seed=9, rate=1500) as sim:
        lab("record", "--venue", "mock", "--duration", "4s", "--rotate", "1s", "--out", root, "--rest-url", sim.url, "--ws-url", sim.ws_url)
    return root


def _book_messages(root) -> int:
    n = 0
    for f in glob.glob(str(root / "book" / "**" / "*.parquet"), recursive=True):
        flags = pq.read_table(f, columns=["flags"]).column("flags").to_pylist()
        n += sum(1 for x in flags if x & S.FLAG_LAST)
    return n


def _derived_files(root) -> set[str]:
    return {f for t in ("book", "trades", "events") for f in glob.glob(str(root / t / "**" / "*.parquet"), recursive=True)}


def test_normalize_keeps_what_it_cannot_rederive(segmented, tmp_path):
    """Issue 8: with one raw segment missing, `lab normalize` removed later segments' book files
    (messages 9,286 -> 2,650) and verify did not notice."""
    root = tmp_path / "cap"
    shutil.copytree(segmented, root)
    raws = sorted(glob.glob(str(root / "raw" / "**" / "*.parquet"), recursive=True))
    assert len(raws) >= 3
    before_messages, before_files = _book_messages(root), _derived_files(root)
    os.remove(raws[1])
    p = lab("normalize", root, check=False)
    assert p.returncode == 1 and "raw segment 1 is missing" in p.stdout and "kept" in p.stdout, p.stdout
    assert _book_messages(root) == before_messages and _derived_files(root) == before_files
    report = verify(str(root))
    assert not report["ok"] and any("source raw file(s)" in q and "missing" in q for q in report["problems"])


def test_normalizer_failure_keeps_old_derived_files(segmented, tmp_path, monkeypatch):
    from lab.datasets.writer import renormalize_session, sessions_in
    from lab.venues.mock import feed

    root = tmp_path / "cap"
    shutil.copytree(segmented, root)
    before = {f: open(f, "rb").read() for f in _derived_files(root)}
    raw_before = {f: open(f, "rb").read() for f in glob.glob(str(root / "raw" / "**" / "*.parquet"), recursive=True)}
    [(venue, session)] = sessions_in(str(root))
    calls = {"n": 0}
    real_feed = feed.Normalizer.feed

    def exploding(self, row):
        calls["n"] += 1
        if calls["n"] == 50:
            raise ValueError("boom")
        return real_feed(self, row)

    monkeypatch.setattr(feed.Normalizer, "feed", exploding)
    stats = renormalize_session(str(root), venue, session)
    assert stats.problems and "segment 0 could not be re-derived (ValueError: boom)" in stats.problems[0]
    assert {f: open(f, "rb").read() for f in _derived_files(root)} == before
    assert {f: open(f, "rb").read() for f in glob.glob(str(root / "raw" / "**" / "*.parquet"), recursive=True)} == raw_before


def test_a_derived_table_that_cannot_be_written_keeps_raw_and_is_reported(recording, tmp_path):
    """A normalizer whose output cannot be written (here: book rows for a symbol it never
    declared an instrument for) must not kill the writer: raw is written, the loss is a
    `derive_failed` event that verify reports, and `lab normalize` re-derives the segment."""
    from lab.datasets.store import BookColumns

    class Broken(Normalizer):
        def take(self):
            out = super().take()
            out.book["NOT-DECLARED"] = BookColumns()
            out.book["NOT-DECLARED"].push_levels([(0, 1, 1)], 1, 1, 1, 1, 1, None, True)
            return out

    _, rows = recording
    root = tmp_path / "cap"
    writer = CaptureWriter(str(root), "mock", "BROKEN", Broken(depth=0))
    for r in rows:
        writer.append(r)
    writer.close()
    raw = sorted(glob.glob(str(root / "raw" / "**" / "*.parquet"), recursive=True))
    assert sum(pq.ParquetFile(f).metadata.num_rows for f in raw) == len(rows)
    report = verify(str(root))
    assert not report["ok"] and any("derive_failed" in p or "derived tables not written" in p for p in report["problems"]), report["problems"]
    lab("normalize", root)
    report = verify(str(root))
    assert report["ok"], report["problems"]
