"""--image-size auto (choose/image_size.py): the size is measured on a sample; the backbone's own
input stands unless paired evidence moves it, the choice is recorded, and the setting reads `auto`, an int, or refuses."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import make_blobs, make_texts, write_image_folder
from headstart.choose.image_size import (candidate_sizes, choose_size, measure_sizes, ridge_loo_correct,
                                         settle_image_size)
from headstart.config import FitConfig
from headstart.config.settings import build
from headstart.data.dataset import ImageData
from headstart.errors import HeadstartError
from headstart.zoo import resolve_backbone


def _task(kind: str, n: int = 12, size: int = 64, seed: int = 0) -> ImageData:
    """Two classes at `size` px: `detail` differs only in a 1-px checkerboard (same mean grey,
    gone once the image is shrunk), `colour` only in which channel is bright."""
    rng = np.random.default_rng(seed)
    checker = (((np.add.outer(np.arange(size), np.arange(size))) % 2) * 160 + 48).astype(float)
    images, labels = [], []
    for k in range(2):
        for _ in range(n):
            if kind == "detail":
                grey = (checker if k else np.full((size, size), 128.0)) + rng.normal(0, 8, (size, size))
                img = np.repeat(grey[..., None], 3, axis=2)
            else:
                img = rng.normal(110, 20, (size, size, 3))
                img[..., 2 * k] += 60
            images.append(np.clip(img, 0, 255).astype(np.uint8))
            labels.append(k)
    return ImageData(images=np.stack(images), labels=np.array(labels, dtype=np.int64), classes=["a", "b"],
                     name=kind)


def _correct(hits: int, n: int = 400, seed: int = 0) -> np.ndarray:
    """Per-item correctness: `hits` of `n` items right, in a seeded order."""
    right = np.zeros(n, bool)
    right[np.random.default_rng(seed).permutation(n)[:hits]] = True
    return right


def test_paired_evidence_moves_the_size_where_each_scores_error_overlaps():
    # 224 px gets 300 of 400 right; 160 px the same items and 20 more: 80.0% against 75.0%, each
    # with a binomial standard error of ~2.1 points (the intervals overlap), but item by item
    # the difference is 20 wins and 0 losses: a paired error of ~1.1 points
    reference = _correct(300)
    larger = reference.copy()
    larger[np.flatnonzero(~reference)[:20]] = True
    own_error = np.sqrt(0.8 * 0.2 / 400)
    assert larger.mean() - 2 * own_error < reference.mean() + 2 * own_error  # unpaired: no verdict
    chosen, reason, comparisons = choose_size({96: _correct(200, seed=1), 160: larger, 224: reference}, 224)
    assert chosen == 160 and "beats the backbone's 224 px" in reason
    assert comparisons[224][0] == pytest.approx(-0.05) and comparisons[224][1] < 0.012


def test_equal_scores_on_unrelated_items_do_not_move_the_size():
    # 75% each, but right on unrelated items: the paired error (~3 points) cannot show the
    # cheaper size loses less than a point, and the backbone's own input stands
    chosen, reason, comparisons = choose_size({160: _correct(300, seed=1), 224: _correct(300, seed=2)}, 224)
    assert chosen == 224 and "backbone's own input" in reason and comparisons[160][1] > 0.025


def test_a_smaller_size_is_taken_only_when_shown_to_lose_less_than_a_point():
    reference = _correct(300)
    same = reference.copy()  # identical on every item: a cheaper size that costs nothing
    chosen, reason, _ = choose_size({128: same, 224: reference}, 224)
    assert chosen == 128 and "within 1 point" in reason
    noisy = reference.copy()  # the same score, but 30 items swapped each way: not shown within a point
    flip = np.random.default_rng(3).permutation(400)
    noisy[flip[:30][reference[flip[:30]]]] = False
    noisy[flip[30:60][~reference[flip[30:60]]]] = True
    assert choose_size({128: noisy, 224: reference}, 224)[0] == 224


def test_too_few_images_never_move_the_size():
    few = _correct(60, n=80)
    better = np.ones(80, bool)  # 100% against 75%: decisive, but on 80 images
    chosen, reason, _ = choose_size({160: better, 224: few}, 224)
    assert chosen == 224 and "fewer than" in reason


def test_ridge_leave_one_out_matches_refitting():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 10)
    features = rng.normal(size=(30, 8)) + labels[:, None] * 0.7
    correct, penalty = ridge_loo_correct(features, labels)
    z = (features - features.mean(0)) / (features.std(0) + 1e-6)
    z = np.hstack([z, np.ones((30, 1))])
    alpha = penalty * np.trace(z @ z.T) / 30
    targets = np.eye(3)[labels] - 1 / 3
    for i in range(30):  # the closed form against 30 ridge refits, each without its item
        keep = np.arange(30) != i
        weights = np.linalg.solve(z[keep].T @ z[keep] + alpha * np.eye(9), z[keep].T @ targets[keep])
        assert ((z[i] @ weights).argmax() == labels[i]) == correct[i]
    assert 0.5 < correct.mean() < 1.0  # separable enough to score, noisy enough that it could be wrong


@pytest.mark.slow  # ~10 s alone, a minute on a loaded machine: two resnet9 passes over 96 images
def test_fine_detail_needs_a_larger_size_than_colour():
    spec = resolve_backbone("resnet9")  # a random small CNN: seconds, and its features keep what the pixels keep

    def scores(data):
        measured = measure_sizes(data, lambda s: spec.build(pretrained=False, image_size=s), [16, 64],
                                 allowance=60.0, reference=64)
        assert measured["sample"] == len(data)  # 48 images: the whole pool, within the allowance
        return {m["size"]: m["accuracy"] for m in measured["sizes"]}

    detail, colour = scores(_task("detail", n=24)), scores(_task("colour", n=24))
    assert colour[16] >= 0.9  # colour survives any shrinking
    assert detail[64] - detail[16] >= 0.2  # a 1-px checkerboard is averaged away at 16 px


def test_candidates_reach_the_backbone_input_with_no_native_cap():
    assert candidate_sizes(224) == [96, 128, 160, 224]
    assert candidate_sizes(160) == [96, 128, 160]
    assert candidate_sizes(192) == [96, 128, 160, 192]  # the backbone's own input is always the reference
    assert candidate_sizes(None) == [96, 128, 160, 224]


def test_rounds_stop_at_the_allowance():
    spec = resolve_backbone("resnet9")
    data = _task("colour", n=200)
    measured = measure_sizes(data, lambda s: spec.build(pretrained=False, image_size=s), [16, 32],
                             allowance=0.0, reference=32)
    assert measured["sample"] == 0 and measured["correct"] == {}  # no time: nothing scored, the reference stands


def test_the_setting_reads_auto_an_int_or_refuses():
    assert build(FitConfig, {"data": "d", "image_size": "auto"}, command="fit").image_size == "auto"
    assert build(FitConfig, {"data": "d", "image_size": "128"}, command="fit").image_size == 128
    assert build(FitConfig, {"data": "d", "image_size": 96}, command="fit").image_size == 96
    for bad in ("big", "12.5", "-3", 0):
        with pytest.raises(HeadstartError, match="image size"):
            build(FitConfig, {"data": "d", "image_size": bad}, command="fit")


def test_cli_accepts_auto_and_refuses_a_bad_value(capsys):
    from headstart.cli import main

    assert main(["fit", "nowhere", "--image-size", "huge"]) == 2
    assert "cannot read the image size 'huge'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    assert "auto: the backbone's own input size unless a paired comparison" in " ".join(capsys.readouterr().out.split())


def test_text_data_ignores_auto_and_says_so(monkeypatch):
    said = []
    monkeypatch.setattr("headstart.choose.image_size.say", said.append)
    texts = make_texts(n_per_class=6)
    settled = settle_image_size(FitConfig(data="texts", image_size="auto"), texts)
    assert settled.image_size is None and "image_size_choice" not in texts.notes
    assert len(said) == 1 and "no image size; ignored" in said[0]


def test_a_fit_records_the_choice(tmp_path):
    from headstart.api import fit

    folder = write_image_folder(tmp_path / "data", make_blobs(n_per_class=12, size=48))
    result = fit(str(folder), backbone="resnet9", pretrained=False, strategy="probe", image_size="auto",
                 out=str(tmp_path / "run"), explain_examples=0)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    choice = summary["image_size_choice"]
    assert choice["reference"] == 32 and choice["size"] == 32  # resnet9's own input: no candidate below it
    assert "no other candidate" in choice["reason"]
    assert result.summary is not None
