"""lp-ft: linear probe, then fine-tune everything from the probe's head at a low rate.

Kumar et al. (2022): starting fine-tuning from a good head distorts the pretrained
features less than starting from a random one, which helps most when data is scarce.
"""
from __future__ import annotations

from ..train.optim import layerwise_groups
from .base import FitContext, Strategy, register_strategy
from .linear import fit_logistic_head
from .tuning import resuming_past_head, run_training_loop


@register_strategy
class LinearProbeThenFinetune(Strategy):
    name = "lp-ft"
    default_epochs = 3
    default_lr = 2e-4
    default_augment = "light"
    description = "tuned linear probe, then all layers at one low rate (cosine)"

    def fit(self, classifier, ctx: FitContext) -> dict:
        probe = {}
        if not resuming_past_head(ctx, self.name):
            probe = fit_logistic_head(classifier, ctx)
        for p in classifier.parameters():
            p.requires_grad_(True)
        groups = layerwise_groups(classifier.backbone.param_groups(), classifier.head,
                                  self.lr(ctx.config), spread=1.0)
        return {**probe, **run_training_loop(self, classifier, groups, ctx, schedule="cosine",
                                             initial_val=probe.get("probe_val_accuracy"))}
