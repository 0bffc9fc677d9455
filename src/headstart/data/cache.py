"""headstart's on-disk caches: where they live, .npz files written atomically, and .npy arrays
written front to back in chunks and read back memory-mapped.

Every cache (decoded images, token ids, features, unzipped models) is a shortcut that can be
rebuilt: a damaged file is ignored, and a cache that cannot be written only warns.
"""
from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from headstart.files import WriteFailed, atomic_path


def cache_dir() -> Path:
    """Root of headstart's on-disk caches: $HEADSTART_CACHE, else ~/.cache/headstart."""
    root = os.environ.get("HEADSTART_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "headstart"


def load_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of a cache file written by save_arrays, or None when absent or unreadable."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception:  # a damaged cache file is only a lost shortcut: rebuild it
        return None


def save_arrays(path: Path, **arrays: np.ndarray) -> bool:
    """Write an uncompressed .npz (fast to load) atomically: a crash or a parallel run never
    leaves a half-written cache. Best effort: a cache that cannot be written (read-only or
    full disk) warns and returns False."""
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
        return True
    except (OSError, WriteFailed) as e:  # WriteFailed: files.py's words for a full or read-only disk
        warnings.warn(f"headstart could not write its cache file {path}: {e}", stacklevel=2)
        return False


@contextmanager
def array_writer(path: Path, shape: tuple[int, ...], dtype, what: str | None = None) -> Iterator[Callable]:
    """Yield `append(chunk)`, which writes rows of a .npy of `shape` in order: the array is never
    whole in memory (rows go to the file, not to a memory map whose dirty pages would count
    against the process). Rows never appended (files that could not be decoded) stay zeros,
    sparse on disk. On success the file is flushed and renamed into place, so a reader never
    sees half an array; on error it is removed. A refused write raises WriteFailed."""
    dtype = np.dtype(dtype)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
    with atomic_path(path, what) as tmp, open(tmp, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        end = f.tell() + int(np.prod(shape)) * dtype.itemsize
        yield lambda chunk: f.write(np.ascontiguousarray(chunk, dtype=dtype).data)
        f.truncate(end)


def create_rows_file(path: Path, shape: tuple[int, ...], dtype) -> int | None:
    """Create an all-zero (sparse) .npy of `shape` at `path` for several processes to fill with
    put_rows; returns where its rows start, or None when the file exists already (another process
    created it first: O_EXCL makes exactly one the creator, on a shared file system too)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        return None
    return _sized_array(path, shape, dtype)


def rows_start(path: Path) -> int:
    """Where row 0 of a .npy file starts (after its header)."""
    with open(path, "rb") as f:
        np.lib.format.read_magic(f)
        np.lib.format.read_array_header_1_0(f)
        return f.tell()


def put_rows(path: Path, start: int, rows, chunk: np.ndarray, dtype) -> None:
    """Write chunk[k] as row rows[k] of the .npy at `path` (rows start at byte `start`): writes
    at their own offsets, so processes filling disjoint rows of one file never meet."""
    chunk = np.ascontiguousarray(chunk, dtype=dtype)
    size = chunk[:1].nbytes
    fd = os.open(path, os.O_WRONLY)
    try:
        for k, row in enumerate(rows):
            os.pwrite(fd, memoryview(chunk[k]).cast("B"), start + int(row) * size)
    finally:
        os.close(fd)


def _sized_array(path: Path, shape: tuple[int, ...], dtype) -> int:
    """Write a .npy header for `shape` and extend the file to its full size (a sparse hole)."""
    dtype = np.dtype(dtype)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
    with open(path, "r+b") as f:
        np.lib.format.write_array_header_1_0(f, header)
        start = f.tell()
        f.truncate(start + int(np.prod(shape)) * dtype.itemsize)
    return start


def open_array(path: Path) -> np.memmap | None:
    """A .npy cache file memory-mapped read-only (pages are read when used), or None when it is
    absent or damaged (a truncated file, a bad header)."""
    if not path.is_file():
        return None
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception:  # a damaged cache file is only a lost shortcut: rebuild it
        return None
    return array if isinstance(array, np.memmap) else None
