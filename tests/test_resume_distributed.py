"""A SIGKILLed run (a real subprocess) resumed with --resume. What needs no process of its own (the
resume, the reference) runs in this one: each process pays its start-up."""
import os
import subprocess
import sys

import pytest

from headstart.cli import main
from headstart.records import read_metrics

from conftest import make_blobs, write_image_folder

@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("imgs") / "data", make_blobs(n_per_class=20))


def _fit(folder, out, *extra, env=None):
    argv = [sys.executable, "-m", "headstart.cli", "fit", str(folder), "--out", str(out),
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


def test_resume_without_a_run_is_a_clear_error(folder, tmp_path, capsys):
    assert _fit_here(folder, tmp_path / "nothing", "--resume") == 2  # in this process: no start-up to pay
    said = capsys.readouterr().err
    assert "nothing to resume" in said and "Traceback" not in said


# Two processes under torchrun against one (the same global batches, so the same validation losses
# within 1e-3 and the same test accuracy) is tests/test_multinode.py's first test, which also checks
# that each rank decoded only its share of the files.
