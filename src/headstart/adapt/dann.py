"""DANN (Ganin & Lempitsky, "Unsupervised Domain Adaptation by Backpropagation", ICML 2015).

A small domain classifier reads the backbone's pooled features of source and target batches
through a gradient reversal layer: it learns to tell the domains apart while the backbone,
receiving its gradient negated, learns features it cannot tell apart. The reversal's weight
ramps as 2 / (1 + exp(-10 p)) - 1 over training progress p, so the classifier's early, noisy
signal does not wreck the features before the label loss has shaped them.

Training starts from the probe's head, as lp-ft does (the default: --strategy lp-ft, or
finetune for fastai's rates): a fitted head gives the backbone a sound label gradient from
the first step, so the domain loss pulls features that already classify, and the same head on
raw features is this run's "no adaptation" reference, for free. The loop is the house loop
(budget, progress bar, checkpoint and --resume, evaluation on source validation); the domain
classifier is attached to the model while it trains, so checkpoints hold it, and removed
before the model is saved.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..files import read_json, write_json
from ..strategies import FitContext
from ..strategies.linear import fit_logistic_head
from ..strategies.backbone_training import resuming_past_head, run_training_loop
from ..train.batches import make_loader
from ..train.optim import layerwise_groups
from .domain_methods import AdaptJob, accuracy_of, register_adaptation

DOMAIN_HIDDEN = 256
# The domain classifier is a fresh layer stack, like the paper's, it learns at 10x the rate of
# the (pretrained) layers it is shaping.
DOMAIN_LR_SCALE = 10.0
REFERENCE = "dann-reference.json"  # the probe head's figures, kept for --resume


class GradientReversal(torch.autograd.Function):
    """Identity forward; the gradient times -coefficient backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, coefficient: float) -> torch.Tensor:
        ctx.coefficient = coefficient
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.coefficient * grad, None


def reverse_gradient(x: torch.Tensor, coefficient: float) -> torch.Tensor:
    return GradientReversal.apply(x, coefficient)


def reversal_weight(progress: float) -> float:
    """The paper's ramp: 0 at the start of training, -> 1 at its end."""
    return 2.0 / (1.0 + math.exp(-10.0 * min(max(progress, 0.0), 1.0))) - 1.0


class DomainClassifier(nn.Module):
    """features -> P(target): one hidden layer (the paper's has two of 1,024; on 2 cores and a
    1,280-wide feature this is plenty to tell two domains apart)."""

    def __init__(self, feature_dim: int, hidden: int = DOMAIN_HIDDEN):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(feature_dim, hidden), nn.ReLU(), nn.Dropout(0.1), nn.Linear(hidden, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(1)


class DomainObjective:
    """The loop's objective: class logits of the source batch, plus the domain loss of source
    and target features behind the reversal. Target batches cycle through the target pool,
    augmented as the source is."""

    def __init__(self, target_dataset, recorder, epochs: int, seed: int):
        self.dataset, self.recorder, self.epochs, self.seed = target_dataset, recorder, max(epochs, 1), seed
        self.batches, self.cycle = None, 0
        self.correct = self.seen = 0  # the domain classifier's accuracy (0.5: the domains look alike)

    def _target_batch(self, size: int) -> torch.Tensor:
        if self.batches is None:
            loader = make_loader(self.dataset, size, shuffle=True, seed=self.seed + self.cycle,
                                 drop_last=len(self.dataset) > size)
            self.batches, self.cycle = iter(loader), self.cycle + 1
        try:
            return next(self.batches)[0]
        except StopIteration:
            self.batches = None
            return self._target_batch(size)

    def __call__(self, model, x, y):
        net = getattr(model, "module", model)  # the classifier inside a DDP wrapper
        xt = self._target_batch(len(x)).to(x.device)
        if xt.shape[1:] == x.shape[1:]:  # one pass over both: batch norm sees the two domains together
            both = net.features(torch.cat([x, xt]))
        else:  # token batches of different widths
            both = torch.cat([net.features(x), net.features(xt)])
        source = both[:len(x)]
        coefficient = reversal_weight(self.recorder.epoch / self.epochs)
        domain_logits = net.domain_head(reverse_gradient(both, coefficient)).float()
        domain = torch.cat([torch.zeros(len(x)), torch.ones(len(xt))]).to(domain_logits.device)
        loss = F.binary_cross_entropy_with_logits(domain_logits, domain)
        self.correct += int(((domain_logits > 0).float() == domain).sum())
        self.seen += len(domain)
        return net.head(source), loss


@register_adaptation("dann")
def fit_dann(job: AdaptJob) -> tuple[dict, dict]:
    plan, model, rec = job.plan, job.model, job.recorder
    strategy, config = plan.strategy, plan.config
    train, val, test = job.parts
    ctx = FitContext(config=config, train=train, val=val, recorder=rec, modality=plan.modality, spec=plan.spec,
                     checkpoint_dir=job.run_dir / "checkpoint", use_feature_cache=job.use_feature_cache,
                     test_size=len(test))
    head, none = _probe_reference(job, ctx)

    strategy.prepare_backbone(model, ctx)
    device = next(model.parameters()).device
    model.domain_head = DomainClassifier(model.backbone.feature_dim).to(device)
    lr = strategy.lr(config, plan.modality)
    backbone_groups = model.backbone.param_groups()
    groups = layerwise_groups(backbone_groups, model.head, lr,
                              strategy.spread(len(backbone_groups), plan.modality, config))
    groups.append({"params": list(model.domain_head.parameters()), "lr": lr * DOMAIN_LR_SCALE, "name": "domain"})
    objective = DomainObjective(_target_dataset(job, strategy), rec, strategy.epochs(config, plan.modality),
                                config.seed)
    try:
        # as lp-ft: training must beat the probe head on source validation to replace it (the only
        # labels there are), so DANN and the plain fine-tune it is compared with select alike
        trained = run_training_loop(strategy, model, groups, ctx, schedule=strategy.schedule, objective=objective,
                                    initial_val=head.get("probe_val_accuracy"))
    finally:
        del model.domain_head  # the saved model is the classifier alone
    rec.pause()
    after = _scores(model, test, job.target)
    adaptation = {
        "arms": {"none": none, "dann": after},
        "none_is": "the probe's logistic head on the pretrained, unadapted backbone, fitted in this run before "
                   "DANN trained (the fair reference for a fine-tune is the same fine-tune without the domain "
                   "loss: bench/domain_adaptation.py runs it)",
        "start": "the probe's head (as lp-ft)",
        "domain_accuracy": round(objective.correct / objective.seen, 4) if objective.seen else None,
        "domain_lr_scale": DOMAIN_LR_SCALE,
        "source_accuracy_means": "the saved model on the source test split",
    }
    outcome = {**head, **trained, **strategy.finish_backbone(model)}
    return outcome, adaptation


def _probe_reference(job: AdaptJob, ctx: FitContext) -> tuple[dict, dict]:
    """The probe's head (DANN starts from it) and its scores, the run's "none". On --resume
    the checkpoint already holds the head; the scores were kept beside it."""
    saved = ctx.checkpoint_dir / REFERENCE
    if resuming_past_head(ctx, job.plan.strategy.name) and saved.exists():
        kept = read_json(saved)
        return kept["head"], kept["none"]
    head = fit_logistic_head(job.model, ctx, c_grid=job.plan.strategy.head_c_grid)
    ctx.recorder.pause()
    none = _scores(job.model, job.parts[2], job.target)
    write_json(saved, {"head": head, "none": none})
    return head, none


def _scores(model, test, target) -> dict:
    """Source test and target accuracy of the model as it stands (evaluation: untimed)."""
    model.eval()
    source = accuracy_of(model.logits(test, description="source test"), test.labels)
    aimed = None
    if target.labels is not None:
        aimed = accuracy_of(model.logits(target.data, description="target"), target.labels)
    return {"source_accuracy": source, "target_accuracy": aimed}


def _target_dataset(job: AdaptJob, strategy):
    """The target pool as a training dataset (its labels are placeholders the objective never
    reads), augmented and preprocessed as the source is."""
    config, modality, data = job.plan.config, job.plan.modality, job.target.data
    placeholders = replace(data, labels=np.zeros(len(data), dtype=np.int64))
    return modality.training_dataset(placeholders, strategy.augment(config, modality),
                                      job.model.backbone.preprocessing.input_size)
