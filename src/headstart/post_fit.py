"""What a fit adds to its run directory after the model is saved: the report's explanations and
the deploy table's first row. Each is measured outside the training clock, and a failure costs
the report a section, never the run."""
from __future__ import annotations

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
    from .deploy.measure import pytorch_row, record_deploy_row

    started = time.perf_counter()
    try:
        record_deploy_row(run_dir, pytorch_row(model, test, test_accuracy, run_dir))
    except Exception as e:  # noqa: BLE001  (recorded in the summary and shown in the report)
        say(f"no deploy figures for the report: {e}")
        return {"deploy_error": f"{type(e).__name__}: {e}"}
    return {"deploy_seconds": round(time.perf_counter() - started, 3)}
