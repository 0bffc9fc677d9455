"""How torchrun's ranks share one decode cache: each rank decodes only its share of the files.

The cache entry of a file list is KEY.npy and KEY.npz beside it (which files were readable, their
native sizes, the skips, `present`: which rows this file holds, and `compact`: whether the
readable files' rows come first, as one process writes them, or row i is file i, as ranks do;
the two agree when every file was readable).
Under torchrun, rank r decodes files r, r + world, r + 2 world, ... (every rank lists the files,
which is cheap and the same everywhere) and writes them into its rows of one new .npy:

- every rank tries to create the file (O_EXCL): on one machine, or nodes sharing a file system,
  exactly one rank creates it and every rank fills its own rows of that one file; on nodes
  without a shared disk each node's first rank creates its own, which holds that node's ranks'
  rows only (the rest stay zeros, sparse on disk);
- after a barrier, the creator renames the file into place and writes the side file, with
  `present` the rows of the ranks that wrote into it (they say which file they saw);
- the readable mask, sizes and skips are exchanged (small), so every rank knows all of them, and
  the labels, the split and the sample picks, made from labels and the seed, agree on every rank.

A later run reuses the entry when every rank finds its own rows present (the same number of
processes per node, or one machine). Nothing reads another rank's rows where it can avoid it
(embed, the training sampler and evaluation compute their own rows and exchange results: see
data/ranks.py); a row this node lacks that is read anyway is decoded then (dataset._read_rows).
"""
from __future__ import annotations

import os
import secrets
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from headstart.data.cache import create_rows_file, load_arrays, open_array, put_rows, rows_start, save_arrays
from headstart.data.ranks import DECODED, barrier, gather, world
from headstart.files import WriteFailed
from headstart.log import say

_SIDE_KEYS = {"ok", "sides", "skipped_paths", "skipped_reasons", "present", "compact"}


@dataclass
class Decoded:
    """A decode of a file list: images (the cache's memory map of every file's row, or in memory
    the readable files' images only), the readable mask, the skips, every file's native shorter
    side, which rows this node's cache holds, and whether the readable files' rows come first."""

    images: np.ndarray
    ok: np.ndarray
    skipped: list
    sides: np.ndarray
    present: np.ndarray
    compact: bool = False

    def rows(self) -> np.ndarray:
        """The cache rows of the readable files, in file order."""
        return np.arange(int(self.ok.sum())) if self.compact else np.flatnonzero(self.ok)


def load_entry(stem: Path, n_files: int, needed: np.ndarray) -> Decoded | None:
    """The cached decode when it holds the `needed` rows: the side file (written last, so it marks
    a complete entry) and the pixels memory-mapped; None when absent, damaged or mismatched."""
    side = load_arrays(stem.with_suffix(".npz"))
    if side is None or not _SIDE_KEYS <= side.keys() or len(side["ok"]) != n_files:
        return None
    if not side["present"][needed].all():
        return None
    images = open_array(stem.with_suffix(".npy"))
    if images is None or len(images) != n_files:
        return None
    skipped = [(str(p), str(r)) for p, r in zip(side["skipped_paths"], side["skipped_reasons"])]
    return Decoded(images, side["ok"], skipped, side["sides"], side["present"], bool(side["compact"]))


def save_side(stem: Path, decoded: Decoded) -> bool:
    ok, skipped = decoded.ok, decoded.skipped
    return save_arrays(stem.with_suffix(".npz"), ok=ok, sides=decoded.sides, present=decoded.present,
                       compact=np.array(decoded.compact),
                       skipped_paths=np.array([p for p, _ in skipped], dtype=str),
                       skipped_reasons=np.array([r for _, r in skipped], dtype=str))


def decode_shares(files: list[Path], size: int, stem: Path, decode_all: Callable, decode_to_memory: Callable) -> Decoded:
    """The decode of `files` under torchrun, this rank decoding its share only (see the module's
    words). Every rank calls it. A cache that cannot be written on some rank warns, and every rank
    then decodes every file into memory, as one process would."""
    world_size, rank = world()
    n = len(files)
    mine = np.arange(rank, n, world_size)
    found = load_entry(stem, n, mine)
    if all(gather(found is not None)):
        return found
    filling = stem.parent / f".{stem.name}.{gather(secrets.token_hex(8))[0]}.filling.npy"
    owner = filling.with_suffix(".owner")
    try:
        start = create_rows_file(filling, (n, size, size, 3), np.uint8)
        if start is not None:  # this rank created the file: it renames it into place when all have written
            owner.write_text(str(rank))
        error = None
    except OSError as e:
        start, error = None, e
    if not all(gather(error is None)):  # (a barrier too: the file exists and is sized everywhere)
        return _in_memory(files, size, filling, owner, start is not None, error, decode_to_memory)
    try:
        seen, at = int(owner.read_text()), rows_start(filling)
        ok, skipped, sides = decode_all([files[i] for i in mine], size, False, None,
                                        put=lambda rows, chunk: put_rows(filling, at, mine[rows], chunk, np.uint8))
        DECODED["share"] += len(mine)
    except (OSError, ValueError) as e:
        error = e
    shares = gather(None if error is not None else (mine, seen, ok, sides, skipped))
    if any(share is None for share in shares):
        return _in_memory(files, size, filling, owner, start is not None, error, decode_to_memory)
    decoded = _joined(files, shares)
    if start is not None:
        decoded.present[np.concatenate([m for m, s, *_ in shares if s == rank])] = True
        error = _publish(filling, owner, stem, decoded)
    if not all(gather(error is None)):
        return _in_memory(files, size, filling, owner, False, error, decode_to_memory)
    found = load_entry(stem, n, mine)
    if not all(gather(found is not None)):
        return _in_memory(files, size, filling, owner, False, OSError("the cache entry vanished"), decode_to_memory)
    say(f"{world_size} processes decoded {n} files, each its own share ({len(mine)} here)")
    return found


def _joined(files: list[Path], shares: list) -> Decoded:
    """Every rank's readable mask, native sizes and skips as one decode of all the files."""
    n = len(files)
    ok, sides = np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64)
    skipped = []
    for mine, _, share_ok, share_sides, share_skipped in shares:
        ok[mine], sides[mine] = share_ok, share_sides
        skipped += share_skipped
    order = {str(f): i for i, f in enumerate(files)}
    skipped.sort(key=lambda s: order.get(s[0], n))
    return Decoded(None, ok, skipped, sides, np.zeros(n, dtype=bool))


def _publish(filling: Path, owner: Path, stem: Path, decoded: Decoded) -> Exception | None:
    """The creator's last step: the filled file under its name, then the side file marking it complete."""
    try:
        with open(filling, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(filling, stem.with_suffix(".npy"))
        owner.unlink(missing_ok=True)
        if not save_side(stem, decoded):
            return OSError(f"cannot write {stem}.npz")
    except (OSError, WriteFailed) as e:
        return e
    return None


def _in_memory(files, size, filling: Path, owner: Path, created: bool, error, decode_to_memory) -> Decoded:
    if error is not None:
        warnings.warn(f"headstart could not write its decode cache {filling.parent}: {error}", stacklevel=3)
    barrier()
    if created:
        filling.unlink(missing_ok=True)
        owner.unlink(missing_ok=True)
    return decode_to_memory(files, size, False)
