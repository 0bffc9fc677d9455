"""RUN/manifest.json: the sha256 and size of every file a run commits, checked by every reader.

    record(run_dir, "model.safetensors", "model.json", "tokenizer")   # after the files are written
    verify(run_dir, "model.safetensors", hint="...")                   # before they are read

Each commit point (config and split, model, summary, checkpoint, export, zoo entry) records the
files it has just written (a folder: every file under it), and the manifest is rewritten whole
and atomically, so it never describes a half-written state. A reader verifies the files it is
about to use: one that is missing, or whose size or checksum is not the recorded one, is refused
by name ("RUN/model.safetensors is damaged ...") before any parser sees it. A file the manifest
does not name (written before manifests existed, or by no commit point) is read unverified, and
a run with no manifest at all reads as before, silently: runs of earlier versions still load.

A damaged manifest is itself refused by name: a run that cannot be verified is not read as if
it had been; deleting the manifest reads it unverified, knowingly.

Bottom layer: files.py writes, nothing here imports above it.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .errors import HeadstartError
from .files import write_json

MANIFEST = "manifest.json"
FORMAT = "headstart-manifest/1"
_CHUNK = 1 << 20
# A run's own files are read many times in one command (Run, model_io, the export's checks):
# hash each version of a file once. Keyed by what changes when a file is rewritten or damaged.
_digests: dict[tuple, str] = {}
DEFAULT_HINT = ("its files changed after the run wrote them (an incomplete copy, a failing disk or an edit): "
                "copy the run again from where it was made, or re-run it")


def sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if key not in _digests:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        _digests[key] = digest.hexdigest()
    return _digests[key]


def _relative(run_dir: Path, name: str | os.PathLike) -> str:
    path = Path(name)
    return (path.relative_to(run_dir) if path.is_absolute() else path).as_posix()


def _files_under(run_dir: Path, name: str) -> list[str]:
    """`name` itself if it is a file; every file under it if it is a folder (our temporaries,
    dot-files, are not part of a run)."""
    path = run_dir / name
    if path.is_file():
        return [name]
    if path.is_dir():
        return sorted(p.relative_to(run_dir).as_posix() for p in path.rglob("*")
                      if p.is_file() and not p.name.startswith("."))
    return []


def _recorded(run_dir: Path) -> dict | None:
    """The manifest's {file: {"sha256", "size"}}; None when the run has none; refused when damaged."""
    path = run_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"] if manifest.get("format") == FORMAT else None
    except (ValueError, UnicodeDecodeError, AttributeError, TypeError, KeyError):
        files = None
    if not isinstance(files, dict) or not all(isinstance(v, dict) for v in files.values()):
        raise HeadstartError(f"{path} is damaged (it is not the record of checksums headstart writes), so the "
                             f"run's files cannot be verified",
                             hint=f"copy the run again from where it was made, or delete {path} to read the run "
                                  "without verifying its files")
    return files


def record(run_dir: str | os.PathLike, *names: str | os.PathLike) -> None:
    """Record the checksum and size of `names` (files or folders, relative to `run_dir` or inside
    it) as they are now; a name that no longer exists leaves the manifest. Call it after the
    commit point's files are in place. A damaged manifest is started afresh: the writer is
    the one process that owns the run (its lock), and what it records now is what it wrote."""
    run_dir = Path(run_dir)
    try:
        files = _recorded(run_dir) or {}
    except HeadstartError:
        files = {}
    for name in map(lambda n: _relative(run_dir, n), names):
        for old in [f for f in files if f == name or f.startswith(name + "/")]:
            del files[old]
        for file in _files_under(run_dir, name):
            files[file] = {"sha256": sha256(run_dir / file), "size": (run_dir / file).stat().st_size}
    write_json(run_dir / MANIFEST, {"format": FORMAT, "files": dict(sorted(files.items()))})


def verify(run_dir: str | os.PathLike, *names: str | os.PathLike, hint: str = DEFAULT_HINT) -> None:
    """Refuse the first of `names` (files or folders) that is missing or not as recorded, by name.
    Names the manifest does not record, and runs without a manifest, pass unverified."""
    run_dir = Path(run_dir)
    files = _recorded(run_dir)
    if not files:
        return
    for name in map(lambda n: _relative(run_dir, n), names):
        for file in sorted(f for f in files if f == name or f.startswith(name + "/")):
            _check(run_dir / file, files[file], hint)


def _check(path: Path, expected: dict, hint: str) -> None:
    if not path.is_file():
        raise HeadstartError(f"{path} is missing (the run recorded it when it was written)", hint=hint)
    size = path.stat().st_size
    if size != expected.get("size"):
        raise HeadstartError(f"{path} is damaged (it holds {size:,} bytes; {expected.get('size', 0):,} were "
                             f"written)", hint=hint)
    if sha256(path) != expected.get("sha256"):
        raise HeadstartError(f"{path} is damaged (its checksum does not match the one recorded when it was "
                             f"written)", hint=hint)
