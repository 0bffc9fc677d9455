"""`headstart pretrain`: the SSL methods learn through the one training loop, the run registers
a backbone that fit uses, a killed run resumes where it stopped, and bad input is refused with
nothing written."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import headstart.adapt.pretrain  # noqa: F401  (registers every SSL method)
from headstart.adapt.pretrain_plan import PretrainPlan, pretrain
from headstart.adapt.ssl import get_ssl_method
from headstart.cli import main
from headstart.records import Recorder, read_metrics
from headstart.zoo import get_backbone

from conftest import make_blobs, make_texts, make_tiny_bert, write_image_folder

SIZE = 16  # px: resnet9 at 16 px takes a step in a blink on 2 loaded cores


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("HEADSTART_HOME", str(tmp_path / "home"))
    return tmp_path / "home" / "zoo"


@pytest.fixture
def folder(tmp_path) -> Path:
    """A labelled folder (class sub-folders): used as a pool, its labels are set aside."""
    return write_image_folder(tmp_path / "colours", make_blobs(n_per_class=16, size=SIZE))


def _pretrain(pool, *extra) -> int:
    return main(["pretrain", str(pool), "--backbone", "resnet9", "--image-size", str(SIZE), "--batch-size", "16",
                 *extra])


@pytest.mark.parametrize("method", ["simclr", "byol", "mae"])
def test_each_image_method_learns_finite_changing_loss_and_moves_the_weights(method, tmp_path):
    torch.manual_seed(0)
    backbone = get_backbone("resnet9", pretrained=False, image_size=SIZE)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    ssl = get_ssl_method(method)
    model = ssl.build(backbone, {"seed": 0})
    dataset = model.dataset(backbone.prepare(make_blobs(n_per_class=8, size=SIZE)))
    plan = PretrainPlan(epochs=2, batch_size=8, steps_per_epoch=len(dataset) // 8, seed=0,
                        strategy=f"pretrain:{method}")
    outcome = pretrain(model, dataset, plan, ssl, Recorder(tmp_path, plan.strategy), tmp_path, lr=None,
                       continued=False, budget_seconds=None, resume=False)
    rows = read_metrics(tmp_path)  # written by the house loop's Recorder
    losses = [r["loss"] for r in rows if r["split"] == "train"]
    assert outcome["steps"] == len(losses) == 2 * plan.steps_per_epoch
    assert all(np.isfinite(losses)) and len(set(np.round(losses, 6))) > 1
    epochs = [r for r in rows if r["split"] == "epoch"]  # each epoch's evaluation: its mean loss
    assert [r["epoch"] for r in epochs] == [1, 2] and outcome["epoch_losses"] == [r["loss"] for r in epochs]
    assert epochs[0]["loss"] == pytest.approx(np.mean(losses[:plan.steps_per_epoch]))
    assert {r["phase"] for r in rows} == {"pretrain"} and all(r["accuracy"] is None for r in rows)
    seconds = [r["train_seconds"] for r in rows]
    assert seconds == sorted(seconds) and all(r["wall_seconds"] >= r["train_seconds"] for r in rows)
    after = backbone.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if after[k].is_floating_point())


@pytest.mark.report
def test_cli_registers_a_backbone_that_fit_uses_and_says_the_labels_are_set_aside(folder, home, tmp_path, capsys,
                                                                                  monkeypatch):
    monkeypatch.setenv("HEADSTART_QUIET", "0")
    assert _pretrain(folder, "--method", "simclr", "--epochs", "1", "--name", "t1", "--out",
                     str(tmp_path / "ssl")) == 0
    said = capsys.readouterr()
    assert "labels of" in said.err and "set aside" in said.err
    assert "Registered in the local zoo as 't1'" in said.out
    run = tmp_path / "ssl"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["labels_set_aside"] and summary["strategy"] == "pretrain:simclr" and summary["epochs"] == 1
    assert (run / "report.html").is_file() and (run / "ssl_loss.png").is_file() and not (run / "checkpoint").exists()
    saved = load_file(str(run / "model.safetensors"))
    entry = load_file(str(home / "t1" / "backbone.safetensors"))
    assert entry.keys() == {k[len("backbone."):] for k in saved}
    assert main(["fit", str(folder), "--backbone", "t1", "--strategy", "probe", "--out", str(tmp_path / "fit"),
                 "--explain-examples", "0"]) == 0
    fitted = json.loads((tmp_path / "fit" / "summary.json").read_text())
    assert fitted["weights"] == "zoo:t1" and fitted["backbone"] == "t1"


def _three_simclr_epochs(folder, name: str, out: Path) -> list[str]:
    return ["pretrain", str(folder), "--method", "simclr", "--backbone", "resnet9", "--image-size", str(SIZE),
            "--batch-size", "16", "--epochs", "3", "--name", name, "--out", str(out)]


def test_a_killed_run_resumes_from_its_checkpoint_instead_of_starting_over(folder, home, tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "headstart", *_three_simclr_epochs(folder, "resumed", run)]
    killed = subprocess.run(command, env={**os.environ, "HEADSTART_KILL_AFTER": "pretrain:1"}, capture_output=True)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    assert not (run / "summary.json").exists() and not (home / "resumed").exists()
    assert sorted(p.name for p in (run / "checkpoint").iterdir()) == ["pretrain.pt"]  # the house loop's
    rows_before = (run / "metrics.jsonl").read_text().splitlines()

    assert main(["pretrain", str(folder), "--name", "resumed", "--out", str(run), "--resume"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["resumed_from_epoch"] == 1 and summary["epochs"] == 3
    rows = (run / "metrics.jsonl").read_text().splitlines()
    assert rows[:len(rows_before)] == rows_before  # epoch 1's record kept, not redone
    steps = [json.loads(r)["step"] for r in rows if json.loads(r)["split"] == "train"]
    assert steps == list(range(1, 3 * len(rows_before[:-1]) + 1))  # one run of steps, no restart
    assert (home / "resumed" / "spec.json").is_file()
    # and it continued the same run: weights, optimizer, schedule and random draws restored, the
    # resumed epochs' losses are those of a run never killed
    assert main(_three_simclr_epochs(folder, "whole", tmp_path / "whole")) == 0
    uninterrupted = json.loads((tmp_path / "whole" / "summary.json").read_text())
    assert summary["epoch_losses"] == pytest.approx(uninterrupted["epoch_losses"], rel=1e-5)


def _nothing_written(run: Path, home: Path) -> None:
    assert not run.exists()
    assert not home.exists() or not any(home.iterdir())


def _refusal(capsys, *argv) -> str:
    """main() answers a refusal with a non-zero code and the message on stderr."""
    assert main(list(argv)) != 0
    return capsys.readouterr().err


def test_a_budget_too_small_for_one_epoch_is_refused_naming_the_minimum(folder, home, tmp_path, capsys):
    run = tmp_path / "run"
    said = _refusal(capsys, "pretrain", str(folder), "--backbone", "resnet9", "--image-size", str(SIZE), "--method",
                    "simclr", "--budget", "1s", "--batch-size", "8", "--name", "tiny", "--out", str(run))
    assert "too short for one epoch" in said
    minimum = re.search(r"--budget (\d+)(s|m) or more", said)
    assert minimum and int(minimum.group(1)) * (60 if minimum.group(2) == "m" else 1) > 1
    _nothing_written(run, home)


@pytest.mark.parametrize("method,backbone,says", [
    ("mlm", None, "holds image data"),            # the default text encoder, an image pool
    ("simclr", "all-MiniLM-L6-v2", "text backbone"),
])
def test_a_method_of_the_wrong_modality_is_refused(method, backbone, says, folder, home, tmp_path, capsys):
    run = tmp_path / "run"
    extra = ["--backbone", backbone] if backbone else []
    assert says in _refusal(capsys, "pretrain", str(folder), "--method", method, *extra, "--name", "wrong",
                            "--out", str(run))
    _nothing_written(run, home)


@pytest.mark.parametrize("name,says", [(None, "--name is needed"), ("bad/name", "cannot name"),
                                       ("taken", "already has 'taken'"), ("resnet9", "already a registered")])
def test_missing_invalid_or_taken_names_are_refused_before_training(name, says, folder, home, tmp_path, capsys):
    (home / "taken").mkdir(parents=True)
    run = tmp_path / "run"
    named = ["--name", name] if name else []
    assert says in _refusal(capsys, "pretrain", str(folder), "--epochs", "1", *named, "--out", str(run))
    assert not run.exists() and sorted(p.name for p in home.iterdir()) == ["taken"]


def test_mlm_continues_a_text_encoder_that_a_text_fit_then_uses(home, tmp_path):
    from transformers import BertModel

    from headstart.api import pretrain
    from headstart.pipeline import fit
    from headstart.config import FitConfig

    bert = make_tiny_bert(tmp_path / "tiny-bert")
    pool = tmp_path / "texts.txt"
    pool.write_text("\n".join(make_texts(n_per_class=16).texts) + "\n")
    summary = pretrain(str(pool), name="topics-mlm", method="mlm", backbone=bert, epochs=2, batch_size=8,
                       out=str(tmp_path / "mlm"))
    assert summary["entry"]["modality"] == "text" and not summary["labels_set_aside"]
    assert np.isfinite(summary["final_loss"]) and summary["steps"] == 2 * (48 // 8)
    original = BertModel.from_pretrained(bert).state_dict()
    trained = load_file(str(home / "topics-mlm" / "backbone.safetensors"))
    assert not torch.equal(trained["model.encoder.layer.0.attention.self.query.weight"],
                           original["encoder.layer.0.attention.self.query.weight"])
    result = fit(FitConfig(data="topics", backbone="topics-mlm", strategy="probe", explain_examples=0,
                           extract_engine="torch", out=str(tmp_path / "probe")), data=make_texts(seed=5))
    assert result.summary["weights"] == "zoo:topics-mlm"



class _SleepyLoss(torch.nn.Module):
    """A model without labels for the loop: forward(batch) -> its loss, taking `seconds` per step."""

    def __init__(self, seconds: float = 0.0, value: float = 1.0):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))
        self.seconds, self.value, self.after = seconds, value, []

    def forward(self, batch):
        time.sleep(self.seconds)
        return self.value * (self.w * batch.float().mean()) ** 2

    def after_step(self, step: int, total: int) -> None:
        self.after.append((step, total))


def _unlabelled_plan(model, **settings):
    from headstart.train.loop import TrainPlan

    return TrainPlan(**{"epochs": 3, "batch_size": 4, "seed": 0, "phase": "pretrain", "labelled": False,
                        "after_step": model.after_step, "loss_name": "pre-training", "diverged_hint": "lower --lr",
                        **settings})


def test_the_loop_without_labels_stops_inside_its_budget_and_logs_no_partial_epoch(tmp_path):
    from headstart.train.loop import train_model

    model = _SleepyLoss(seconds=0.2)  # 10 steps an epoch: 2 s, and the loop's start-up on a loaded machine
    recorder = Recorder(tmp_path, "pretrain:test")
    result = train_model(model, [{"params": list(model.parameters()), "lr": 0.01}], torch.arange(40.0), None,
                         _unlabelled_plan(model, budget_seconds=3.0), recorder)
    rows = read_metrics(tmp_path)
    steps = [r for r in rows if r["split"] == "train"]
    assert result.stop_reason == "budget" and result.best_val_accuracy is None
    assert 10 < len(steps) < 15 and rows[-1]["wall_seconds"] <= 3.0  # stopped inside epoch 2, inside the budget
    assert [r["epoch"] for r in rows if r["split"] == "epoch"] == [1]  # epoch 2's part has no mean
    assert [s for s, _ in model.after] == [r["step"] for r in steps]  # after every update, in order


def test_a_diverging_pretraining_stops_with_its_own_words(tmp_path):
    from headstart.errors import HeadstartError
    from headstart.train.loop import train_model

    model = _SleepyLoss(value=float("nan"))
    with pytest.raises(HeadstartError, match="the pre-training loss became nan at epoch 1, step 1") as err:
        train_model(model, [{"params": list(model.parameters()), "lr": 0.01}], torch.arange(40.0), None,
                    _unlabelled_plan(model), Recorder(tmp_path, "pretrain:test"))
    assert "lower --lr" in err.value.hint and "--optimizer" not in err.value.hint
