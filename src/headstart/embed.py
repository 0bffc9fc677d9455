"""The embed stage: a backbone's features for any data, computed once and cached on disk.

Everything that works on frozen features (the probe, ranking backbones, active learning,
synthetic samples, domain alignment) calls `embed` and never trains a backbone to get them.
The cache key covers the backbone's architecture, its actual weights (a hash of the tensors,
so a fine-tuned or file-loaded backbone never reuses another's features), its preprocessing,
and the content of the data (labelled or not). Under torchrun each rank embeds its share.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from .data.cache import cache_dir
from .files import WriteFailed, atomic_write_bytes
from .heads import Classifier, predict_logits
from .log import is_main_process
from .modalities import modality_of


def embed(model, data, *, cache: bool = True, description: str | None = "features",
          batch_size: int | None = None, engine=None) -> np.ndarray:
    """(N, D) float32 features of `data` (labelled, a pool, or one split) under `model`: a
    Backbone, or a classifier whose head is ignored. The data is prepared for the backbone
    (resized, tokenised) here, so raw data from load_data or load_pool works as it is.
    engine: a engines.extract.FeatureEngine made for this model (None: PyTorch eager)."""
    extractor = feature_extractor(model)
    prepared = extractor.prepare(data)
    path = feature_cache_path(extractor.backbone, prepared, engine) if cache else None
    if path is not None and (cached := load_cached_features(path)) is not None:
        return cached
    features = compute_features(extractor, prepared.inputs, description, batch_size, engine)
    if path is not None and is_main_process():
        save_cached_features(path, features)
    return features


def feature_extractor(model) -> Classifier:
    """A classifier around a bare backbone (the modality's, so inputs are fed as in training:
    images normalised inside the model); a classifier is used as it is."""
    if isinstance(model, Classifier):
        return model
    return modality_of(model).build_classifier(model, 1)


class FeatureModel(torch.nn.Module):
    """The classifier minus its head: inputs in, pooled features out."""

    def __init__(self, classifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, x):
        return self.classifier.features(x)


def compute_features(classifier, inputs: np.ndarray, description: str | None = None,
                     batch_size: int | None = None, engine=None) -> np.ndarray:
    """One inference pass, no cache: inputs (images or token ids) -> (N, D) float32 features.
    Under torchrun each rank computes every world_size-th item and the ranks exchange them."""
    world, rank = _world()
    if world == 1:
        return _features(classifier, inputs, description, batch_size, engine)
    mine = np.arange(rank, len(inputs), world)
    local = _features(classifier, inputs[mine], description, batch_size, engine)
    shares: list = [None] * world
    torch.distributed.all_gather_object(shares, local)
    out = np.empty((len(inputs), local.shape[1]), dtype=np.float32)
    for r, share in enumerate(shares):
        out[r::world] = share
    return out


def _features(classifier, inputs, description, batch_size, engine=None) -> np.ndarray:
    if engine is not None and engine.name != "torch":
        return engine.features(inputs, description, batch_size)
    # the wrapper takes the classifier's mode, so predict_logits restores that mode, not a fresh
    # module's training mode (which would leave batch norm training behind it)
    wrapper = FeatureModel(classifier).train(classifier.training)
    return predict_logits(wrapper, inputs, batch_size, description).numpy().astype(np.float32)


def _world() -> tuple[int, int]:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState  # joins torchrun's process group if not yet joined
        state = PartialState()
        return state.num_processes, state.process_index
    return 1, 0


def agree_any(flag: bool) -> bool:
    """True on every rank when it is true on any (ranks must stop a shared loop together)."""
    world, _ = _world()
    if world == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0])
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item() > 0)


def weights_fingerprint(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def feature_cache_path(backbone, data, engine=None) -> Path:
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


def load_cached_features(path: Path) -> np.ndarray | None:
    if not path.exists():
        return None
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        path.unlink(missing_ok=True)  # a damaged cache entry is recomputed, not trusted
        return None


def save_cached_features(path: Path, features: np.ndarray) -> bool:
    """Best effort, as every cache (data/cache.py): a full or read-only disk warns and returns
    False; the features are in memory, and a later fit computes them again."""
    buffer = io.BytesIO()
    np.save(buffer, features, allow_pickle=False)
    try:
        atomic_write_bytes(path, buffer.getvalue(), "the feature cache")
    except WriteFailed as e:
        warnings.warn(f"headstart could not write its cache file {path}: {e}", stacklevel=2)
        return False
    return True
