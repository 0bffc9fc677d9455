"""The embed stage: a backbone's features for any data, computed once and cached on disk.

Everything that works on frozen features (the probe, ranking backbones, active learning,
synthetic samples, domain alignment) calls `embed` and never trains a backbone to get them.
The cache key covers the backbone's architecture, its actual weights (a hash of the tensors,
so a fine-tuned or file-loaded backbone never reuses another's features), its preprocessing,
and the content of the data (labelled or not). Under torchrun each rank embeds its share.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from .data.cache import open_array
from .feature_store import FeatureStore, feature_cache_path, weights_fingerprint
from .files import WriteFailed, atomic_write_bytes
from .heads import Classifier, predict_logits
from .log import is_main_process, progress_bar
from .modalities import modality_of


# the cache key's parts live with the store now; callers keep importing them from here
__all__ = ["embed", "fill_store", "feature_extractor", "compute_features", "agree_any", "feature_cache_path",
           "weights_fingerprint", "load_cached_features", "save_cached_features", "FeatureModel", "EMBED_CHUNK"]

# Rows computed and written to the store at a time: what a cut-short pass can lose at most, and
# what sits in memory at once (512 images at 224 px are 77 MB of pixels, 2.6 MB of features).
EMBED_CHUNK = 512


def embed(model, data, *, cache: bool = True, description: str | None = "features",
          batch_size: int | None = None, engine=None) -> np.ndarray:
    """(N, D) float32 features of `data` (labelled, a pool, or one split) under `model`: a
    Backbone, or a classifier whose head is ignored. The data is prepared for the backbone
    (resized, tokenised) here, so raw data from load_data or load_pool works as it is.
    engine: a engines.extract.FeatureEngine made for this model (None: PyTorch eager).
    With the cache, the features are written to disk chunk by chunk as they are computed (a pass
    cut short continues where it stopped) and come back as a read-only memory map: they are
    never whole in memory. Without it (or when the disk refuses), an in-memory array."""
    extractor = feature_extractor(model)
    prepared = extractor.prepare(data)
    if len(prepared) == 0:  # nothing to store (and no width to give an empty store)
        return compute_features(extractor, prepared.inputs, description, batch_size, engine)
    store = FeatureStore.open(extractor.backbone, prepared, engine, cache=cache, writable=is_main_process())
    fill_store(store, extractor, prepared.inputs, description, batch_size, engine)
    return store.read()


def fill_store(store: FeatureStore, classifier, inputs, description: str | None = None,
               batch_size: int | None = None, engine=None, chunk: int | None = None) -> None:
    """Compute the store's missing rows chunk by chunk, each written as soon as it is done."""
    chunks = store.missing_chunks(chunk or EMBED_CHUNK)
    if not chunks:
        return
    with progress_bar(description, total=sum(len(c) for c in chunks)) as advance:
        for rows in chunks:
            store.fill(rows, compute_features(classifier, inputs[rows], None, batch_size, engine))
            advance(len(rows))
    store.flush()


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
    Under torchrun each rank computes the items it owns (the files it decoded: data/ranks.py)
    and the ranks exchange the features."""
    from .data.ranks import map_own_rows

    return map_own_rows(lambda mine: _features(classifier, mine, description, batch_size, engine), inputs)


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


def load_cached_features(path: Path) -> np.ndarray | None:
    """A complete feature file, memory-mapped read-only; a damaged one is removed (recomputed,
    not trusted)."""
    features = open_array(path)
    if features is None:
        path.unlink(missing_ok=True)
    return features


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
