"""compare's `--budget` as one promise for the command, start-up to report.

--budget is per arm (each arm gets the same time, so the comparison is fair), and the baseline
has its own cap (--baseline-budget). The promise is their sum over every arm run the command
makes -- each arm, each seed, and each label budget's runs (--label-fractions) -- and it counts
from the process's start, as fit's does (config/budget.py): the interpreter, the imports and the
decode come out of it too.

So each arm run, in the order the command makes them, gets its own budget or, when what the
command has left (less the comparison's report) no longer covers the budgets of the runs still to
come, its budget scaled down by the same share as theirs: an overrun early (a slow start-up, an
arm's closing files) is shared by the arms after it, not added to the end. The diagnosis of a negative or inconclusive verdict
runs only when its cost, measured on this machine, fits in what is left; otherwise it is skipped
and the comparison says so (`budget_skipped`). Measured before this (BENCHMARKS 17): `compare
digits --arms probe,scratch --budget 30s --baseline-budget 30s` took 82.8 s for a 60 s promise,
its diagnosis (frozen features of the whole split) being most of the overrun.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

from .config.budget import Deadline, claim_start
from .log import say
from .post_fit import closing_part_seconds, remember_closing_cost

MIN_ARM_SECONDS = 5.0  # validate()'s floor: an arm given less still takes its first evaluation
REPORT = "comparison-report"
DIAGNOSIS = "diagnosis"


class CommandClock:
    """The command's deadline and the arm runs still planned under it (their own budgets)."""

    def __init__(self, planned: list[float] | None, started: float | None = None):
        self._planned = list(planned or [])
        promised = sum(self._planned) if planned else None
        self.deadline = Deadline(promised, time.perf_counter() if started is None else started)
        self.skipped: list[str] = []

    @classmethod
    def for_compare(cls, config, arm_budgets: list[float | None], runs_per_arm: int,
                    started: float) -> "CommandClock":
        """The promise of `config` (a CompareConfig): every arm's budget, once per seed and per label
        budget; none without --budget (the transfer arms would have no end). started: the
        command's start (command_started())."""
        if config.budget_seconds is None or any(b is None for b in arm_budgets):
            return cls(None, started)
        per_seed = [b for b in arm_budgets for _ in range(config.seeds)]
        return cls(per_seed * runs_per_arm, started)

    @property
    def promised(self) -> float | None:
        return self.deadline.budget

    def arm_budget(self, budget: float | None) -> float | None:
        """The next arm run's budget: its own, scaled down with the runs still to come when what
        is left (less the report) no longer covers their budgets, so every arm gives up the same
        share of an overrun rather than the first taking it all (never under MIN_ARM_SECONDS: an
        arm still takes its first step)."""
        remaining = sum(self._planned)
        if self._planned:
            self._planned.pop(0)
        left = self.deadline.left_after(closing_part_seconds(REPORT), floor=0.0)
        if left is None or budget is None or remaining <= 0:
            return budget
        return max(MIN_ARM_SECONDS, budget * min(1.0, left / remaining))

    def affords(self, part: str) -> bool:
        """Whether a closing part's expected cost fits in what is left besides the report; one that
        does not is skipped and said."""
        left = self.deadline.left()
        if left is None:
            return True
        cost = closing_part_seconds(part)
        if cost <= left - closing_part_seconds(REPORT):
            return True
        self.skipped.append(part)
        say(f"--budget: skipped the {part} (about {cost:.0f} s here) to end within the budget, "
            f"{max(left, 0):.1f} s left")
        return False

    @contextmanager
    def timed(self, part: str) -> Iterator[None]:
        """Run a closing part and remember what it cost on this machine (the next estimate)."""
        began = time.perf_counter()
        yield
        remember_closing_cost(part, time.perf_counter() - began)

    def figures(self) -> dict:
        """What the comparison records of its promise."""
        if self.promised is None:
            return {}
        return {"budget_promised_seconds": round(self.promised, 1),
                **({"budget_skipped": sorted(self.skipped)} if self.skipped else {})}


def command_started() -> float:
    """The command's start, claimed before anything else can (a fit inside --image-size auto or
    --backbone auto would take it as its own): the process's start for `headstart compare`."""
    return claim_start()
