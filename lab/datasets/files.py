"""Which capture files can be read: the one footer check every whole-root command shares, and the
one path spelling they compare files by. A root with one truncated or overwritten file still
works: commands take the readable files and report the others."""
from __future__ import annotations

import os

import pyarrow.parquet as pq


class CaptureError(RuntimeError):
    """A capture file is missing, truncated or not a lab file."""


# footer check results by (path, size, mtime_ns): a file is checked once per process unless it changes
_FOOTERS: dict[tuple[str, int, int], str | None] = {}


def normalize_path(path) -> str:
    """The one spelling of a path every command compares files by (relative, absolute and
    symlinked roots give the same file names)."""
    return os.path.realpath(os.fspath(path))


def unreadable(path: str) -> str | None:
    """Why `path` is not a readable Parquet file (its footer does not parse), or None."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"{exc.strerror or exc}"
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in _FOOTERS:
        try:
            pq.read_metadata(path)
            _FOOTERS[key] = None
        except Exception as exc:  # truncated, overwritten, not Parquet at all: pyarrow raises several types
            _FOOTERS[key] = (str(exc).splitlines() or [type(exc).__name__])[0]
    return _FOOTERS[key]


def split_readable(files: list[str], skipped: list[tuple[str, str]] | None) -> list[str]:
    """The readable files of `files`; unreadable ones go to `skipped` as (path, reason), or raise
    CaptureError when the caller gave no list (it did not ask to carry on)."""
    out = []
    for f in files:
        why = unreadable(f)
        if why is None:
            out.append(f)
        elif skipped is None:
            raise CaptureError(f"{f}: not a readable Parquet file ({why})")
        elif all(f != s for s, _ in skipped):
            skipped.append((f, why))
    return out


def skip_warning(path: str, why: str) -> str:
    return f"warning: skipped unreadable file {path} ({why}); `lab verify` lists such files, `lab normalize` re-derives derived ones"
