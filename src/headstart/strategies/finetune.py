"""finetune: fastai's recipe, with the frozen phase done on cached features.

fastai trains the new head for an epoch with the body frozen, then unfreezes everything
with discriminative rates on a one-cycle schedule. A frozen body means its features never
change, so our head phase is a logistic fit on cached features (seconds, no backprop),
then every layer trains with rates from lr/100 at the stem up to lr at the head.
"""
from __future__ import annotations

from ..train.optim import layerwise_groups
from .base import FitContext, Strategy, register_strategy
from .linear import fit_logistic_head
from .tuning import resuming_past_head, run_training_loop

LR_SPREAD = 100.0  # stem rate = lr / LR_SPREAD, as fastai's slice(lr/100, lr)


@register_strategy
class Finetune(Strategy):
    name = "finetune"
    default_epochs = 5
    default_lr = 1e-3
    default_augment = "light"
    description = "head on cached features, then all layers with discriminative rates (one-cycle)"

    def fit(self, classifier, ctx: FitContext) -> dict:
        head = {}
        if not resuming_past_head(ctx, self.name):
            head = fit_logistic_head(classifier, ctx, c_grid=(0.1,))
        for p in classifier.parameters():
            p.requires_grad_(True)
        groups = layerwise_groups(classifier.backbone.param_groups(), classifier.head,
                                  self.lr(ctx.config), LR_SPREAD)
        return {**head, **run_training_loop(self, classifier, groups, ctx,
                                            initial_val=head.get("probe_val_accuracy"))}
