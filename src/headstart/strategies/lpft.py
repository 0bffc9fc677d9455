"""lp-ft: linear probe, then fine-tune everything from the probe's head at a low rate.

Kumar et al. (2022): starting fine-tuning from a good head distorts the pretrained
features less than starting from a random one, which helps most when data is scarce.

It cannot end below its own probe: the probe head is epoch 0 of the loop, and only a state
with higher validation accuracy at no higher a loss replaces it (the run says when none did).
The backbone's batch-norm statistics stay the pretrained ones (backbone_training.py): updated
from batches of 16 small grey images they collapsed lp-ft to 0.10-0.16 on mnist-5k.
"""
from __future__ import annotations

from ..heads import PROBE_C_GRID
from .base import register_strategy
from .backbone_training import HeadThenAllLayers


@register_strategy
class LinearProbeThenFinetune(HeadThenAllLayers):
    name = "lp-ft"
    default_epochs = 3
    default_lr = 2e-4
    default_augment = "light"
    description = "tuned linear probe, then all layers at one low rate (cosine)"
    head_c_grid = PROBE_C_GRID   # the full probe, regularisation tuned on validation
    lr_spread = 1.0        # one rate for every layer
    schedule = "cosine"
