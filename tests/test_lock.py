"""A run is owned while it runs (run_lock): a second start on one --out is refused with the
holder's PID, a lock left by a dead process never blocks, and a reader refuses a run that a live
process is still writing."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from headstart import run_lock
from headstart.cli import main
from headstart.errors import HeadstartError
from headstart.run import Run

from conftest import make_blobs, write_image_folder

SLOW = ["--strategy", "scratch", "--scratch-model", "resnet9", "--epochs", "30", "--patience", "30",
        "--image-size", "32", "--batch-size", "16", "--explain-examples", "0"]
ENV = {**os.environ, "HEADSTART_QUIET": "1", "HEADSTART_SKIP": "deploy,report"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("imgs") / "data", make_blobs(n_per_class=20))


def _cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "headstart.cli", *args], env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def _wait_for(check, timeout=180.0):
    ends = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < ends, "timed out"
        time.sleep(0.2)


def _holding(folder: Path, *, then: str = "time.sleep(600)") -> subprocess.Popen:
    """Another process that owns `folder` (as a fit would), until it is killed."""
    code = textwrap.dedent(f"""
        import sys, time
        from headstart import run_lock
        run_lock.hold({str(folder)!r}, "fit")
        print("held", flush=True)
        {then}
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_fit_on_the_same_out_is_refused_with_the_pid_and_the_first_run_stays_intact(folder, tmp_path,
                                                                                               capsys):
    out = tmp_path / "same"
    first = _cli("fit", str(folder), "--out", str(out), *SLOW[:-6], "--epochs", "500", "--patience", "500", *SLOW[-6:])  # runs until stopped
    try:
        _wait_for(lambda: (out / "checkpoint").is_dir() or first.poll() is not None)  # training, owning it
        # the second in this process: the lock is between processes, and a process of its own would add
        # only its start-up
        capsys.readouterr()
        second = main(["fit", str(folder), "--out", str(out), *SLOW])
        refused = capsys.readouterr().err
        assert first.poll() is None, "the first fit must still be running"
        assert second == 2, refused
        assert f"PID {first.pid} (headstart fit)" in refused and "is in use" in refused
        assert "Traceback" not in refused and len(refused.strip().splitlines()) == 2  # message, hint
        assert "epochs: 500" in (out / "config.yaml").read_text()  # the first's own run, untouched
    finally:
        first.send_signal(signal.SIGTERM)  # it stops at a safe point, resumable
        first.communicate(timeout=300)
    assert first.returncode == 128 + signal.SIGTERM
    assert run_lock.holder(out) is None  # released by its end


def test_a_lock_left_by_a_dead_process_never_blocks(tmp_path):
    run_dir = tmp_path / "run"
    dead = _holding(run_dir, then="import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    dead.wait(timeout=60)
    assert dead.returncode == -signal.SIGKILL
    assert (run_dir / run_lock.LOCK).read_text().startswith(f"{dead.pid} headstart fit")  # the stale record
    assert run_lock.holder(run_dir) is None
    run_lock.hold(run_dir, "fit")  # taken at once, over the stale file
    try:
        assert (run_dir / run_lock.LOCK).read_text().startswith(f"{os.getpid()} headstart fit")
    finally:
        run_lock.release(run_dir)


def test_a_stale_lock_file_does_not_stop_a_fit(folder, tmp_path):
    out = tmp_path / "stale"
    out.mkdir()
    (out / run_lock.LOCK).write_text("999999 headstart fit\n")  # written by a process long gone
    assert main(["fit", str(folder), "--out", str(out), "--strategy", "probe", "--image-size", "32",
                 "--explain-examples", "0"]) == 0
    assert Run.open(out).require_finished().finished


def test_a_reader_refuses_a_run_a_live_process_is_writing_and_says_which(tmp_path):
    run_dir = tmp_path / "live"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("data: somewhere\n")  # begun, not finished
    writer = _holding(run_dir)
    try:
        with pytest.raises(HeadstartError, match=f"still being written: PID {writer.pid} \\(headstart fit\\)"):
            Run.open(run_dir).require_finished()
        with pytest.raises(HeadstartError, match=f"PID {writer.pid}"):
            run_lock.hold(run_dir, "fit")  # nor can this process start writing it
    finally:
        writer.kill()
        writer.wait(timeout=60)
    with pytest.raises(HeadstartError, match="unfinished run"):  # its writer died: interrupted, resumable
        Run.open(run_dir).require_finished()


def test_a_start_refused_before_any_write_leaves_no_folder(tmp_path):
    out = tmp_path / "never"
    with pytest.raises(RuntimeError):
        with run_lock.owning(out, "pretrain"):
            assert (out / run_lock.LOCK).is_file() and run_lock.holder(out) is None  # its own: readable
            raise RuntimeError("refused")
    assert not out.exists()
