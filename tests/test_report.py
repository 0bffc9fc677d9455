"""Report builders on fake run folders that follow the run-directory contract (the folders
and the page reader are in report_fixtures.py)."""
from __future__ import annotations

import json

import pytest

from headstart.report import build_comparison_report, build_fit_report

from report_fixtures import (CLASSES, TEXT_WORDS, TRUNCATION_NOTE, check_report, curve_rows,
                             fit_summary, make_comparison_run, make_fit_run, parse, write_run)

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
    summary = fit_summary("probe", "vit<b>", 0.9, 0.9, 5.0, classes=classes)
    summary["data"] = "/data/<img src=x onerror=alert(1)>"
    summary["misclassified"] = [{"true": "plain", "predicted": "a & b", "probability": 0.5,
                                 "text": f"buy now {attack}", "source": "x.csv:1"}]
    summary["words"] = TEXT_WORDS
    summary["data_notes"] = [f"note {attack}"]
    run = write_run(tmp_path / "esc", curve_rows("probe", [1.0, 2.0], [0.8, 0.9], test_accuracy=0.9),
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
    run = write_run(tmp_path / "many", curve_rows("finetune", [1.0, 2.0, 3.0], [0.3, 0.5, 0.6]),
                     fit_summary("finetune", "resnet50", 0.6, 0.6, 3.0, classes=classes))
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
