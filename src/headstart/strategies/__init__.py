"""Registered strategies; importing this package registers them all."""
from . import finetune, lora, lpft, probe, scratch, tfidf  # noqa: F401  (registration side effect)
from .base import STRATEGIES, FitContext, Strategy, get_strategy, register_strategy

__all__ = ["STRATEGIES", "FitContext", "Strategy", "get_strategy", "register_strategy"]
