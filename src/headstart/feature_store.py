"""Features on disk: one store per (backbone, weights, preprocessing, data[, engine]), filled
chunk by chunk as extraction computes them and read back memory-mapped.

    store = FeatureStore.open(backbone, prepared_data, engine)
    for rows in store.missing_chunks(1024):      # the rows not yet computed, in chunks
        store.fill(rows, compute(rows))           # written to disk as each chunk is done
    features = store.read()                       # (N, D) read-only memory map once complete

A pass cut short (a budget, a kill) keeps its finished chunks: the rows are written into
`KEY.partial.npy` (a .npy whose header comes first, filled by row) and a sidecar `KEY.done.json`
lists the rows done (a packed bit per row). The sidecar is replaced atomically after the data it
names is flushed, so it never claims a row that is not on disk, and the next pass continues from
the first missing row. A complete store is renamed to `KEY.npy`: `feature_cache_path(...)` exists
exactly when the features are all there. A damaged store is recomputed, never trusted; a full or
read-only disk warns once and the store carries on in memory (a cache is only a shortcut).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from .data.cache import cache_dir, open_array
from .files import WriteFailed, atomic_path, atomic_write_text, writing

# What the store keeps on disk. float16 would halve the file and the pages a reader touches, and it
# did not change the probe head's accuracy (bench/feature_dtype.py, seed 0, C chosen on val; the
# head fitted on features rounded through float16 vs float32): elpv val 0.8533 / test 0.8756 both
# ways, fashion-mnist (100/class) 0.855 / 0.863 both ways, bbc-news 0.9718 / 0.979 both ways, same
# C each time. float32 stays the default for now only because `embed`'s callers (LogME's SVD in
# rank, select's and audit's standardising) take its result as float32 whole; heads.py reads any
# float dtype chunk by chunk. HEADSTART_FEATURE_DTYPE=float16 stores half-size files.
FEATURE_DTYPE = np.dtype(os.environ.get("HEADSTART_FEATURE_DTYPE", "float32"))
# The sidecar is rewritten at most this often (and always at the end of a pass): on a store of
# 100k rows filled in a stratified (scattered) order, one rewrite per 64-row chunk would cost more
# than the chunk; a kill loses at most this many seconds of extraction.
SIDECAR_EVERY_SECONDS = 1.0
_WHAT = "the feature cache"


def weights_fingerprint(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def feature_cache_path(backbone, data, engine=None) -> Path:
    """Where the complete features of `data` (prepared for `backbone`) live; the key covers the
    architecture, the actual weights, the preprocessing, the data's content and the engine."""
    key_parts = {
        "architecture": backbone.architecture,
        "weights": weights_fingerprint(backbone),
        "preprocessing": backbone.preprocessing.to_dict(),
        "data": data.fingerprint(),
    }
    if engine is not None and engine.tag:  # features another engine computed (int8 differs from fp32)
        key_parts["engine"] = engine.tag
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:24]
    return cache_dir() / "features" / f"{key}.npy"


class FeatureStore:
    """The features of N rows, some of them computed. `path` None: in memory only (no cache)."""

    def __init__(self, path: Path | None, rows: int, dtype=None):
        self.path, self.rows = path, int(rows)
        self.dtype = np.dtype(dtype or FEATURE_DTYPE)
        self._done = np.zeros(self.rows, dtype=bool)
        self._complete: np.ndarray | None = None   # the finished file, memory-mapped
        self._memory: np.ndarray | None = None     # the rows, when the disk is not used
        self._fd: int | None = None                # the partial file, open for writing
        self._dim: int | None = None
        self._marked = 0.0                          # when the sidecar was last written
        self._unmarked = False                      # rows filled since the sidecar was written

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, backbone, data, engine=None, *, cache: bool = True, writable: bool = True) -> "FeatureStore":
        """The store of `data`'s features under `backbone` (and `engine`), resumed from what is on
        disk. cache False: in memory only; writable False (a torchrun rank other than the main
        one): reads a complete store, else keeps what it computes in memory."""
        path = feature_cache_path(backbone, data, engine) if cache else None
        store = cls.at(path, len(data), writable=writable)
        if not _ranks_see_the_same(store):
            # nodes without a shared disk see different stores (the main node's, none elsewhere);
            # ranks that computed different chunks would wait on each other's exchange for ever,
            # so this pass computes every row on every rank, in memory
            store = cls.at(None, len(data))
        return store

    @classmethod
    def at(cls, path: Path | None, rows: int, *, writable: bool = True, dtype=None) -> "FeatureStore":
        store = cls(path, rows, dtype)
        if path is not None:
            store._resume(writable)
        return store

    @property
    def partial_path(self) -> Path:
        return self.path.with_name(self.path.stem + ".partial.npy")

    @property
    def sidecar_path(self) -> Path:
        return self.path.with_name(self.path.stem + ".done.json")

    def _resume(self, writable: bool) -> None:
        finished = open_array(self.path)
        if finished is not None and finished.ndim == 2 and len(finished) == self.rows:
            self._complete, self._done[:] = finished, True
            return
        if writable and self.path.exists():  # damaged, or another data's rows: recomputed, not trusted
            self.path.unlink(missing_ok=True)
        try:
            side = json.loads(self.sidecar_path.read_text())
            partial = open_array(self.partial_path)
            bits = np.unpackbits(np.frombuffer(base64.b64decode(side["done"]), np.uint8), count=self.rows)
            assert partial is not None and partial.shape == (self.rows, side["dim"]) and partial.dtype == self.dtype
            self._done[:] = bits.astype(bool)
            self._dim = int(side["dim"])
        except Exception:  # absent or damaged: start over (a sidecar never claims more than is on disk)
            if writable:
                self.partial_path.unlink(missing_ok=True)
                self.sidecar_path.unlink(missing_ok=True)
            partial = None
        if not writable:  # a reader only (torchrun's other ranks): the rows done so far, in memory
            if self._dim is not None:
                self._memory = np.zeros((self.rows, self._dim), dtype=np.float32)
                self._memory[self._done] = partial[self._done]
            self.path = None

    # ------------------------------------------------------------------ state

    @property
    def complete(self) -> bool:
        return bool(self._done.all())

    @property
    def on_disk(self) -> bool:
        return self.path is not None

    def done_rows(self) -> np.ndarray:
        """Indices of the rows computed so far, ascending."""
        return np.flatnonzero(self._done)

    def missing_rows(self, order: np.ndarray | None = None) -> np.ndarray:
        """The rows still to compute, in `order` (a permutation of the rows; default ascending)."""
        order = np.arange(self.rows) if order is None else np.asarray(order)
        return order[~self._done[order]]

    def missing_chunks(self, size: int, order: np.ndarray | None = None):
        missing = self.missing_rows(order)
        return [missing[i:i + size] for i in range(0, len(missing), size)]

    # ------------------------------------------------------------------ writing

    def fill(self, rows, features: np.ndarray) -> None:
        """Keep `features` (len(rows), D) as rows `rows` (indices or a slice), on disk when it can."""
        rows = np.arange(self.rows)[rows] if isinstance(rows, slice) else np.asarray(rows, dtype=np.int64)
        features = np.asarray(features)
        if len(rows) == 0:
            return
        if self._dim is None:
            self._dim = int(features.shape[1])
        if self.path is not None and self._complete is None:
            try:
                self._write(rows, features)
            except (OSError, WriteFailed) as e:
                self._fall_back_to_memory(e)
        if self.path is None:
            if self._memory is None:
                self._memory = np.zeros((self.rows, self._dim), dtype=np.float32)
            self._memory[rows] = features
        self._done[rows] = True
        self._unmarked = True
        if self.path is not None:
            try:
                self._mark(force=self.complete)
            except (OSError, WriteFailed) as e:
                self._fall_back_to_memory(e)

    def flush(self) -> None:
        """Write the sidecar now (a pass that stops early calls it, so nothing done is lost)."""
        if self.path is not None and self._unmarked:
            try:
                self._mark(force=True)
            except (OSError, WriteFailed) as e:
                self._fall_back_to_memory(e)

    def _write(self, rows: np.ndarray, features: np.ndarray) -> None:
        if self._fd is None:
            self._fd = self._open_partial()
        ascending = np.argsort(rows, kind="stable")
        rows, data = rows[ascending], np.ascontiguousarray(features[ascending], dtype=self.dtype)
        row_bytes = self._dim * self.dtype.itemsize
        with writing(self.partial_path, _WHAT):
            # runs of consecutive rows are one write each (a chunk of the data's order is one)
            cuts = np.flatnonzero(np.diff(rows) != 1) + 1
            for start, end in zip(np.r_[0, cuts], np.r_[cuts, len(rows)]):
                os.pwrite(self._fd, data[start:end].data, self._offset + int(rows[start]) * row_bytes)

    def _open_partial(self) -> int:
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                  "shape": (self.rows, self._dim)}
        if not self.partial_path.exists():
            with atomic_path(self.partial_path, _WHAT) as tmp, open(tmp, "wb") as f:
                np.lib.format.write_array_header_1_0(f, header)
                f.truncate(f.tell() + self.rows * self._dim * self.dtype.itemsize)  # sparse until filled
            self._unmarked = True
            self._mark(force=True)  # an empty sidecar: the partial file is ours to continue
        with open(self.partial_path, "rb") as f:
            np.lib.format.read_magic(f)
            np.lib.format.read_array_header_1_0(f)
            self._offset = f.tell()
        return os.open(self.partial_path, os.O_RDWR)

    def _mark(self, force: bool) -> None:
        if not force and time.monotonic() - self._marked < SIDECAR_EVERY_SECONDS:
            return
        if self._fd is not None:
            with writing(self.partial_path, _WHAT):
                os.fsync(self._fd)  # the rows first: the sidecar never names a row not on disk
        if self.complete and self._fd is not None:
            self._finish()
            return
        side = {"rows": self.rows, "dim": self._dim, "dtype": self.dtype.str,
                "done": base64.b64encode(np.packbits(self._done).tobytes()).decode()}
        atomic_write_text(self.sidecar_path, json.dumps(side), _WHAT)
        self._marked, self._unmarked = time.monotonic(), False

    def _finish(self) -> None:
        os.close(self._fd)
        self._fd = None
        with writing(self.path, _WHAT):
            os.replace(self.partial_path, self.path)
        self.sidecar_path.unlink(missing_ok=True)
        self._complete = open_array(self.path)
        self._unmarked = False

    def _fall_back_to_memory(self, error: Exception) -> None:
        warnings.warn(f"headstart could not write its cache file {self.path}: {error}; "
                      "the features stay in memory this time", stacklevel=3)
        if self._dim is not None:
            self._memory = np.zeros((self.rows, self._dim), dtype=np.float32)
            partial = open_array(self.partial_path)
            done = self.done_rows()
            if partial is not None and len(done):
                self._memory[done] = partial[done]
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.path = None

    # ------------------------------------------------------------------ reading

    def read(self, rows=None) -> np.ndarray:
        """The features of `rows` (all: the read-only memory map of the complete file, never a
        copy; indices: those rows, in memory). Every row asked for must be done."""
        if rows is None and not self.complete:
            raise ValueError(f"the feature store has {int(self._done.sum())} of {self.rows} rows")
        source = self._complete if self._complete is not None else self._memory
        if source is None:  # rows done in an earlier pass, the rest not yet: read the partial file
            source = open_array(self.partial_path)
        return source if rows is None else np.asarray(source[rows], dtype=np.float32)

    def __del__(self):
        if getattr(self, "_fd", None) is not None:
            try:
                self.flush()
                if self._fd is not None:
                    os.close(self._fd)
            except Exception:
                pass


def _ranks_see_the_same(store: "FeatureStore") -> bool:
    """Under torchrun: whether every rank found the same rows done (one process: always)."""
    from .data.ranks import gather, is_distributed

    if not is_distributed():
        return True
    mine = hashlib.sha256(np.packbits(store._done).tobytes()).hexdigest()
    return len(set(gather(mine))) == 1
