"""The seam between `fit --adapt` (domain.py) and its methods (coral.py, dann.py): the registry,
what a method is handed, and the one figure every method reports (accuracy against labels that
may be absent)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..pipeline import Plan
from ..registry import Registry
from ..train.evaluate import score

ADAPTATIONS: Registry[Callable] = Registry("domain-adaptation method")


def register_adaptation(name: str):
    """A method: fn(job: AdaptJob) -> (strategy outcome for the summary, adaptation figures)."""
    return ADAPTATIONS.register(name)


@dataclass
class TargetDomain:
    """The target as the model eats it, its labels kept apart (evaluation only)."""

    data: object                 # prepared for the model, unlabelled
    labels: np.ndarray | None    # in the source's class indices; None: no target accuracy
    name: str
    labels_note: str             # what happened to the target's labels, in words


@dataclass
class AdaptJob:
    """Everything a method needs; it trains `model` in place through `recorder`."""

    plan: Plan
    model: object
    parts: tuple                 # (train, val, test) of the source, prepared
    target: TargetDomain
    recorder: object
    run_dir: object
    use_feature_cache: bool = True


def accuracy_of(logits, labels: np.ndarray | None) -> float | None:
    """Accuracy of logits (a tensor or array) against labels; None without labels."""
    if labels is None:
        return None
    logits = torch.as_tensor(np.asarray(logits)) if not isinstance(logits, torch.Tensor) else logits
    return float(score(logits, labels)[0])
