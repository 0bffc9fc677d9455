"""Stratified, seeded train/validation/test splits whose indices are saved with each run."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from headstart.data.dataset import ImageData
from headstart.errors import HeadstartError

_PARTS = ("train", "val", "test")


@dataclass
class Splits:
    """Three disjoint parts of one ImageData; `indices` point into that original data."""

    train: ImageData
    val: ImageData
    test: ImageData
    indices: dict[str, list[int]]
    seed: int = 0

    def to_dict(self) -> dict:
        return {
            "seed": self.seed,
            "sizes": {part: len(self.indices[part]) for part in _PARTS},
            "indices": {part: list(self.indices[part]) for part in _PARTS},
        }

    @classmethod
    def from_dict(cls, data: ImageData, d: dict) -> "Splits":
        """Rebuild the splits a run saved with to_dict, over the same data."""
        indices = {part: [int(i) for i in d["indices"][part]] for part in _PARTS}
        top = max((max(v) for v in indices.values() if v), default=-1)
        if top >= len(data):
            raise HeadstartError(
                f"the saved split refers to {_noun(data)[:-1]} {top} but the data has only {len(data)} {_noun(data)}",
                "load the same data the run was trained on",
            )
        parts = {part: data.subset(np.array(indices[part], dtype=np.int64)) for part in _PARTS}
        return cls(**parts, indices=indices, seed=int(d.get("seed", 0)))


def make_splits(
    data: ImageData,
    *,
    seed: int = 0,
    train_per_class: int | None = None,
    train_size: int | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    max_eval: int = 1000,
    min_classes: int = 2,
) -> Splits:
    """Split `data` into train, val and test, stratified by class and fixed by `seed`.

    A predefined test part (data.is_test) is kept as the test pool; otherwise `test_fraction`
    of the data is held out. Val and test are each capped at `max_eval` images, as evaluation
    beyond that adds time, not insight. Train is the remainder, or `train_per_class` images of
    each class, or `train_size` images in all (stratified). min_classes: 1 where the data adds to
    classes a model already has (a continued run's one new class).
    """
    _check_arguments(train_per_class, train_size, val_fraction, test_fraction, max_eval)
    noun = _noun(data)
    if len(data) == 0:
        raise HeadstartError(f"{data.name} has no {noun} to split", "check the data source")
    labels, classes = data.labels, data.classes
    counts = np.bincount(labels, minlength=len(classes))
    present = [classes[k] for k in np.flatnonzero(counts)]
    if len(present) < min_classes:
        raise HeadstartError(
            f"training a classifier needs at least two classes; found only '{present[0]}'",
            f"add {noun} of at least one more class",
        )
    num_classes = len(classes)
    rng = np.random.default_rng(seed)
    everything = np.arange(len(data))

    if data.is_test is not None and data.is_test.any():
        test_pool, rest = everything[data.is_test], everything[~data.is_test]
        _require_per_class(test_pool, labels, classes, 1, "in the predefined test part", noun)
        _require_per_class(rest, labels, classes, 2, "outside the test part (for train and validation)", noun)
        n_test = _eval_size(len(test_pool), 1.0, max_eval, num_classes)
        test = _stratified_sample(test_pool, labels, num_classes, n_test, rng, keep=0)
    else:
        _require_per_class(everything, labels, classes, 3, "(one each for train, validation and test)", noun)
        n_test = _eval_size(len(data), test_fraction, max_eval, num_classes)
        test = _stratified_sample(everything, labels, num_classes, n_test, rng, keep=2)
        rest = np.setdiff1d(everything, test)
    n_val = _eval_size(len(rest), val_fraction, max_eval, num_classes)
    val = _stratified_sample(rest, labels, num_classes, n_val, rng, keep=1)
    train = _choose_train(np.setdiff1d(rest, val), labels, classes, train_per_class, train_size, rng, noun)

    indices = {"train": train, "val": val, "test": test}
    return Splits(
        **{part: data.subset(idx) for part, idx in indices.items()},
        indices={part: idx.tolist() for part, idx in indices.items()},
        seed=seed,
    )


def _check_arguments(train_per_class, train_size, val_fraction, test_fraction, max_eval) -> None:
    if train_per_class is not None and train_size is not None:
        raise HeadstartError("give train_per_class or train_size, not both", "drop one of the two options")
    for name, value in (("train_per_class", train_per_class), ("train_size", train_size), ("max_eval", max_eval)):
        if value is not None and value < 1:
            raise HeadstartError(f"{name} must be at least 1, got {value}", f"pass a positive {name}")
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 < value < 1:
            raise HeadstartError(f"{name} must be between 0 and 1, got {value}", "pass e.g. 0.15")
    if val_fraction + test_fraction >= 1:
        raise HeadstartError(
            f"val_fraction + test_fraction = {val_fraction + test_fraction:g} leaves nothing to train on",
            "keep their sum well below 1, e.g. 0.15 each",
        )


def _noun(data) -> str:
    # Messages speak of what the user has: "images", or "examples" for texts.
    return getattr(data, "noun", "examples")


def _require_per_class(
    pool: np.ndarray, labels: np.ndarray, classes: list[str], need: int, where: str, noun: str = "images"
) -> None:
    counts = np.bincount(labels[pool], minlength=len(classes))
    short = [(classes[k], int(counts[k])) for k in np.flatnonzero(counts < need)]
    if short:
        name, count = short[0]
        others = f" (and {len(short) - 1} more classes)" if len(short) > 1 else ""
        raise HeadstartError(
            f"class '{name}' has only {count} {noun} {where}; each class needs at least {need}{others}",
            f"add {noun} to that class or remove the class",
        )


def _eval_size(pool_size: int, fraction: float, max_eval: int, num_classes: int) -> int:
    # At least one image per class, so every class is measured; at most max_eval.
    return max(num_classes, min(max_eval, round(fraction * pool_size)))


def _stratified_sample(
    pool: np.ndarray, labels: np.ndarray, num_classes: int, n: int, rng: np.random.Generator, keep: int
) -> np.ndarray:
    """n indices from `pool`, class proportions kept, >= 1 per class, leaving >= `keep` per class."""
    counts = np.bincount(labels[pool], minlength=num_classes)
    take = _allocate(counts, n, caps=np.maximum(counts - keep, 0))
    return _take_per_class(pool, labels, take, rng)


def _allocate(counts: np.ndarray, n: int, caps: np.ndarray) -> np.ndarray:
    """Per-class sample sizes summing to n (or to caps.sum() if less): proportional to
    `counts` by largest remainder, at least 1 for every class with a count, at most `caps`."""
    n = min(n, int(caps.sum()))
    quota = n * counts / counts.sum()
    take = np.minimum(np.floor(quota).astype(np.int64), caps)
    take[(counts > 0) & (take == 0) & (caps > 0)] = 1
    # Too many after the one-per-class floor: shrink the classes furthest above their quota.
    while take.sum() > n:
        excess = np.where(take > 1, take - quota, -np.inf)
        take[np.argmax(excess)] -= 1
    # Too few: grow by largest remainder, skipping full classes (a stable sort: same input, same sizes).
    order = np.argsort(-(quota - take), kind="stable")
    while take.sum() < n:
        for k in order:
            if take.sum() == n:
                break
            if take[k] < caps[k]:
                take[k] += 1
    return take


def _take_per_class(pool: np.ndarray, labels: np.ndarray, take: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    chosen = [rng.permutation(pool[labels[pool] == k])[:t] for k, t in enumerate(take) if t > 0]
    return np.sort(np.concatenate(chosen)) if chosen else np.empty(0, dtype=np.int64)


def _choose_train(
    pool: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
    per_class: int | None,
    size: int | None,
    rng: np.random.Generator,
    noun: str = "images",
) -> np.ndarray:
    counts = np.bincount(labels[pool], minlength=len(classes))
    if per_class is not None:
        short = np.flatnonzero(counts < per_class)
        if len(short):
            k = short[0]
            raise HeadstartError(
                f"train_per_class={per_class} but class '{classes[k]}' has only {counts[k]} training {noun} "
                f"available after holding out validation and test",
                f"use train_per_class={int(counts.min())} or fewer, or add {noun} to '{classes[k]}'",
            )
        return _take_per_class(pool, labels, np.full(len(classes), per_class), rng)
    if size is not None:
        if size > len(pool):
            raise HeadstartError(
                f"train_size={size} but only {len(pool)} training {noun} are available after holding out "
                f"validation and test",
                f"use train_size={len(pool)} or fewer",
            )
        if size < len(classes):
            raise HeadstartError(
                f"train_size={size} cannot hold one {noun[:-1]} of each of the {len(classes)} classes",
                f"use train_size={len(classes)} or more",
            )
        return _take_per_class(pool, labels, _allocate(counts, size, caps=counts), rng)
    return np.sort(pool)


def stratified_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """A permutation whose every prefix holds the classes in their overall proportions."""
    rng = np.random.default_rng(seed)
    keys = np.empty(len(labels))
    for k in np.unique(labels):
        idx = np.flatnonzero(labels == k)
        rng.shuffle(idx)
        # the i-th member of a class of size m sits at position (i + jitter) / m in [0, 1)
        keys[idx] = (np.arange(len(idx)) + rng.random(len(idx))) / len(idx)
    return np.argsort(keys, kind="stable")
