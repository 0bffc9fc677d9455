"""finetune: fastai's recipe, with the frozen phase done on cached features.

fastai trains the new head for an epoch with the body frozen, then unfreezes everything
with discriminative rates on a one-cycle schedule. A frozen body means its features never
change, so our head phase is a logistic fit on cached features (seconds, no backprop),
then every layer trains with rates from lr/100 at the stem up to lr at the head.
"""
from __future__ import annotations

from .base import register_strategy
from .backbone_training import HeadThenAllLayers


@register_strategy
class Finetune(HeadThenAllLayers):
    name = "finetune"
    default_epochs = 5
    default_lr = 1e-3
    default_augment = "light"
    description = "head on cached features, then all layers with discriminative rates (one-cycle)"
    head_c_grid = (0.1,)   # fastai's head phase is short: one regularisation, no sweep
    lr_spread = 100.0      # stem rate = lr / 100, as fastai's slice(lr/100, lr)
