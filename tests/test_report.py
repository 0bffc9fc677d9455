"""Report builders on fake run folders that follow the run-directory contract.

The make_* helpers are importable (bench/check_report_render.py's docs use them) so a realistic
fit or comparison folder can be produced without training anything.
"""
from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from headstart.report import build_comparison_report, build_fit_report

CLASSES = ["T-shirt", "trouser", "pullover", "dress", "coat"]


# -- fake run folders ------------------------------------------------------------------------

def _curve(strategy: str, times: list[float], accs: list[float], phases: list[str] | None = None,
           test_accuracy: float | None = None, evals_per_epoch: int = 2) -> list[dict]:
    rows = []
    for i, (t, a) in enumerate(zip(times, accs)):
        rows.append({"strategy": strategy, "step": 10 * (i + 1), "epoch": (i + 1) / evals_per_epoch,
                     "train_seconds": t, "wall_seconds": t * 1.3 + 2, "split": "val",
                     "accuracy": a, "loss": round(2.5 * (1 - a), 4),
                     "phase": phases[i] if phases else strategy})
    if test_accuracy is not None:
        last = rows[-1] if rows else {"step": 0, "epoch": 0.0, "train_seconds": 0.0, "wall_seconds": 0.0}
        rows.append({**last, "strategy": strategy, "split": "test", "accuracy": test_accuracy,
                     "loss": 0.4, "phase": "final"})
    return rows


def _summary(strategy: str, backbone: str, test_accuracy: float, best_val: float,
             train_seconds: float, classes: list[str] = CLASSES, counts: list[int] | None = None,
             seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    k = len(classes)
    support = 40
    # A diagonal-heavy confusion matrix whose diagonal share is about the test accuracy.
    matrix = np.zeros((k, k), dtype=int)
    for i in range(k):
        correct = int(round(support * np.clip(test_accuracy + rng.normal(0, 0.08), 0, 1)))
        matrix[i, i] = correct
        wrong = rng.multinomial(support - correct, np.ones(k - 1) / (k - 1))
        matrix[i, [j for j in range(k) if j != i]] = wrong
    recall = matrix.diagonal() / matrix.sum(1)
    precision = matrix.diagonal() / np.maximum(matrix.sum(0), 1)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-9)
    counts = counts or [100] * k
    return {
        "test_accuracy": test_accuracy, "macro_f1": float(f1.mean()),
        "balanced_accuracy": float(recall.mean()), "test_loss": 0.41, "best_val_accuracy": best_val,
        "train_seconds": train_seconds, "wall_seconds": train_seconds * 1.3 + 4,
        "decode_seconds": 2.1, "peak_rss_mb": 1843.2, "strategy": strategy, "backbone": backbone,
        "weights": "imagenet" if strategy != "scratch" else "random init", "input_size": 224,
        "data": "fashion-mnist", "classes": classes,
        "sizes": {"train": sum(counts), "val": 200, "test": support * k}, "skipped_files": 0,
        "train_imbalance": {"class_counts": dict(zip(classes, counts)),
                            "imbalance_ratio": max(counts) / min(counts)},
        "per_class": {c: {"precision": float(p), "recall": float(r), "f1": float(f),
                          "support": support} for c, p, r, f in zip(classes, precision, recall, f1)},
        "confusion_matrix": matrix.tolist(), "stop_reason": "budget",
    }


def _write_run(run_dir: Path, rows: list[dict] | None, summary: dict | None) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    if rows is not None:
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if summary is not None:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    (run_dir / "config.yaml").write_text(
        f"data: fashion-mnist\nstrategy: {summary['strategy'] if summary else 'probe'}\nseed: 0\n")
    return run_dir


def make_fit_run(run_dir: Path, **summary_overrides) -> Path:
    times = [4.0, 9.0, 15.0, 22.0, 30.0, 41.0, 52.0, 60.0]
    accs = [0.55, 0.68, 0.74, 0.80, 0.83, 0.85, 0.86, 0.87]
    phases = ["probe"] * 3 + ["finetune"] * 5
    summary = {**_summary("lp-ft", "tf_efficientnet_lite0", 0.865, 0.87, 60.0,
                          counts=[300, 100, 100, 90, 60]), **summary_overrides}
    return _write_run(run_dir, _curve("lp-ft", times, accs, phases, summary["test_accuracy"]), summary)


def make_comparison_run(run_dir: Path) -> Path:
    """Three arms: a fast probe, lp-ft, and a slow scratch arm that sets the target."""
    arms = {
        "probe": ("probe", "tf_efficientnet_lite0", [1.5, 3.0, 4.5, 6.0], [0.79, 0.82, 0.83, 0.83], 0.825),
        "lp-ft": ("lp-ft", "tf_efficientnet_lite0", [2, 5, 10, 20, 40, 80],
                  [0.70, 0.77, 0.81, 0.85, 0.87, 0.88], 0.875),
        "scratch": ("scratch", "resnet9", [0.0, 15, 30, 60, 120, 180, 240],
                    [0.10, 0.35, 0.52, 0.64, 0.71, 0.76, 0.78], 0.77),
    }
    target = 0.78
    entries = []
    for i, (name, (strategy, backbone, times, accs, test)) in enumerate(arms.items()):
        rows = _curve(strategy, times, accs, test_accuracy=test)
        summary = _summary(strategy, backbone, test, max(accs), times[-1], seed=i)
        _write_run(run_dir / "arms" / name, rows, summary)
        ttt = next((t for t, a in zip(times, accs) if a >= target - 1e-9), None)
        entries.append({"name": name, "strategy": strategy, "backbone": backbone,
                        "weights": summary["weights"], "input_size": 224,
                        "best_val_accuracy": max(accs), "test_accuracy": test,
                        "test_accuracy_spread": 0.0, "train_seconds": times[-1],
                        "time_to_target_seconds": ttt, "seeds": 1, "stop_reason": "budget",
                        "run_dir": f"arms/{name}"})
    comparison = {
        "data": "fashion-mnist", "target_accuracy": target, "target_source": "scratch-best-val",
        "arms": entries, "best_arm": "probe", "speedup": 160.0, "time_saved_pct": 99.4,
        "verdict": "transfer helps",
        "verdict_sentence": ("Transfer helps: probe reached 0.780 validation accuracy in 1.5 s of "
                             "training vs 240.0 s from scratch (160.0x faster, 99% less time); "
                             "test accuracy 0.875 for lp-ft vs 0.770 from scratch."),
        "budget_seconds_per_arm": 240.0, "seeds": 1, "noise": 0.0133, "decode_seconds": 3.2,
        "machine": {"cpu": "Fake CPU @ 2.0GHz", "cores": 2, "torch_threads": 2, "gpu": None,
                    "platform": "Linux-6.1-x86_64", "versions": {"torch": "2.4.0", "timm": "1.0.9"}},
    }
    (run_dir / "comparison.json").write_text(json.dumps(comparison, indent=2))
    return run_dir


# -- checks ----------------------------------------------------------------------------------

class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])


def check_report(report: Path, min_images: int = 1) -> str:
    """The page exists, every image it shows is a real non-blank PNG beside it, and every PNG
    beside it is shown. Returns the page text."""
    assert report.name == "report.html" and report.is_file()
    text = report.read_text()
    refs = _Refs()
    refs.feed(text)
    assert len(refs.images) >= min_images
    for src in refs.images:
        assert "/" not in src and src.endswith(".png"), src
        check_png(report.parent / src)
    for href in refs.links:
        assert (report.parent / href).is_file(), href
    assert set(refs.images) == {p.name for p in report.parent.glob("*.png")}
    assert not list(report.parent.glob(".*.tmp")), "atomic writes left temp files behind"
    return text


def check_png(path: Path) -> None:
    assert path.is_file(), path
    with Image.open(path) as img:
        assert img.format == "PNG"
        w, h = img.size
        assert 300 <= w <= 2500 and 200 <= h <= 2500, (path.name, img.size)
        grey = np.asarray(img.convert("L"), dtype=float)
    assert grey.std() > 15, f"{path.name} looks blank (pixel std {grey.std():.1f})"


# -- tests -----------------------------------------------------------------------------------

def test_fit_report(tmp_path):
    run = make_fit_run(tmp_path / "fit")
    report = build_fit_report(run)
    assert report == run / "report.html"
    text = check_report(report, min_images=4)
    for png in ("learning_curve_time.png", "learning_curve_epoch.png", "confusion_matrix.png",
                "per_class_accuracy.png"):
        assert f'src="{png}"' in text
    assert "86.5 %" in text                       # test accuracy
    assert "tf_efficientnet_lite0 (imagenet)" in text
    assert "Imbalanced training data" in text       # ratio 5 >= 3
    assert "budget" in text                         # stop reason
    assert "strategy: lp-ft" in text                # the config
    for name in CLASSES:
        assert name in text


def test_fit_report_without_imbalance_has_no_warning(tmp_path):
    run = make_fit_run(tmp_path / "fit", train_imbalance={"class_counts": {}, "imbalance_ratio": 1.2})
    assert "Imbalanced training data" not in check_report(build_fit_report(run))


@pytest.mark.parametrize("metrics", ["missing", "empty", "test-only", "torn"])
def test_fit_report_without_evaluations(tmp_path, metrics):
    run = make_fit_run(tmp_path / "fit")
    path = run / "metrics.jsonl"
    if metrics == "missing":
        path.unlink()
    elif metrics == "empty":
        path.write_text("")
    elif metrics == "test-only":
        path.write_text(json.dumps({"split": "test", "accuracy": 0.8, "train_seconds": 3.0,
                                    "phase": "final", "step": 1, "epoch": 1.0}) + "\n")
    else:  # a run killed mid-write: the torn line is skipped, the good ones still plotted
        path.write_text(path.read_text().splitlines()[0] + "\n{\"split\": \"va")
    text = check_report(build_fit_report(run))
    if metrics == "torn":
        assert 'src="learning_curve_time.png"' in text
    else:
        assert "no evaluations recorded" in text
        assert "learning_curve" not in text
        assert not (run / "learning_curve_time.png").exists()


def test_fit_report_of_bare_folder(tmp_path):
    # Nothing but a folder (a run killed before its first write) still gets a page.
    run = tmp_path / "bare"
    run.mkdir()
    text = (build_fit_report(run)).read_text()
    assert "no evaluations recorded" in text and "summary.json is missing" in text


def test_fit_report_escapes_user_strings(tmp_path):
    classes = ["<script>alert(1)</script>", "a & b", "$x$ \"q\"", "plain"]
    summary = _summary("probe", "vit<b>", 0.9, 0.9, 5.0, classes=classes)
    summary["data"] = "/data/<img src=x onerror=alert(1)>"
    run = _write_run(tmp_path / "esc", _curve("probe", [1.0, 2.0], [0.8, 0.9], test_accuracy=0.9),
                     summary)
    text = check_report(build_fit_report(run))
    assert "<script>" not in text and "<img src=x" not in text and "vit<b>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "a &amp; b" in text


def test_fit_report_many_classes(tmp_path):
    classes = [f"class-with-a-long-name-{i:02d}" for i in range(30)]
    run = _write_run(tmp_path / "many", _curve("finetune", [1.0, 2.0, 3.0], [0.3, 0.5, 0.6]),
                     _summary("finetune", "resnet50", 0.6, 0.6, 3.0, classes=classes))
    check_report(build_fit_report(run), min_images=3)


def test_fit_report_rebuild_removes_stale_figures(tmp_path):
    run = make_fit_run(tmp_path / "fit")
    build_fit_report(run)
    assert (run / "learning_curve_epoch.png").exists()
    (run / "metrics.jsonl").unlink()
    check_report(build_fit_report(run))
    assert not (run / "learning_curve_epoch.png").exists()


def test_comparison_report(tmp_path):
    run = make_comparison_run(tmp_path / "cmp")
    build_fit_report(run / "arms" / "probe")  # only arms with a report get a link
    report = build_comparison_report(run)
    assert report == run / "report.html"
    text = check_report(report, min_images=4)
    comparison = json.loads((run / "comparison.json").read_text())
    assert comparison["verdict_sentence"] in text
    for arm in ("probe", "lp-ft", "scratch", "resnet9"):
        assert arm in text
    for png in ("accuracy_vs_time.png", "time_to_target.png", "best_confusion_matrix.png",
                "best_per_class_accuracy.png"):
        assert f'src="{png}"' in text
    assert 'href="arms/probe/report.html"' in text and "arms/scratch/report.html" not in text
    assert "Fake CPU @ 2.0GHz" in text and "versions.torch" in text
    assert "×160.0" in text


def test_comparison_report_arm_never_reaching_target(tmp_path):
    run = make_comparison_run(tmp_path / "cmp")
    comparison = json.loads((run / "comparison.json").read_text())
    comparison["arms"][2]["time_to_target_seconds"] = None
    comparison.update(speedup=None, time_saved_pct=None, verdict="inconclusive",
                      verdict_sentence="Inconclusive: <nothing> decisive.")
    (run / "comparison.json").write_text(json.dumps(comparison))
    text = check_report(build_comparison_report(run), min_images=4)
    assert "never within budget" in text
    assert "Inconclusive: &lt;nothing&gt; decisive." in text


def test_comparison_report_without_metrics(tmp_path):
    run = make_comparison_run(tmp_path / "cmp")
    for metrics in (run / "arms").glob("*/metrics.jsonl"):
        metrics.unlink()
    (run / "arms" / "probe" / "summary.json").unlink()
    text = check_report(build_comparison_report(run))
    assert "no evaluations recorded" in text
    assert "summary.json is missing" in text  # the best arm's
    assert "accuracy_vs_time.png" not in text


def test_comparison_report_of_empty_comparison(tmp_path):
    run = tmp_path / "cmp"
    run.mkdir()
    (run / "comparison.json").write_text(json.dumps({"arms": [], "best_arm": None}))
    text = build_comparison_report(run).read_text()
    assert "No verdict recorded." in text


def test_a_faster_baseline_is_named_not_shown_as_negative_time_saved():
    from headstart.report.html import comparison_header
    from headstart.report.plots import _speedup_text

    header = comparison_header({"speedup": 0.25, "time_saved_pct": -300.0, "baseline_arm": "tfidf",
                                "target_accuracy": 0.9, "arms": []})
    assert "tfidf ×4.0" in header and "-300" not in header
    assert _speedup_text(0.25, -300.0) == "the baseline was ×4.0 faster"
    assert _speedup_text(2.0, 50.0).startswith("speed-up ×2.0")
