"""ISO 8601 times and dates to integer nanoseconds since the epoch, exactly.

`datetime` stops at microseconds and `timestamp()` goes through a float, which is off by up to
a few hundred ns for today's dates; a capture's timestamps are ns, so `--from/--to` must be too.
Accepted: `2026-01-31` (midnight UTC), `2026-01-31T12:00`, `...T12:00:05`, `...T12:00:05.123456789`
(1 to 9 fraction digits), a space instead of `T`, and `Z` or `+HH:MM` / `-HH:MM`; no zone is UTC.
A plain integer is already ns since the epoch.
"""
from __future__ import annotations

import datetime as _dt
import re

_ISO = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?P<hh>\d{2}):(?P<mm>\d{2})(?::(?P<ss>\d{2})(?:[.,](?P<frac>\d{1,9}))?)?)?"
    r"(?P<zone>Z|z|[+-]\d{2}:?\d{2})?"
)
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
EXAMPLES = "2026-01-31, 2026-01-31T12:00:00Z, 2026-01-31T12:00:00.123456789+01:00, or ns since the epoch"


class TimeParseError(ValueError):
    pass


def parse_time_ns(text: str) -> int:
    """`text` as ns since the epoch; TimeParseError (one line, with examples) when it is not a time."""
    raw = text.strip()
    if re.fullmatch(r"-?\d{10,}", raw):
        return int(raw)
    m = _ISO.fullmatch(raw)
    if m is None:
        raise TimeParseError(f"{text!r} is not an ISO time (examples: {EXAMPLES})")
    try:
        day = _dt.date.fromisoformat(m["date"])
        hh, mm, ss = int(m["hh"] or 0), int(m["mm"] or 0), int(m["ss"] or 0)
        if ss == 60:  # a leap second has no instant of its own in UTC ns; say so rather than shift
            raise ValueError("leap seconds are not representable")
        wall = _dt.datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=_dt.timezone.utc)
    except ValueError as exc:
        raise TimeParseError(f"{text!r} is not a valid time: {exc}") from None
    offset_s = 0
    zone = m["zone"]
    if zone and zone not in ("Z", "z"):
        digits = zone[1:].replace(":", "")
        zh, zm = int(digits[:2]), int(digits[2:])
        if zh > 23 or zm > 59:
            raise TimeParseError(f"{text!r}: zone offset {zone} is out of range")
        offset_s = (zh * 3600 + zm * 60) * (1 if zone[0] == "+" else -1)
    seconds = (wall - _EPOCH) // _dt.timedelta(seconds=1) - offset_s
    frac = m["frac"] or ""
    return seconds * 1_000_000_000 + int(frac.ljust(9, "0") or 0)


def format_time_ns(ns: int) -> str:
    """ns since the epoch as ISO 8601 UTC with all nine fraction digits (the inverse of parse_time_ns)."""
    seconds, frac = divmod(ns, 1_000_000_000)
    wall = _EPOCH + _dt.timedelta(seconds=seconds)
    return wall.strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"
