"""The loss a batch gives, for the one training loop, and the stop when it stops being a number.

Two kinds of loop share everything else (schedule, budget, checkpoints, clock, metrics):
- labelled (fit): cross-entropy on (x, y) with label smoothing and class weights, a share of
  batches mixed by mixup/cutmix, plus the plan's objective's extra term (a domain classifier
  behind a gradient reversal, distillation from an old model);
- without labels (pretrain): the batch goes whole to the plan's objective, or to the model
  itself (adapt/ssl.SSLModel's forward is its loss), and what comes back is the loss.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import HeadstartError
from .augment import build_mixup


def step_loss(plan, class_weight: torch.Tensor | None, mixer: "Mixer | None") -> Callable:
    """loss(model, batch) -> the scalar the step minimises, as the plan says."""
    if not plan.labelled:
        if plan.objective is None:
            return lambda model, batch: model(batch)
        return plan.objective

    def classification(model, batch):
        x, y = batch
        if mixer is not None and mixer.wants(y):
            x, soft = mixer(x, y)  # soft targets, label smoothing included
            return F.cross_entropy(model(x), soft, weight=class_weight)
        logits, extra = (model(x), None) if plan.objective is None else plan.objective(model, x, y)
        loss = F.cross_entropy(logits, y, weight=class_weight, label_smoothing=plan.label_smoothing)
        return loss if extra is None else loss + extra
    return classification


class Mixer:
    """Mixes a share (plan.mixup) of the training batches with timm's Mixup, and counts them.

    Which batches are mixed follows the seed; timm draws lam and mixup-or-cutmix from numpy's
    global generator, seeded here for the same reason. A batch of odd size is left alone
    (timm mixes each sample with its mirror in the batch)."""

    def __init__(self, plan):
        self.share = plan.mixup
        self.mixup = build_mixup(plan.num_classes, plan.label_smoothing)
        self.rng = np.random.default_rng(plan.seed)
        np.random.seed(plan.seed)
        self.counts = {"batches": 0, "samples": 0, "per_class": {}}

    def wants(self, y) -> bool:
        return self.rng.random() < self.share and len(y) % 2 == 0 and len(y) > 1

    def __call__(self, x, y):
        self.counts["batches"] += 1
        self.counts["samples"] += len(y)
        for k, n in zip(*np.unique(y.cpu().numpy(), return_counts=True)):
            self.counts["per_class"][int(k)] = self.counts["per_class"].get(int(k), 0) + int(n)
        return self.mixup(x.float(), y)  # uint8 pixels cannot hold a blend


def check_finite(accelerator, loss, epoch: int, step: int, checkpoint_dir, recorder, plan) -> None:
    """Stop on a NaN or infinite loss, saying where the last good checkpoint is."""
    value = loss.detach().float().reshape(1)
    if accelerator.num_processes > 1:
        value = accelerator.reduce(value, "sum")  # one rank's NaN must stop every rank
    if not torch.isfinite(value).all():
        recorder.pause()
        where = f" The last good checkpoint is in {checkpoint_dir}." if checkpoint_dir else ""
        raise HeadstartError(
            f"the {plan.loss_name} loss became {value.item()} at epoch {epoch + 1}, step {step + 1}; "
            f"training stopped.{where}",
            hint=f"{plan.diverged_hint}; --resume continues from the last good checkpoint",
        )
