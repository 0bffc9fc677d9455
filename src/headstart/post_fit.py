"""What a fit adds to its run directory after the model is saved: the report's explanations,
the deploy table's first row and the report. Each is measured outside the training clock, and a
failure costs the report a section, never the run.

HEADSTART_SKIP=deploy,report turns the last two off (read here only): the test suite does so
wherever a test reads neither, since they cost a few seconds a fit (tests/conftest.py). A run
without them is a finished run; `headstart report RUN` renders its report later.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from .config import FitConfig
from .errors import HeadstartError
from .log import say


def explain_report_examples(config: FitConfig, model, test, test_logits, classes: list[str], run_dir: Path) -> dict:
    """The report's explanations (RUN/explanations/), and what the summary says of them. The
    model is saved by now, so a method that fails costs the report a section, not the run."""
    from .explain import explain_for_report

    folder = run_dir / "explanations"
    if config.explain_examples <= 0:
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
    return {"explain_method": made["method"], "explain_seconds": made["seconds"],
            "features_from": made.get("features_from")}


def record_deploy_figures(model, test, test_accuracy: float, run_dir: Path) -> dict:
    """The deploy table's first row (RUN/deploy.json): the run's own model as PyTorch runs it --
    size, MFLOPs, latency at batch 1 and 32 -- measured in about 1.5 s, outside the
    training clock. Like the explanations, a measurement that fails costs the report a section."""
    from .engines.measure import pytorch_row, record_deploy_row

    if skipped("deploy"):
        return {}
    started = time.perf_counter()
    try:
        record_deploy_row(run_dir, pytorch_row(model, test, test_accuracy, run_dir))
    except Exception as e:  # noqa: BLE001  (recorded in the summary and shown in the report)
        say(f"no deploy figures for the report: {e}")
        return {"deploy_error": f"{type(e).__name__}: {e}"}
    return {"deploy_seconds": round(time.perf_counter() - started, 3)}


def render_fit_report(run_dir: Path) -> Path | None:
    """RUN/report.html from the run directory as written (None: turned off by HEADSTART_SKIP)."""
    from .report import build_fit_report

    return None if skipped("report") else build_fit_report(run_dir)


def skipped(part: str) -> bool:
    """Whether HEADSTART_SKIP (comma-separated: deploy, report) turns this closing part off."""
    return part in {name.strip() for name in os.environ.get("HEADSTART_SKIP", "").split(",")}
