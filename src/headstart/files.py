"""Every file headstart writes goes through here: written aside, flushed, then renamed into place.

The rename is atomic, so a killed run, a full disk or a parallel run never leaves a
half-written config, metrics file, model or cache entry under its final name; and the file is
flushed to the disk (fsync) before the rename and its folder after it, so a power cut cannot
leave an empty file under a final name either. A write the system refuses (a full disk, a
read-only folder, a quota, a path too long) is one `WriteFailed` naming the path, what was
being written, the space it needed and the space left: never a traceback from the writer.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import yaml

from .errors import HeadstartError

# What the system can refuse a write for, in the words a user acts on, and what to do about it.
_REFUSALS = {
    errno.ENOSPC: ("there is no space left on the disk", "free some space (or give an --out on another disk)"),
    errno.EDQUOT: ("the disk quota is exceeded", "free some space within your quota (or give an --out elsewhere)"),
    errno.EFBIG: ("the file is larger than this file system allows", "give an --out on another file system"),
    errno.EROFS: ("the file system is read-only", "give an --out you can write to"),
    errno.EACCES: ("permission is denied", "give an --out you can write to"),
    errno.EPERM: ("the operation is not permitted", "give an --out you can write to"),
    errno.ENAMETOOLONG: ("the path is too long", "give a shorter --out"),
}
_SPACE_ERRORS = (errno.ENOSPC, errno.EDQUOT)
_NEARLY_FULL = 1 << 20  # bytes: a writer that fails with no errno on a disk this full ran out of space

# What a file is, by name, for the message (a caller may say it better with `what=`).
_WHAT = {"model.safetensors": "the model", "model.json": "the model's record", "summary.json": "the run's summary",
         "config.yaml": "the run's settings", "splits.json": "the run's split", "metrics.jsonl": "the run's metrics",
         "comparison.json": "the comparison", "report.html": "the report", "tune.json": "the study's record"}
_WHAT_BY_SUFFIX = {".pt": "a checkpoint", ".png": "a figure", ".onnx": "an exported model", ".npz": "a cache file",
                   ".npy": "a cache file", ".json": "a record", ".yaml": "a record", ".csv": "a table"}


class WriteFailed(HeadstartError):
    """The system refused a write. `errno` says why; a cache catches it and only warns."""

    def __init__(self, message: str, hint: str | None, code: int | None):
        super().__init__(message, hint)
        self.errno = code


@contextmanager
def atomic_path(path: str | os.PathLike, what: str | None = None, needed: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is flushed to disk and replaces `path`,
    on error it is removed. For writers that want a file name rather than bytes (safetensors,
    np.savez). `what`: the words a failed write uses for the file ("the model"); `needed`: its
    size, when the caller knows it."""
    path = Path(path)
    with writing(path, what):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    try:
        with writing(path, what, Path(tmp), needed):
            yield Path(tmp)
            _flush_file(Path(tmp))
            os.replace(tmp, path)
            _flush_folder(path.parent)
    finally:
        Path(tmp).unlink(missing_ok=True)  # already gone after a successful rename


@contextmanager
def atomic_dir(path: str | os.PathLike, what: str | None = None) -> Iterator[Path]:
    """Yield an empty temporary folder beside `path`; on success its files are flushed and it
    replaces `path` whole (for writers that fill a folder, such as a tokenizer's save_pretrained)."""
    path = Path(path)
    with writing(path, what):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        with writing(path, what, tmp):
            yield tmp
            for file in sorted(p for p in tmp.rglob("*") if p.is_file()):
                _flush_file(file)
            _flush_folder(tmp)
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
            _flush_folder(path.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, what: str | None = None) -> None:
    with atomic_path(path, what, len(data)) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str, what: str | None = None) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), what)


def append_text(path: str | os.PathLike, text: str, what: str | None = None) -> None:
    """Add `text` at the end of `path` (metrics.jsonl, one row at a time), flushed to disk. A
    row cut short by a crash is skipped by its reader; a refused write is a WriteFailed."""
    path = Path(path)
    data = text.encode("utf-8")
    with writing(path, what, needed=len(data)):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as f:
            f.write(data)
            f.flush()
            _sync(f.fileno())


def write_json(path: str | os.PathLike, obj: Any, what: str | None = None) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=json_default) + "\n", what)


def write_yaml(path: str | os.PathLike, obj: Any, what: str | None = None) -> None:
    atomic_write_text(path, yaml.safe_dump(obj, sort_keys=False), what)


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def json_default(o: Any) -> Any:
    # numpy scalars and arrays show up in metrics; keep JSON plain.
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


# ----------------------------------------------------------------------------- flushing

def _sync(fd: int) -> None:
    """Flush one open file or folder to the disk: the one low-level call every write ends with
    (where a full disk may first be reported; the fault-injection tests make it fail)."""
    os.fsync(fd)


def _flush_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        _sync(fd)
    finally:
        os.close(fd)


def _flush_folder(folder: Path) -> None:
    """Make a rename in `folder` durable. Some file systems cannot sync a folder: then the
    rename is as durable as that file system makes it, and that is no write failure."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        _sync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- refusals

@contextmanager
def writing(path: Path, what: str | None, written: Path | None = None, needed: int | None = None):
    """Inside, a write the system refuses is a WriteFailed about `path` (every writer here uses
    it; so may a module that writes a file of its own, as run_lock does). `written`: the
    temporary file so far (how much it needed at least); `needed`: the exact size. A writer
    that hides the system's reason (torch.save says only "unexpected pos") is judged by the
    disk: failing on a disk with almost no space left is running out of space."""
    try:
        yield
    except HeadstartError:  # already said (a WriteFailed of an inner write, or the caller's own)
        raise
    except Exception as e:
        code = _errno_of(e)
        if code is None and _nearly_full(path.parent):
            code = errno.ENOSPC
        if code not in _REFUSALS:
            raise
        at_least = needed is None
        if at_least and written is not None:
            needed = _size(written)
        raise write_failure(path, what, code, needed, at_least=at_least) from e


def write_failure(path: Path, what: str | None, code: int, needed: int | None = None, *,
                  at_least: bool = False) -> WriteFailed:
    """The one message for a refused write: the path, what it held, why, the space it needed
    (`at_least`: more than `needed`, the bytes it had written when refused) and the space left;
    the hint says what to do, and that an interrupted run continues."""
    why, todo = _REFUSALS.get(code, (os.strerror(code), "check the folder you write to"))
    what = what or _WHAT.get(path.name) or _WHAT_BY_SUFFIX.get(path.suffix, "a file")
    space = ""
    if code in _SPACE_ERRORS:
        free = _free(path.parent)
        need = (f"more than {_bytes(needed)}" if needed else "more room") if at_least else _bytes(needed or 0)
        space = f" (it needed {need}; {'?' if free is None else _bytes(free)} free there)"
    return WriteFailed(f"could not write {what} to {path}: {why}{space}",
                       hint=f"{todo}; a run stopped here continues with `--resume`, nothing it finished is lost",
                       code=code)


def _errno_of(e: BaseException) -> int | None:
    """The system's reason behind an exception: an OSError's errno, or one a library wrapped in
    its own text (safetensors: "No space left on device (os error 28)")."""
    if isinstance(e, OSError) and e.errno is not None:
        return e.errno
    text = str(e)
    for code in _REFUSALS:
        if f"os error {code})" in text or os.strerror(code) in text:
            return code
    return None


def _nearly_full(folder: Path) -> bool:
    free = _free(folder)
    return free is not None and free < _NEARLY_FULL


def _free(folder: Path) -> int | None:
    for place in (folder, *folder.parents):  # the folder itself may not exist yet
        try:
            return shutil.disk_usage(place).free
        except OSError:
            continue
    return None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
