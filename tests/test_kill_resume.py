"""kill -9 at random moments of real `headstart` subprocesses (fit, pretrain, compare), then what a
user does next (--resume, or compare again; run in this process, since only what is killed needs
one of its own): the run completes, no temporary file is left behind, and a resumed run's figures
are those of a run never killed. And SIGTERM: a clean stop (exit 143,
one line on stderr) that --resume continues.

The kill moments are drawn from seeded RNGs over the window in which the run writes its files
(from its config.yaml to its end, as an uninterrupted run of the same command timed it), so each
seed lands somewhere else: in an epoch, in a checkpoint's write, in the closing writes.
"""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from safetensors.torch import load_file

from headstart.records import read_json

from conftest import make_blobs, write_image_folder

SEEDS = (0, 1)  # two kills per command: the file stays near 3 minutes on 2 cores
# four epochs: four checkpoints to land in (each epoch costs a process ~1.5 s of CPU; the window is what matters)
FIT = ["--strategy", "scratch", "--scratch-model", "resnet9", "--epochs", "4", "--patience", "20",
       "--image-size", "32", "--batch-size", "16", "--explain-examples", "0"]
# seeds whose draws (16% and 64% of the window) land in its epochs: 100 and 101 drew 83% and 94%, and a
# run that fast on a quiet machine had ended before the kill came
PRETRAIN_SEEDS = (102, 105)
PRETRAIN_SIZE = 16  # px: as tests/test_pretrain.py, resnet9 takes a step in a blink
COMPARE = ["--arms", "probe", "--seeds", "2", "--target", "0.5", "--backbone", "tf_efficientnet_lite0",
           "--image-size", "32", "--explain-examples", "0"]


def _env() -> dict:
    # read at call time: conftest's fixtures set this test's private cache and zoo in os.environ
    return {**os.environ, "HEADSTART_QUIET": "1", "HEADSTART_SKIP": "deploy,report"}


def _start(*argv) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "headstart", *argv], env=_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _run(*argv) -> subprocess.CompletedProcess:
    """Run a command to its end in this process: only the runs a test kills need an interpreter of
    their own, and each start costs ~5 s of imports on 2 cores. Same environment as _start."""
    from headstart.cli import main

    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ, _env()), redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return subprocess.CompletedProcess(list(argv), code, out.getvalue(), err.getvalue())


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240.0) -> float:
    """Wait until `path` exists (or the process ended); the moment it was seen."""
    ends = time.monotonic() + timeout
    while not path.exists() and proc.poll() is None:
        assert time.monotonic() < ends, f"{path} never appeared"
        time.sleep(0.01)
    return time.monotonic()


def _timed(argv: list[str], anchor: Path, until: Path | None = None) -> float:
    """Run to its end uninterrupted: the seconds from `anchor` appearing to the end, or to `until`
    appearing (its window)."""
    proc = _start(*argv)
    seen = _wait_for(anchor, proc)
    ended = _wait_for(until, proc) if until else None
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return (ended or time.monotonic()) - seen


def _killed(argv: list[str], anchor: Path, delay: float) -> subprocess.Popen:
    """Start it, wait for `anchor`, then SIGKILL it `delay` seconds later (if it is still running)."""
    proc = _start(*argv)
    _wait_for(anchor, proc)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    return proc


def _leftovers(folder: Path) -> list[Path]:
    """What an interrupted atomic write leaves: files.py's `.NAME.XXXX.tmp`, file or folder."""
    return sorted(folder.rglob("*.tmp"))


def _weights(run: Path) -> dict:
    return load_file(str(run / "model.safetensors"))


def _same_weights(a: dict, b: dict) -> bool:
    import torch
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _test_predictions(run: Path) -> np.ndarray:
    """The run's model's predicted classes on its own test split, recomputed from the saved files."""
    import headstart.pipeline  # noqa: F401  (registers the run-data reloader)
    from headstart.run import Run

    opened = Run.open(run).require_finished()
    model = opened.model()
    return model.logits(model.prepare(opened.reload_data().splits.test)).argmax(1).numpy()


def _resumed_or_restarted(argv: list[str], run: Path) -> subprocess.CompletedProcess:
    """What the user does after a kill: --resume; a run killed before it wrote its config has
    nothing to resume (said in one paragraph), and starting it again on the same --out works."""
    resumed = _run(*argv, "--resume")
    if resumed.returncode == 2 and "nothing to resume" in resumed.stderr:
        assert "Traceback" not in resumed.stderr
        return _run(*argv)
    return resumed


# -- fit --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("imgs") / "data", make_blobs(n_per_class=20))


@pytest.fixture(scope="module")
def straight_fit(folder, tmp_path_factory):
    """An uninterrupted fit: the figures to match, and the window in which it writes."""
    run = tmp_path_factory.mktemp("straight") / "run"
    window = _timed(["fit", str(folder), "--out", str(run), *FIT], run / "config.yaml")
    return run, window


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_fit_killed_at_a_random_moment_resumes_to_the_uninterrupted_runs_figures(seed, folder, straight_fit,
                                                                                  tmp_path):
    straight, window = straight_fit
    run = tmp_path / "run"
    argv = ["fit", str(folder), "--out", str(run), *FIT]
    delay = float(np.random.default_rng(seed).uniform(0, window))
    killed = _killed(argv, run / "config.yaml", delay)
    assert killed.returncode in (-signal.SIGKILL, 0), killed.stderr  # 0: it ended before the kill came

    done = _resumed_or_restarted(argv, run)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert _leftovers(run) == []
    ours, theirs = read_json(run / "summary.json"), read_json(straight / "summary.json")
    # the resumed loop restores weights, optimizer, schedule, data order and RNG at its last
    # checkpoint: on CPU it then computes what the uninterrupted run computed, bit for bit
    assert ours["test_accuracy"] == theirs["test_accuracy"]
    assert ours["sizes"] == theirs["sizes"] and ours["confusion_matrix"] == theirs["confusion_matrix"]
    assert _same_weights(_weights(run), _weights(straight))
    assert np.array_equal(_test_predictions(run), _test_predictions(straight))
    print(f"fit seed {seed}: killed {delay:.2f}s into its window of {window:.2f}s, exit {killed.returncode}")


@pytest.mark.slow
def test_fit_killed_while_a_checkpoint_is_being_written_leaves_no_temporary_file_after_resume(
        folder, straight_fit, tmp_path):
    """The worst moment: a write in flight (its `.scratch.pt.XXXX.tmp` aside, not yet renamed)."""
    straight, _ = straight_fit
    run = tmp_path / "run"
    argv = ["fit", str(folder), "--out", str(run), *FIT]
    proc = _start(*argv)
    ends = time.monotonic() + 240
    caught = []
    while proc.poll() is None and time.monotonic() < ends and not caught:
        if _leftovers(run):
            # stop it where it is, then look again: the write may have been renamed between the two
            # (an idle machine renames within a millisecond); if so, let it go on to its next write
            proc.send_signal(signal.SIGSTOP)
            caught = _leftovers(run)
            if not caught:
                proc.send_signal(signal.SIGCONT)
        else:
            time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    if not caught or proc.returncode != -signal.SIGKILL:
        pytest.skip("no write was caught in flight on this machine")
    assert _leftovers(run), "a SIGKILL in a write leaves its temporary file (only the next owner can remove it)"

    done = _resumed_or_restarted(argv, run)
    assert done.returncode == 0, done.stderr
    assert _leftovers(run) == [], "the resumed run must sweep what the dead writer left aside"
    assert _same_weights(_weights(run), _weights(straight))
    assert read_json(run / "summary.json")["test_accuracy"] == read_json(straight / "summary.json")["test_accuracy"]


@pytest.mark.slow
def test_sigterm_stops_a_fit_cleanly_with_a_resume_hint_and_resume_completes_it(folder, straight_fit, tmp_path):
    straight, _ = straight_fit
    run = tmp_path / "run"
    argv = ["fit", str(folder), "--out", str(run), *FIT]
    proc = _start(*argv)
    _wait_for(run / "checkpoint", proc)  # training: an epoch's checkpoint is written
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM == 143, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--resume" in lines[0] and "Traceback" not in err, err
    assert _leftovers(run) == [] and not (run / "summary.json").exists()

    done = _run(*argv, "--resume")
    assert done.returncode == 0, done.stderr
    assert _leftovers(run) == []
    assert read_json(run / "summary.json")["test_accuracy"] == read_json(straight / "summary.json")["test_accuracy"]
    assert _same_weights(_weights(run), _weights(straight))


# -- pretrain ---------------------------------------------------------------------------------------

def _pretrain_argv(pool: Path, name: str, out: Path) -> list[str]:
    return ["pretrain", str(pool), "--method", "simclr", "--backbone", "resnet9", "--image-size",
            str(PRETRAIN_SIZE), "--batch-size", "16", "--epochs", "4", "--name", name, "--out", str(out)]


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("pool") / "colours",
                              make_blobs(n_per_class=16, size=PRETRAIN_SIZE))


@pytest.mark.slow
def test_pretrain_killed_at_random_moments_resumes_to_the_uninterrupted_runs_weights(pool, tmp_path):
    straight = tmp_path / "straight"
    # its training, from config.yaml to summary.json (its report and zoo entry take longer still)
    window = _timed(_pretrain_argv(pool, "straight", straight), straight / "config.yaml", straight / "summary.json")
    reference = _weights(straight)
    for seed in PRETRAIN_SEEDS:
        run = tmp_path / f"run{seed}"
        argv = _pretrain_argv(pool, f"resumed{seed}", run)
        delay = float(np.random.default_rng(seed).uniform(0, window))
        killed = _killed(argv, run / "config.yaml", delay)
        assert killed.returncode in (-signal.SIGKILL, 0), killed.stderr

        finished = (run / "summary.json").exists()  # killed in its closing steps (report, zoo entry)
        done = _resumed_or_restarted(argv, run)
        if finished:  # nothing left to train: refused in one paragraph that says how to register it
            assert done.returncode == 2 and "is a finished pre-training" in done.stderr, done.stderr
            assert "zoo add" in done.stderr
        else:
            assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        assert _leftovers(run) == []
        ours, theirs = read_json(run / "summary.json"), read_json(straight / "summary.json")
        assert ours["epochs"] == theirs["epochs"] == 4
        assert ours["epoch_losses"] == theirs["epoch_losses"]
        assert _same_weights(_weights(run), reference)
        print(f"pretrain seed {seed}: killed {delay:.2f}s into {window:.2f}s, exit {killed.returncode}")


# -- compare ----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_compare_killed_among_its_arms_resumes_to_the_figures_of_one_never_killed(folder, tmp_path):
    """Started again without --resume, a comparison killed among its arms is refused in one paragraph
    that offers --resume, its folder untouched; with --resume it completes: finished arms are kept,
    the arm in progress starts over, and every arm's test figures equal an uninterrupted run's."""
    straight = tmp_path / "straight"
    assert _run("compare", str(folder), "--out", str(straight), *COMPARE).returncode == 0
    run = tmp_path / "cmp"
    argv = ["compare", str(folder), "--out", str(run), *COMPARE]
    # somewhere in its arms: after the first arm's folder appears, within a second and a half (an idle
    # machine finishes the whole tiny comparison in a few seconds)
    killed = _killed(argv, run / "arms", float(np.random.default_rng(7).uniform(0, 1.5)))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (run / "comparison.json").exists()
    before = sorted(p.relative_to(run) for p in run.rglob("*"))

    refusal = _run(*argv)
    assert refusal.returncode == 2
    refused = refusal.stderr
    assert "Traceback" not in refused and len(refused.strip().splitlines()) == 2, refused  # message, hint
    assert "interrupted comparison" in refused and "--resume" in refused
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before  # nothing of the killed one touched

    resumed = _run(*argv, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    ours, theirs = read_json(run / "comparison.json"), read_json(straight / "comparison.json")
    assert [a["name"] for a in ours["arms"]] == [a["name"] for a in theirs["arms"]]
    for arm in ("probe", "probe-seed1"):
        assert read_json(run / "arms" / arm / "summary.json")["test_accuracy"] == \
            read_json(straight / "arms" / arm / "summary.json")["test_accuracy"]
    assert not list(run.rglob("*.tmp"))


@pytest.mark.slow
def test_compare_resume_keeps_a_finished_arm_and_sweeps_what_its_killed_writer_left(folder, tmp_path):
    """The kill that lands after an arm's summary but inside its manifest's update: --resume keeps
    the arm (no second training) and removes the temporary the dead writer left beside it."""
    run = tmp_path / "cmp"
    argv = ["compare", str(folder), "--out", str(run), *COMPARE]
    assert _run(*argv).returncode == 0
    (run / "comparison.json").unlink()  # as if killed before the comparison's own record
    (run / "manifest.json").unlink(missing_ok=True)
    stale = run / "arms" / "probe" / ".manifest.json.dead0001.tmp"
    stale.write_text("{")
    trained = (run / "arms" / "probe" / "summary.json").stat().st_mtime_ns

    resumed = _run(*argv, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert (run / "comparison.json").exists() and not stale.exists()
    assert (run / "arms" / "probe" / "summary.json").stat().st_mtime_ns == trained  # kept, not trained again
