"""Progress bars for long commands: rich on stderr, only when stderr is a terminal.

    with progress_bar("compact", total=n, unit="files") as advance:
        for f in files:
            ...
            advance(1)

Off (a no-op costing one call) when stderr is not a TTY, when TERM=dumb, or with LAB_PROGRESS=0,
so pipes, CI logs and `--json` consumers never see escape codes. Library functions take an
optional `progress(done, total)` callback and know nothing of rich.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Callable, Iterator


def enabled() -> bool:
    if os.environ.get("LAB_PROGRESS", "") == "0" or os.environ.get("TERM") == "dumb":
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _noop(*_args, **_kwargs) -> None:
    return None


@contextlib.contextmanager
def progress_bar(description: str, total: float | None = None, unit: str = "") -> Iterator[Callable]:
    """Yields `update(advance=0, *, completed=None, total=None, description=None)`.

    The bar shows done/total, a rate in `unit`/s and an ETA (elapsed time when the total is unknown);
    it is removed when the block ends, so the command's own output stays as it is."""
    if not enabled():
        yield _noop
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            if speed is None:
                return Text(f"? {unit}/s", style="progress.data.speed")
            if speed >= 1e6:
                shown = f"{speed / 1e6:.1f}M"
            elif speed >= 1e4:
                shown = f"{speed / 1e3:.0f}k"
            else:
                shown = f"{speed:.1f}" if speed < 100 else f"{speed:,.0f}"
            return Text(f"{shown} {unit}/s", style="progress.data.speed")

    bar = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        Rate(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        # lines printed meanwhile go above the bar when stdout is the same terminal; a piped
        # stdout is left alone (rich would send it to the bar's stream, stderr)
        redirect_stdout=sys.stdout.isatty(),
        redirect_stderr=False,
    )
    with bar:
        task = bar.add_task(description, total=total)

        def update(advance: float = 0, *, completed: float | None = None, total: float | None = None, description: str | None = None) -> None:
            kw = {}
            if completed is not None:
                kw["completed"] = completed
            if total is not None:
                kw["total"] = total
            if description is not None:
                kw["description"] = description
            bar.update(task, advance=advance or None, **kw)

        yield update


def callback(update: Callable) -> Callable[[int, int], None]:
    """A library-side `progress(done, total)` callback that drives `update`."""
    def progress(done: int, total: int) -> None:
        update(completed=done, total=total)

    return progress
