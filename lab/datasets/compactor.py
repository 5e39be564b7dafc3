"""Background compaction of a live recording's finished segments.

The recorder writes `raw` at zstd 3, cheap at any message rate; on digit-heavy JSON frames no
zstd level below 15 beats gzip, and level 15 manages about 5k frames/s on one core, too slow to
write live. So each finished segment's raw files are handed to a child process that rewrites
them as `lab compact` does (zstd 19, `compact_file`: atomically, content unchanged) at
the lowest CPU priority (SCHED_IDLE, nice 19): the files end below gzip's size whenever the machine has idle
time, and the recorder's own threads never wait for it.

A child process rather than a thread: stopping the recorder must not wait for a zstd-19 rewrite
of a large segment, and a process can be killed at any instant, after which its temporary file is
removed here (the file being rewritten is left exactly as written live, for `lab compact`).

Protocol: one path per line on the child's stdin; one JSON line per path on its stdout:
`{"path": P, "before": B, "after": A}` (after = null: compacted already) or
`{"path": P, "error": "..."}`.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import pyarrow.parquet as pq

from .store import COMPACT_LEVEL, COMPACT_PAGE_SIZE, META_COMPACTED, atomic_write


def compact_file(path: str) -> tuple[int, int] | None:
    """Rewrite one raw file at zstd COMPACT_LEVEL, atomically and in place, content unchanged
    (same rows, schema and metadata, plus `lab.compacted`); (bytes before, bytes after), or None
    when it was compacted already."""
    size = os.path.getsize(path)
    pf = pq.ParquetFile(path)
    meta = dict(pf.schema_arrow.metadata or {})
    if META_COMPACTED in meta:
        return None
    table = pf.read()
    meta[META_COMPACTED] = f"zstd-{COMPACT_LEVEL}".encode()
    atomic_write(table, path, meta, compression_level=COMPACT_LEVEL, data_page_size=COMPACT_PAGE_SIZE)
    return size, os.path.getsize(path)


def _tmp_of(path: str) -> str:
    """The temporary file `store.atomic_write` writes before renaming onto `path`."""
    return os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")


class BackgroundCompactor:
    def __init__(self) -> None:
        self.compacted = 0
        self.bytes_saved = 0
        self.errors: list[str] = []
        self._submitted: list[str] = []
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None

    def _start(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "lab.datasets.compactor"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env={**os.environ, "LAB_COMPACTOR_PARENT": str(os.getpid())},
            # same session as the recorder: with autogroup scheduling a new session would get its
            # own CPU share, whatever its priority (it ignores the terminal's Ctrl-C instead)
            stderr=subprocess.DEVNULL, text=True, bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, name="lab-compact-results", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                done = json.loads(line)
            except ValueError:
                continue
            if "error" in done:
                self.errors.append(f"{done.get('path')}: {done['error']}")
            elif done.get("after") is not None:
                self.compacted += 1
                self.bytes_saved += done["before"] - done["after"]

    def submit(self, paths: list[str]) -> None:
        if not paths:
            return
        if self._proc is None:
            self._start()
        assert self._proc is not None and self._proc.stdin is not None
        try:
            for path in paths:
                self._proc.stdin.write(path + "\n")
                self._submitted.append(path)
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:  # the child died: files stay as written live
            self.errors.append(f"compactor: {exc}")

    def close(self, finish_all: bool = False) -> None:
        """Stop now (the file in progress stays as written live), or with `finish_all` after
        every file submitted."""
        if self._proc is None:
            return
        if finish_all:
            try:
                self._proc.stdin.close()
            except OSError:
                pass
            self._proc.wait()
        else:
            self._proc.kill()
            self._proc.wait()
            for path in self._submitted:
                try:
                    os.remove(_tmp_of(path))
                except FileNotFoundError:
                    pass
        if self._reader is not None:
            self._reader.join(timeout=5)


def _die_with_parent(parent: int) -> None:
    """Linux: be killed when the recorder dies (even by SIGKILL), so no orphan keeps rewriting
    files that a later `lab compact` may be rewriting too."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl
        os._exit(0)


def main() -> None:
    _die_with_parent(int(os.environ.get("LAB_COMPACTOR_PARENT", os.getppid())))
    try:  # run only when the CPU would otherwise be idle
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (OSError, AttributeError):
        pass
    try:
        os.nice(19)
    except OSError:
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the recorder decides when this stops
    for line in sys.stdin:
        path = line.rstrip("\n")
        if not path:
            continue
        try:
            sizes = compact_file(path)
            out = {"path": path, "before": sizes[0] if sizes else None, "after": sizes[1] if sizes else None}
        except Exception as exc:  # one file's failure leaves it as written live; go on
            out = {"path": path, "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
