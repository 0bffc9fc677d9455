"""Messages and progress bars: one logger, one quiet rule, one rank rule.

Only the main process speaks (under torchrun every rank runs the same code), and
`-q` / HEADSTART_QUIET=1 silences both messages and bars. The rank comes from Accelerate's
state once a training loop has created it, else from torchrun's RANK variable, so asking
never initialises a process group by itself.
"""
from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager

logger = logging.getLogger("headstart")


def is_main_process() -> bool:
    from accelerate.state import PartialState, is_initialized

    if is_initialized():  # a loop created the state: trust Accelerate's view of the ranks
        return PartialState().is_main_process
    return int(os.environ.get("RANK", "0")) == 0


def quiet() -> bool:
    return os.environ.get("HEADSTART_QUIET") == "1" or not is_main_process()


def set_quiet(value: bool = True) -> None:
    """What `-q` does: the environment variable, so child processes (torchrun ranks) inherit it."""
    os.environ["HEADSTART_QUIET"] = "1" if value else "0"


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (pytest and redirect_stderr replace it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def say(message: str) -> None:
    """A line for the person running headstart, on stderr (stdout is for results)."""
    if quiet():
        return
    if not logger.handlers:
        handler = _CurrentStderr()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    logger.info(message)


@contextmanager
def progress_bar(description: str | None, total: int, *, min_total: int = 0):
    """Yields advance(n=1): a rich bar with ETA on stderr. No description, a quiet run or
    fewer than `min_total` items (a bar that flashes by is noise) mean no bar."""
    if description is None or quiet() or total < min_total:
        yield lambda n=1: None
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)
