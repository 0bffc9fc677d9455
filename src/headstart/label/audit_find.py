"""What `headstart audit` finds, from features alone: likely label errors, near-duplicates
(within a split, and across splits: leaks) and outliers.

Pure functions of an (N, D) feature array, the given labels and each item's split, so they are
tested on synthetic features and cost seconds once `embed` has cached the features.

- Label errors: confident learning (Northcutt et al. 2021, cleanlab's `find_label_issues`) on
  out-of-fold probabilities of the probe's own logistic head (heads.HeadProblem: standardised
  features, L-BFGS, warm-started along the C grid), so no item is scored by a head that saw its
  own label. Ranked by self-confidence: the held-out probability of the given label.
- Near-duplicates and outliers: cosine similarity of the centred features (centring removes the
  direction every embedding shares, which otherwise puts all pairs near 1), through one chunked
  nearest-neighbour pass.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import HeadstartError
from ..heads import PROBE_C_GRID, HeadProblem, head_logits

# C values tried for the cross-validated head, picked by out-of-fold log-loss: the probe's grid
# thinned to every other value (0.01, 0.1, 1.0), since each value costs one solve per fold.
AUDIT_C_GRID = PROBE_C_GRID[::2]
# Cosine similarity (centred features) at which two different items count as near-duplicates.
# Measured (bench/audit_noise.py --measure-threshold, 300 items each, default backbones,
# bench/results/audit_threshold.json): a text with one word replaced scores >= 0.987 with its
# original in 99 % of cases (bbc-news); the nearest distinct item scores at most 0.855 on
# fashion-mnist and 0.981 at the 99th percentile on elpv, whose cells look alike. 0.98 catches
# such copies while flagging at most ~1 % of elpv's items. (JPEG + 2-px shift + brightness
# copies of 28-px fashion-mnist images score 0.75 at the median: an augmentation that strong is
# not a duplicate an embedding can tell.)
NEAR_DUPLICATE_SIMILARITY = 0.98
# A pair this similar is reported as an exact duplicate even when the bytes differ by a
# re-encoding: beyond it the backbone cannot tell the two apart.
EXACT_SIMILARITY = 0.999
# An item is an outlier when its mean cosine distance to its k nearest neighbours is this many
# robust standard deviations (1.4826 MAD) above the median: Iglewicz and Hoaglin's rule.
OUTLIER_Z = 3.5
CHUNK = 1024  # rows per similarity block: 1024 x N floats at a time, whatever N is


@dataclass
class Neighbours:
    """Each item's k nearest other items (indices, cosine similarities), most similar first."""
    index: np.ndarray       # (N, k) int64
    similarity: np.ndarray  # (N, k) float32


def check_inputs(features: np.ndarray, labels: np.ndarray, num_classes: int) -> None:
    if len(features) != len(labels):
        raise HeadstartError(f"{len(features)} feature rows for {len(labels)} labels")
    if len(features) < 2:
        raise HeadstartError("an audit needs at least two labelled items", hint="give the whole labelled data")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise HeadstartError(f"labels must lie in 0..{num_classes - 1}")


def folds_for(labels: np.ndarray, wanted: int) -> int:
    """As many folds as asked, but never more than the smallest class has members (each fold's
    held-out part needs every class in training); a class of one cannot be cross-validated."""
    counts = np.bincount(labels)
    smallest = int(counts[counts > 0].min())
    if smallest < 2:
        raise HeadstartError("a class with a single item cannot be audited: no head can predict it without its "
                             "own label", hint="add items to that class, or leave it out with --classes")
    return max(2, min(int(wanted), smallest))


def out_of_fold_probabilities(features: np.ndarray, labels: np.ndarray, num_classes: int, *, folds: int = 5,
                              seed: int = 0, c_grid=AUDIT_C_GRID) -> tuple[np.ndarray, float]:
    """(N, classes) probabilities, each row from a head that never saw that item, and the C
    chosen (lowest out-of-fold log-loss over c_grid)."""
    from sklearn.model_selection import StratifiedKFold

    check_inputs(features, labels, num_classes)
    splitter = StratifiedKFold(n_splits=folds_for(labels, folds), shuffle=True, random_state=seed)
    probs = {c: np.zeros((len(features), num_classes)) for c in c_grid}
    for train, held_out in splitter.split(features, labels):
        problem = HeadProblem(features[train], labels[train], num_classes)
        for c in sorted(c_grid):  # ascending: each solve warm-starts from the last
            probs[c][held_out] = _softmax(head_logits(features[held_out], *problem.solve(c)))
    losses = {c: -float(np.mean(np.log(np.clip(p[np.arange(len(p)), labels], 1e-12, None)))) for c, p in probs.items()}
    best = min(sorted(c_grid), key=lambda c: losses[c] - 1e-9 * c)  # a tie keeps the more regularised head
    return probs[best], best


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def label_issues(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(flagged, self_confidence): the indices cleanlab's confident learning flags, most likely
    wrong first, and every item's held-out probability of its given label (low: suspect)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    probabilities = probabilities / probabilities.sum(1, keepdims=True)
    confidence = get_label_quality_scores(labels, probabilities, method="self_confidence")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cleanlab warns about classes with few items; counted by the caller
        flagged = find_label_issues(labels, probabilities, return_indices_ranked_by="self_confidence", n_jobs=1)
    return np.asarray(flagged, dtype=np.int64), confidence


def nearest_neighbours(features: np.ndarray, k: int) -> Neighbours:
    """The k most similar other items of every item (cosine on centred features), in blocks
    of CHUNK rows so memory stays at CHUNK x N."""
    import torch

    k = max(1, min(int(k), len(features) - 1))
    x = torch.from_numpy(np.asarray(features, dtype=np.float32))
    x = x - x.mean(0, keepdim=True)
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    index = np.empty((len(x), k), dtype=np.int64)
    similarity = np.empty((len(x), k), dtype=np.float32)
    for start in range(0, len(x), CHUNK):
        block = x[start:start + CHUNK] @ x.T
        rows = torch.arange(len(block))
        block[rows, rows + start] = -2.0  # an item is not its own neighbour
        top = block.topk(k, dim=1)
        index[start:start + len(block)] = top.indices.numpy()
        similarity[start:start + len(block)] = top.values.numpy()
    return Neighbours(index, similarity)


def duplicate_pairs(neighbours: Neighbours, splits: np.ndarray, *, threshold: float = NEAR_DUPLICATE_SIMILARITY,
                    same_content: np.ndarray | None = None) -> list[dict]:
    """Pairs (i, j), i < j, whose similarity reaches `threshold`, each once: "leak" when they sit
    in different splits (one of them train), else "duplicate"; "exact" when the content is
    identical (same_content[i] == same_content[j]: e.g. content hashes) or the features are."""
    seen, pairs = set(), []
    rows, cols = np.nonzero(neighbours.similarity >= threshold)
    for i, position in zip(rows, cols):
        j = int(neighbours.index[i, position])
        pair = (min(int(i), j), max(int(i), j))
        if pair in seen:
            continue
        seen.add(pair)
        a, b = pair
        similarity = float(neighbours.similarity[i, position])
        identical = bool(same_content is not None and same_content[a] == same_content[b])
        crosses = splits[a] != splits[b] and "train" in (splits[a], splits[b])
        pairs.append({"first": a, "second": b, "similarity": round(min(similarity, 1.0), 4),
                      "exact": identical or similarity >= EXACT_SIMILARITY, "kind": "leak" if crosses else "duplicate"})
    pairs.sort(key=lambda p: (p["kind"] != "leak", -p["similarity"]))
    return pairs


def outlier_scores(neighbours: Neighbours) -> tuple[np.ndarray, np.ndarray]:
    """(distance, z): each item's mean cosine distance to its k nearest neighbours, and how many
    robust standard deviations that lies above the median (z > OUTLIER_Z: an outlier)."""
    distance = 1.0 - neighbours.similarity.mean(1)
    median = float(np.median(distance))
    spread = 1.4826 * float(np.median(np.abs(distance - median)))
    z = (distance - median) / max(spread, 1e-9)
    return distance, z
