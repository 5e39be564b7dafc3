"""The `lab` command: parses options, calls the packages, prints. Nothing more."""
from __future__ import annotations

import json
import os
import re
import sys

import click

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(text: str | None) -> float | None:
    if text is None:
        return None
    m = _DURATION.match(text)
    if not m:
        raise click.BadParameter(f"{text!r} is not a duration (examples: 500ms, 20s, 5m, 1h)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def positive_duration(text: str | None, option: str) -> float | None:
    """A duration that must be > 0 (`--duration 0` would record nothing and call it success)."""
    try:
        value = parse_duration(text)
    except click.BadParameter as exc:
        fail(f"{option}: {exc.message}")
    if value is not None and value <= 0:
        fail(f"{option} {text!r}: must be longer than 0")
    return value


def _check_url(url: str | None, option: str, schemes: tuple[str, ...]) -> None:
    from urllib.parse import urlsplit

    if url is None:
        return
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        fail(f"{option} {url!r} is not a {' or '.join(s + '://' for s in schemes)} URL")


def _registry():
    from lab.venues import registry

    return registry


def _key_values(items, option: str) -> dict[str, str]:
    """`KEY=VALUE` option values -> a dict (one error line on anything else)."""
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            fail(f"{option} {item!r}: expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def _disk_full_line(exc: OSError) -> str:
    return f"disk full ({exc.strerror}{': ' + str(exc.filename) if exc.filename else ''}); nothing was changed or deleted: free some space and run the command again"


def _tmp_files(root: str) -> set[str]:
    import glob

    return set(glob.glob(os.path.join(glob.escape(root), "**", ".*.tmp"), recursive=True))


def exact(value) -> str:
    """A Decimal as the shortest exact text: `0E-8` -> "0", `50000.10` -> "50000.1"."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _json_default(value):
    from decimal import Decimal

    if isinstance(value, Decimal):
        return exact(value)
    return str(value)


def dumps(obj) -> str:
    """`--json` output: numbers exact, prices and amounts as strings (never floats, never `0E-8`)."""
    return json.dumps(obj, default=_json_default)


def fail(message: str, code: int = 1) -> None:
    click.echo(f"lab: error: {message}", err=True)
    sys.exit(code)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lab")
    except PackageNotFoundError:  # a source tree on PYTHONPATH, never installed
        return "unknown (not installed)"


def _examples(*lines: str) -> str:
    """An epilog of example command lines; click keeps a paragraph after \b as it is."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120},
             epilog=_examples("lab demo                                   # the whole loop, nothing else needed",
                              "lab record --venue mock --duration 20s --out captures",
                              "lab query \"select symbol, count(*) from book group by 1\" --root captures",
                              "lab serve-replay captures --venue mock --port 8765  # the capture served as the venue",
                              "lab COMMAND --help                         # options and examples of one command"))
@click.version_option(_version(), "-V", "--version", prog_name="lab", message="%(prog)s %(version)s")
def main() -> None:
    """Record, rebuild, replay and query crypto market data."""


@main.command(short_help="List the venues lab can record (--json: endpoints, symbols).",
              epilog=_examples("lab venues", "lab venues --json"))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per venue: default endpoints, API versions, symbols.")
def venues(as_json) -> None:
    """List the venues lab can record, with their default endpoints and symbols."""
    from lab.venues.registry import adapter_class
    from lab.venues.registry import venues as names

    for name in names():
        if not as_json:
            click.echo(name)
            continue
        venue = adapter_class(name)()
        info = {"venue": name, "rest_url": venue.default_rest_url, "ws_url": venue.default_ws_url,
                "instruments": venue.default_rest_url.rstrip("/") + venue.instruments_path}
        info.update(venue.describe())  # symbols and notes, without a network call
        if venue.options:
            info["options"] = {o.key: {"help": o.help, "choices": list(o.choices), "default": o.default} for o in venue.options}
        click.echo(json.dumps(info))


@main.command(short_help="Record a venue's books and trades into Parquet.",
              epilog=_examples('lab record --venue mock --duration 10s --out captures      # starts the embedded simulator',
                               'lab record --venue kraken --symbol XBT/USD --symbol ETH/USD --duration 1h --out captures',
                               'lab record --venue kraken --symbol XBT/USD --rest-url http://127.0.0.1:8766 --ws-url ws://127.0.0.1:8766/ws'))
@click.option("--venue", required=True, help="Venue to record (see `lab venues`).")
@click.option("--symbol", "symbols", multiple=True, help="Venue symbol; repeat for several. Default: all.")
@click.option("--duration", default=None, help="Stop after this long (20s, 5m, 1h). Default: until Ctrl-C.")
@click.option("--out", "root", default="captures", show_default=True, type=click.Path(file_okay=False), help="Capture root.")
@click.option("--depth", default=0, type=int, help="Book depth to subscribe (venue-specific; 0 = venue default).")
@click.option("--rest-url", default=None, help="Override the venue's REST base URL (simulator, proxy, sandbox).")
@click.option("--ws-url", default=None, help="Override the venue's WebSocket URL.")
@click.option("--api", default=None, help="Venue API version, where a venue has several (`lab venues --json` lists them).")
@click.option("--opt", "venue_options", multiple=True, metavar="KEY=VALUE",
              help="Venue-specific option (`lab venues --json` lists each venue's); repeat for several.")
@click.option("--ping-idle", default=None, help="Send an app-level ping after this long without traffic (venue default; Kraken 5s).")
@click.option("--flush-interval", default="1s", show_default=True, help="Journal fsync interval.")
@click.option("--rotate", "rotate_interval", default="60s", show_default=True, help="Rotate the journal into Parquet this often.")
@click.option("--min-free", "min_free_mb", default=64, show_default=True, type=int,
              help="Stop cleanly (events row, last segment in Parquet) before free space drops below this many MiB.")
@click.option("--compact/--no-compact", default=True, show_default=True,
              help="Recompress finished segments' raw files at zstd 19 in the background, at the lowest CPU priority (as `lab compact`).")
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as JSON.")
def record(venue, symbols, duration, root, depth, rest_url, ws_url, api, venue_options, ping_idle, flush_interval, rotate_interval, min_free_mb, compact, as_json) -> None:
    """Record a venue's books and trades into hive-partitioned Parquet."""
    import errno

    from lab.core.errors import VenueError
    from lab.recorder.recorder import DiskFull, Recorder, RecordOptions
    from lab.core.errors import UnknownVenue
    from lab.venues.registry import adapter, adapter_class

    if min_free_mb < 0:
        fail(f"--min-free {min_free_mb}: must be >= 0 (MiB)")
    options = dict(
        ping_idle=positive_duration(ping_idle, "--ping-idle"), duration=positive_duration(duration, "--duration"),
        flush_interval=positive_duration(flush_interval, "--flush-interval"), rotate_interval=positive_duration(rotate_interval, "--rotate"),
    )
    _check_url(rest_url, "--rest-url", ("http", "https"))
    _check_url(ws_url, "--ws-url", ("ws", "wss"))
    embedded = None
    venue_opts = _key_values(venue_options, "--opt")
    try:
        # options checked before anything starts (the embedded simulator, the capture root)
        adapter(venue, **venue_opts, **({"api": api} if api else {}))
        if not rest_url and not ws_url and adapter_class(venue).embedded:
            from lab.venues.simulator import SimulatorThread

            embedded = SimulatorThread(venue, seed=1, rate=1000.0)
            embedded.start()
            rest_url, ws_url = embedded.url, embedded.ws_url
            click.echo(f"no URL given: started the embedded {venue} simulator on 127.0.0.1:{embedded.port} "
                       "(--rest-url/--ws-url to record another)", err=True)
    except (UnknownVenue, VenueError) as exc:
        fail(str(exc))
    root_existed = os.path.exists(root)
    rec = None
    try:
        rec = Recorder(
            RecordOptions(
                venue=venue, symbols=list(symbols), root=root, rest_url=rest_url, ws_url=ws_url, depth=depth,
                api=api, options=venue_opts, min_free_bytes=min_free_mb << 20, compact=compact,
                **options,
            )
        )
        summary = rec.run()
    except (UnknownVenue, VenueError, DiskFull) as exc:
        # a full disk's journal may hold the only copy of what was received: never discarded
        if rec is not None and not rec.normalizer.stats.get("messages") and not isinstance(exc, DiskFull):
            _discard_session(root, rec.session, root_existed)
        fail(str(exc))
    except OSError as exc:  # the root itself: not writable, or full before the first byte
        fail(_disk_full_line(exc) if exc.errno in (errno.ENOSPC, errno.EDQUOT) else f"{root}: {exc.strerror or exc}")
    finally:
        if embedded is not None:
            embedded.stop()
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(
            f"recorded {summary['venue']} session {summary['session']}: {summary['frames']:,} frames, "
            f"{summary['book_messages']:,} book messages, {summary['gaps']} gaps, {summary['resyncs']} resyncs, "
            f"{summary['reconnects']} reconnects, "
            + (f"{summary['checksum_mismatches']} checksum mismatches, " if summary["checksum_mismatches"] else "")
            + (f"{summary['malformed']} malformed frames (see events), " if summary["malformed"] else "")
            + f"{summary['files']} files ({summary['bytes'] / 1e6:.1f} MB) "
            f"in {summary['seconds']:.1f}s -> {summary['root']}"
        )


def _discard_session(root: str, session: str, root_existed: bool) -> None:
    """A recording that failed before its first book message leaves nothing behind: its session's
    files (connection events, the failed REST reply), journal and marker go, and so does the root
    when this command made it and nothing else is in it."""
    import glob
    import shutil

    from lab.datasets.store import JOURNAL_DIR

    for path in glob.glob(os.path.join(glob.escape(root), "*", "venue=*", "**", f"{session}-*.parquet"), recursive=True):
        os.remove(path)
    for path in glob.glob(os.path.join(glob.escape(root), JOURNAL_DIR, f"{session}[-.]*")):
        os.remove(path)
    for here, dirs, files in os.walk(root, topdown=False):  # the partitions this session made, now empty
        if here != root and not os.listdir(here):
            os.rmdir(here)
    if not root_existed and os.path.isdir(root) and not os.listdir(root):
        shutil.rmtree(root, ignore_errors=True)


@main.command(short_help='Run a venue simulator on loopback (REST + WebSocket).',
              epilog=_examples('lab simulate --venue mock --port 8765 --rate 2000',
                               'lab simulate --venue kraken --port 8766 --drop-every 500      # a seq gap every 500 messages'))
@click.option("--venue", default=lambda: _registry().embedded_venue(), show_default="the embedded venue")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, type=int)
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--rate", default=1000.0, show_default=True, type=float, help="Messages per second (wall time).")
@click.option("--time-scale", default=1.0, show_default=True, type=float, help="Simulated seconds per wall second.")
@click.option("--disconnect-after", type=int, default=None, help="Fault: close each connection after N messages.")
@click.option("--drop-every", type=int, default=None, help="Fault: skip every Nth book message (a seq gap).")
@click.option("--bad-checksum-every", type=int, default=None, help="Fault: corrupt every Nth checksum.")
@click.option("--malformed-every", type=int, default=None, help="Fault: send an invalid frame every N messages.")
@click.option("--stall-after", type=int, default=None, help="Fault: stall after N messages...")
@click.option("--stall-seconds", type=float, default=None, help="...for this many seconds.")
@click.option("--option", "options", multiple=True, metavar="KEY=JSON",
              help='Simulator/venue option, e.g. --option \'wire_price_decimals={"XBT/USD": 5}\' (Kraken pads like the real venue).')
def simulate(venue, host, port, seed, rate, time_scale, options, **faults) -> None:
    """Run a venue simulator on loopback (REST + WebSocket)."""
    from lab.venues.simulator import simulate_main

    faults = {k: v for k, v in faults.items() if v is not None}
    if not rate > 0 or rate == float("inf"):
        fail(f"--rate {rate}: must be a positive number of messages per second")
    if not time_scale > 0 or time_scale == float("inf"):
        fail(f"--time-scale {time_scale}: must be a positive number")
    for name, value in faults.items():
        if value < 0:
            fail(f"--{name.replace('_', '-')} {value}: must be >= 0")
    if not 0 <= port <= 65535:
        fail(f"--port {port}: not a TCP port")
    opts = {}
    for item in options:
        key, eq, value = item.partition("=")
        if not eq or not key:
            fail(f"--option {item!r}: expected KEY=JSON")
        try:
            opts[key.replace("-", "_")] = json.loads(value)
        except ValueError:
            fail(f"--option {item!r}: the value must be JSON")
    try:
        simulate_main(venue, port, seed, rate, time_scale, host=host, options=opts, **faults)
    except KeyError:
        fail(f"no simulator for venue {venue!r}")
    except (ValueError, TypeError) as exc:
        fail(str(exc))
    except OSError as exc:  # a busy port, an address that is not ours
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}" + (" (is another simulator running there?)" if exc.errno == 98 else ""))


@main.command("serve-replay", short_help="Serve a capture as the venue: its own WebSocket and REST.",
              epilog=_examples('lab serve-replay captures --venue kraken --port 8766 --speed 1       # captured pacing',
                               'lab serve-replay captures --venue mock --port 8765 --speed max',
                               'lab record --venue kraken --ws-url ws://127.0.0.1:8766/ws --rest-url http://127.0.0.1:8766 --out again'))
@click.argument("root", type=click.Path(file_okay=False))
@click.option("--venue", required=True, help="Venue whose frames to serve (see `lab venues`).")
@click.option("--port", default=8765, show_default=True, type=int, help="TCP port (0: any free one, printed).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--speed", default="1", show_default=True, help="1 = the captured pacing, N = N times faster, max = as fast as the client reads.")
@click.option("--session", default=None, help="Recorder session to serve (default: the first of the venue).")
def serve_replay(root, venue, port, host, speed, session) -> None:
    """Serve a capture's raw frames over the venue's WebSocket protocol and its REST bodies over
    HTTP, on one port, to an unmodified client (docs/ARCHITECTURE.md, "Wire-level replay")."""
    from lab.core.errors import UnknownVenue, VenueError
    from lab.datasets.files import CaptureError
    from lab.replay.serve import parse_speed, serve_replay_main

    try:
        pace = parse_speed(speed)
    except ValueError as exc:
        fail(str(exc))
    if not 0 <= port <= 65535:
        fail(f"--port {port}: not a TCP port")
    try:
        serve_replay_main(root, venue, host=host, port=port, speed=pace, session=session, report=click.echo)
    except (CaptureError, UnknownVenue, VenueError) as exc:
        fail(str(exc))
    except OSError as exc:  # a busy port, an address that is not ours
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


@main.command(short_help='Run DuckDB SQL over a capture (book, trades, quotes, ...).',
              epilog=_examples('lab query "select symbol, count(*) from book group by 1" --root captures',
                               'lab query "select * from quotes order by local_timestamp desc limit 5" --root captures',
                               'lab query "select * from trades" --root captures --csv > trades.csv'))
@click.argument("sql")
@click.option("--root", default="captures", show_default=True, type=click.Path(file_okay=False))
@click.option("--csv", "as_csv", is_flag=True, help="CSV on stdout.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per row.")
@click.option("--parquet", "parquet_out", default=None, type=click.Path(dir_okay=False), help="Write the result to a Parquet file.")
def query(sql, root, as_csv, as_json, parquet_out) -> None:
    """Run DuckDB SQL over the capture (views raw, book, trades, events, instruments, ...)."""
    from lab.datasets.catalog import QueryError
    from lab.datasets.catalog import query as run_query

    if not os.path.isdir(root):
        fail(f"capture root {root!r} does not exist")
    if not sql.strip():
        fail("empty SQL: give a query, e.g. lab query \"select count(*) from book\"")
    if parquet_out:
        out_dir = os.path.dirname(os.path.abspath(parquet_out))
        if not os.path.isdir(out_dir):
            fail(f"--parquet {parquet_out}: directory {out_dir} does not exist")
    skipped: list = []
    try:
        table = run_query(root, sql, skipped=skipped)
    except QueryError as exc:
        _warn_skipped(skipped)
        fail(_query_hint(str(exc), root))
    _warn_skipped(skipped)
    if parquet_out:
        import pyarrow.parquet as pq

        try:
            pq.write_table(table, parquet_out)
        except OSError as exc:
            fail(f"--parquet {parquet_out}: {exc}")
        click.echo(f"{table.num_rows} rows -> {parquet_out}")
    elif as_csv:
        import pyarrow.csv as pacsv

        sys.stdout.flush()
        pacsv.write_csv(_fixed_decimals(table), sys.stdout.buffer)
        sys.stdout.buffer.flush()
    elif as_json:
        for row in _displayable(table).to_pylist():
            click.echo(json.dumps(row, default=_json_value))
    else:
        _print_table(table)


def _warn_skipped(skipped) -> None:
    """One stderr line per unreadable file a command left out (it carried on with the rest)."""
    from lab.datasets.files import skip_warning

    for path, why in skipped:
        click.echo(skip_warning(path, why), err=True)


_DERIVED_BY = {"quotes": "lab rebuild {root}", "orders": "lab paper ... --out {root}", "fills": "lab paper ... --out {root}"}


def _query_hint(message: str, root: str) -> str:
    """DuckDB's error as one line; a derived table not built yet says which command builds it."""
    m = re.search(r"Table with name (\S+) does not exist", message)
    if m:
        name = m.group(1).strip('"')
        command = _DERIVED_BY.get(name)
        if command is None and re.fullmatch(r"book_snapshot_(\d+)", name):
            command = f"lab rebuild {{root}} --depth {name.rsplit('_', 1)[1]}"
        if command:
            return f"no `{name}` in {root} yet: run `{command.format(root=root)}`"
        from lab.datasets.catalog import tables_in

        known = sorted(set(tables_in(root)) | {"raw", "book", "trades", "events", "instruments"})
        return f"no table `{name}` in {root} (tables: {', '.join(known)})"
    return message.splitlines()[0] if message else "query failed"


def _json_value(v):
    from decimal import Decimal

    if isinstance(v, Decimal):
        return _plain(v)  # not 0E-8 (str() of a zero at scale 8), nor DECIMAL(38, 18)'s 18 trailing zeros
    if isinstance(v, bytes):
        return v.decode() if _printable(v) else v.hex()
    return str(v)


def _cell(v) -> str:
    from decimal import Decimal

    if v is None:
        return "NULL"
    if isinstance(v, Decimal):
        return _plain(v)
    if isinstance(v, bytes):
        return v.decode() if _printable(v) else v.hex()
    return str(v)


def _is_number(t) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


_KEY_COLUMNS = ("price", "amount", "side", "symbol")


def layout(names: list[str], types: list, rows: list[list[str]], width: int | None) -> tuple[list[str], list[str]]:
    """Lines of a plain table at most `width` wide (None: as wide as it needs).

    Numbers and times are never cut (a cut number is a wrong number): text columns are narrowed,
    widest first, down to 10 characters with an ellipsis; columns that still do not fit are left
    out from the right (price, amount, side and symbol last) and named below the table."""
    import pyarrow as pa

    gap = 2
    protect = [_is_number(t) or pa.types.is_timestamp(t) or n in ("price", "amount") for n, t in zip(names, types)]
    natural = [max([len(n)] + [len(r[i]) for r in rows]) for i, n in enumerate(names)]
    widths = list(natural)
    shown = list(range(len(names)))
    omitted: list[str] = []
    if width is not None:
        def total() -> int:
            return sum(widths[i] for i in shown) + gap * (len(shown) - 1)

        floor = [natural[i] if protect[i] else min(natural[i], max(10, min(len(names[i]), 16))) for i in range(len(names))]
        excess = total() - width
        while excess > 0:
            room = [i for i in shown if widths[i] > floor[i]]
            if not room:
                break
            top = max(widths[i] for i in room)
            widest = [i for i in room if widths[i] == top]
            second = max([widths[i] for i in room if widths[i] < top] + [max(floor[i] for i in widest)])
            cut = min(top - second, -(-excess // len(widest))) or 1
            for i in widest:
                take = min(cut, widths[i] - floor[i], excess)
                widths[i] -= take
                excess -= take
        # from the right, the columns a reader came for (price, amount, side, symbol) last
        order = [i for i in reversed(shown) if names[i] not in _KEY_COLUMNS] + [i for i in reversed(shown) if names[i] in _KEY_COLUMNS]
        for i in order:
            if total() <= width or len(shown) == 1:
                break
            shown.remove(i)
        omitted = [names[i] for i in range(len(names)) if i not in shown]

    def fit(text: str, w: int, right: bool) -> str:
        if len(text) > w:
            text = text[: max(w - 1, 0)] + "…"
        return text.rjust(w) if right else text.ljust(w)

    def line(cells: list[str]) -> str:
        return (" " * gap).join(fit(cells[i], widths[i], _is_number(types[i])) for i in shown).rstrip()

    out = [line(list(names)), line(["─" * widths[i] for i in range(len(names))])]
    out.extend(line(r) for r in rows)
    notes = [f"{len(omitted)} more columns not shown: {', '.join(omitted)} (select fewer, or use --csv / --json)"] if omitted else []
    return out, notes


def _terminal_width() -> int | None:
    """The terminal's width when stdout is one (COLUMNS wins, as for every CLI); None for pipes."""
    if os.environ.get("COLUMNS", "").isdigit():
        return int(os.environ["COLUMNS"])
    if not sys.stdout.isatty():
        return None
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns
    except OSError:
        return 80


def _print_table(table, limit: int = 1000) -> None:
    shown = _displayable(table.slice(0, limit))
    rows = [[_cell(v) for v in row.values()] for row in shown.to_pylist()]
    lines, notes = layout(table.column_names, [f.type for f in table.schema], rows, _terminal_width())
    for text in lines:
        click.echo(text)
    for note in notes:
        click.echo(note)
    if table.num_rows > limit:
        click.echo(f"... {table.num_rows - limit:,} more rows (use --csv or --parquet for all)")
    elif table.num_rows != 1:
        click.echo(f"({table.num_rows:,} rows)")


def _plain(v) -> str:
    """A Decimal in fixed notation without the trailing zeros of the dataset's DECIMAL(38, 18):
    59999.3, 0, 100 (not 59999.300000000000000000, 0E-18, 1E+2). Exact."""
    text = format(v, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _fixed_decimals(table):
    """Decimal columns as the table and --json print them (`_plain`): Arrow's own CSV writes a
    DECIMAL(38, 18) zero as 0E-18, anything below 1e-6 in exponent form, and 18 decimals."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    for i, field in enumerate(table.schema):
        if not pa.types.is_decimal(field.type):
            continue
        text = pc.cast(table.column(i), pa.string()).combine_chunks()
        sci = np.flatnonzero(pc.fill_null(pc.match_substring(text, "E"), False).to_numpy(zero_copy_only=False))
        if len(sci):
            values = text.to_pylist()
            column = table.column(i).combine_chunks()
            for k in sci.tolist():
                values[k] = format(column[k].as_py(), "f")
            text = pa.array(values, pa.string())
        if field.type.scale > 0:  # plain notation of a positive scale always has its "."
            text = pc.replace_substring_regex(text, pattern=r"\.?0+$", replacement="")
            text = pc.replace_substring_regex(text, pattern=r"^-?$", replacement="0")
        table = table.set_column(i, field.name, text)
    return table


def _displayable(table):
    """Nanosecond timestamps as ISO strings: Python's datetime would truncate (or refuse) them."""
    import pyarrow as pa

    for i, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type) or pa.types.is_time(field.type) or pa.types.is_duration(field.type):
            table = table.set_column(i, field.name, table.column(i).cast(pa.string()))
    return table


def _printable(b: bytes) -> bool:
    try:
        return b.decode().isprintable()
    except UnicodeDecodeError:
        return False


@main.command(short_help='Re-derive book, trades, events, instruments from raw.',
              epilog=_examples('lab normalize captures',
                               'lab normalize captures --venue kraken'))
@click.argument("root", type=click.Path(file_okay=False))
@click.option("--venue", default=None)
@click.option("--session", default=None)
def normalize(root, venue, session) -> None:
    """Re-derive book, trades, events and instruments from raw (after a parser fix)."""
    import errno

    from lab.datasets.writer import normalize_root
    from lab.progress import callback, progress_bar

    if not os.path.isdir(root):
        fail(f"capture root {root!r} does not exist")
    try:
        with progress_bar("normalize", unit="segments") as bar:
            lines = normalize_root(root, venue=venue, session=session, progress=callback(bar))
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            fail(_disk_full_line(exc))
        raise
    for line in lines:
        click.echo(line)
    if any(line.startswith("PROBLEM") for line in lines):
        sys.exit(1)  # something could not be re-derived: its old derived files were kept


def _file_errors() -> tuple:
    """What reading a damaged capture file raises (the footer check catches most before)."""
    import pyarrow as pa

    from lab.datasets.files import CaptureError

    return (OSError, pa.ArrowException, CaptureError)


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _normalized(root: str) -> str:
    from lab.datasets.files import normalize_path

    return normalize_path(root)


def _sessions(root: str, venue: str | None, session: str | None) -> list[tuple[str, str]]:
    from lab.datasets.writer import sessions_in

    return [(v, s) for v, s in sessions_in(root, venue) if session is None or s == session]


def _unreadable_raw(root: str, venue: str | None, session: str | None) -> dict[str, list[tuple[str, str]]]:
    """{session: [(raw file, why)]} of the raw files whose footer does not parse."""
    from lab.datasets.files import unreadable
    from lab.datasets.writer import session_raw_files

    out: dict[str, list[tuple[str, str]]] = {}
    for v, s in _sessions(root, venue, session):
        for _seq, path in session_raw_files(root, v, s):
            why = unreadable(path)
            if why is not None:
                out.setdefault(s, []).append((path, why))
    return out


@main.command(short_help="Recompress finished sessions' raw files (zstd 19).",
              epilog=_examples('lab compact captures',
                               'lab compact captures --json'))
@click.argument("root", type=click.Path(exists=True, file_okay=False))
@click.option("--venue", default=None)
@click.option("--session", default=None)
@click.option("--json", "as_json", is_flag=True)
def compact(root, venue, session, as_json) -> None:
    """Recompress finished sessions' raw files at zstd level 19 (in place, atomic, idempotent)."""
    from lab.datasets.writer import compact_root
    from lab.progress import progress_bar

    root = _normalized(root)
    blocked = _unreadable_raw(root, venue, session)
    if not blocked:
        try:
            with progress_bar("compact", unit="MB") as bar:
                reports = compact_root(root, venue=venue, session=session,
                                       progress=lambda done, total: bar(completed=done / 1e6, total=total / 1e6))
        except _file_errors() as exc:  # the footer parses, the data does not: the files before it are compacted
            fail(f"compact stopped: {_first_line(exc)}; see `lab verify`")
    else:  # the sessions with an unreadable raw file are skipped, the others compacted
        reports = []
        for v, s in _sessions(root, venue, session):
            if s in blocked:
                path, why = blocked[s][0]
                reports.append({"venue": v, "session": s, "skipped": f"unreadable raw file {path} ({why}): see `lab verify`", "error": True})
                continue
            try:
                reports += compact_root(root, venue=v, session=s)
            except _file_errors() as exc:
                reports.append({"venue": v, "session": s, "skipped": f"stopped: {_first_line(exc)}", "error": True})
    for r in reports:
        if as_json:
            click.echo(json.dumps(r))
        elif "skipped" in r:
            click.echo(f"{r['venue']} {r['session']}: skipped ({r['skipped']})", err=bool(r.get("error")))
        else:
            click.echo(f"{r['venue']} {r['session']}: {r['files']} raw files compacted, {r['bytes_before']:,} -> {r['bytes_after']:,} bytes")
    if any(r.get("error") for r in reports):
        sys.exit(1)


@main.command(short_help="Rewrite a capture's older-schema files in the current schema.",
              epilog=_examples("lab migrate captures --dry-run      # what would be rewritten",
                               "lab migrate captures                # rewrite them (again: nothing to do)"))
@click.argument("root", type=click.Path(exists=True, file_okay=False))
@click.option("--dry-run", is_flag=True, help="Say which files would be rewritten; change nothing.")
@click.option("--json", "as_json", is_flag=True)
def migrate(root, dry_run, as_json) -> None:
    """Rewrite a capture's older-schema files in the current schema.

    Atomic per file, idempotent, exact. Schema 1 -> 2: prices and amounts DECIMAL(18, precision)
    -> DECIMAL(38, 18), the one type every reader unifies across files."""
    from lab.datasets.migrate import migrate_root
    from lab.progress import progress_bar

    counts: dict[str, int] = {}
    with progress_bar("migrate", unit="files") as bar:
        reports = []
        for r in migrate_root(root, dry_run=dry_run):
            bar(completed=r["index"], total=r["total"])
            reports.append(r)
    for r in reports:
        counts[r["action"]] = counts.get(r["action"], 0) + 1
        if as_json:
            click.echo(json.dumps(r))
        elif r["action"] == "error":
            click.echo(f"[{r['index']}/{r['total']}] {r['path']}: error: {r['error']}", err=True)
        elif r["action"] != "current":
            click.echo(f"[{r['index']}/{r['total']}] {r['path']}: {r['action']} ({r['rows']:,} rows; {', '.join(r['columns'])})")
    if not as_json:
        total = sum(counts.values())
        done = counts.get("would migrate" if dry_run else "migrated", 0)
        click.echo(f"{total} files: {done} {'to migrate' if dry_run else 'migrated'}, {counts.get('current', 0)} already current"
                   + (f", {counts['error']} errors" if counts.get("error") else ""))
    if counts.get("error"):
        sys.exit(1)


def _offsets(specs: tuple[str, ...]) -> dict[str, int]:
    """`--offset VENUE=DURATION` (a leading - for a negative one) -> {venue: ns}."""
    out = {}
    for spec in specs:
        venue, sep, text = spec.partition("=")
        sign = -1 if text.startswith("-") else 1
        try:
            seconds = parse_duration(text.lstrip("-+")) if sep and venue else None
        except click.BadParameter as exc:
            fail(f"--offset {spec!r}: {exc.message}")
        if seconds is None:
            fail(f"--offset {spec!r}: expected VENUE=DURATION, e.g. binance=20ms")
        out[venue] = sign * round(seconds * 1e9)
    return out


def _ns_of(text: str | None, option: str = "--from") -> int | None:
    if text is None:
        return None
    from lab.core.timeparse import TimeParseError, parse_time_ns

    try:
        return parse_time_ns(text)
    except TimeParseError as exc:
        fail(f"{option} {exc}")


@main.command(short_help='Replay a capture through the Rust book.',
              epilog=_examples('lab replay captures',
                               'lab replay captures --symbol XBT/USD --speed max --json',
                               'lab replay captures --speed 1 --from 2026-11-24T10:00:00Z      # real time',
                               'lab replay captures --offset binance=20ms   # as if 20 ms further from binance'))
@click.argument("path", type=click.Path())
@click.option("--venue", default=None)
@click.option("--symbol", "symbols", multiple=True)
@click.option("--from", "start", default=None, help="ISO time or date, exact to the ns (no zone = UTC): callbacks from here on.")
@click.option("--to", "end", default=None, help="ISO time or date, exact to the ns: stop before this instant.")
@click.option("--speed", default="max", show_default=True, help="max, or a multiple of real time (1, 10, ...).")
@click.option("--offset", "offsets", multiple=True, metavar="VENUE=DURATION",
              help="Add a latency to a venue's local times (e.g. binance=20ms, kraken=-5ms); repeat per venue.")
@click.option("--json", "as_json", is_flag=True)
def replay(path, venue, symbols, start, end, speed, offsets, as_json) -> None:
    """Replay a capture (one file, a folder, or a root) through the Rust book."""
    from lab.progress import callback, progress_bar
    from lab.replay.connector import ReplayConnector
    from lab.datasets.reader import CaptureError

    try:
        pace = None if speed == "max" else float(speed)
    except ValueError:
        fail(f"--speed must be 'max' or a number, not {speed!r}")
    start_ns, end_ns = _ns_of(start, "--from"), _ns_of(end, "--to")
    if pace is not None and not pace > 0:
        fail(f"--speed {speed!r}: must be > 0 (or 'max')")
    try:
        with progress_bar("replay", unit="events") as bar:
            conn = ReplayConnector(path, venue=venue, symbols=list(symbols) or None, start_ns=start_ns, end_ns=end_ns, speed=pace,
                                   progress=callback(bar), offsets=_offsets(offsets))
            conn.start_stream("*", lambda book: None)
            summary = conn.run()
    except CaptureError as exc:
        fail(str(exc))
    if as_json:
        click.echo(dumps(summary))
    else:
        click.echo(f"replayed {summary['messages']:,} book messages, {summary['trades']:,} trades, {summary['gaps']} gaps")
        for name, s in summary["streams"].items():
            click.echo(f"  {name}: seq {s['seq']}  bid {s['best_bid']}  ask {s['best_ask']}  {'synced' if s['synced'] else 'NOT synced'}")
    # the replay ran over every readable file; exit 1 says it was not the whole capture
    _warn_skipped(conn.skipped)
    if conn.skipped:
        sys.exit(1)


@main.command(short_help="What a capture holds: venues, symbols, rows, times, events.",
              epilog=_examples("lab info captures", "lab info captures --json"))
@click.argument("root", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="One JSON object (times as exact ISO 8601 UTC with ns).")
def info(root, as_json) -> None:
    """What a capture holds, from its files' footers: venues, symbols, tables with rows, files,
    bytes and time ranges, sessions, integrity events, unreadable files. `lab verify` checks it."""
    from lab.datasets.files import CaptureError
    from lab.datasets.info import capture_info

    try:
        report = capture_info(root)
    except CaptureError as exc:
        fail(str(exc))
    if as_json:
        click.echo(json.dumps(report))
        return
    click.echo(f"{report['root']}: {report['sessions']} session(s), {report['from'] or '-'} .. {report['to'] or '-'}")
    for venue, v in sorted(report["venues"].items()):
        events = ", ".join(f"{n} {k}" for k, n in v["events"].items()) or "no integrity events"
        own = ", ".join(f"{t} {e['rows']:,} rows" for t, e in v.get("tables", {}).items())
        click.echo(f"{venue}: {len(v['symbols'])} symbol(s)" + (f", {own}" if own else "") + f"; {events}")
        for symbol, tables in sorted(v["symbols"].items()):
            parts = [f"{t} {e['rows']:,} rows" for t, e in tables.items()]
            span = next((f"{e['from']} .. {e['to']}" for t, e in tables.items() if t == "book"), "")
            click.echo(f"  {symbol}: {', '.join(parts)}" + (f"  [{span}]" if span else ""))
    for path in report["unreadable_files"]:
        click.echo(f"unreadable: {path}")
    if report["journals"]:
        click.echo(f"{report['journals']} journal(s) not yet in Parquet (live, or recover with `lab verify --repair`)")


@main.command(short_help="Export a capture as tardis.dev CSV or hftbacktest npz.",
              epilog=_examples("lab export captures --format tardis --out tardis_csv",
                               "lab export captures --format hftbacktest --out npz --symbol XBT/USD"))
@click.argument("root", type=click.Path())
@click.option("--format", "fmt", required=True, type=click.Choice(["tardis", "hftbacktest"]))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the exported files (created).")
@click.option("--venue", default=None)
@click.option("--symbol", "symbols", multiple=True)
@click.option("--json", "as_json", is_flag=True)
def export(root, fmt, out, venue, symbols, as_json) -> None:
    """Write tardis.dev's normalized CSV files or hftbacktest's event arrays (docs/EXPORT.md)."""
    from lab.datasets.export import export as run_export
    from lab.datasets.files import CaptureError
    from lab.progress import callback, progress_bar
    from lab.symbols import canonical_list

    skipped: list = []
    try:
        with progress_bar("export", unit="rows") as bar:
            report = run_export(root, fmt, out, venue=venue, symbols=canonical_list(symbols) or None,
                                progress=callback(bar), skipped=skipped).as_dict()
    except CaptureError as exc:
        fail(str(exc))
    if as_json:
        click.echo(dumps(report))
    else:
        click.echo(f"wrote {len(report['files'])} files to {out}: " + ", ".join(f"{n:,} {t}" for t, n in report["rows"].items()))
        for line in report["left_out"]:
            click.echo(f"  note: {line}")
    _warn_skipped(skipped)
    if skipped:
        sys.exit(1)


@main.command(short_help="Check a capture's health; exit 1 when unhealthy.",
              epilog=_examples('lab verify captures',
                               'lab verify captures --repair        # recover journals after a crash first',
                               'lab verify captures --strict --json'))
@click.argument("root", type=click.Path())
@click.option("--strict", is_flag=True, help="Fail on any gap, even one closed by a resync.")
@click.option("--repair", is_flag=True, help="Recover leftover journals first.")
@click.option("--json", "as_json", is_flag=True)
def verify(root, strict, repair, as_json) -> None:
    """Check a capture: messages, checksums, gaps, resyncs, file health. Exit 1 when unhealthy,
    2 when only degraded (journal bytes were unrecoverable; everything else is explained)."""
    import errno

    from lab.datasets.verify import verify as run_verify
    from lab.progress import callback, progress_bar
    from lab.datasets.reader import CaptureError

    before = _tmp_files(root)
    try:
        with progress_bar("verify", unit="rows") as bar:
            report = run_verify(root, strict=strict, repair=repair, progress=callback(bar))
    except CaptureError as exc:
        fail(str(exc))
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # a repair that ran out of room keeps every journal (recovery deletes one only after
        # its Parquet is durable) and takes back only the half-written files it made itself
        for tmp in _tmp_files(root) - before:
            try:
                os.remove(tmp)
            except OSError:
                pass
        fail(_disk_full_line(exc))
    if as_json:
        click.echo(dumps(report))
    else:
        for name, s in report["streams"].items():
            click.echo(
                f"{name}: {s['messages']:,} messages, checksums {s['checksums_ok']:,} ok / {s['checksums_bad']} bad, "
                f"{s['gaps']} gaps, {s['resyncs']} resyncs, {s['files']} files"
            )
        click.echo(f"{report['files']} files, {len(report['bad_files'])} unreadable, {len(report['journals'])} leftover journals")
        for problem in report["problems"]:
            click.echo(f"PROBLEM: {problem}")
        for r in report.get("repaired", []):
            from lab.datasets.writer import recovery_line

            click.echo(recovery_line(r))
        if report.get("live_journals"):
            click.echo(f"{len(report['live_journals'])} journal(s) of live sessions (being recorded): not checked")
        for t in report.get("torn_tails", []):
            click.echo(f"note: torn journal tail recovered ({t['bytes']} bytes of a partial last record, {t['journal']})")
        health = report.get("health", "healthy" if report["ok"] else "unhealthy")
        click.echo({"healthy": "healthy", "degraded": f"DEGRADED, {report.get('unrecoverable_bytes', 0)} bytes unrecoverable"}.get(health, "UNHEALTHY"))
    sys.exit(0 if report["ok"] else 2 if report.get("health") == "degraded" else 1)


@main.command(short_help='Paper-trade against a live book (validate=true orders).',
              epilog=_examples("lab paper --venue kraken --symbol XBT/USD --keys api_keys.properties --order 'buy market 0.01'"))
@click.option("--venue", default=lambda: _registry().paper_venue(), show_default="the venue with order validation")
@click.option("--symbol", required=True, help="Venue symbol (XBT/USD).")
@click.option("--keys", default=None, type=click.Path(dir_okay=False), help="api_keys.properties (else LAB_API_KEYS, ./api_keys.properties, the environment).")
@click.option("--rest-url", default=None, help="Override the venue's REST base URL (simulator, proxy).")
@click.option("--ws-url", default=None, help="Override the venue's WebSocket URL.")
@click.option("--depth", default=0, type=int, help="Book depth (0 = venue default).")
@click.option("--order", "orders", multiple=True, help="'SIDE TYPE VOLUME [PRICE]', e.g. 'buy market 0.01' or 'sell limit 0.02 30100.5'; repeat.")
@click.option("--duration", default="10s", show_default=True, help="How long to keep filling resting orders.")
@click.option("--out", "root", default="captures", show_default=True, type=click.Path(file_okay=False), help="Root for the orders and fills tables.")
@click.option("--strategy", "strategy_file", default=None, type=click.Path(dir_okay=False),
              help="Run this backtest strategy file (lab backtest's class) on the live book instead of --order.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Strategy parameter (with --strategy).")
@click.option("--latency", default="0", show_default=True, help="Simulated order latency on top of the real one (with --strategy).")
@click.option("--queue", default="none", show_default=True, help="Queue model (with --strategy): none, conservative, prob[:N].")
@click.option("--fees", "fees", multiple=True, help="Fee schedule override (with --strategy), as in lab backtest.")
@click.option("--balance", "balances", multiple=True, metavar="[VENUE:]ASSET=AMOUNT", help="Starting balance (with --strategy).")
@click.option("--json", "as_json", is_flag=True)
def paper(venue, symbol, keys, rest_url, ws_url, depth, orders, duration, root, strategy_file, params, latency, queue, fees,
          balances, as_json) -> None:
    """Paper-trade: orders validated by the venue (validate=true), filled locally against the live book."""
    from lab.replay.paper_cli import run_paper

    if strategy_file:
        _paper_strategy(strategy_file, params, venue, symbol, keys, rest_url, ws_url, depth, duration, root, latency, queue,
                        fees, balances, as_json)
        return
    try:
        summary = run_paper(venue, symbol, keys=keys, rest_url=rest_url, ws_url=ws_url, depth=depth, orders=list(orders),
                            duration=parse_duration(duration), root=root)
    except (ValueError, LookupError, RuntimeError) as exc:
        fail(str(exc))
    if as_json:
        click.echo(json.dumps(summary, default=str))
    else:
        for o in summary["orders"]:
            click.echo(f"{o['id']} {o['side']} {o['ordertype']} {o['volume']} {o['price'] or ''}: {o['status']} filled {o['filled']} {o['reason']}")
        click.echo(f"{len(summary['fills'])} fills -> {summary['root']}")
    placed = summary["orders"]
    if placed and all(o["status"] == "rejected" for o in placed):
        reason = placed[0]["reason"]
        hint = ""
        if any(e in reason for e in ("EAPI:Invalid key", "EAPI:Invalid signature")):
            hint = " (check KRAKEN_API_KEY / KRAKEN_API_SECRET or --keys)"
        fail(f"every order was rejected by {venue}: {reason}{hint}")


def _paper_strategy(strategy_file, params, venue, symbol, keys, rest_url, ws_url, depth, duration, root, latency, queue,
                    fees, balances, as_json) -> None:
    from lab.replay import backtest as bt
    from lab.replay.paper_cli import run_paper_strategy

    try:
        models = bt.parse_models(latency, queue, fees, balances)
        strategy = bt.load_strategy(strategy_file, None, bt.parse_params(params))
        engine = run_paper_strategy(strategy, venue, [symbol], keys=keys, rest_url=rest_url, ws_url=ws_url, depth=depth,
                                    duration=parse_duration(duration), models=models, results=root)
    except (ValueError, LookupError, RuntimeError) as exc:
        fail(str(exc))
    engine.write()
    summary = engine.summary()
    if as_json:
        click.echo(dumps(summary))
    else:
        click.echo(f"{type(strategy).__name__} on live {venue} {symbol}: {summary['book_messages']:,} book messages, "
                   f"{summary['orders']} orders ({summary['orders_rejected']} rejected), {summary['fills']} fills, "
                   f"pnl {summary['pnl']}, fees {summary['fees']} -> {root}")


@main.command(short_help="Run a strategy on a capture: latency, queue and fee models.",
              epilog=_examples("lab backtest examples/market_maker.py captures --symbol BTC-USD --queue conservative --latency 5ms",
                               "lab backtest examples/arbitrage.py captures --param a=mock:BTC-USD --param b=binance:BTC-USDT --json --plot arb.png",
                               "lab query --root backtests/LATEST \"SELECT side, count(*), sum(fee) FROM fills GROUP BY side\""))
@click.argument("strategy_file", type=click.Path(dir_okay=False))
@click.argument("path", type=click.Path())
@click.option("--class", "class_name", default=None, help="The Strategy subclass, when the file defines several.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Strategy parameter; repeat for several.")
@click.option("--venue", default=None, help="Only this venue's streams.")
@click.option("--symbol", "symbols", multiple=True, help="Only these symbols (venue or canonical spelling); repeat.")
@click.option("--from", "start", default=None, help="ISO time or date, exact to the ns (no zone = UTC).")
@click.option("--to", "end", default=None, help="ISO time or date: stop before this instant.")
@click.option("--latency", default="0", show_default=True, help="Order latency: 5ms, entry=5ms,response=2ms, or feed*1.5[+1ms] (recorded feed latency times K).")
@click.option("--queue", default="none", show_default=True, help="Queue model on L2: none (no queue: every book offers its crossing size), conservative, prob[:N].")
@click.option("--fees", "fees", multiple=True, help="maker=F,taker=F or F (fractions or NNbps) for every venue, or VENUE:maker=F,taker=F; default: each venue's public schedule.")
@click.option("--balance", "balances", multiple=True, metavar="[VENUE:]ASSET=AMOUNT", help="Starting balance; repeat (default: the strategy's `balances`).")
@click.option("--margin", is_flag=True, help="Allow negative balances (no balance checks).")
@click.option("--no-partial-fills", is_flag=True, help="A resting order fills whole or not at all.")
@click.option("--offset", "offsets", multiple=True, metavar="VENUE=DURATION",
              help="Feed latency added to a venue's local times (as lab replay --offset); repeat per venue.")
@click.option("--sample", default="1s", show_default=True, help="Equity sampling interval (data time).")
@click.option("--out", "results", default=None, type=click.Path(file_okay=False), help="Results folder (default backtests/<session>).")
@click.option("--plot", "plot_path", default=None, type=click.Path(dir_okay=False), help="Write a PNG: equity, mids with fills, position.")
@click.option("--json", "as_json", is_flag=True)
def backtest(strategy_file, path, class_name, params, venue, symbols, start, end, latency, queue, fees, balances, margin,
             no_partial_fills, offsets, sample, results, plot_path, as_json) -> None:
    """Run a strategy class (lab.replay.backtest.Strategy) on a capture: orders, fills, equity
    and positions tables in the results folder (queryable with `lab query --root`), a summary."""
    from lab.datasets.reader import CaptureError
    from lab.progress import callback, progress_bar
    from lab.replay import backtest as bt

    start_ns, end_ns = _ns_of(start, "--from"), _ns_of(end, "--to")
    try:
        sample_s = positive_duration(sample, "--sample")
        models = bt.parse_models(latency, queue, fees, balances, partial_fills=not no_partial_fills, margin=margin)
        strategy = bt.load_strategy(strategy_file, class_name, bt.parse_params(params))
    except ValueError as exc:
        fail(str(exc))
    try:
        with progress_bar("backtest", unit="events") as bar:
            engine = bt.run_backtest(strategy, path, venue=venue, symbols=list(symbols) or None, start_ns=start_ns,
                                     end_ns=end_ns, models=models, sample_ns=int(sample_s * 1e9), progress=callback(bar),
                                     offsets=_offsets(offsets))
    except (CaptureError, bt.BacktestError) as exc:
        fail(str(exc))
    engine.results = results or os.path.join("backtests", engine.session)
    engine.write()
    summary = engine.summary()
    if plot_path:
        try:
            summary["plot"] = bt.plot(engine, plot_path)
        except bt.BacktestError as exc:
            fail(str(exc))
    if as_json:
        click.echo(dumps(summary))
        return
    click.echo(f"{type(strategy).__name__} on {path}: {summary['book_messages']:,} book messages, {summary['orders']} orders "
               f"({summary['orders_rejected']} rejected), {summary['fills']} fills ({summary['maker_fills']} maker)")
    click.echo(f"  pnl {summary['pnl']} (return {summary['return']}), fees {summary['fees']}, turnover {summary['turnover']}")
    click.echo(f"  sharpe {summary['sharpe']}  sortino {summary['sortino']}  max drawdown {summary['max_drawdown']}  "
               f"fill ratio {summary['fill_ratio']}  time in market {summary['time_in_market']}")
    click.echo(f"  tables -> {engine.results}" + (f"; plot -> {plot_path}" if plot_path else ""))


@main.command(short_help='The whole loop on the embedded mock venue, one command.',
              epilog=_examples('lab demo',
                               'lab demo --out demo-capture --duration 30s',
                               'lab demo --out demo-capture --force'))
@click.option("--out", "root", default=None, type=click.Path(file_okay=False),
              help="Keep the capture here (default: a temporary folder, removed at the end). Must be empty unless --append/--force.")
@click.option("--force", is_flag=True, help="Replace the lab capture already in --out.")
@click.option("--append", is_flag=True, help="Add this run as one more session to the capture in --out.")
@click.option("--duration", default="15s", show_default=True)
@click.option("--rate", default=2000.0, show_default=True, type=float, help="Simulator messages per second.")
def demo(root, force, append, duration, rate) -> None:
    """The whole loop on the embedded mock venue: simulate, record, replay, query, verify."""
    from lab.demo import DemoError, run_demo

    if force and append:
        fail("--force replaces the capture in --out, --append adds to it: pass one of them")
    try:
        ok = run_demo(root, parse_duration(duration), rate, echo=click.echo, force=force, append=append)
    except DemoError as exc:
        fail(str(exc))
    sys.exit(0 if ok else 1)


@main.command(short_help='Derive quotes and book_snapshot_<depth> with the Rust engine.',
              epilog=_examples('lab rebuild captures',
                               'lab rebuild captures --depth 10 --interval 100ms --symbol XBT/USD'))
@click.argument("root", type=click.Path(file_okay=False))
@click.option("--depth", default=25, show_default=True, type=int, help="Levels per side in book_snapshot_<depth>.")
@click.option("--interval", default="1s", show_default=True, help="Snapshot grid on local time (500ms, 1s, 1m; 0 = every message).")
@click.option("--venue", default=None)
@click.option("--symbol", "symbols", multiple=True)
@click.option("--json", "as_json", is_flag=True)
def rebuild(root, depth, interval, venue, symbols, as_json) -> None:
    """Derive `quotes` and `book_snapshot_<depth>` from `book` with the Rust engine (one call per stream)."""
    from lab.progress import callback, progress_bar
    from lab.replay.rebuild import rebuild_root
    from lab.datasets.reader import CaptureError

    seconds = 0.0 if interval.strip() == "0" else parse_duration(interval)
    skipped: list = []
    try:
        from lab.symbols import canonical_list  # XBT/USD or xbt-usd name the XBT-USD partition

        with progress_bar("rebuild", unit="files") as bar:
            report = rebuild_root(root, depth=depth, interval_ns=int(round(seconds * 1e9)), venue=venue, symbols=canonical_list(symbols) or None,
                                  progress=callback(bar), skipped=skipped)
    except CaptureError as exc:
        _warn_skipped(skipped)
        fail(str(exc))
    if not report:
        _warn_skipped(skipped)
        fail(f"no readable book files under {root}" if skipped else f"no book files under {root}")
    for s in report:
        if as_json:
            click.echo(dumps(s))
        else:
            click.echo(f"{s['venue']}/{s['symbol']} ({s['session']}): {s['rows']:,} book rows -> {s['quotes']:,} quotes, "
                       f"{s['snapshots']:,} book_snapshot_{depth} rows in {s['files']} files")
    # every readable stream was rebuilt; exit 1 says some files could not be
    _warn_skipped(skipped)
    if skipped:
        sys.exit(1)


@main.group(short_help="Benchmarks (not timed tests).")
def bench() -> None:
    """Benchmarks (not timed tests)."""


@bench.command("book", short_help="The pinned order-book workload: ours vs the peers.",
               epilog=_examples("lab bench book --rows 2000000",
                                "taskset -c 1 lab bench book --peers-python /path/to/peers-venv/bin/python --json"))
@click.option("--rows", default=2_000_000, show_default=True, type=int, help="Book rows of the pinned workload.")
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--peers-python", default=None, type=click.Path(dir_okay=False), help="Python of a venv with hftbacktest, order-book, nautilus-trader.")
@click.option("--peer", "peer_names", multiple=True, type=click.Choice(["hftbacktest", "cryptofeed", "nautilus"]), help="Only these peers.")
@click.option("--capture", default=None, type=click.Path(exists=True), help="Also rebuild this capture's book streams.")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per engine / metric.")
def bench_book(rows, seed, peers_python, peer_names, capture, as_json) -> None:
    """The pinned order-book workload through our engine, a dict baseline and the peers, on one core."""
    from lab.benchmarks.book import run
    from lab.progress import progress_bar

    with progress_bar("bench book", unit="stages") as bar:
        failed = _bench_lines(run(rows, peers_python, seed=seed, capture=capture, only_peers=list(peer_names) or None,
                                  progress=lambda done, total, name: bar(completed=done, total=total, description=f"bench book: {name}")),
                              as_json)
    if failed:
        fail("an engine ended at a different best bid/ask")


def _bench_lines(lines, as_json: bool) -> bool:
    """Prints each result line as it comes; True when an engine ended at another best bid/ask."""
    failed = False
    for line in lines:
        failed |= line.get("ok") is False
        if as_json:
            click.echo(json.dumps(line))
        elif "engine" in line and "error" in line:
            click.echo(f"{line['engine']}: not run: {line['error']}")
        elif line.get("metric") == "ratios":
            for name in ("bulk", "per_message"):
                if f"{name}_vs_fastest_peer" in line:
                    click.echo(f"ratio {name.replace('_', '-')}: ours {line[f'{name}_vs_fastest_peer']:.2f}x the fastest peer "
                               f"({line[f'{name}_fastest_peer']}), same run")
        elif "engine" in line:
            rate = line.get("deltas_per_s")
            click.echo(f"{line['engine']:<42} {line['path']:<12} {line['deltas']:>11,} deltas  "
                       f"{(rate or 0) / 1e6:8.2f} M/s  bid {line['best_bid']} ask {line['best_ask']}  {'ok' if line.get('ok', True) else 'MISMATCH'}")
        else:
            click.echo("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in line.items()))
    return failed


from lab.view.cli import view as _view  # noqa: E402  (the page: lab/view/)

main.add_command(_view, "view")


if __name__ == "__main__":
    main()
