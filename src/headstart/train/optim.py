"""Optimizers, learning-rate schedules and layer-wise (discriminative) rates, as registries."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from ..registry import Registry

# name -> fn(parameter groups, weight decay) -> optimizer
OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimizer")
OPTIMIZERS.add("adamw", lambda groups, wd: torch.optim.AdamW(groups, weight_decay=wd))
OPTIMIZERS.add("adam", lambda groups, wd: torch.optim.Adam(groups, weight_decay=wd))
OPTIMIZERS.add("sgd", lambda groups, wd: torch.optim.SGD(groups, momentum=0.9, nesterov=True, weight_decay=wd))
OPTIMIZERS.add("rmsprop", lambda groups, wd: torch.optim.RMSprop(groups, alpha=0.9, momentum=0.9, weight_decay=wd))


def build_optimizer(name: str, groups: list[dict], weight_decay: float) -> torch.optim.Optimizer:
    make = OPTIMIZERS.get(name)
    groups = [g for g in groups if g["params"]]
    for g in groups:
        g["initial_lr"] = g["lr"]
    return make(groups, weight_decay)


def layerwise_groups(backbone_groups: list[list[nn.Parameter]], head: nn.Module, lr: float,
                     spread: float) -> list[dict]:
    """fastai-style discriminative rates: the head and last block train at `lr`, the stem at
    lr / spread, the blocks in between on a geometric ramp. Early layers hold generic features
    that a small dataset should barely move; late layers are the task-specific ones."""
    n = len(backbone_groups)
    groups = []
    for i, params in enumerate(backbone_groups):
        # i = 0 (stem) -> lr / spread;  i = n - 1 (last block) -> lr
        scale = spread ** (-(n - 1 - i) / max(n - 1, 1))
        groups.append({"params": [p for p in params if p.requires_grad], "lr": lr * scale, "name": f"group{i}"})
    groups.append({"params": [p for p in head.parameters() if p.requires_grad], "lr": lr, "name": "head"})
    return groups


class Horizon:
    """The schedule's length in steps, mutable: a budgeted run shortens it once it knows how
    many steps fit, so the rate still anneals to ~0 by the end instead of being cut mid-peak."""

    def __init__(self, total_steps: int):
        self.total = max(1, int(total_steps))


# name -> fn(optimizer, Horizon) -> LambdaLR
SCHEDULES: Registry[Callable] = Registry("schedule")


@SCHEDULES.register("onecycle")
def _onecycle(optimizer, horizon: Horizon):
    # Warm up for 25% of steps to the peak rate, then cosine-anneal to ~0 (Smith's one-cycle).
    def factor(step: int) -> float:
        warm = max(1, int(0.25 * horizon.total))
        if step < warm:
            return 0.04 + 0.96 * step / warm
        t = (step - warm) / max(1, horizon.total - warm)
        return 0.5 * (1 + math.cos(math.pi * min(t, 1.0))) + 1e-4
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@SCHEDULES.register("cosine")
def _cosine(optimizer, horizon: Horizon):
    def factor(step: int) -> float:
        warm = max(1, int(0.05 * horizon.total))
        if step < warm:
            return (step + 1) / warm
        t = (step - warm) / max(1, horizon.total - warm)
        return 0.5 * (1 + math.cos(math.pi * min(t, 1.0))) + 1e-4
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@SCHEDULES.register("constant")
def _constant(optimizer, horizon: Horizon):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def build_schedule(name: str, optimizer, total_steps: int):
    """A LambdaLR whose `.horizon.total` (steps) may be shortened while training."""
    make = SCHEDULES.get(name)
    horizon = Horizon(total_steps)
    scheduler = make(optimizer, horizon)
    scheduler.horizon = horizon
    return scheduler
