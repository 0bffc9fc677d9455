"""fit --adapt TARGET --method coral|dann: unsupervised domain adaptation (adapt/domain.py,
coral.py, dann.py). Tiny synthetic images (blobs, and the same blobs with their brightness
inverted: a domain shift) and EfficientNet-Lite0 at 32 px keep each test to seconds."""
from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest
import torch

from conftest import make_blobs, write_image_folder
from headstart.adapt.coral import coral_transform
from headstart.adapt.dann import reversal_weight, reverse_gradient
from headstart.api import fit
from headstart.cli import main
from headstart.errors import HeadstartError
from headstart.heads import HeadProblem

FAST = {"image_size": 32, "batch_size": 16, "explain_examples": 0, "extract_engine": "torch"}


def _inverted(data):
    """The same kind of images, brightness inverted: what a raw head has never seen."""
    return dataclasses.replace(data, images=(255 - data.images).astype(np.uint8))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("domains")
    source = write_image_folder(root / "source", make_blobs(20, seed=0))
    target = write_image_folder(root / "target", _inverted(make_blobs(10, seed=1)))
    pool = root / "pool"  # the target's images without class folders: unlabelled
    pool.mkdir()
    for i, png in enumerate(sorted(target.rglob("*.png"))):
        (pool / f"{i:03d}.png").write_bytes(png.read_bytes())
    return {"source": source, "target": target, "pool": pool, "root": root}


# --------------------------------------------------------------------------- CORAL, the transform


def _correlated(n: int, d: int, seed: int, scale: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d)) * scale
    return rng.normal(size=(n, d)) @ mixing + rng.normal(size=d) * 3


def test_coral_aligns_source_covariance_and_mean_to_the_target():
    source, target = _correlated(4000, 6, 0, 1.0), _correlated(3000, 6, 1, 2.5)
    matrix, shift = coral_transform(source, target, eps=1e-9)
    aligned = source @ matrix + shift
    np.testing.assert_allclose(np.cov(aligned, rowvar=False), np.cov(target, rowvar=False), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(aligned.mean(0), target.mean(0), atol=1e-3)
    assert np.abs(np.cov(source, rowvar=False) - np.cov(target, rowvar=False)).max() > 1.0  # it had work to do


def test_coral_is_the_identity_when_the_domains_are_equal():
    x = _correlated(500, 5, 2, 1.0)
    matrix, shift = coral_transform(x, x)  # the default regularisation too: both sides get the same
    np.testing.assert_allclose(matrix, np.eye(5), atol=1e-4)
    np.testing.assert_allclose(x @ matrix + shift, x, atol=1e-3)


def test_coral_rescues_a_head_that_fails_on_a_shifted_domain():
    # two classes apart on feature 0; the target is the same task with its features shifted and
    # rescaled (a brightness/contrast change): a head fitted on raw source features calls nearly
    # every target example one class
    rng = np.random.default_rng(0)
    d, n = 8, 300

    def domain(shift, scale, seed):
        r = np.random.default_rng(seed)
        y = np.repeat([0, 1], n)
        x = r.normal(size=(2 * n, d))
        x[:, 0] += 2.5 * y
        return ((x * scale + shift).astype(np.float32), y)

    scale = rng.uniform(0.3, 0.6, size=d)
    (xs, ys), (xt, yt) = domain(0.0, 1.0, 1), domain(-4.0, scale, 2)

    def target_accuracy(train_x):
        weight, bias = HeadProblem(train_x, ys, 2).solve(1.0)
        return float(((xt @ weight.T + bias).argmax(1) == yt).mean())

    matrix, shift = coral_transform(xs, xt)
    raw, aligned = target_accuracy(xs), target_accuracy(xs @ matrix + shift)
    assert raw < 0.65
    assert aligned > 0.85
    assert aligned > raw + 0.2


# --------------------------------------------------------------------------- DANN, the reversal


def test_gradient_reversal_is_the_identity_forward_and_flips_gradients_backward():
    x = torch.randn(4, 3, requires_grad=True)
    w = torch.randn(4, 3)
    y = reverse_gradient(x, 0.7)
    assert torch.equal(y, x)
    (y * w).sum().backward()
    torch.testing.assert_close(x.grad, -0.7 * w)
    # against central differences of the plain function, in float64 so that a small x[0, 0]
    # cannot round the difference to zero: the reversed gradient is its negation
    x2 = x.detach().double().requires_grad_(True)
    (reverse_gradient(x2, 1.0) ** 2).sum().backward()
    eps = 1e-4
    up, down = x2.detach().clone(), x2.detach().clone()
    up[0, 0] += eps
    down[0, 0] -= eps
    numeric = ((up ** 2).sum() - (down ** 2).sum()) / (2 * eps)
    assert x2.grad[0, 0].item() == pytest.approx(-numeric.item(), rel=1e-6, abs=1e-9)


def test_the_reversal_weight_ramps_from_zero_to_one():
    weights = [reversal_weight(p) for p in np.linspace(0, 1, 11)]
    assert weights[0] == 0.0
    assert weights[5] == pytest.approx(0.9866, abs=1e-3)  # 2 / (1 + e^-5) - 1: most of the way at half-time
    assert weights[-1] == pytest.approx(1.0, abs=1e-3)
    assert all(b > a for a, b in zip(weights, weights[1:]))


@pytest.mark.report
def test_a_dann_fit_trains_a_few_steps_and_saves_the_classifier_alone(folders, tmp_path):
    out = tmp_path / "dann"
    result = fit(str(folders["source"]), adapt=str(folders["target"]), adapt_method="dann", epochs=1,
                 out=str(out), **FAST)
    part = json.loads((out / "summary.json").read_text())["adaptation"]
    assert part["method"] == "dann" and result.summary["strategy"] == "lp-ft"
    assert set(part["arms"]) == {"none", "dann"}
    assert all(0.0 <= part["arms"][a]["target_accuracy"] <= 1.0 for a in part["arms"])
    assert 0.0 <= part["domain_accuracy"] <= 1.0  # the domain classifier did train
    assert not hasattr(result.classifier, "domain_head")
    from safetensors import safe_open
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert not [k for k in f.keys() if "domain_head" in k]
    assert any(r["phase"] == "lp-ft" for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()))
    assert "DANN" in (out / "report.html").read_text()


# --------------------------------------------------------------------------- the command


@pytest.mark.report
def test_fit_adapt_coral_end_to_end_reports_source_and_target_accuracy(folders, tmp_path, capsys):
    out = tmp_path / "coral"
    assert main(["fit", str(folders["source"]), "--adapt", str(folders["target"]), "--method", "coral",
                 "--image-size", "32", "--explain-examples", "0", "--extract-engine", "torch", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "adaptation: coral: target accuracy" in printed and "(none " in printed
    summary = json.loads((out / "summary.json").read_text())
    part = summary["adaptation"]
    for arm in ("none", "coral"):
        assert 0.0 <= part["arms"][arm]["source_accuracy"] <= 1.0
        assert 0.0 <= part["arms"][arm]["target_accuracy"] <= 1.0
    assert part["arms"]["coral"]["source_accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-6)
    assert part["covariance_gap"]["after"] < part["covariance_gap"]["before"]
    assert part["target"]["labelled"] and "only to score" in part["target"]["labels_use"]
    assert part["target"]["size"] == 30 and part["source"]["train"] == summary["sizes"]["train"]
    page = (out / "report.html").read_text()
    assert "Domain adaptation" in page and "only to score" in page and part["figure"] in page
    assert (out / part["figure"]).exists()
    for name in ("config.yaml", "metrics.jsonl", "model.safetensors", "model.json"):
        assert (out / name).exists()


@pytest.mark.report
def test_an_unlabelled_target_gives_no_target_accuracy_and_says_so(folders, tmp_path):
    result = fit(str(folders["source"]), adapt=str(folders["pool"]), adapt_method="coral",
                 out=str(tmp_path / "pool"), **FAST)
    part = result.summary["adaptation"]
    assert not part["target"]["labelled"] and part["target"]["size"] == 30
    assert part["arms"]["coral"]["target_accuracy"] is None and part["arms"]["none"]["target_accuracy"] is None
    assert "no target accuracy" in part["headline"] and "no labels" in part["target"]["labels_use"]
    assert "no labels" in (tmp_path / "pool" / "report.html").read_text()


def _refused(folders, tmp_path, match: str, **settings):
    out = tmp_path / "refused"
    with pytest.raises(HeadstartError, match=match):
        fit(str(folders["source"]), out=str(out), **{**FAST, **settings})
    assert not out.exists()  # nothing half-written


def test_a_target_with_classes_the_source_lacks_is_refused_before_anything_is_written(folders, tmp_path):
    other = write_image_folder(tmp_path / "other", make_blobs(4, classes=("red", "purple"), seed=3))
    _refused(folders, tmp_path, "purple", adapt=str(other))


def test_a_target_of_another_modality_is_refused(folders, tmp_path):
    texts = tmp_path / "texts.csv"
    with open(texts, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows([["the match ended in a late goal by the striker", "red"]] * 6)
    _refused(folders, tmp_path, "text data", adapt=str(texts))


def test_coral_refuses_a_fine_tuning_strategy_with_a_hint(folders, tmp_path):
    with pytest.raises(HeadstartError) as raised:
        fit(str(folders["source"]), adapt=str(folders["target"]), adapt_method="coral", strategy="finetune",
            out=str(tmp_path / "x"), **FAST)
    assert "dann" in raised.value.hint
    assert not (tmp_path / "x").exists()


def test_compare_and_tune_refuse_the_keep_learning_forms():
    # they time and search plain fits; --adapt and --from would be silently ignored otherwise
    from headstart.api import run_fit
    from headstart.choose.tune import TuneConfig, _check_numbers
    from headstart.compare import validate
    from headstart.config import CompareConfig, FitConfig

    with pytest.raises(HeadstartError, match="does not take --adapt"):
        validate(CompareConfig(data="x", fit=FitConfig(data="x", adapt="y")))
    with pytest.raises(HeadstartError, match="does not take --from"):
        _check_numbers(TuneConfig(data="x", fit=FitConfig(data="x", from_run="r")))
    with pytest.raises(HeadstartError, match="cannot be combined"):
        run_fit(FitConfig(data="x", adapt="y", from_run="r"))
