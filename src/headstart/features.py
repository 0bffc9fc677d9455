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
import os
from pathlib import Path

import numpy as np
import torch

from .data.dataset import ImageData
from .records import atomic_write_bytes
from .train.evaluate import predict_logits


def cache_root() -> Path:
    return Path(os.environ.get("HEADSTART_CACHE", Path.home() / ".cache" / "headstart"))


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


def extract_features(classifier, data: ImageData, *, batch_size: int | None = None, use_cache: bool = True,
                     description: str | None = None, backbone_key: str | None = None) -> tuple[np.ndarray, bool]:
    """(features float32 (N, D), whether they came from the cache)."""
    backbone = classifier.backbone
    key_parts = {
        "architecture": backbone.architecture,
        "weights": backbone_key or weights_fingerprint(backbone),
        "preprocessing": backbone.preprocessing.to_dict(),
        "data": data.fingerprint(),
    }
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:24]
    path = cache_root() / "features" / f"{key}.npy"
    if use_cache and path.exists():
        try:
            return np.load(path, allow_pickle=False), True
        except (OSError, ValueError):
            path.unlink(missing_ok=True)  # a damaged cache entry is recomputed, not trusted
    features = predict_logits(_FeatureModel(classifier), data.images, batch_size, description).numpy()
    features = features.astype(np.float32)
    if use_cache:
        buffer = io.BytesIO()
        np.save(buffer, features, allow_pickle=False)
        atomic_write_bytes(path, buffer.getvalue())
    return features, False
