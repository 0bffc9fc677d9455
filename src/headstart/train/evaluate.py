"""Accuracy and loss from logits, and inference: both live with the heads (heads.py), below the
loop, so that the head sweep scores the same way the loop does."""
from __future__ import annotations

from ..heads import predict_logits, score  # noqa: F401  (the loop's and strategies' inference and scoring)
