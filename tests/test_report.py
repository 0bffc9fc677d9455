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
IMAGE_WORDS = {"input_unit": "px", "skipped": "unreadable image file(s)", "example": "image"}
TEXT_WORDS = {"input_unit": "tokens", "skipped": "empty or unusable text(s)", "example": "text"}
TRUNCATION_NOTE = ("40 text(s) were longer than 256 tokens and were truncated; --max-length raises "
                   "the limit (up to the model's).")


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
        "misclassified": [{"true": classes[0], "predicted": classes[-1], "probability": 0.97,
                           "source": f"/data/test/{classes[0]}/0001.png"},
                          {"true": classes[-1], "predicted": classes[0], "probability": 0.81,
                           "source": f"/data/test/{classes[-1]}/0042.png"}],
        "words": IMAGE_WORDS, "data_notes": [],
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
                        "weights": summary["weights"], "input_size": 224, "input_unit": "px",
                        "best_val_accuracy": max(accs), "test_accuracy": test,
                        "test_accuracy_spread": 0.0, "train_seconds": times[-1],
                        "time_to_target_seconds": ttt, "seeds": 1, "stop_reason": "budget",
                        "run_dir": f"arms/{name}"})
    comparison = {
        "data": "fashion-mnist", "target_accuracy": target, "target_source": "baseline-best-val",
        "arms": entries, "best_arm": "probe", "baseline_arm": "scratch", "speedup": 160.0, "time_saved_pct": 99.4,
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

class _Page(HTMLParser):
    """What a reader sees, by part of the page: cards, warnings, section headings, tables and
    the links and images, each as unescaped text."""

    def __init__(self):
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.scripts = 0
        self.cards: dict[str, str] = {}
        self.warnings: list[str] = []
        self.notes: list[str] = []
        self.sections: list[str] = []
        self.tables: list[dict] = []
        self.verdict = ""
        self.pre = ""
        self._capture: str | None = None  # which part the text being read belongs to
        self._buffer = ""
        self._key = ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        elif tag == "script":
            self.scripts += 1
        elif tag == "table":
            self.tables.append({"headers": [], "rows": [], "best": []})
        elif tag == "tr" and self.tables:
            self.tables[-1]["row"] = []
            self.tables[-1]["row_best"] = "best" in classes
        part = {("div", "k"): "k", ("div", "v"): "v", ("p", "warn"): "warn",
                ("p", "note"): "note", ("div", "verdict"): "verdict"}
        for c in classes:
            if (tag, c) in part:
                self._start(part[tag, c])
        if tag in ("h2", "th", "td", "pre"):
            self._start(tag)

    def _start(self, part):
        self._capture, self._buffer = part, ""

    def handle_data(self, data):
        if self._capture:
            self._buffer += data

    def handle_endtag(self, tag):
        if tag == "tr" and self.tables and "row" in self.tables[-1]:
            table = self.tables[-1]
            row, best = table.pop("row"), table.pop("row_best")
            if row:  # the header row's cells are th, collected as headers
                table["rows"].append(row)
                table["best"].append(best)
        # The verdict's label is a span inside it: read on to the end of the box.
        if self._capture is None or tag == "span":
            return
        part, self._capture = self._capture, None
        text = " ".join(self._buffer.split())
        if part == "k":
            self._key = text
        elif part == "v":
            self.cards[self._key] = text
        elif part == "warn":
            self.warnings.append(text.removeprefix("⚠ "))
        elif part == "note":
            self.notes.append(text)
        elif part == "verdict":
            self.verdict = text
        elif part == "h2":
            self.sections.append(text)
        elif part == "pre":
            self.pre = self._buffer
        elif part in ("th", "td"):
            table = self.tables[-1]
            (table["headers"] if part == "th" else table["row"]).append(text)

    def tables_headed(self, first_header: str) -> list[dict]:
        return [t for t in self.tables if t["headers"][:1] == [first_header]]

    def table(self, first_header: str) -> dict:
        """The one table whose first column is headed `first_header`."""
        found = self.tables_headed(first_header)
        assert len(found) == 1, (first_header, [t["headers"] for t in self.tables])
        return found[0]


def parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


def check_report(report: Path, min_images: int = 1) -> str:
    """The page exists, every image it shows is a real non-blank PNG beside it, and every PNG
    beside it is shown. Returns the page text."""
    assert report.name == "report.html" and report.is_file()
    text = report.read_text()
    page = parse(text)
    assert len(page.images) >= min_images
    for src in page.images:
        assert "/" not in src and src.endswith(".png"), src
        check_png(report.parent / src)
    for href in page.links:
        assert (report.parent / href).is_file(), href
    assert set(page.images) == {p.name for p in report.parent.glob("*.png")}
    assert not list(report.parent.glob(".*.tmp")), "atomic writes left temp files behind"
    assert page.scripts == 0
    return text


def check_png(path: Path) -> None:
    assert path.is_file(), path
    with Image.open(path) as img:
        assert img.format == "PNG"
        w, h = img.size
        assert 300 <= w <= 2500 and 200 <= h <= 2500, (path.name, img.size)
        grey = np.asarray(img.convert("L"), dtype=float)
    assert grey.std() > 15, f"{path.name} looks blank (pixel std {grey.std():.1f})"


FIT_SECTIONS = ["Key figures", "Learning curve", "Confusion matrix", "Per-class accuracy",
                "Misclassified test examples", "Configuration"]


# -- fit reports -----------------------------------------------------------------------------

def test_fit_report(tmp_path):
    run = make_fit_run(tmp_path / "fit")
    report = build_fit_report(run)
    assert report == run / "report.html"
    text = check_report(report, min_images=4)
    page = parse(text)
    for png in ("learning_curve_time.png", "learning_curve_epoch.png", "confusion_matrix.png",
                "per_class_accuracy.png"):
        assert f'src="{png}"' in text
    assert page.sections == FIT_SECTIONS
    assert page.cards["test accuracy"] == "86.5 %"
    assert page.cards["backbone (weights)"] == "tf_efficientnet_lite0 (imagenet)"
    assert page.cards["stop reason"] == "budget"
    assert page.cards["input size"] == "224 px"
    assert page.cards["train / val / test"] == "650 train / 200 val / 200 test"
    assert page.cards["classes"] == "5"
    assert page.cards["peak memory"] == "1843 MB"
    assert page.warnings == [
        "Imbalanced training data: the largest class has 5.0× as many examples as the smallest "
        "(T-shirt: 300 vs coat: 60). Plain accuracy flatters the majority class; read macro-F1 "
        "and the per-class recall below."]
    assert "strategy: lp-ft" in page.pre
    per_class = page.table("class")
    assert per_class["headers"] == ["class", "precision", "recall", "F1", "support"]
    assert [r[0] for r in per_class["rows"]] == CLASSES
    evaluations = page.table("step")
    assert len(evaluations["rows"]) == 9 and evaluations["rows"][-1][3] == "test"
    mistakes = page.table("image")
    assert mistakes["headers"] == ["image", "true", "predicted", "confidence"]
    assert mistakes["rows"][0] == ["/data/test/T-shirt/0001.png", "T-shirt", "coat", "97.0 %"]


def test_fit_report_without_imbalance_has_no_warning(tmp_path):
    run = make_fit_run(tmp_path / "fit", train_imbalance={"class_counts": {}, "imbalance_ratio": 1.2})
    assert parse(check_report(build_fit_report(run))).warnings == []


def test_fit_report_of_text_run_uses_the_recorded_words(tmp_path):
    # truncated_texts is what older text runs recorded; the sentence now comes only from
    # data_notes, so it must appear exactly once.
    mistakes = [{"true": "trouser", "predicted": "dress", "probability": 0.9,
                 "text": "wide legs, zip fly", "source": "test.csv:17"}]
    run = make_fit_run(tmp_path / "fit", words=TEXT_WORDS, data_notes=[TRUNCATION_NOTE],
                       truncated_texts=40, input_size=256, skipped_files=2, misclassified=mistakes,
                       train_imbalance={"class_counts": {}, "imbalance_ratio": 1.0})
    page = parse(check_report(build_fit_report(run)))
    assert page.cards["input size"] == "256 tokens"
    assert page.warnings == ["2 empty or unusable text(s) were skipped.", TRUNCATION_NOTE]
    table = page.table("text")
    assert table["rows"] == [["wide legs, zip fly", "trouser", "dress", "90.0 %"]]


def test_fit_report_of_old_summary_falls_back_to_image_words(tmp_path):
    # Runs recorded before "words" and "data_notes" existed; "modality" is deliberately not
    # consulted, so even an old text run reads in image words rather than failing.
    run = make_fit_run(tmp_path / "fit", skipped_files=3, modality="text",
                       train_imbalance={"class_counts": {}, "imbalance_ratio": 1.0})
    summary = json.loads((run / "summary.json").read_text())
    del summary["words"], summary["data_notes"]
    (run / "summary.json").write_text(json.dumps(summary))
    page = parse(check_report(build_fit_report(run), min_images=4))
    assert page.sections == FIT_SECTIONS
    assert page.cards["input size"] == "224 px"
    assert page.warnings == ["3 unreadable image file(s) were skipped."]
    assert page.table("image")["rows"][0][0] == "/data/test/T-shirt/0001.png"


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
        assert "no evaluations recorded" not in text
    else:
        assert "no evaluations recorded" in text
        assert "learning_curve" not in text
        assert not (run / "learning_curve_time.png").exists()


def test_fit_report_of_bare_folder(tmp_path):
    # Nothing but a folder (a run killed before its first write) still gets a page.
    run = tmp_path / "bare"
    run.mkdir()
    page = parse(build_fit_report(run).read_text())
    assert "summary.json is missing: the run did not finish." in page.warnings
    assert page.cards["test accuracy"] == "—" and page.cards["input size"] == "—"
    assert page.sections == ["Key figures", "Learning curve", "Confusion matrix",
                             "Per-class accuracy", "Configuration"]
    assert "no evaluations recorded" in page.notes


def test_fit_report_escapes_user_strings(tmp_path):
    attack = "<script>alert(1)</script>"
    classes = [attack, "a & b", "$x$ \"q\"", "plain"]
    summary = _summary("probe", "vit<b>", 0.9, 0.9, 5.0, classes=classes)
    summary["data"] = "/data/<img src=x onerror=alert(1)>"
    summary["misclassified"] = [{"true": "plain", "predicted": "a & b", "probability": 0.5,
                                 "text": f"buy now {attack}", "source": "x.csv:1"}]
    summary["words"] = TEXT_WORDS
    summary["data_notes"] = [f"note {attack}"]
    run = _write_run(tmp_path / "esc", _curve("probe", [1.0, 2.0], [0.8, 0.9], test_accuracy=0.9),
                     summary)
    (run / "config.yaml").write_text(f"data: '{attack}'\n")
    text = check_report(build_fit_report(run))
    assert "<script>" not in text and "<img src=x" not in text and "vit<b>" not in text
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert f"<td>{escaped}</td>" in text                  # the class name in the per-class table
    assert f"<td>buy now {escaped}</td>" in text          # the misclassified text
    assert f"⚠ note {escaped}</p>" in text                # a data note
    assert f"<pre>data: &#39;{escaped}&#39;\n</pre>" in text  # the config
    assert "<td>a &amp; b</td>" in text
    page = parse(text)  # and the reader sees the strings as they were written
    assert page.table("text")["rows"][0][0] == f"buy now {attack}"
    assert page.cards["data"] == summary["data"]
    assert [r[0] for r in page.table("class")["rows"]] == classes


def test_fit_report_many_classes(tmp_path):
    classes = [f"class-with-a-long-name-{i:02d}" for i in range(30)]
    run = _write_run(tmp_path / "many", _curve("finetune", [1.0, 2.0, 3.0], [0.3, 0.5, 0.6]),
                     _summary("finetune", "resnet50", 0.6, 0.6, 3.0, classes=classes))
    page = parse(check_report(build_fit_report(run), min_images=3))
    assert [r[0] for r in page.table("class")["rows"]] == classes


def test_fit_report_rebuild_removes_stale_figures(tmp_path):
    run = make_fit_run(tmp_path / "fit")
    build_fit_report(run)
    assert (run / "learning_curve_epoch.png").exists()
    (run / "metrics.jsonl").unlink()
    check_report(build_fit_report(run))
    assert not (run / "learning_curve_epoch.png").exists()


# -- comparison reports ----------------------------------------------------------------------

def test_comparison_report(tmp_path):
    run = make_comparison_run(tmp_path / "cmp")
    build_fit_report(run / "arms" / "probe")  # only arms with a report get a link
    report = build_comparison_report(run)
    assert report == run / "report.html"
    text = check_report(report, min_images=4)
    page = parse(text)
    comparison = json.loads((run / "comparison.json").read_text())
    assert page.verdict == f"Verdict: transfer helps{comparison['verdict_sentence']}"
    assert 'class="verdict helps"' in text
    assert page.sections == ["Key figures", "Accuracy against training time", "Time to target",
                             "Arms", "Best arm (probe): Confusion matrix",
                             "Best arm (probe): Per-class accuracy",
                             "Best arm (probe): Misclassified test examples", "Settings", "Machine"]
    assert page.cards["target val accuracy"] == "78.0 %"
    assert page.cards["target from"] == "baseline-best-val"
    assert page.cards["speed-up"] == "×160.0" and page.cards["time saved"] == "99 %"
    assert page.cards["best arm"] == "probe" and page.cards["arms"] == "3"
    assert page.cards["budget per arm"] == "240.0 s"
    arms = page.table("arm")
    assert [r[0] for r in arms["rows"]] == ["probe", "lp-ft", "scratch"]
    assert arms["best"] == [True, False, False]
    assert arms["rows"][2][2] == "resnet9 @224 px"
    assert arms["rows"][0][6] == "1.50 s" and arms["rows"][2][6] == "240.0 s"
    for png in ("accuracy_vs_time.png", "time_to_target.png", "best_confusion_matrix.png",
                "best_per_class_accuracy.png"):
        assert f'src="{png}"' in text
    assert page.links == ["arms/probe/report.html"]
    settings, machine = (dict(t["rows"]) for t in page.tables_headed("key"))
    assert settings["target_source"] == "baseline-best-val"
    assert settings["target_accuracy"] == "0.78" and settings["seeds"] == "1"
    assert machine["cpu"] == "Fake CPU @ 2.0GHz" and machine["versions.torch"] == "2.4.0"
    assert machine["gpu"] == "null"


def test_comparison_report_reads_each_arms_input_unit(tmp_path):
    run = make_comparison_run(tmp_path / "cmp")
    comparison = json.loads((run / "comparison.json").read_text())
    comparison["arms"][0].update(input_size=128, input_unit="tokens")
    del comparison["arms"][1]["input_unit"]  # an old record: image wording
    comparison["arms"][2].update(input_size=None)
    (run / "comparison.json").write_text(json.dumps(comparison))
    rows = parse(check_report(build_comparison_report(run))).table("arm")["rows"]
    assert [r[2] for r in rows] == ["tf_efficientnet_lite0 @128 tokens",
                                    "tf_efficientnet_lite0 @224 px", "resnet9"]


def test_comparison_report_arm_never_reaching_target(tmp_path):
    run = make_comparison_run(tmp_path / "cmp")
    comparison = json.loads((run / "comparison.json").read_text())
    comparison["arms"][2]["time_to_target_seconds"] = None
    comparison.update(speedup=None, time_saved_pct=None, verdict="inconclusive",
                      verdict_sentence="Inconclusive: <nothing> decisive.")
    (run / "comparison.json").write_text(json.dumps(comparison))
    text = check_report(build_comparison_report(run), min_images=4)
    page = parse(text)
    assert page.table("arm")["rows"][2][6] == "never within budget"
    assert page.cards["speed-up"] == "n/a" and page.cards["time saved"] == "n/a"
    assert "Inconclusive: &lt;nothing&gt; decisive." in text
    assert 'class="verdict "' in text  # no colour for an inconclusive verdict


def test_comparison_report_without_metrics(tmp_path):
    run = make_comparison_run(tmp_path / "cmp")
    for metrics in (run / "arms").glob("*/metrics.jsonl"):
        metrics.unlink()
    (run / "arms" / "probe" / "summary.json").unlink()
    text = check_report(build_comparison_report(run))
    page = parse(text)
    assert "no evaluations recorded" in text
    assert "Best arm (probe)" in page.sections  # with a note instead of figures
    assert "the best arm's summary.json is missing" in page.notes
    assert "accuracy_vs_time.png" not in text and not (run / "accuracy_vs_time.png").exists()


def test_comparison_report_of_empty_comparison(tmp_path):
    run = tmp_path / "cmp"
    run.mkdir()
    (run / "comparison.json").write_text(json.dumps({"arms": [], "best_arm": None}))
    page = parse(build_comparison_report(run).read_text())
    assert page.verdict == "Verdict: inconclusiveNo verdict recorded."
    assert page.cards["arms"] == "0" and page.cards["best arm"] == "—"
    assert page.images == [] and page.table("arm")["rows"] == []
    assert "no machine information recorded" in page.notes


def test_a_faster_baseline_is_named_not_shown_as_negative_time_saved(tmp_path):
    from headstart.report.plots import _speedup_text

    run = make_comparison_run(tmp_path / "cmp")
    comparison = json.loads((run / "comparison.json").read_text())
    comparison.update(speedup=0.25, time_saved_pct=-300.0, baseline_arm="tfidf")
    (run / "comparison.json").write_text(json.dumps(comparison))
    text = check_report(build_comparison_report(run), min_images=4)
    cards = parse(text).cards
    assert cards["faster: baseline"] == "tfidf ×4.0" and cards["time saved"] == "none"
    assert "speed-up" not in cards and "-300" not in text
    assert _speedup_text(0.25, -300.0) == "the baseline was ×4.0 faster"
    assert _speedup_text(2.0, 50.0).startswith("speed-up ×2.0")
