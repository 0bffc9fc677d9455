"""--balance: act on class imbalance with a class-weighted loss (and head) or a balanced sampler.

Class weights are scikit-learn's "balanced" weights, n / (K n_k): inversely proportional to
each class's count and averaging 1 over the training samples, so a weighted loss keeps the
scale of the unweighted one (and C, the head's regularisation, keeps its meaning).

`auto` decides from the training imbalance ratio (largest class / smallest class):

- below AUTO_RATIO (1.5) the classes are near enough equal that reweighting would only add
  variance: nothing is done;
- otherwise a class-weighted loss. Weighting changes nothing but the loss, is
  deterministic, and costs nothing; a balanced sampler repeats the few minority items many
  times per epoch at high ratios (and, on a full-batch logistic head, is the same objective
  in expectation, with duplicate-sampling noise on top).

The decision and its reason are recorded in the run's summary.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import HeadstartError
from ..log import say

MODES = ("none", "weights", "sampler", "auto")
AUTO_RATIO = 1.5  # below this largest/smallest ratio, auto leaves the data alone


def imbalance_ratio(labels: np.ndarray, num_classes: int) -> float:
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
    present = counts[counts > 0]
    return float(present.max() / present.min()) if len(present) else 1.0


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """n / (K n_k) per class (K: the classes present); 1 for a class with no training sample.
    Their mean over the samples is exactly 1."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.float64)
    present = counts > 0
    weights = np.ones(num_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


def sample_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Each sample's class weight: the per-sample weights of a weighted loss, or the draw
    probabilities (unnormalised) of a class-balanced sampler."""
    return class_weights(labels, num_classes)[np.asarray(labels, dtype=np.int64)]


@dataclass
class Balance:
    """What --balance resolved to for one training set."""

    requested: str
    mode: str                 # none | weights | sampler
    reason: str
    imbalance_ratio: float
    weights: np.ndarray       # per class (all ones when mode is none)

    @property
    def active(self) -> bool:
        return self.mode != "none"

    def record(self, classes: list[str]) -> dict:
        """The summary's "balance" entry."""
        return {"mode": self.mode, "requested": self.requested, "reason": self.reason,
                "imbalance_ratio": round(self.imbalance_ratio, 3),
                "class_weights": {c: round(float(w), 4) for c, w in zip(classes, self.weights)}}


def decide_balance(requested: str, labels: np.ndarray, num_classes: int) -> Balance:
    """Resolve --balance for these training labels (auto: from their imbalance ratio)."""
    if requested not in MODES:
        raise HeadstartError(f"unknown --balance '{requested}'", hint=f"choose one of: {', '.join(MODES)}")
    ratio = imbalance_ratio(labels, num_classes)
    weights = class_weights(labels, num_classes)
    if requested == "auto":
        if ratio < AUTO_RATIO:
            mode = "none"
            reason = (f"the training classes are near balanced (ratio {ratio:.2f} < {AUTO_RATIO}), "
                      f"so reweighting would add variance without correcting a bias")
        else:
            mode = "weights"
            reason = (f"the largest training class has {ratio:.2f}x the examples of the smallest "
                      f"(>= {AUTO_RATIO}), so the loss weights each class by 1/count (mean 1)")
    else:
        mode = requested
        reason = {"none": "balancing was turned off (--balance none)",
                  "weights": f"requested: the loss weights each class by 1/count (mean 1); ratio {ratio:.2f}",
                  "sampler": f"requested: classes are drawn equally often (ratio {ratio:.2f})"}[mode]
    return Balance(requested=requested, mode=mode, reason=reason, imbalance_ratio=ratio,
                   weights=weights if mode != "none" else np.ones(num_classes))


def oversample(x, labels: np.ndarray, seed: int):
    """Random oversampling (imbalanced-learn's RandomOverSampler): repeat randomly drawn
    members of each smaller class until every class matches the largest. The "sampler" of
    heads fitted in one full batch (the logistic probe, TF-IDF), where no sampler draws
    batches. Returns (x, labels) with the originals first."""
    from imblearn.over_sampling import RandomOverSampler

    if len(np.unique(labels)) < 2:
        return x, labels
    return RandomOverSampler(random_state=seed).fit_resample(x, labels)


def announced(balance: Balance, classes: list[str]) -> dict:
    """The summary's "balance" entry, said aloud; nothing when --balance none was asked."""
    if balance.requested == "none":
        return {}
    say(f"balance: {balance.mode} ({balance.reason})")
    return {"balance": balance.record(classes)}


def balance_full_batch(requested: str, real_labels: np.ndarray, x, y: np.ndarray, classes: list[str], seed: int):
    """--balance for a head fitted in one full batch (the probe's logistic head, TF-IDF's):
    per-sample loss weights, or random oversampling as its "sampler" (no batches to draw).

    The decision is made on the real training labels; the weights are counted on the labels
    the head fits (`y`: synthetic rows included), so synthesis and weights never correct the
    same skew twice. Returns (x, y, sample weights or None, the summary's entries)."""
    balance = decide_balance(requested, real_labels, len(classes))
    weights = None
    if balance.mode == "weights":
        balance.weights = class_weights(y, len(classes))
        weights = balance.weights[y]
        if len(y) > len(real_labels):
            balance.reason += "; the head's weights count the synthetic samples too"
    elif balance.mode == "sampler":
        n = len(y)
        x, y = oversample(x, y, seed)
        balance.reason += (f"; the head is fitted in one full batch, so each class is drawn equally often "
                           f"by random oversampling ({len(y) - n} repeated rows)")
    return x, y, weights, announced(balance, classes)
