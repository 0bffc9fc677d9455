"""`headstart prune`: structured channel pruning of CNN runs, a budgeted recovery fine-tune, and a
pruned run that loads back from safetensors + model.json (no pickle) with the same outputs."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import yaml

from headstart.cli import main
from headstart.config import FitConfig
from headstart.engines.measure import read_deploy
from headstart.deploy.prune import _add_pruned_record, prune_channels, prune_run
from headstart.errors import HeadstartError
from headstart.heads import ImageClassifier
from headstart.model_io import load_model, save_model
from headstart.pipeline import fit
from headstart.records import read_json, read_metrics

from conftest import make_blobs, make_texts, write_image_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("imgs") / "blobs", make_blobs(n_per_class=16))


def _fit(folder, out, **settings):
    config = FitConfig(data=str(folder), image_size=32, batch_size=16, explain_examples=0, out=str(out), **settings)
    return fit(config).run_dir


@pytest.fixture(scope="module")
def resnet9_run(folder, tmp_path_factory):
    return _fit(folder, tmp_path_factory.mktemp("runs") / "resnet9", strategy="scratch", scratch_model="resnet9",
                epochs=2)


@pytest.fixture(scope="module")
def lite0_run(folder, tmp_path_factory):
    return _fit(folder, tmp_path_factory.mktemp("runs") / "lite0", backbone="tf_efficientnet_lite0",
                strategy="finetune", epochs=1, patience=1000)  # the recovery inherits it: only the budget stops it


def _convs(model) -> dict[str, torch.nn.Conv2d]:
    return {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}


def _images(n: int = 6, size: int = 32) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(1).integers(0, 256, (n, 3, size, size), dtype=np.uint8))


def test_cli_prunes_a_scratch_resnet9_into_a_new_run_that_predicts(resnet9_run, folder, capsys):
    assert main(["prune", str(resnet9_run), "--sparsity", "0.3", "--epochs", "1"]) == 0
    out = resnet9_run.parent / f"{resnet9_run.name}-pruned30"
    printed = capsys.readouterr().out
    assert "parameters" in printed and str(out) in printed

    summary = read_json(out / "summary.json")
    pruning = summary["pruning"]
    assert summary["pruned_from"] == str(resnet9_run) and summary["sparsity"] == 0.3
    assert abs(pruning["channels"]["removed_share"] - 0.3) < 0.05  # the share asked for, in every layer
    assert pruning["after"]["params"] < 0.8 * pruning["before"]["params"]
    assert pruning["after"]["mflops"] < pruning["before"]["mflops"]
    assert pruning["before"]["test_accuracy"] == read_json(resnet9_run / "summary.json")["test_accuracy"]
    assert pruning["after"]["test_accuracy"] == summary["test_accuracy"]

    # a run like any other: its config (with the prune record), the source's split, metrics on the clock
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["prune"]["from"] == str(resnet9_run) and config["out"] == str(out)
    assert read_json(out / "splits.json") == read_json(resnet9_run / "splits.json")
    rows = read_metrics(out)
    assert [r["split"] for r in rows][-1] == "test" and any(r["split"] == "val" for r in rows)
    assert rows[-1]["train_seconds"] == pytest.approx(summary["train_seconds"], abs=0.01)

    # loads back without pickle, as a normal ImageClassifier with the pruned shapes
    assert not list(out.glob("*.pt")) and not list(out.glob("*.pth"))
    model, meta = load_model(out)
    assert isinstance(model, ImageClassifier) and meta["pruned"]["layers"]
    assert model.head.fc.in_features == meta["backbone"]["feature_dim"] < 128
    assert model(_images()).shape == (6, 3)

    # both deploy tables and reports carry the other model
    assert "pruned 30% (PyTorch fp32)" in [r["name"] for r in read_deploy(resnet9_run)["rows"]]
    assert "unpruned source (PyTorch fp32)" in [r["name"] for r in read_deploy(out)["rows"]]
    page = (out / "report.html").read_text()
    assert "<h2>Pruning</h2>" in page and "after / before" in page
    assert "pruned 30% (PyTorch fp32)" in (resnet9_run / "report.html").read_text()

    image = next((folder / "red").iterdir())
    assert main(["predict", str(out), str(image)]) == 0
    assert capsys.readouterr().out.split("\t")[1] in ("red", "green", "blue")


def test_a_pruned_model_loads_back_with_the_same_logits(resnet9_run, tmp_path):
    model, meta = load_model(resnet9_run)
    widths = {n: c.out_channels for n, c in _convs(model).items()}
    record = prune_channels(model, 0.5, meta)
    for name, conv in _convs(model).items():
        assert abs(conv.out_channels / widths[name] - 0.5) <= 0.1, name
    save_model(tmp_path, model, meta["classes"], "prune")
    _add_pruned_record(tmp_path, record)

    loaded, _ = load_model(tmp_path)
    x = _images()
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), loaded(x), atol=1e-5)
    # the layer groups (discriminative rates) point at the pruned parameters
    params = {id(p) for p in model.parameters()}
    assert all(id(p) in params for group in model.backbone.param_groups() for p in group)

    # a pruned run pruned again records its shapes against the original architecture
    again, again_meta = load_model(tmp_path)
    record = prune_channels(again, 0.3, again_meta)
    save_model(tmp_path / "again", again, meta["classes"], "prune")
    _add_pruned_record(tmp_path / "again", record)
    with torch.no_grad():
        assert torch.allclose(again.eval()(x), load_model(tmp_path / "again")[0](x), atol=1e-5)


def test_lite0_depthwise_convs_prune_together_and_recovery_keeps_its_budget(lite0_run, tmp_path):
    budget = 6.0
    summary = prune_run(lite0_run, sparsity=0.3, budget_seconds=budget, epochs=200, out=tmp_path / "pruned")
    assert summary["stop_reason"] == "budget", summary["stop_reason"]
    assert summary["train_seconds"] <= budget, summary["train_seconds"]
    assert summary["wall_seconds"] > summary["train_seconds"]
    assert abs(summary["pruning"]["channels"]["removed_share"] - 0.3) < 0.05

    model, meta = load_model(tmp_path / "pruned")
    depthwise = [c for c in _convs(model).values() if c.groups > 1]
    assert depthwise and all(c.groups == c.in_channels == c.out_channels for c in depthwise)
    assert meta["pruned"]["layers"]["backbone.model.conv_head"]["out_channels"] < 1280
    original, _ = load_model(lite0_run)
    assert sum(p.numel() for p in model.parameters()) < 0.8 * sum(p.numel() for p in original.parameters())
    assert model(_images()).shape == (6, 3)


def test_prune_refuses_what_it_cannot_prune(resnet9_run, tmp_path):
    for bad in (0, 1, 1.5, -0.2):
        with pytest.raises(HeadstartError, match="between 0 and 1"):
            prune_run(resnet9_run, sparsity=bad)

    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text((resnet9_run / "config.yaml").read_text())
    with pytest.raises(HeadstartError, match="is an unfinished run: it has no summary.json"):
        prune_run(unfinished, sparsity=0.3)

    text_run = fit(FitConfig(data="topics", strategy="tfidf", explain_examples=0, out=str(tmp_path / "text")),
                   data=make_texts()).run_dir
    with pytest.raises(HeadstartError, match="convolutional image networks"):
        prune_run(text_run, sparsity=0.3)

    moved = tmp_path / "moved"
    shutil.copytree(resnet9_run, moved)
    config = yaml.safe_load((moved / "config.yaml").read_text())
    (moved / "config.yaml").write_text(yaml.safe_dump({**config, "data": str(tmp_path / "gone")}))
    with pytest.raises(HeadstartError, match="config.yaml is damaged"):  # edited by hand: the manifest says so
        prune_run(moved, sparsity=0.3)
    (moved / "manifest.json").unlink()  # the hint's way to read a file edited on purpose, unverified
    with pytest.raises(HeadstartError, match="could not be loaded"):
        prune_run(moved, sparsity=0.3)
    assert not (tmp_path / "moved-pruned30").exists()  # nothing half-written

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "note.txt").write_text("mine")
    with pytest.raises(HeadstartError, match="already holds files"):
        prune_run(resnet9_run, sparsity=0.3, out=taken)
    assert main(["prune", str(text_run)]) == 2  # the CLI says so, without a traceback
    assert [f.name for f in taken.iterdir()] == ["note.txt"]  # nothing written beside it
