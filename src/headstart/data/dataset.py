"""The in-memory form every data source produces: decoded uint8 images and int labels."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np


@dataclass
class ImageData:
    """Decoded images held as one uint8 array, so no epoch ever decodes a file again.

    images: uint8 array of shape (N, H, W, C) with C == 1 (grey) or 3 (RGB); all images share
        one H x W (sources resize on load).
    labels: int64 array of shape (N,), indices into `classes`.
    classes: class names, index i is label i.
    name: a short human name for the data ("fashion-mnist", a folder name, ...).
    paths: optional original file paths (same order), for reports and predict.
    skipped: files that could not be decoded, as (path, reason); counted, never silently lost.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    name: str
    paths: list[str] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    # A source may carry a predefined test split (e.g. Fashion-MNIST's t10k): a boolean mask.
    is_test: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N,H,W,C), got {self.images.dtype} {self.images.shape}")
        if len(self.images) != len(self.labels):
            raise ValueError("images and labels differ in length")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def fingerprint(self) -> str:
        """Content hash of pixels, labels and class names: the key of every cache built on it."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.images).data)
        h.update(np.ascontiguousarray(self.labels.astype(np.int64)).data)
        h.update("\x00".join(self.classes).encode())
        return h.hexdigest()[:16]

    def subset(self, index: np.ndarray) -> "ImageData":
        return ImageData(
            images=self.images[index],
            labels=self.labels[index],
            classes=self.classes,
            name=self.name,
            paths=[self.paths[i] for i in index] if self.paths is not None else None,
        )
