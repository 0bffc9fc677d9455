"""Progress bars with ETA (rich). Quiet when HEADSTART_QUIET=1 or on non-main ranks."""
from __future__ import annotations

import os
from contextlib import contextmanager

from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)


def _quiet() -> bool:
    return os.environ.get("HEADSTART_QUIET") == "1" or int(os.environ.get("RANK", "0")) != 0


@contextmanager
def progress_bar(description: str | None, total: int):
    """Yields advance(n). No description means no bar (inner loops of quick evaluations)."""
    if description is None or _quiet():
        yield lambda n=1: None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                  transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)
