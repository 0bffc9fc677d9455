"""--image-size auto (choose/image_size.py): the size is measured on a sample, the smallest within
noise of the best wins, the choice is recorded, and the setting reads `auto`, an int, or refuses."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import make_blobs, make_texts, write_image_folder
from headstart.choose.image_size import candidate_sizes, choose_size, measure_sizes, settle_image_size
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


def _chosen(data: ImageData) -> int:
    spec = resolve_backbone("resnet9")  # a random small CNN: seconds, and its features keep what the pixels keep
    measured = measure_sizes(data, lambda s: spec.build(pretrained=False, image_size=s), [16, 32, 64])
    assert [m["size"] for m in measured] == [16, 32, 64]
    return choose_size(measured)[0]["size"]


def test_fine_detail_needs_a_larger_size_than_colour():
    detail, colour = _chosen(_task("detail")), _chosen(_task("colour"))
    assert colour == 16  # colour survives any shrinking: the smallest size wins
    assert detail > colour  # a 1-px checkerboard is averaged away at 16 px


def test_the_smallest_size_within_noise_of_the_best_wins():
    measured = [{"size": 96, "accuracy": 0.84, "noise": 0.02, "seconds": 1.0},
                {"size": 160, "accuracy": 0.85, "noise": 0.02, "seconds": 2.8}]
    chosen, reason = choose_size(measured)
    assert chosen["size"] == 96 and "within noise" in reason
    measured[1]["accuracy"] = 0.95  # now clearly better: worth its cost
    assert choose_size(measured)[0]["size"] == 160


def test_candidates_stop_at_the_native_side_and_the_backbone_input():
    assert candidate_sizes(300, 224) == [96, 128, 160, 224]
    assert candidate_sizes(100, 224) == [96, 128]      # 1.5 x 100 = 150 px: 160 would be upsampled blur
    assert candidate_sizes(120, 224) == [96, 128, 160]
    assert candidate_sizes(28, 224) == [96, 128]       # the two smallest are always measured
    assert candidate_sizes(None, 160) == [96, 128, 160]


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
    assert "auto: the smallest of 96/128/160/224" in " ".join(capsys.readouterr().out.split())


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
    assert [c["size"] for c in choice["candidates"]] == [96, 128]  # 48 px native: the two smallest
    assert choice["size"] in (96, 128) and choice["reason"] and choice["sample"] > 0
    assert result.summary is not None
