"""The input every transferability score (choose/scores.py) expects: float64 features, labels
re-encoded as 0..K-1, float64 source logits -- or a HeadstartError that says what is wrong."""
from __future__ import annotations

import numpy as np

from ..errors import HeadstartError


def validated(features, labels, source_logits):
    """Float64 features, labels as 0..K-1 and float64 logits, or a HeadstartError that says why."""
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    if features.ndim != 2 or features.shape[0] == 0 or features.shape[1] == 0:
        raise HeadstartError(f"features must be a non-empty (N, D) matrix, not shape {features.shape}",
                             hint="pass one embedding row per labelled example")
    if labels.ndim != 1 or len(labels) != len(features):
        raise HeadstartError(f"{len(features)} feature rows but labels of shape {labels.shape}",
                             hint="pass one label per feature row")
    if not np.isfinite(features).all():
        raise HeadstartError("the features contain NaN or infinite values",
                             hint="check the backbone's output (half precision overflow?) or the input data")
    labels = _encode_labels(labels)
    if labels.max() < 1:
        raise HeadstartError("the labels hold a single class: there is nothing to tell apart",
                             hint="rank on data with at least two classes")
    if source_logits is not None:
        source_logits = np.asarray(source_logits, dtype=np.float64)
        if source_logits.ndim != 2 or len(source_logits) != len(features) or source_logits.shape[1] == 0:
            raise HeadstartError(f"source logits of shape {source_logits.shape} do not match {len(features)} examples",
                                 hint="pass (N, S): the source classifier's outputs for each example")
        if not np.isfinite(source_logits).all():
            raise HeadstartError("the source logits contain NaN or infinite values",
                                 hint="check the source model's output")
    return features, labels, source_logits


def _encode_labels(labels: np.ndarray) -> np.ndarray:
    """0..K-1 in order of first appearance: renaming the classes then leaves the encoded labels
    (and so every score, fold split and tie-break) exactly as they were."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # sorted-unique index -> rank of first appearance
    return order[inverse.ravel()].astype(np.int64)


# k of the k-NN score: a small k smooths single mislabelled neighbours away (k=1 does not)
# yet stays local enough for classes of ten-odd examples; one fixed k keeps the values of
# different backbones on the same data comparable.
_KNN_K = 5
_KNN_CHUNK = 1024  # rows of the similarity matrix held at once: 1024 x 5000 floats = 20 MB
# The linear probe: C=0.1 on standardised features is a moderate L2 penalty that keeps a
# probe with D ~ 1000-2000 features and a few hundred examples from memorising the folds,
# and makes lbfgs converge in well under the iteration cap, so the score is fast and stable.
_LINEAR_C = 0.1
_LINEAR_MAX_ITER = 100
_LINEAR_MAX_FOLDS = 5
