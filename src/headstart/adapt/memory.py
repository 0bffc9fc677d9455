"""What a continued run keeps of the classes it has seen, for the runs that continue it.

Two kinds of memory, both in RUN/memory/ (never pickled):
- exemplars.npz: `memory_per_class` raw items per class (uint8 images at the decoded size, or
  texts), chosen by herding in feature space (iCaRL, Rebuffi et al. 2017): the items whose
  running mean stays closest to the class mean, so a few of them stand in for the class.
  Rehearsal and LwF train on them; the name-collision check compares new items with them.
- features.safetensors (float16): the training features a frozen backbone produced, for head
  refits (only kept while the backbone stays frozen: a fine-tuned backbone makes them stale).
  Capped at FEATURES_PER_CLASS per class (a seeded random subset beyond it): 1,000 x 1,280
  float16 values are 2.5 MB a class, and a logistic head gains little past that.
memory.json records counts, bytes, and the fingerprint of the backbone weights the features
came from (features from other weights are never reused).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.dataset import DataForm, ImageData, TextData
from ..files import atomic_dir, read_json, write_json

MEMORY_DIR = "memory"
FEATURES_PER_CLASS = 1000


def herding(features: np.ndarray, k: int) -> np.ndarray:
    """Indices of k rows whose running mean best approximates the mean of all rows (iCaRL's
    exemplar selection), on L2-normalised features; in the order they were picked."""
    x = features / (np.linalg.norm(features, axis=1, keepdims=True) + 1e-12)
    target = x.mean(0)
    chosen: list[int] = []
    running = np.zeros_like(target)
    available = np.ones(len(x), dtype=bool)
    for step in range(1, min(k, len(x)) + 1):
        # the candidate whose addition brings the mean of the chosen closest to the class mean
        gaps = np.linalg.norm(target - (running + x) / step, axis=1)
        gaps[~available] = np.inf
        best = int(np.argmin(gaps))
        chosen.append(best)
        available[best] = False
        running += x[best]
    return np.array(chosen, dtype=np.int64)


def choose_exemplars(features: np.ndarray, labels: np.ndarray, per_class: int) -> np.ndarray:
    """Indices (into features) of herding exemplars, per_class for each label present."""
    picked = [np.flatnonzero(labels == k)[herding(features[labels == k], per_class)] for k in np.unique(labels)]
    return np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)


@dataclass
class Memory:
    """Exemplars (a labelled data form over `classes`) and, optionally, stored features."""

    exemplars: DataForm
    features: np.ndarray | None = None        # (N, D) float32 training features, frozen backbone
    feature_labels: np.ndarray | None = None  # (N,) indices into exemplars.classes
    fingerprint: str | None = None            # the backbone weights the features came from

    @property
    def classes(self) -> list[str]:
        return self.exemplars.classes

    def features_for(self, fingerprint: str) -> tuple[np.ndarray, np.ndarray] | None:
        """The stored features, if they came from these backbone weights."""
        if self.features is None or self.fingerprint != fingerprint:
            return None
        return self.features, self.feature_labels

    def describe(self) -> dict:
        counts = np.bincount(self.exemplars.labels, minlength=len(self.classes))
        return {"exemplars_per_class": {c: int(n) for c, n in zip(self.classes, counts)},
                "exemplars": int(len(self.exemplars)),
                "features": 0 if self.features is None else int(len(self.features)),
                "exemplar_bytes": _exemplar_bytes(self.exemplars),
                "feature_bytes": 0 if self.features is None else int(self.features.size * 2)}


def _exemplar_bytes(data: DataForm) -> int:
    if isinstance(data, ImageData):
        return int(data.images.nbytes)
    return int(sum(len(t.encode("utf-8")) for t in data.texts))


def cap_features(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """At most FEATURES_PER_CLASS rows of each class (a seeded random subset beyond it)."""
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(y == k))[:FEATURES_PER_CLASS] for k in np.unique(y)]
    index = np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)
    return x[index], y[index]


def save_memory(run_dir: Path, memory: Memory) -> dict:
    """Write RUN/memory/ whole (a temporary folder renamed into place); returns memory.json."""
    from safetensors.numpy import save_file

    described = {**memory.describe(), "classes": list(memory.classes), "fingerprint": memory.fingerprint,
                 "chosen_by": "herding in feature space (iCaRL)"}
    with atomic_dir(Path(run_dir) / MEMORY_DIR) as tmp:
        ex = memory.exemplars
        items = {"images": ex.images} if isinstance(ex, ImageData) else {"texts": np.array(ex.texts, dtype=str)}
        np.savez(tmp / "exemplars.npz", labels=ex.labels.astype(np.int64),
                 classes=np.array(memory.classes, dtype=str), **items)
        if memory.features is not None:
            save_file({"features": memory.features.astype(np.float16),
                       "labels": memory.feature_labels.astype(np.int64)}, str(tmp / "features.safetensors"))
        write_json(tmp / "memory.json", described)
    return described


def load_memory(run_dir: Path, name: str) -> Memory | None:
    """RUN/memory/ as a Memory, or None when the run keeps none (a plain fit)."""
    folder = Path(run_dir) / MEMORY_DIR
    if not (folder / "memory.json").exists():
        return None
    from safetensors.numpy import load_file

    meta = read_json(folder / "memory.json")
    with np.load(folder / "exemplars.npz", allow_pickle=False) as saved:
        classes = [str(c) for c in saved["classes"]]
        labels = saved["labels"].astype(np.int64)
        exemplars = ImageData(images=saved["images"], labels=labels, classes=classes, name=name) \
            if "images" in saved.files else TextData(texts=[str(t) for t in saved["texts"]], labels=labels,
                                                       classes=classes, name=name)
    features = labels_f = None
    if (folder / "features.safetensors").exists():
        stored = load_file(str(folder / "features.safetensors"))
        features, labels_f = stored["features"].astype(np.float32), stored["labels"].astype(np.int64)
    return Memory(exemplars, features, labels_f, meta.get("fingerprint"))


def relabelled(data: DataForm, classes: list[str]) -> DataForm:
    """The same items with labels renumbered into `classes` (a superset of data.classes)."""
    index = np.array([classes.index(c) for c in data.classes], dtype=np.int64)
    return dataclasses.replace(data, labels=index[data.labels] if len(data.labels) else data.labels,
                               classes=list(classes))
