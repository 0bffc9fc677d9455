"""scratch: random weights, a schedule fit for training from nothing. The baseline arm."""
from __future__ import annotations

from ..imbalance.synthesize import not_synthesized
from ..train.optim import layerwise_groups
from .base import FitContext, Strategy, register_strategy
from .backbone_training import run_training_loop


@register_strategy
class Scratch(Strategy):
    name = "scratch"
    pretrained = False
    # From nothing, a network needs many passes and a high peak rate; early stopping and
    # --budget end it sooner when validation stops improving.
    default_epochs = 30
    default_lr = 3e-3
    default_augment = "light"
    default_patience = 6
    description = "random init (the backbone's architecture or --scratch-model), one-cycle, many epochs"

    def fit(self, classifier, ctx: FitContext) -> dict:
        for p in classifier.parameters():
            p.requires_grad_(True)
        lr = self.lr(ctx.config, ctx.modality)
        if ctx.config.lr is None and ctx.spec is not None and ctx.spec.scratch_lr:
            lr = ctx.spec.scratch_lr  # an architecture that knows its own rate
        groups = layerwise_groups(classifier.backbone.param_groups(), classifier.head, lr, spread=1.0)
        result = run_training_loop(self, classifier, groups, ctx)
        if not ctx.modality.augments:  # no cached features to interpolate, no pixels to blend
            result.update(not_synthesized(ctx.config.synthesize, (
                f"scratch on {ctx.modality.words.get('noun', 'examples')} has no embedding space to interpolate in "
                "and token ids cannot be blended; --strategy probe synthesizes with SMOTE on embeddings")))
        return result
