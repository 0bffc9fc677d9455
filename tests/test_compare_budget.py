"""compare's --budget as one promise for the command (compare_budget.py): each arm run gets its own
budget or what the command has left once the runs after it and the report are reserved; the
diagnosis runs only when it fits."""
from __future__ import annotations

import time

import pytest
import yaml

from headstart import compare_budget
from headstart.compare_budget import MIN_ARM_SECONDS, CommandClock
from headstart.config import CompareConfig
from headstart.config.budget import Deadline
from headstart.records import read_json

from conftest import make_blobs, write_image_folder

COSTS = {"comparison-report": 5.0, "diagnosis": 20.0}


@pytest.fixture
def costs(monkeypatch):
    monkeypatch.setattr(compare_budget, "closing_part_seconds", lambda part, n=0: COSTS[part])


def _spent(clock: CommandClock, seconds: float) -> None:
    clock.deadline = Deadline(clock.promised, time.perf_counter() - seconds)


def test_an_arm_gets_its_budget_or_its_share_of_what_is_left(costs):
    clock = CommandClock([30.0, 30.0], started=time.perf_counter() - 10.0)  # a 10 s start-up
    assert clock.promised == 60.0
    # 60 - 10 spent - 5 for the report = 45 for 60 s of arms: each gives up the same quarter
    assert clock.arm_budget(30.0) == pytest.approx(22.5, abs=0.3)
    _spent(clock, 18.0)  # the first arm ended early: the second keeps its whole budget
    assert clock.arm_budget(30.0) == 30.0


def test_an_overrun_command_still_gives_an_arm_its_first_step(costs):
    clock = CommandClock([30.0, 30.0], started=time.perf_counter() - 70.0)
    assert clock.arm_budget(30.0) == MIN_ARM_SECONDS
    unbounded = CommandClock(None)
    assert unbounded.promised is None and unbounded.arm_budget(30.0) == 30.0 and unbounded.arm_budget(None) is None
    assert unbounded.affords("diagnosis") and unbounded.figures() == {}


def test_the_diagnosis_runs_only_when_it_fits_and_the_comparison_says_it_was_skipped(costs):
    clock = CommandClock([30.0], started=time.perf_counter() - 20.0)  # 10 s left: the report's 5, not 20 more
    assert not clock.affords("diagnosis")
    assert clock.figures() == {"budget_promised_seconds": 30.0, "budget_skipped": ["diagnosis"]}
    roomy = CommandClock([30.0], started=time.perf_counter())
    assert roomy.affords("diagnosis") and "budget_skipped" not in roomy.figures()


def test_the_promise_is_every_arm_run_of_the_command(costs):
    config = CompareConfig(data="d", budget_seconds=30.0, baseline_budget_seconds=60.0, seeds=2)
    # two arms (30 s and the baseline's 60 s), two seeds, the comparison and one label budget
    clock = CommandClock.for_compare(config, [30.0, 60.0], 2, started=time.perf_counter())
    assert clock.promised == (30 + 30 + 60 + 60) * 2
    assert CommandClock.for_compare(CompareConfig(data="d"), [None, 600.0], 1, time.perf_counter()).promised is None


@pytest.mark.slow
def test_a_compare_whose_start_up_took_its_time_shortens_its_first_arm(tmp_path, monkeypatch):
    """The command had spent 25 s of its 40 s promise before its arms (faked): both arms get a
    share of what is left instead of their 20 s, and the comparison records its promise."""
    from headstart.cli import main

    monkeypatch.setattr(compare_budget, "claim_start", lambda: time.perf_counter() - 25.0)
    folder = write_image_folder(tmp_path / "data", make_blobs(n_per_class=16))
    out = tmp_path / "cmp"
    assert main(["-q", "compare", str(folder), "--arms", "probe,scratch", "--budget", "20s", "--baseline-budget",
                 "20s", "--image-size", "32", "--explain-examples", "0", "--out", str(out)]) == 0
    given = {arm: yaml.safe_load((out / "arms" / arm / "config.yaml").read_text())["budget_seconds"]
             for arm in ("probe", "scratch")}
    # 40 - 25 spent leaves under 15 s for 40 s of arms: each gets well under half its budget
    assert MIN_ARM_SECONDS <= given["probe"] < 10.0 and given["scratch"] < 20.0
    assert read_json(out / "comparison.json")["budget_promised_seconds"] == 40.0
