"""A run is owned while it runs: an advisory lock (`flock`) on RUN/.lock.

`fit`, `compare`, `tune`, `pretrain` and `--resume` hold it from the moment the run folder is
known, for as long as they write; the kernel drops it when the process dies, however it dies,
so a lock left by a dead process never blocks (the file stays, its PID stale and ignored). A
second start on the same --out is refused at once, naming the process that holds it; a
command that only reads a run asks `holder()` (Run.require_finished does) and refuses a run
still being written. Under torchrun only the main process takes it. The file is never deleted
while held (a waiter could lock a deleted file), only emptied when its owner lets it go.
"""
from __future__ import annotations

import fcntl
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import HeadstartError
from .files import writing

LOCK = ".lock"


@dataclass
class _Held:
    fd: int
    created: bool   # this process made the run folder (a refusal before any write removes it again)
    depth: int = 1  # nested holds of one run in one process (a resume inside a command that holds it)


_held: dict[Path, _Held] = {}


def hold(run_dir: str | os.PathLike, command: str) -> None:
    """Own `run_dir` (made if missing) until `release` or the process's end; refuse if another
    live process owns it. `command`: what the lock file says holds it ("fit", "tune")."""
    key = _key(run_dir)
    if (held := _still_held(key)) is not None:
        held.depth += 1
        return
    with writing(key / LOCK, "the run's lock"):
        created = not key.exists()
        key.mkdir(parents=True, exist_ok=True)
        fd = os.open(key / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _said(fd)
        os.close(fd)
        pid = holder.split()[1]
        raise HeadstartError(f"{key} is in use: {holder} is writing it, so this {command} was not started",
                             hint=f"wait for it to end{f' (or stop it: kill {pid})' if pid.isdigit() else ''}, "
                                  f"or give another --out") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} headstart {command}\n".encode())
    _held[key] = _Held(fd, created)
    if not created:
        _sweep_dead_writes(key)


# Where a run's own writes go (files.atomic_path/atomic_dir put their temporary beside the target):
# the folder and its checkpoints. Not deeper: a nested folder may be another run with its own lock.
_WRITTEN_IN = (".", "checkpoint")


def _sweep_dead_writes(key: Path) -> None:
    """Remove what a writer killed mid-write (kill -9, a power cut) left aside: files.py's
    `.NAME.XXXX.tmp`. Only the lock's owner writes here, and it has written nothing yet."""
    for tmp in (t for where in _WRITTEN_IN for t in (key / where).glob(".*.tmp")):
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def release(run_dir: str | os.PathLike) -> None:
    """Let `run_dir` go (the last of nested holds). A folder this process made that holds
    nothing but the lock (a start refused before any write) is removed: nothing half-made."""
    key = _key(run_dir)
    held = _held.get(key)
    if held is None:
        return
    held.depth -= 1
    if held.depth:
        return
    del _held[key]
    try:
        if held.created and [p.name for p in key.iterdir()] == [LOCK]:
            shutil.rmtree(key, ignore_errors=True)
        else:
            os.ftruncate(held.fd, 0)
    except OSError:
        pass  # the lock goes with the descriptor whatever happens to the file
    finally:
        os.close(held.fd)


@contextmanager
def owning(run_dir: str | os.PathLike, command: str) -> Iterator[None]:
    """Hold `run_dir` for the block: a command whose run is one function (compare, tune, pretrain)."""
    hold(run_dir, command)
    try:
        yield
    finally:
        release(run_dir)


@contextmanager
def command_scope() -> Iterator[None]:
    """Let go, when the block ends however it ends, of every run the block took: a command called
    in-process (the Python API, a notebook, the estimator) releases its runs when it returns or
    fails, as a process does when it exits. Without this a finished fit stayed "being written by
    PID N" to every other process (`headstart predict RUN` in a shell refused it) for as long as
    the notebook lived."""
    before = set(_held)
    try:
        yield
    finally:
        for key in [k for k in _held if k not in before]:
            while key in _held:
                release(key)


def holder(run_dir: str | os.PathLike) -> str | None:
    """Who is writing `run_dir` now ("PID 4242 (headstart fit)"), or None: no lock, a stale one
    (its process is dead), or this very process (it may read what it writes)."""
    key = _key(run_dir)
    if _still_held(key) is not None:
        return None
    try:
        fd = os.open(key / LOCK, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _said(fd)
        except OSError:
            return None  # a file system without flock: nothing to learn
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _still_held(key: Path) -> _Held | None:
    """This process's hold on `key`, if the lock file it holds is still the one at that path (a
    folder deleted and made again under a held run, as tune's retried trials are, is new)."""
    held = _held.get(key)
    if held is None:
        return None
    try:
        same = os.path.samestat(os.fstat(held.fd), os.stat(key / LOCK))
    except OSError:
        same = False
    if not same:
        del _held[key]
        os.close(held.fd)
        return None
    return held


def _said(fd: int) -> str:
    """The holder as its lock file says it: "PID 4242 (headstart fit)"."""
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    pid, _, command = text.partition(" ")
    return f"PID {pid} ({command})" if pid.isdigit() else "PID ? (another process)"


def _key(run_dir: str | os.PathLike) -> Path:
    return Path(os.path.abspath(run_dir))
