"""Why transfer did not pay: the rules on hand-made evidence, the measurements on constructed
representations, the size notes the loaders record, the report section, and compare end to end."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from headstart.cli import main
from headstart.diagnosis import RULES, gather, measure, silhouette, suggest
from headstart.modalities import get_modality, load_data
from headstart.records import read_json, write_json
from headstart.report import build_comparison_report

from conftest import make_blobs, make_texts, make_tiny_bert, write_image_folder
from report_fixtures import make_comparison_run, parse

FAST = ["--image-size", "32", "--batch-size", "16"]


# -- (a) the rules ---------------------------------------------------------------------------

NOTHING = {"knn_features": None, "knn_raw": None, "silhouette_features": None, "silhouette_raw": None,
           "native": None, "model": None, "option": None, "upsampled": None, "truncated_share": None,
           "baseline_arm": None, "baseline_model": None, "baseline_seconds_per_epoch": None,
           "fine_tuned": False, "cut_short": []}
CHEAP = {"baseline_arm": "scratch", "baseline_model": "resnet9", "baseline_seconds_per_epoch": 2.0}
WEAK = {"knn_features": 0.55, "knn_raw": 0.80}  # features clearly worse than raw

CASES = {
    "no-gain-over-raw": ({"knn_features": 0.78, "knn_raw": 0.81, **CHEAP}, ["scratch", "81%", "78%", "2.0 s"]),
    "resolution-gap": ({"native": 28, "model": 224, "option": "--image-size", "upsampled": True},
                       ["--image-size 64", "28 px", "224 px", "12x"]),
    "texts-truncated": ({"truncated_share": 0.4, "model": 256, "option": "--max-length", "native": 256},
                        ["--max-length", "40%", "256 tokens"]),
    "frozen-features-weak": (WEAK, ["lp-ft", "55%", "80%"]),
    "backbone-far-from-data": ({**WEAK, "fine_tuned": True}, ["--backbone", "55%", "80%"]),
    "transfer-cut-short": ({"cut_short": ["finetune", "lp-ft"]}, ["--budget", "finetune, lp-ft"]),
    "no-single-cause": ({}, ["--seeds 3"]),
}


def test_every_rule_has_a_case():
    assert set(CASES) == {r.name for r in RULES}
    assert RULES[-1].holds(NOTHING)  # the last rule always holds: there is always a suggestion


@pytest.mark.parametrize("rule", list(CASES))
def test_each_rule_fires_on_its_case(rule):
    evidence, words = CASES[rule]
    out = suggest({**NOTHING, **evidence})
    assert out["rule"] == rule
    for word in words:
        assert word in out["suggestion"], (word, out["suggestion"])


@pytest.mark.parametrize("evidence", [
    {"knn_features": 0.80, "knn_raw": 0.81, **CHEAP, "baseline_seconds_per_epoch": 300.0},  # scratch is costly
    {"knn_features": 0.80, "knn_raw": 0.79, **CHEAP},              # features do better than raw
    {"native": 64, "model": 224, "option": "--image-size", "upsampled": True},  # 3.5x: not a gap
    {"truncated_share": 0.1, "model": 256, "option": "--max-length"},
    {"knn_features": 0.79, "knn_raw": 0.80, "fine_tuned": True},   # within the margin
])
def test_rules_stay_quiet_short_of_their_thresholds(evidence):
    assert suggest({**NOTHING, **evidence})["rule"] == "no-single-cause"


def test_the_first_rule_that_holds_wins_and_the_others_are_hints():
    out = suggest({**NOTHING, "knn_features": 0.5, "knn_raw": 0.9, **CHEAP,
                   "native": 28, "model": 224, "option": "--image-size", "upsampled": True})
    assert out["rule"] == "no-gain-over-raw"
    assert [h["rule"] for h in out["also"]] == ["resolution-gap", "frozen-features-weak"]


def test_gather_reads_the_arms():
    comparison = {"arms": [
        {"name": "probe", "strategy": "probe", "baseline": False, "stop_reason": "completed", "time_to_target_seconds": None},
        {"name": "finetune", "strategy": "finetune", "baseline": False, "stop_reason": "budget",
         "time_to_target_seconds": None},
        {"name": "scratch", "strategy": "scratch", "baseline": True, "stop_reason": "budget", "time_to_target_seconds": 3.0}]}
    e = gather({"knn_accuracy": 0.6, "silhouette": 0.1}, None, None, None, comparison)
    assert e["fine_tuned"] and e["cut_short"] == ["finetune"] and e["knn_raw"] is None
    assert not gather(None, None, None, None, {"arms": comparison["arms"][:1] + comparison["arms"][2:]})["fine_tuned"]


# -- (b) the measurements --------------------------------------------------------------------

def _clusters(n_per_class=40, classes=4, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n_per_class)
    centres = rng.normal(size=(classes, dim)) * 3
    separated = centres[labels] + rng.normal(size=(len(labels), dim)) * 0.5
    noise = rng.normal(size=(len(labels), dim))  # nothing to do with the labels
    order = rng.permutation(len(labels))
    return labels[order], separated[order], noise[order]


def test_measure_tells_separating_features_from_noise():
    labels, separated, noise = _clusters()
    half = len(labels) // 2
    good = measure(separated[:half], separated[half:], labels[:half], labels[half:])
    bad = measure(noise[:half], noise[half:], labels[:half], labels[half:])
    assert good["knn_accuracy"] > 0.9 and good["silhouette"] > 0.3
    assert bad["knn_accuracy"] < 0.5 and abs(bad["silhouette"]) < 0.1
    # the evidence leads to the matching suggestion either way round
    assert suggest(gather(bad, good, None, None, {"arms": []}))["rule"] == "frozen-features-weak"
    assert suggest(gather(good, bad, None, None, {"arms": []}))["rule"] == "no-single-cause"


def test_silhouette_is_none_where_undefined():
    assert silhouette(np.ones((4, 2)), [0, 0, 0, 0]) is None
    assert silhouette(np.eye(3), [0, 1, 2]) is None


def test_image_raw_features_are_pixels_that_separate_blobs():
    data = make_blobs(n_per_class=20, size=40)
    index = np.random.default_rng(0).permutation(len(data))
    train, val = data.subset(index[:40]), data.subset(index[40:])
    train_x, val_x = get_modality("image").raw_features(train, val)
    assert train_x.shape == (40, 32 * 32 * 3) and val_x.shape == (20, 32 * 32 * 3)  # down to 32 px
    assert abs(float(train_x.mean())) < 1e-3  # standardised on train
    assert measure(train_x, val_x, train.labels, val.labels)["knn_accuracy"] > 0.9


def test_text_raw_features_are_a_bag_of_words():
    data = make_texts(n_per_class=20)
    index = np.random.default_rng(0).permutation(len(data))
    train, val = data.subset(index[:40]), data.subset(index[40:])
    train_x, val_x = get_modality("text").raw_features(train, val)
    assert train_x.shape[0] == 40 and val_x.shape[1] == train_x.shape[1]
    assert measure(train_x, val_x, train.labels, val.labels)["knn_accuracy"] > 0.8


# -- the data's own size ---------------------------------------------------------------------

def test_loaders_record_the_native_size(tmp_path):
    folder = write_image_folder(tmp_path / "imgs", make_blobs(n_per_class=3, size=20))
    data = load_data(str(folder), size=32)
    assert data.images.shape[1] == 32 and data.notes["native_size"] == 20
    assert load_data(str(folder), size=32).notes["native_size"] == 20  # from the decode cache too
    digits = load_data("digits")
    assert digits.notes["native_size"] == 8
    backbone = SimpleNamespace(preprocessing=SimpleNamespace(input_size=224))
    gap = get_modality("image").size_gap(digits, backbone)
    assert gap["native"] == 8 and gap["model"] == 224 and gap["upsampled"] and gap["option"] == "--image-size"


def test_text_size_gap_is_token_length_and_truncation(tmp_path):
    from headstart.zoo import resolve_backbone

    backbone = resolve_backbone(make_tiny_bert(tmp_path / "bert")).build(max_length=8)
    gap = get_modality("text").size_gap(make_texts(n_per_class=10), backbone)
    assert gap["model"] == 8 and gap["native"] <= 8 and gap["unit"] == "tokens" and not gap["upsampled"]
    assert 0 < gap["truncated_share"] <= 1


# -- the report section ----------------------------------------------------------------------

def _diagnosis(**extra):
    return {"backbone": "tf_efficientnet_lite0", "raw_name": "raw pixels (at most 32 px, standardised)",
            "sample": {"train": 1000, "val": 1000},
            "measures": [{"measure": "k-NN accuracy (k=5, cosine, validation)", "kind": "accuracy",
                          "features": 0.781, "raw": 0.815},
                         {"measure": "silhouette", "kind": "score", "features": 0.0512, "raw": None}],
            "size": {"native": 28, "model": 224, "unit": "px", "measure": "median shorter side",
                     "option": "--image-size", "upsampled": True, "truncated_share": None},
            "baseline_cost": {"arm": "scratch", "model": "resnet9", "train_seconds": 21.0, "epochs": 10.0,
                              "seconds_per_epoch": 2.1},
            "rule": "no-gain-over-raw", "suggestion": "Train the baseline <b>now</b>.",
            "also": [{"rule": "resolution-gap", "sentence": "Fine-tune at a lower resolution (--image-size 64)."}],
            "failed": {"size": "OSError: gone"}, "seconds": 12.5, **extra}


def _comparison_run(tmp_path, diagnosis):
    run = make_comparison_run(tmp_path / "cmp")
    comparison = json.loads((run / "comparison.json").read_text())
    comparison.update(verdict="negative transfer", diagnosis=diagnosis)
    (run / "comparison.json").write_text(json.dumps(comparison))
    return run


def test_report_shows_the_diagnosis_after_the_key_figures(tmp_path):
    text = build_comparison_report(_comparison_run(tmp_path, _diagnosis())).read_text()
    page = parse(text)
    assert page.sections[:2] == ["Key figures", "Why transfer did not pay"]
    table = page.table("measure")
    assert table["headers"] == ["measure", "frozen features (tf_efficientnet_lite0)",
                                "raw pixels (at most 32 px, standardised)"]
    assert table["rows"] == [["k-NN accuracy (k=5, cosine, validation)", "78.1 %", "81.5 %"],
                             ["silhouette", "0.051", "—"]]
    assert "<strong>Suggestion: Train the baseline &lt;b&gt;now&lt;/b&gt;.</strong>" in text  # escaped
    assert "the data is 28 px (median shorter side); the backbone reads 224 px, 8.0x larger" in text
    assert "2.10 s per epoch" in text and "--image-size 64" in text
    assert "Not measured (size): OSError: gone" in page.notes


def test_report_says_when_the_diagnosis_failed(tmp_path):
    page = parse(build_comparison_report(_comparison_run(tmp_path, {"error": "ValueError: no", "seconds": 0.1}))
                 .read_text())
    assert "Why transfer did not pay" in page.sections and "No diagnosis: ValueError: no" in page.notes


# -- (c) compare end to end ------------------------------------------------------------------

@pytest.mark.report
def test_compare_diagnoses_a_comparison_transfer_did_not_win(tmp_path):
    data = make_blobs(n_per_class=16)
    data.labels = np.random.default_rng(1).permutation(data.labels)  # nothing to learn: 100% is out of reach
    folder = write_image_folder(tmp_path / "data", data)
    out = tmp_path / "cmp"
    assert main(["compare", str(folder), "--arms", "probe,scratch", "--epochs", "1", "--target", "1.0",
                 "--out", str(out), *FAST]) == 0
    comparison = read_json(out / "comparison.json")
    assert comparison["verdict"] in ("negative transfer", "inconclusive")
    d = comparison["diagnosis"]
    assert "error" not in d and not d["failed"], d
    assert d["rule"] in {r.name for r in RULES} and d["suggestion"]
    for row in d["measures"]:
        assert row["features"] is not None and row["raw"] is not None
    assert 0 <= d["evidence"]["knn_features"] <= 1 and 0 <= d["evidence"]["knn_raw"] <= 1
    assert d["size"]["native"] == 32 and d["size"]["model"] == 32  # decoded at --image-size 32
    assert d["baseline_cost"]["arm"] == "scratch" and d["baseline_cost"]["seconds_per_epoch"] > 0
    assert d["seconds"] > 0
    page = parse((out / "report.html").read_text())
    assert "Why transfer did not pay" in page.sections and page.table("measure")["rows"]


@pytest.mark.report
def test_compare_does_not_diagnose_when_transfer_helps(tmp_path, monkeypatch):
    """Arms faked (no training): the probe reaches the target 50x sooner, so no diagnosis runs."""
    import headstart.diagnosis
    import headstart.pipeline

    def fake_fit(config, *, data=None, use_feature_cache=True, splits=None):
        seconds = 1.0 if config.strategy == "probe" else 50.0
        run = tmp_path / config.out
        run.mkdir(parents=True, exist_ok=True)
        (run / "metrics.jsonl").write_text(json.dumps(
            {"split": "val", "accuracy": 0.9, "train_seconds": seconds, "epoch": 1.0}) + "\n")
        summary = {"best_val_accuracy": 0.9, "test_accuracy": 0.9, "train_seconds": seconds,
                   "strategy": config.strategy, "backbone": "b", "weights": "w", "input_size": 32,
                   "sizes": {"test": 100}}
        write_json(run / "summary.json", summary)
        return SimpleNamespace(summary=summary)

    monkeypatch.setattr(headstart.pipeline, "fit", fake_fit)
    monkeypatch.setattr(headstart.diagnosis, "diagnose", lambda *a: pytest.fail("diagnosed a win"))
    folder = write_image_folder(tmp_path / "data", make_blobs(n_per_class=4))
    out = tmp_path / "cmp"
    assert main(["compare", str(folder), "--arms", "probe,scratch", "--out", str(out), *FAST]) == 0
    comparison = read_json(out / "comparison.json")
    assert comparison["verdict"] == "transfer helps" and "diagnosis" not in comparison
    assert "Why transfer did not pay" not in parse((out / "report.html").read_text()).sections
