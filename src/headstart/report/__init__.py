"""Run reports: RUN/report.html plus PNG figures beside it.

A report is a pure function of the run directory, read through `Run` (its summary, metrics,
config, or comparison.json and arms/ for a compare run): it never trains and never imports
torch, so `headstart report RUN` can rebuild it anywhere. Every file is written atomically,
and a run with missing or empty records still gets a page that says so. The Python here reads
the typed summary's attributes; the templates get its on-disk form, as summary.json holds it.
"""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

from headstart.errors import HeadstartError
from headstart.records import METRICS, atomic_write_text, read_json
from headstart.run import COMPARE, CONFIG, PRETRAIN, SUMMARY, Run
from headstart.summary import FitSummary

from . import html, plots

__all__ = ["build_report", "build_fit_report", "build_comparison_report", "build_explain_report", "deploy_table"]

REPORT = "report.html"
EXPLANATIONS = "explanations"  # the folder a fit writes its report's explanations into
SAME_SPEED = 0.05  # deploy table: latencies within 5 % of each other read as "about as fast" (timing noise)

# File names this module owns in a run folder; stale ones from an earlier build are removed so
# the folder never holds figures the page no longer shows.
FIT_FIGURES = {
    "curve_time": "learning_curve_time.png",
    "curve_epoch": "learning_curve_epoch.png",
    "confusion": "confusion_matrix.png",
    "per_class": "per_class_accuracy.png",
    "race": "race.png",  # --strategy auto's race (report/race.py)
}
COMPARISON_FIGURES = {
    "accuracy_vs_time": "accuracy_vs_time.png",
    "time_to_target": "time_to_target.png",
    "confusion": "best_confusion_matrix.png",
    "per_class": "best_per_class_accuracy.png",
    "label_curve": "label_curve.png",
}


def build_report(run_dir: str | Path) -> Path:
    """`headstart report RUN`: rebuild the report its kind of run has (fit, compare or
    pretrain); refuses what is not a finished run, the way every command does."""
    run = Run.open(run_dir).require_finished()
    for drawn, records in _drawn_from(run):  # a damaged record is refused by name, not drawn from half-read
        drawn.require_intact(*records)
    if run.kind == COMPARE:
        return build_comparison_report(run.path)
    if run.kind == PRETRAIN:
        from .pretrain import build_pretrain_report

        return build_pretrain_report(run.path)
    return build_fit_report(run.path)


_DRAWN = (CONFIG, METRICS)  # besides the closing record, which require_finished reads whole


def _drawn_from(run: Run) -> list[tuple[Run, tuple[str, ...]]]:
    """The runs whose records the report of `run` draws on, with those records: a compare run's
    arms (finished with it: a missing summary.json there is damage, not an arm still running),
    else the run itself."""
    if run.kind != COMPARE:
        return [(run, _DRAWN)]
    return [(Run(_arm_dir(run.path, a)), (SUMMARY, METRICS)) for a in run.comparison.get("arms") or []
            if isinstance(a, dict)]


def build_fit_report(run_dir: str | Path) -> Path:
    """Write RUN/report.html for a fit run and return its path."""
    run = Run(run_dir)
    run_dir = run.path
    found = _fit_summary(run)
    summary = found if found is not None else FitSummary()
    rows, config_text = run.metrics, run.config_text  # read (and verified) before any figure is written
    images = {
        **_curve_figures(run_dir, rows, summary),
        **_classification_figures(run_dir, summary, FIT_FIGURES),
        "race": _race_figure(run_dir, summary),
    }
    _remove_stale(run_dir, FIT_FIGURES, images)
    # deploy.json joins the page's summary (not summary.json): export and prune add rows later
    recorded = found.to_dict() if found is not None else {}
    deployed = deploy_table(run_dir)
    if deployed:
        recorded = {**recorded, "deploy_table": deployed}
    page = html.fit_page(run_name=run_dir.name, summary=recorded, rows=rows,
                         config_text=config_text, images=images,
                         explained=_explanations(run_dir / EXPLANATIONS, summary), explained_base=EXPLANATIONS + "/")
    return _write_page(run_dir, page)


def build_explain_report(folder: str | Path) -> Path:
    """Write FOLDER/report.html for a folder written by `headstart explain`."""
    folder = Path(folder)
    page = html.explain_page(run_name=folder.name, explained=_read_json_or_empty(folder / "explanations.json"))
    return _write_page(folder, page)


def _explanations(folder: Path, summary: FitSummary) -> dict | None:
    """A fit's explanations record; its failure reason when the run recorded one; None if
    the run made none (explanations turned off, or a run older than them)."""
    explained = _read_json_or_empty(folder / "explanations.json")
    if explained:
        return explained
    error = summary.explanations_error
    return {"error": error} if error else None


def deploy_table(run_dir: str | Path) -> dict | None:
    """RUN/deploy.json as the report and BENCHMARKS.md show it: the machine, one row per engine
    measured, and what the figures say (int8 slower than fp32 here, and why). None when the run
    measured nothing; {"error": ...} when its measurement failed."""
    run_dir = Path(run_dir)
    deploy = _read_json_or_empty(run_dir / "deploy.json")
    rows = [r for r in deploy.get("rows") or [] if isinstance(r, dict) and r.get("name")]
    if not rows:
        found = _fit_summary(Run(run_dir))
        error = found.deploy_error if found is not None else None
        return {"error": error} if error else None
    machine = deploy.get("machine") or {}
    loads = [r["load_1min"] for r in rows if isinstance(r.get("load_1min"), (int, float))]
    busy = max(loads) if loads and machine.get("cores") and max(loads) > machine["cores"] else None
    return {"machine": machine, "rows": rows, "flops_note": deploy.get("flops_note"), "busy_load": busy,
            "findings": [f for q in rows if _precision(q) in ("int8", "fp16")
                         for f in [_quantized_finding(q, _fp32_peer(q, rows), machine)] if f]}


def _precision(row: dict) -> str:
    return str(row.get("precision") or "").lower()


def _fp32_peer(row: dict, rows: list[dict]) -> dict | None:
    """What a quantized row is fairly compared with: fp32 on its own engine, else the run's model."""
    same_engine = [r for r in rows if r.get("engine") == row.get("engine") and _precision(r) == "fp32"]
    own = [r for r in rows if r.get("own_model")]
    return (same_engine or own or [None])[0]


def _quantized_finding(row: dict, peer: dict | None, machine: dict) -> dict | None:
    """What the figures say of an int8/fp16 model: faster or slower than fp32 here, and (when
    slower, which the report shows as a warning) why this CPU makes it so."""
    if not peer:
        return None
    ratios = {b: row.get(f"latency_ms_b{b}") / peer.get(f"latency_ms_b{b}") for b in (1, 32)
              if row.get(f"latency_ms_b{b}") and peer.get(f"latency_ms_b{b}")}
    if not ratios:
        return None
    said = " and ".join((f"{max(r, 1 / r):.2f}× {'slower' if r > 1 else 'faster'}" if abs(r - 1) > SAME_SPEED
                         else "about as fast") + f" at batch {b} "
                        f"({row[f'latency_ms_b{b}']:.3g} vs {peer[f'latency_ms_b{b}']:.3g} ms)" for b, r in ratios.items())
    sentence = f"{row['name']} against {peer['name']} on this machine: {said}"
    size, peer_size = row.get("file_mb"), peer.get("file_mb")
    if size and peer_size:
        sentence += f", with a {peer_size / size:.1f}× smaller file"
    sentence += "."
    if not any(r > 1 + SAME_SPEED for r in ratios.values()):
        return {"text": sentence, "slower": False}
    everywhere = all(r > 1 + SAME_SPEED for r in ratios.values())
    return {"text": sentence + _why_slower(row, machine, everywhere), "slower": True}


def _why_slower(row: dict, machine: dict, everywhere: bool) -> str:
    """Why this CPU makes a quantized model slow, from its flags (/proc/cpuinfo) -- or nothing
    when the machine was not described."""
    cpu = machine.get("cpu") or "this CPU"
    if _precision(row) == "fp16":
        return (f" {cpu} has no native fp16 arithmetic (no avx512_fp16 flag), so onnxruntime computes in fp32 "
                "around casts: fp16 halves the file here, not the latency." if machine.get("avx512_fp16") is False else "")
    if machine.get("vnni") is False:
        return (f" {cpu} has AVX2 but no VNNI (no avx512_vnni or avx_vnni flag in /proc/cpuinfo): without VNNI's "
                "one-instruction int8 dot product, each int8 multiply-add takes three AVX2 instructions, and the "
                "quantize/dequantize steps around each layer are extra work"
                + ("; int8 buys a smaller file here, not speed." if everywhere else "."))
    if machine.get("vnni"):
        return (f" {cpu} has VNNI ({', '.join(machine.get('vnni_flags') or [])}), so the int8 arithmetic itself is "
                "fast: the time likely goes to the quantize/dequantize steps around the layers that do not run in int8.")
    return ""


def build_comparison_report(run_dir: str | Path) -> Path:
    """Write RUN/report.html for a compare run (comparison.json + arms/) and return its path."""
    run = Run(run_dir)
    run_dir = run.path
    comparison = run.comparison
    arms = comparison.get("arms") or []
    arm_dirs = {a.get("name"): _arm_dir(run_dir, a) for a in arms}
    curves = [{**a, "rows": Run(arm_dirs[a.get("name")]).metrics} for a in arms]
    has_evaluations = any(r.get("split") == "val" for c in curves for r in c["rows"])

    f = COMPARISON_FIGURES
    images = {
        "accuracy_vs_time": _name(plots.accuracy_vs_time(
            curves, run_dir / f["accuracy_vs_time"], target=comparison.get("target_accuracy")))
        if has_evaluations else None,
        "time_to_target": _name(plots.time_to_target_bars(
            arms, run_dir / f["time_to_target"], target=comparison.get("target_accuracy"),
            speedup=comparison.get("speedup"), time_saved_pct=comparison.get("time_saved_pct")))
        if arms else None,
    }
    label_curve = _read_json_or_empty(run_dir / "label_curves.json")  # compare --label-fractions
    images["label_curve"] = _name(plots.label_curve(label_curve, run_dir / f["label_curve"])) \
        if label_curve.get("arms") else None
    best = comparison.get("best_arm")
    found = _fit_summary(Run(arm_dirs[best])) if best in arm_dirs else None
    best_summary = found if found is not None else FitSummary()
    images.update(_classification_figures(run_dir, best_summary, f, title_prefix=f"{best}: "))
    _remove_stale(run_dir, f, images)

    links = {name: _href(run_dir, d / REPORT) for name, d in arm_dirs.items()
             if (d / REPORT).exists()}
    best_dir = arm_dirs.get(best)
    explained = _explanations(best_dir / EXPLANATIONS, best_summary) if best_dir else None
    page = html.comparison_page(run_name=run_dir.name, comparison=comparison, images=images,
                                best_summary=found.to_dict() if found is not None else None, links=links,
                                has_evaluations=has_evaluations, explained=explained,
                                explained_base=_href(run_dir, best_dir / EXPLANATIONS) + "/" if best_dir else "")
    return _write_page(run_dir, page)


# -- figures ---------------------------------------------------------------------------------

def _curve_figures(run_dir: Path, rows: list[dict], summary: FitSummary) -> dict[str, str | None]:
    val = [r for r in rows if r.get("split") == "val"]
    test_accuracy = summary.test_accuracy
    out: dict[str, str | None] = {"curve_time": None, "curve_epoch": None}
    if not val:
        return out
    out["curve_time"] = _name(plots.learning_curve(
        rows, run_dir / FIT_FIGURES["curve_time"], x="train_seconds", test_accuracy=test_accuracy,
        title="Validation accuracy vs training time"))
    # An epoch axis only says something when the evaluations are spread over several epochs.
    if len(val) > 1 and len({r.get("epoch") for r in val}) > 1:
        out["curve_epoch"] = _name(plots.learning_curve(
            rows, run_dir / FIT_FIGURES["curve_epoch"], x="epoch", test_accuracy=test_accuracy,
            title="Validation accuracy vs epoch"))
    return out


def _classification_figures(run_dir: Path, summary: FitSummary, names: dict[str, str], *,
                            title_prefix: str = "") -> dict[str, str | None]:
    classes = summary.classes or []
    matrix = summary.confusion_matrix or []
    per_class = summary.per_class or {}
    out: dict[str, str | None] = {"confusion": None, "per_class": None}
    if matrix and len(matrix) == len(matrix[0]):
        out["confusion"] = _name(plots.confusion_matrix(
            matrix, classes, run_dir / names["confusion"],
            title=f"{title_prefix}Confusion matrix (test set)"))
    if per_class:
        out["per_class"] = _name(plots.per_class_accuracy(
            per_class, classes, run_dir / names["per_class"], macro_f1=summary.macro_f1,
            title=f"{title_prefix}Per-class accuracy (recall, test)"))
    return out


def _race_figure(run_dir: Path, summary: FitSummary) -> str | None:
    """--strategy auto's race, where the run raced (its record under auto.strategy.evidence)."""
    from .race import race_figure

    race = (((summary.auto or {}).get("strategy") or {}).get("evidence") or {}).get("race")
    made = race_figure(race, run_dir / FIT_FIGURES["race"]) if isinstance(race, dict) else None
    return _name(made) if made else None


def _remove_stale(run_dir: Path, owned: dict[str, str], images: dict[str, str | None]) -> None:
    made = {v for v in images.values() if v}
    for name in owned.values():
        if name not in made:
            (run_dir / name).unlink(missing_ok=True)


def _name(path: Path) -> str:
    # Pages reference figures by bare file name: they always sit beside report.html.
    return path.name


# -- reading ---------------------------------------------------------------------------------

def _read_json_or_empty(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        data = read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _fit_summary(run: Run) -> FitSummary | None:
    """The run's fit summary; None where it has none to show (unfinished, damaged, or a
    pretrain run's): the page then says what is missing rather than failing."""
    if not run.finished:
        return None
    try:
        summary = run.summary
    except HeadstartError:
        return None
    return summary if isinstance(summary, FitSummary) else None


def _arm_dir(run_dir: Path, arm: dict) -> Path:
    rel = arm.get("run_dir")
    if rel:
        path = Path(rel)
        return path if path.is_absolute() else run_dir / path
    return run_dir / "arms" / str(arm.get("name"))


def _href(run_dir: Path, target: Path) -> str:
    try:
        rel = target.relative_to(run_dir)
    except ValueError:
        return target.resolve().as_uri()
    return quote(rel.as_posix())


def _write_page(run_dir: Path, page: str) -> Path:
    path = run_dir / REPORT
    atomic_write_text(path, page)
    return path
