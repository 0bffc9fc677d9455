"""An exponential moving average of a model's weights (and batch-norm buffers), for evaluation.

Why: a one-cycle run read mid-schedule is at its high rate, and its raw weights bounce around
the minimum the anneal will settle in (mnist-5k at 60 s: a scratch arm read 0.49, 0.72, 0.71,
0.82, 0.76 over its first 8 s, and 0.95 once annealed). Averaged over the last stretch of steps
they read nearer to where the anneal goes, so an early reading (auto's race decides on those)
is not mistaken for the arm's end.

The window is a share of the schedule's steps rather than a fixed decay (a step of a 28 px CNN
takes 50 ms and one of a 300 px image model a second: 0.99 per step would average the first
over 5 s and the second over 100 s), scaled by the rate's share of its peak so far: wide where the
weights bounce, narrowing as the anneal settles them, so at the schedule's end the average is the
raw weights. Measured on mnist-5k (scratch, 30 s, seeds 0-1) with a fixed window: 0.83-0.84
against 0.67-0.78 raw after 4 s, 0.88-0.91 against 0.83-0.86 after 7 s, but 0.5-0.8 points under
the raw weights at the end (it lagged the anneal); the rate-scaled window is what fixed that.
"""
from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel

WINDOW_SHARE = 0.1   # the average spans about this share of the schedule's steps
MIN_WINDOW = 10      # steps


class WeightAverage:
    """average.update(model, step, total_steps, rate) after each optimizer step;
    average.module is the averaged copy (same keys as the model's state_dict)."""

    def __init__(self, model: torch.nn.Module):
        self._averaged = AveragedModel(model, multi_avg_fn=self._blend, use_buffers=True)
        self._decay, self._peak = 0.0, 0.0

    @property
    def module(self) -> torch.nn.Module:
        return self._averaged.module

    def update(self, model: torch.nn.Module, step: int, total_steps: int, rate: float = 1.0) -> None:
        """rate: the learning rate this step used; the window narrows with its share of the highest
        rate so far (a warm-up's rising rate keeps it wide)."""
        self._peak = max(self._peak, rate)
        share = rate / self._peak if self._peak > 0 else 1.0
        window = max(MIN_WINDOW, WINDOW_SHARE * total_steps * share)
        # early on the average is young: its decay warms up (timm's ModelEmaV3 does the same), so
        # the first readings are not dominated by the random initial weights
        self._decay = min(1.0 - 1.0 / window, (1.0 + step) / (10.0 + step))
        self._averaged.update_parameters(model)

    def _blend(self, averaged: list[torch.Tensor], current: list[torch.Tensor], _count) -> None:
        with torch.no_grad():
            floats = [(a, c) for a, c in zip(averaged, current) if a.is_floating_point()]
            if floats:
                torch._foreach_lerp_([a for a, _ in floats], [c for _, c in floats], 1.0 - self._decay)
            for a, c in zip(averaged, current):  # integer buffers (batch counts): the latest
                if not a.is_floating_point():
                    a.copy_(c)
