"""headstart's on-disk caches: where they live, and .npz files written atomically.

Every cache (decoded images, token ids, features, unzipped models) is a shortcut that can be
rebuilt: a damaged file is ignored, and a cache that cannot be written only warns.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

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
