"""compare --label-fractions: nested, stratified training subsets on one split; the labels the
best transfer arm needs to match the baseline trained on all labels; the curve end to end."""
from __future__ import annotations

import numpy as np
import pytest

from headstart.cli import main
from headstart.config import CompareConfig, FitConfig
from headstart.data import make_splits
from headstart.errors import HeadstartError
from headstart.label_curves import labels_needed, nested_subsets, plan
from headstart.records import read_json

from conftest import make_blobs, write_image_folder


def _imbalanced(counts=(60, 30, 12)):
    data = make_blobs(n_per_class=max(counts), size=8)
    keep = np.concatenate([np.flatnonzero(data.labels == k)[:n] for k, n in enumerate(counts)])
    return data.subset(keep)


@pytest.mark.parametrize("budgets", [[0.1, 0.25, 0.5], [2, 4, 6]])
def test_label_subsets_are_nested_stratified_and_share_validation_and_test(budgets):
    data = _imbalanced()
    config = CompareConfig(data="x", seeds=2, label_fractions=(*budgets, 1), fit=FitConfig(data="x"))
    planned = plan(config, data)
    assert [b for b, _ in planned] == budgets  # all the labels is the comparison itself, not planned again
    for seed in range(2):
        full = make_splits(data, seed=seed)
        counts = np.bincount(data.labels[full.indices["train"]], minlength=3)
        previous = set()
        for budget, per_seed in planned:
            indices = per_seed[seed]
            train = set(indices["train"])
            assert previous < train <= set(full.indices["train"])  # nested, inside the full training set
            previous = train
            # validation and test are the comparison's own, whatever the budget
            assert indices["val"] == full.indices["val"] and indices["test"] == full.indices["test"]
            got = np.bincount(data.labels[sorted(train)], minlength=3)
            want = np.full(3, budget) if budget > 1 else np.floor(budget * counts + 0.5)
            assert got.tolist() == want.astype(int).tolist() and got.min() >= 1  # stratified, every class kept
    # another seed draws other subsets
    assert planned[0][1][0]["train"] != planned[0][1][1]["train"]


def test_a_budget_that_leaves_a_class_empty_is_an_error_naming_it():
    labels = np.array([0] * 50 + [1] * 4)
    with pytest.raises(HeadstartError, match="leaves class 'b' without a training example") as e:
        nested_subsets(np.arange(54), labels, ["a", "b"], [0.1, 0.5], seed=0)
    assert "at least 0.125" in e.value.hint
    with pytest.raises(HeadstartError, match="5 labels per class but class 'b' has only 4"):
        nested_subsets(np.arange(54), labels, ["a", "b"], [2, 5], seed=0)


def test_compare_refuses_a_too_small_budget_before_anything_trains(tmp_path, capsys):
    folder = write_image_folder(tmp_path / "data", make_blobs(n_per_class=20))
    out = tmp_path / "cmp"
    assert main(["compare", str(folder), "--arms", "probe,scratch", "--label-fractions", "0.01,1",
                 "--out", str(out), "--image-size", "32"]) == 2
    err = capsys.readouterr().err
    assert "--label-fractions 0.01 leaves class 'blue' without a training image" in err and "Traceback" not in err
    assert not (out / "arms").exists()  # refused before the comparison's arms trained


def _arm(name, baseline, points):
    return {"name": name, "baseline": baseline,
            "points": [{"labels": n, "share": n / 1500, "test_accuracy": acc} for n, acc in points]}


SCRATCH = _arm("scratch", True, [(15, 0.40), (150, 0.60), (1500, 0.80)])


def test_labels_needed_is_the_smallest_budget_where_transfer_reaches_the_full_baseline():
    arms = [SCRATCH, _arm("probe", False, [(15, 0.70), (150, 0.81), (1500, 0.90)]),
            _arm("finetune", False, [(15, 0.60), (150, 0.79), (1500, 0.92)])]
    result = labels_needed(arms, "scratch", 1500, noise=0.02)
    assert result["needed"] == {"arm": "probe", "labels": 150, "share": 0.1, "test_accuracy": 0.81}
    assert result["sentence"].startswith("probe needs 150 labels (10% of 1,500) to match scratch trained on "
                                         "all 1,500")
    # plain >=: finetune at 0.79 is within the noise but not level; the sentence does not claim it
    assert result["within_noise"]["labels"] == 150


def test_labels_needed_says_plainly_when_no_budget_matches_and_names_the_noise():
    arms = [SCRATCH, _arm("probe", False, [(15, 0.50), (150, 0.70), (1500, 0.79)])]
    result = labels_needed(arms, "scratch", 1500, noise=0.02)
    assert result["needed"] is None
    assert result["sentence"].startswith("No transfer arm matched scratch trained on all 1,500 labels")
    assert "0.790 with 1,500 labels vs 0.800" in result["sentence"]
    assert "Within the noise (2.0 points) probe is level already at 1,500 labels" in result["sentence"]
    assert labels_needed(arms, "scratch", 1500, noise=0.005)["within_noise"] is None


def test_labels_needed_without_a_baseline_arm_says_so():
    assert labels_needed([_arm("probe", False, [(10, 0.9)])], None, 10)["needed"] is None


@pytest.mark.report
def test_compare_with_label_fractions_writes_curves_sentence_and_report(tmp_path, capsys):
    folder = write_image_folder(tmp_path / "data", make_blobs(n_per_class=20))
    out = tmp_path / "cmp"
    assert main(["compare", str(folder), "--arms", "probe,scratch", "--epochs", "2", "--label-fractions",
                 "0.25,1", "--out", str(out), "--image-size", "32", "--batch-size", "16",
                 "--explain-examples", "0"]) == 0
    curve = read_json(out / "label_curves.json")
    comparison = read_json(out / "comparison.json")
    assert comparison["label_curve"] == curve
    # the full comparison is the last point, run once; 25 % is an ordinary arm run under labels/
    full = read_json(out / "arms" / "probe" / "splits.json")
    small = read_json(out / "labels" / "25pct" / "arms" / "probe" / "splits.json")
    assert set(small["train"]) < set(full["train"]) and small["test"] == full["test"] and small["val"] == full["val"]
    assert not (out / "labels" / "100pct").exists()
    probe = next(a for a in curve["arms"] if a["name"] == "probe")
    assert [p["budget"] for p in probe["points"]] == ["25pct", "all"]
    assert [p["labels"] for p in probe["points"]] == [len(small["train"]), len(full["train"])]
    full_probe = next(a for a in comparison["arms"] if a["name"] == "probe")
    assert probe["points"][-1]["test_accuracy"] == full_probe["test_accuracy"]
    assert curve["sentence"] == labels_needed(curve["arms"], "scratch", len(full["train"]),
                                              comparison.get("noise"))["sentence"]
    assert curve["sentence"] in " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    page = (out / "report.html").read_text()
    assert "Labels needed" in page and 'src="label_curve.png"' in page and (out / "label_curve.png").exists()
    assert curve["sentence"].split(" (")[0] in page
    section = page[page.index("Labels needed"):page.index("<h2>Arms")]
    assert section.count("<td") == len(probe["points"]) * (2 + len(curve["arms"]))  # budget, labels, each arm
