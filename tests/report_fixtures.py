"""Fake run folders that follow the run-directory contract, and a reader for report pages.

make_fit_run / make_comparison_run give a realistic fit or comparison folder without training
anything (tests/test_report.py, and bench/check_report_render.py's docs use them); parse()
reads a report page the way a person does: its cards, warnings, headings and table rows.
"""
from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["T-shirt", "trouser", "pullover", "dress", "coat"]
IMAGE_WORDS = {"input_unit": "px", "skipped": "unreadable image file(s)", "example": "image"}
TEXT_WORDS = {"input_unit": "tokens", "skipped": "empty or unusable text(s)", "example": "text"}
TRUNCATION_NOTE = ("40 text(s) were longer than 256 tokens and were truncated; --max-length raises "
                   "the limit (up to the model's).")


# -- fake run folders ------------------------------------------------------------------------

def curve_rows(strategy: str, times: list[float], accs: list[float], phases: list[str] | None = None,
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


def fit_summary(strategy: str, backbone: str, test_accuracy: float, best_val: float,
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


def write_run(run_dir: Path, rows: list[dict] | None, summary: dict | None) -> Path:
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
    summary = {**fit_summary("lp-ft", "tf_efficientnet_lite0", 0.865, 0.87, 60.0,
                          counts=[300, 100, 100, 90, 60]), **summary_overrides}
    return write_run(run_dir, curve_rows("lp-ft", times, accs, phases, summary["test_accuracy"]), summary)


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
        rows = curve_rows(strategy, times, accs, test_accuracy=test)
        summary = fit_summary(strategy, backbone, test, max(accs), times[-1], seed=i)
        write_run(run_dir / "arms" / name, rows, summary)
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
