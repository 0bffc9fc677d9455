"""What a fit adds to its run directory after the model is saved: the report's explanations,
the deploy table's first row and the report. Each is measured outside the training clock, and a
failure costs the report a section, never the run.

HEADSTART_SKIP=deploy,report turns the last two off (read here only): the test suite does so
wherever a test reads neither, since they cost a few seconds a fit (tests/conftest.py). A run
without them is a finished run; `headstart report RUN` renders its report later.

Under --budget they are part of the promise: training is given the time left less what these
parts are expected to cost (closing_reserve, from their measured cost on this machine, per
modality where it differs: explaining a text costs ~8x an image), and a part that would still
cross the deadline is skipped, and the run says so (plan_closing). Training comes first: the
parts reserved before it may take at most CLOSING_SHARE of the budget, the most wanted first; a
part beyond that share runs only if training leaves it time.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from .config import FitConfig
from .config.budget import Deadline
from .errors import HeadstartError
from .log import say


def explain_report_examples(config: FitConfig, model, test, test_logits, classes: list[str], run_dir: Path,
                            closing: Closing | None = None) -> dict:
    """The report's explanations (RUN/explanations/), and what the summary says of them. The
    model is saved by now, so a method that fails costs the report a section, not the run."""
    from .explain import explain_for_report

    folder = run_dir / "explanations"
    if config.explain_examples <= 0 or (closing is not None and not closing.runs("explanations")):
        shutil.rmtree(folder, ignore_errors=True)
        return {}
    try:
        made = explain_for_report(model, test, test_logits, classes, folder, mistakes=config.explain_examples,
                                  method=config.explain_method)
    except Exception as e:  # noqa: BLE001  (recorded in the summary and shown in the report)
        say(f"no explanations for the report: {e}")
        return {"explanations_error": f"{type(e).__name__}: {e}" if not isinstance(e, HeadstartError) else str(e)}
    if made is None:  # no method explains this modality's models
        return {}
    say(f"explained {len(made['items'])} test example(s) with {made['method']} in {made['seconds']:.1f} s")
    remember_closing_cost("explanations", made["seconds"] / max(1, config.explain_examples), _modality(model))
    return {"explain_method": made["method"], "explain_seconds": made["seconds"],
            "features_from": made.get("features_from")}


def record_deploy_figures(model, test, test_accuracy: float, run_dir: Path, closing: Closing | None = None) -> dict:
    """The deploy table's first row (RUN/deploy.json): the run's own model as PyTorch runs it --
    size, MFLOPs, latency at batch 1 and 32 -- measured in about 1.5 s, outside the
    training clock. Like the explanations, a measurement that fails costs the report a section."""
    from .engines.measure import pytorch_row, record_deploy_row

    if skipped("deploy") or (closing is not None and not closing.runs("deploy")):
        return {}
    started = time.perf_counter()
    try:
        record_deploy_row(run_dir, pytorch_row(model, test, test_accuracy, run_dir))
    except Exception as e:  # noqa: BLE001  (recorded in the summary and shown in the report)
        say(f"no deploy figures for the report: {e}")
        return {"deploy_error": f"{type(e).__name__}: {e}"}
    seconds = time.perf_counter() - started
    remember_closing_cost("deploy", seconds, _modality(model))
    return {"deploy_seconds": round(seconds, 3)}


def _modality(model) -> str | None:
    return getattr(getattr(model, "backbone", None), "modality", None)


def render_fit_report(run_dir: Path, closing: Closing | None = None) -> Path | None:
    """RUN/report.html from the run directory as written (None: turned off by HEADSTART_SKIP, or
    skipped to keep --budget)."""
    if skipped("report") or (closing is not None and not closing.runs("report")):
        return None
    from .report import build_fit_report  # matplotlib: imported only when a report is drawn

    started = time.perf_counter()
    made = build_fit_report(run_dir)
    remember_closing_cost("report", time.perf_counter() - started)
    return made


def skipped(part: str) -> bool:
    """Whether HEADSTART_SKIP (comma-separated: deploy, report) turns this closing part off."""
    return part in {name.strip() for name in os.environ.get("HEADSTART_SKIP", "").split(",")}


# -- the closing parts under --budget -------------------------------------------------------------
# What is kept first when the time left does not cover them all: the report is what a user opens,
# the explanations are its most read section, the deploy row is one table line.
CLOSING_PRIORITY = ("report", "explanations", "deploy")
# Before a part was ever measured on this machine: its cost on the CPU machine of BENCHMARKS.md,
# rounded up (explanations: per --explain-examples). A part in PER_MODALITY is measured and
# estimated per modality ("explanations:text"): integrated gradients over MiniLM took 32.6 s for
# bbc-news's 4 (9 texts shown) where images take ~1 s each, and an image-measured estimate let a
# 60 s text fit run 81 s (BENCHMARKS 17.3).
PER_MODALITY = ("explanations", "deploy")
DEFAULT_CLOSING_SECONDS = {"report": 3.0, "explanations": 1.0, "deploy": 2.0,
                           # compare's (compare_budget.py): the diagnosis embeds the split with the
                           # frozen backbone (digits at 224 px: ~15 s here); the comparison's report
                           "diagnosis": 20.0, "comparison-report": 5.0}
SAVE_SECONDS = 1.0        # the model file and the summary, which are never skipped
CLOSING_SHARE = 0.25      # the closing parts reserved before training take at most this share of --budget
KEPT_MEASUREMENTS = 5     # the latest costs remembered per part; the largest is the estimate


def _costs_path() -> Path:
    from .data.cache import cache_dir

    # v2: the costs before were kept per part alone, a text fit's explanations (8 s each) under the
    # key image fits read; a part skipped for an estimate that high is never measured again
    return cache_dir() / "throughput" / "closing-v2.json"


def _measured_costs() -> dict:
    from .files import read_json

    try:
        costs = read_json(_costs_path())
        return costs if isinstance(costs, dict) else {}
    except (OSError, ValueError):
        return {}


def _key(part: str, modality: str | None) -> str:
    return f"{part}:{modality}" if modality and part in PER_MODALITY else part


def remember_closing_cost(part: str, seconds: float, modality: str | None = None) -> None:
    """Keep a closing part's measured cost on this machine (the latest few), per modality where
    it differs (PER_MODALITY: "explanations:image", "explanations:text")."""
    from .files import write_json

    part = _key(part, modality)
    costs = _measured_costs()
    costs[part] = ([*costs.get(part, []), round(float(seconds), 3)])[-KEPT_MEASUREMENTS:]
    try:
        write_json(_costs_path(), costs)
    except OSError:
        pass  # an estimate not remembered is measured again next time


def closing_part_seconds(part: str, explain_examples: int = 0, modality: str | None = None) -> float:
    """A closing part's expected cost here (for `modality`'s models where it differs): the
    largest of its latest measured costs (a reserve errs long), else the default."""
    key = _key(part, modality)
    measured = _measured_costs().get(key) or []
    each = max(measured) if measured else _default_seconds(part, modality)
    return each * explain_examples if part == "explanations" else each


def _default_seconds(part: str, modality: str | None) -> float:
    """Before a part was measured here: the modality's own figure where it has one (Modality.closing_seconds)."""
    if modality and part in PER_MODALITY:
        from .modalities import get_modality

        own = get_modality(modality).closing_seconds.get(part)
        if own is not None:
            return own
    return DEFAULT_CLOSING_SECONDS[part]


def wanted_closing(config: FitConfig) -> list[str]:
    """The closing parts this fit would make, most wanted first (HEADSTART_SKIP's are not)."""
    return [p for p in CLOSING_PRIORITY
            if not (p == "explanations" and config.explain_examples <= 0) and not (p != "explanations" and skipped(p))]


def budget_for_training(config: FitConfig, deadline: Deadline, wall_seconds: float,
                        modality: str | None = None) -> FitConfig:
    """--budget is the whole command's: training gets what is left of it (loading and choosing
    came first), less what the closing parts are expected to cost here. The strategy counts its
    budget on its recorder's wall clock, which reads `wall_seconds` now (more than 0 on --resume)."""
    left = deadline.left_after(closing_reserve(config, modality))
    if left is None:
        return config
    return replace(config, budget_seconds=min(config.budget_seconds or float("inf"), wall_seconds + left))


def closing_reserve(config: FitConfig, modality: str | None = None) -> float:
    """Seconds a budgeted fit keeps after training for its closing parts (the test pass is the
    training's own reserve): the most wanted parts whose costs fit in CLOSING_SHARE of the budget
    (training comes first: a 60 s text fit would otherwise keep 35 s for its explanations)."""
    room = CLOSING_SHARE * config.budget_seconds if config.budget_seconds is not None else float("inf")
    reserved = 0.0
    for part in wanted_closing(config):
        cost = closing_part_seconds(part, config.explain_examples, modality)
        if reserved + cost <= room:
            reserved += cost
    return SAVE_SECONDS + reserved


@dataclass
class Closing:
    """Which closing parts run; the others were skipped to keep --budget, with why."""

    kept: set = field(default_factory=lambda: set(CLOSING_PRIORITY))
    skipped: dict = field(default_factory=dict)  # part -> its expected seconds

    def runs(self, part: str) -> bool:
        return part in self.kept

    def figures(self) -> dict:
        return {"budget_skipped": sorted(self.skipped)} if self.skipped else {}


def plan_closing(config: FitConfig, seconds_left: float | None, modality: str | None = None) -> Closing:
    """The closing parts that fit in `seconds_left` (None: no budget, all of them), most wanted
    first; the run says what it skipped."""
    if seconds_left is None:
        return Closing()
    kept, skipped_parts, left = set(), {}, seconds_left - SAVE_SECONDS
    for part in wanted_closing(config):
        cost = closing_part_seconds(part, config.explain_examples, modality)
        if cost <= left:
            kept.add(part)
            left -= cost
        else:
            skipped_parts[part] = round(cost, 1)
    if skipped_parts:
        named = ", ".join(f"the {p} (about {s:g} s)" for p, s in skipped_parts.items())
        later = " (`headstart report RUN` renders it later)" if "report" in skipped_parts else ""
        say(f"--budget: skipped {named} to end within the budget, {max(seconds_left, 0):.1f} s left{later}")
    return Closing(kept, skipped_parts)
