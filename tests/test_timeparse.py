"""`--from/--to` times: exact to the ns, every accepted form, one clear line for the rest."""
import datetime as dt

import pytest
from click.testing import CliRunner
from hypothesis import given, strategies as st

from lab.cli import main
from lab.core.timeparse import TimeParseError, format_time_ns, parse_time_ns


@given(st.integers(min_value=0, max_value=253402300799_999_999_999))
def test_format_then_parse_is_exact(ns):
    assert parse_time_ns(format_time_ns(ns)) == ns


@pytest.mark.parametrize("text, ns", [
    ("1970-01-01", 0),
    ("2026-01-31", 1769817600_000_000_000),
    ("2026-01-31T00:00Z", 1769817600_000_000_000),
    ("2026-01-31 00:00:01", 1769817601_000_000_000),
    ("2026-01-31T00:00:00.000000001Z", 1769817600_000_000_001),
    ("2026-01-31T00:00:00.5", 1769817600_500_000_000),
    ("2026-01-31T01:00:00+01:00", 1769817600_000_000_000),
    ("2026-01-30T23:30:00-0030", 1769817600_000_000_000),
    ("1769817600123456789", 1769817600_123456789),
])
def test_accepted_forms(text, ns):
    assert parse_time_ns(text) == ns


def test_beyond_float_precision():
    # timestamp() * 1e9 rounds this one; the parser must not
    text = "2026-11-24T10:00:00.123456789Z"
    base = int(dt.datetime(2026, 11, 24, 10, tzinfo=dt.timezone.utc).timestamp()) * 10**9
    assert parse_time_ns(text) == base + 123456789


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-01", "2026-02-30", "2026-01-31T25:00",
                                  "2026-01-31T12:00:00.1234567891", "2026-01-31T12:00:60", "2026-01-31+25:00"])
def test_bad_input_is_an_error(text):
    with pytest.raises(TimeParseError):
        parse_time_ns(text)


def test_replay_bad_time_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["replay", str(tmp_path), "--from", "2026-02-30"])
    assert result.exit_code != 0
    lines = [l for l in result.output.splitlines() if l.strip()]
    assert len(lines) == 1 and "--from" in lines[0] and "2026-02-30" in lines[0], result.output
