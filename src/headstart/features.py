"""Frozen-backbone features, computed once and cached on disk.

The cache key covers the backbone's architecture, its actual weights (a hash of the
tensors, so a fine-tuned or file-loaded backbone never reuses another's features), its
preprocessing, and the content of the data. A later probe refit, sweep or ranking then
costs seconds instead of an inference pass.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import torch

from .data.cache import cache_dir
from .data.dataset import ImageData
from .records import atomic_write_bytes
from .train.evaluate import predict_logits


def weights_fingerprint(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class _FeatureModel(torch.nn.Module):
    """The classifier minus its head: normalised pixels in, pooled features out."""

    def __init__(self, classifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, x):
        return self.classifier.features(x)


def compute_features(classifier, images: np.ndarray, description: str | None = None) -> np.ndarray:
    """One inference pass: a data's inputs (images or token ids) -> (N, D) float32 features. No cache."""
    return predict_logits(_FeatureModel(classifier), images, description=description).numpy().astype(np.float32)


def feature_cache_path(classifier, data: ImageData) -> Path:
    backbone = classifier.backbone
    key_parts = {
        "architecture": backbone.architecture,
        "weights": weights_fingerprint(backbone),
        "preprocessing": backbone.preprocessing.to_dict(),
        "data": data.fingerprint(),
    }
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:24]
    return cache_dir() / "features" / f"{key}.npy"


def load_cached_features(path: Path) -> np.ndarray | None:
    if not path.exists():
        return None
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        path.unlink(missing_ok=True)  # a damaged cache entry is recomputed, not trusted
        return None


def save_cached_features(path: Path, features: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, features, allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())


def extract_features(classifier, data: ImageData, *, use_cache: bool = True,
                     description: str | None = None) -> tuple[np.ndarray, bool]:
    """(features float32 (N, D), whether they came from the cache)."""
    path = feature_cache_path(classifier, data) if use_cache else None
    if path is not None and (cached := load_cached_features(path)) is not None:
        return cached, True
    features = compute_features(classifier, data.inputs, description)
    if path is not None:
        save_cached_features(path, features)
    return features, False
