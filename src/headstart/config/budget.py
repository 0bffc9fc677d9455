"""The clock of a `--budget`: one deadline for the whole command, started as early as possible.

--budget is a promise about the command a user waits for -- start-up, loading, choosing,
training, evaluation, the run's closing files -- not about training alone. So the clock starts
when the process did (the `headstart` command: its interpreter's start, read from /proc, so the
seconds Python and torch take to import count too), and every stage asks it for the time left
instead of taking its own share of a budget that ignores what came before. A fit called from
Python (the API, compare's arms, tests) starts its clock when it begins: its process may have
been running for hours.

    mark_command_start(from_process_start=True)   # cli.main, for `fit`
    started = claim_start()                         # begin_fit: the command's start, once; else now
    deadline = Deadline(budget_seconds, started)
    deadline.left()                                 # seconds left (None without a budget)

The clock is time.perf_counter (CLOCK_MONOTONIC on Linux, as the run's other clocks).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

_command_start: float | None = None  # perf_counter at the command's start, until its fit claims it


def process_elapsed() -> float | None:
    """Seconds since this process started (Linux /proc), None where that cannot be read."""
    try:
        stat = Path("/proc/self/stat").read_text()
        # field 22 is the start time in clock ticks after boot; the name (field 2) may hold spaces,
        # so count from its closing parenthesis (field 3 is the first after it)
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def mark_command_start(*, from_process_start: bool) -> None:
    """The command starts now, or (from_process_start, a real `headstart` process) when its
    process started: the interpreter and imports are part of what the user waits for."""
    global _command_start
    elapsed = process_elapsed() if from_process_start else None
    _command_start = time.perf_counter() - (elapsed or 0.0)


def forget_command_start() -> None:
    global _command_start
    _command_start = None


def claim_start() -> float:
    """perf_counter at which the fit beginning now started: the command's start the first time
    after mark_command_start, else now (a later fit in the same process has its own clock)."""
    global _command_start
    started, _command_start = _command_start, None
    return time.perf_counter() if started is None else started


@dataclass(frozen=True)
class Deadline:
    """A budget and the moment its clock started (perf_counter)."""

    budget: float | None
    started: float

    def spent(self) -> float:
        return time.perf_counter() - self.started

    def left(self) -> float | None:
        return None if self.budget is None else self.budget - self.spent()

    def left_after(self, reserve: float, *, floor: float = 1.0) -> float | None:
        """The seconds a stage may take when `reserve` seconds must still follow it (never under
        `floor`: a stage given nothing still takes its first step, and stops there)."""
        left = self.left()
        return None if left is None else max(left - reserve, floor)
