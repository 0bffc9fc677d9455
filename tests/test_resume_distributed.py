"""A SIGKILLed run (a real subprocess) resumed with --resume, and a 2-process torchrun. What needs
no process of its own (the resume, the references) runs in this one: each process pays its start-up."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from headstart.cli import main
from headstart.records import read_json, read_metrics

from conftest import make_blobs, write_image_folder

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("imgs") / "data", make_blobs(n_per_class=20))


def _fit(folder, out, *extra, env=None, launcher=None):
    argv = [*(launcher or [sys.executable, "-m", "headstart.cli"]), "fit", str(folder), "--out", str(out),
            "--image-size", "32", "--batch-size", "16", *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HEADSTART_QUIET": "1", **(env or {})})


def _fit_here(folder, out, *extra) -> int:
    return main(["-q", "fit", str(folder), "--out", str(out), "--image-size", "32", "--batch-size", "16", *extra])


def _val_accuracies(run):
    return [(r["epoch"], round(r["accuracy"], 6)) for r in read_metrics(run) if r["split"] == "val"]


def test_a_killed_run_resumes_where_its_last_checkpoint_left_off(folder, tmp_path):
    args = ["--strategy", "scratch", "--scratch-model", "resnet9", "--epochs", "4", "--patience", "10"]
    killed = _fit(folder, tmp_path / "run", *args, env={"HEADSTART_KILL_AFTER": "scratch:2"})
    assert killed.returncode == -9, killed.stderr  # really SIGKILLed right after epoch 2's checkpoint
    assert (tmp_path / "run" / "checkpoint" / "scratch.pt").exists()
    assert not (tmp_path / "run" / "summary.json").exists()

    assert _fit_here(folder, tmp_path / "run", "--resume") == 0
    epochs = [e for e, _ in _val_accuracies(tmp_path / "run")]
    assert epochs == [1.0, 2.0, 3.0, 4.0], "resume must continue at epoch 3, not restart or repeat"

    # The schedule, optimizer state, data order and RNG are restored: the resumed run's
    # curve is the uninterrupted run's curve.
    assert _fit_here(folder, tmp_path / "straight", *args) == 0
    assert _val_accuracies(tmp_path / "run") == _val_accuracies(tmp_path / "straight")


def test_resume_without_a_run_is_a_clear_error(folder, tmp_path):
    done = _fit(folder, tmp_path / "nothing", "--resume")
    assert done.returncode == 2
    assert "nothing to resume" in done.stderr and "Traceback" not in done.stderr


def test_two_process_torchrun_matches_one_process(folder, tmp_path):
    # A backbone without BatchNorm (a random-init ViT): with BatchNorm each rank normalises
    # its half batch with its own statistics, which no data-parallel trainer avoids on CPU.
    args = ["--strategy", "finetune", "--epochs", "2", "--augment", "none",
            "--backbone", "vit_tiny_patch16_224", "--no-pretrained"]
    assert _fit_here(folder, tmp_path / "one", *args) == 0
    double = _fit(folder, tmp_path / "two", *args,
                  launcher=[str(BIN / "torchrun"), "--nproc_per_node", "2", "-m", "headstart.cli"])
    assert double.returncode == 0, double.stderr
    one, two = read_json(tmp_path / "one" / "summary.json"), read_json(tmp_path / "two" / "summary.json")
    assert two["processes"] == 2 and one["processes"] == 1
    # split_batches + gradient averaging: the same steps on the same samples, so the same
    # validation losses after every epoch, up to float summation order (the L-BFGS head fit
    # runs with 1 thread per rank here and 2 threads alone, so its solution differs at 1e-5).
    # (the head phase differs only in that the second run finds the first one's cached features)
    losses = [[r["loss"] for r in read_metrics(tmp_path / run) if r["split"] == "val" and r["phase"] == "finetune"]
              for run in ("one", "two")]
    assert len(losses[0]) == len(losses[1]) == 2
    assert losses[1] == pytest.approx(losses[0], rel=1e-3)  # thread counts differ: 1 per rank vs 2
    assert two["test_accuracy"] == pytest.approx(one["test_accuracy"])
