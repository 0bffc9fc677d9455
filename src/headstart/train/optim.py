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


# The loop's changes to a schedule's shape while it runs (train/loop.py)

def still_warming_up(scheduler) -> bool:
    """Is the learning rate still rising (a one-cycle's first quarter)? A curve flat at chance
    while the rate warms up is a run that has not started, not a plateau."""
    step = scheduler.last_epoch
    return any(f(step + 1) > f(step) + 1e-12 for f in scheduler.lr_lambdas)


COOL_DOWN_SHARE = 0.25  # a plateau's cool-down: this share of the steps so far (at least an epoch)


def cool_down(scheduler, steps_per_epoch: int) -> None:
    """Anneal from the current rate to ~0 (cosine) over the cool-down, and end the horizon there.

    Why: a run stopped on a plateau at its peak rate (a one-cycle planned over 30 epochs is
    still warming up at epoch 7) never anneals, and the last few points of accuracy come from
    annealing. A horizon that already ends sooner is annealing anyway and is left alone. The
    cool-down lives in this process: --resume in the middle of one restarts the schedule's
    own shape, and the rule fires again at the next evaluation.
    """
    start, horizon = scheduler.last_epoch, scheduler.horizon
    end = start + max(steps_per_epoch, int(COOL_DOWN_SHARE * start))
    if horizon.total <= end:
        return

    def annealed(now: float):
        def factor(step: int) -> float:
            t = (step - start) / max(1, horizon.total - start)
            return now * 0.5 * (1 + math.cos(math.pi * min(max(t, 0.0), 1.0))) + 1e-4
        return factor
    # each group's factor now, read before the horizon moves (the schedule's shape depends on it)
    scheduler.lr_lambdas = [annealed(f(start)) for f in scheduler.lr_lambdas]
    horizon.total = end  # --budget may shorten it further (train/loop.py's _fit_schedule_to_budget)
