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


def _seen_from_another_process(run_dir: Path) -> str:
    code = f"from headstart import run_lock; print(run_lock.holder({str(run_dir)!r}))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout.strip()


def test_a_command_called_in_process_lets_its_run_go_when_it_returns_or_fails(folder, tmp_path):
    """The Python API (a notebook) releases a run once the call ends: a finished fit is readable by
    `headstart predict` in a shell while the notebook lives, and a refused compare holds nothing."""
    from headstart import api

    result = api.fit(data=str(folder), strategy="probe", image_size=32, explain_examples=0, out=str(tmp_path / "fit"))
    assert _seen_from_another_process(result.run_dir) == "None"
    assert run_lock.holder(result.run_dir) is None

    interrupted = tmp_path / "cmp"
    (interrupted / "arms").mkdir(parents=True)  # a comparison killed among its arms: refused without --resume
    with pytest.raises(HeadstartError, match="interrupted comparison"):
        api.compare(data=str(folder), arms=["probe"], target=0.5, out=str(interrupted))
    assert _seen_from_another_process(interrupted) == "None"
    with run_lock.command_scope():  # nesting: a run held before the scope is still held after it
        run_lock.hold(tmp_path / "outer", "fit")
        with run_lock.command_scope():
            run_lock.hold(tmp_path / "inner", "fit")
        assert _seen_from_another_process(tmp_path / "inner") == "None"
        assert _seen_from_another_process(tmp_path / "outer").startswith(f"PID {os.getpid()}")
    assert _seen_from_another_process(tmp_path / "outer") == "None"
