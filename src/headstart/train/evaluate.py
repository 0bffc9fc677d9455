"""Accuracy and loss from logits. Inference itself is heads.predict_logits."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..heads import predict_logits  # noqa: F401  (the loop's and strategies' inference)


def score(logits: torch.Tensor, labels: np.ndarray) -> tuple[float, float]:
    """(accuracy, mean cross-entropy)."""
    y = torch.from_numpy(labels.astype(np.int64))
    accuracy = (logits.argmax(1) == y).float().mean().item()
    loss = F.cross_entropy(logits, y).item()
    return accuracy, loss
