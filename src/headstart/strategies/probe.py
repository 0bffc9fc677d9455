"""probe: frozen backbone, cached features, a logistic head tuned on validation."""
from __future__ import annotations

from .base import FitContext, Strategy, register_strategy
from .linear import fit_logistic_head
from .refit import wants_refit


@register_strategy
class Probe(Strategy):
    name = "probe"
    description = ("frozen backbone; features cached once; logistic head with C tuned on validation, then "
                   "refit on train+val (--refit)")

    def fit(self, classifier, ctx: FitContext) -> dict:
        classifier.backbone.set_trainable(False)
        # the head is one solve on cached features: refitting it on train+val costs seconds
        result = fit_logistic_head(classifier, ctx, refit=wants_refit(ctx.config, cheap=True), hold=ctx.hold_refit)
        ctx.recorder.epoch = 1.0
        return {**result, "best_val_accuracy": result["probe_val_accuracy"]}
