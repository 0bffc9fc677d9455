"""Shared by the strategies that train the backbone: plan the loop from config + defaults."""
from __future__ import annotations

import torch

from ..train.loop import TrainPlan, train_model
from ..train.optim import layerwise_groups
from .base import FitContext, Strategy
from .linear import fit_logistic_head


def run_training_loop(strategy: Strategy, classifier, groups: list[dict], ctx: FitContext,
                      schedule: str | None = None, initial_val: float | None = None) -> dict:
    c, modality = ctx.config, ctx.modality
    augment = strategy.augment(c, modality)
    dataset = modality.training_dataset(ctx.train, augment, classifier.backbone.preprocessing.input_size)
    plan = TrainPlan(
        epochs=strategy.epochs(c, modality),
        optimizer=c.optimizer,
        schedule=schedule or c.schedule,
        weight_decay=c.weight_decay,
        batch_size=c.batch_size or (64 if torch.cuda.is_available() else 16),
        patience=strategy.patience(c, modality),
        budget_seconds=c.budget_seconds,
        evals_per_epoch=c.evals_per_epoch,
        mixed_precision=c.mixed_precision,
        seed=c.seed,
        phase=strategy.name,
        reserve_images=ctx.test_size,
    )
    result = train_model(classifier, groups, dataset, ctx.val, plan, ctx.recorder,
                         checkpoint_dir=ctx.checkpoint_dir, resume=c.resume, initial_val=initial_val)
    return {"best_val_accuracy": result.best_val_accuracy, "epochs_run": result.epochs_run,
            "stop_reason": result.stop_reason, "best_epoch": result.best_epoch}


def resuming_past_head(ctx: FitContext, phase: str) -> bool:
    """On --resume the loop's checkpoint already holds the fitted head: skip re-fitting it."""
    return bool(ctx.config.resume and ctx.checkpoint_dir and (ctx.checkpoint_dir / f"{phase}.pt").exists())


class HeadThenAllLayers(Strategy):
    """Fit a logistic head on cached features, then train every layer from it.

    Subclasses choose the head's C grid, the spread of layer-wise rates (stem = lr / spread)
    and the schedule. Training starts from the head's validation accuracy and must beat it.
    """

    head_c_grid: tuple[float, ...] = (0.1,)
    lr_spread: float = 1.0
    schedule: str | None = None  # None: the config's --schedule

    def spread(self, n_groups: int, modality) -> float:
        # Layer-wise learning-rate decay (ULMFiT, ELECTRA) where the modality asks for it
        # (transformers): each block down from the top trains at this fraction of the rate
        # above it. Otherwise fastai's spread: the stem at lr / lr_spread.
        decay = self.default("layer_decay", modality)
        if decay is not None:
            return decay ** -(max(n_groups, 1) - 1)
        return self.lr_spread

    def prepare_backbone(self, classifier, ctx: FitContext) -> None:
        """Choose what trains: here every layer. LoRA overrides this with adapters."""
        classifier.backbone.set_trainable(True)
        for p in classifier.head.parameters():
            p.requires_grad_(True)

    def finish_backbone(self, classifier) -> dict:
        """After training (e.g. merge adapters); returns figures for the summary."""
        return {}

    def fit(self, classifier, ctx: FitContext) -> dict:
        head = {}
        if not resuming_past_head(ctx, self.name):
            head = fit_logistic_head(classifier, ctx, c_grid=self.head_c_grid)
        self.prepare_backbone(classifier, ctx)
        backbone_groups = classifier.backbone.param_groups()
        groups = layerwise_groups(backbone_groups, classifier.head, self.lr(ctx.config, ctx.modality),
                                  self.spread(len(backbone_groups), ctx.modality))
        trained = run_training_loop(self, classifier, groups, ctx, schedule=self.schedule,
                                    initial_val=head.get("probe_val_accuracy"))
        return {**head, **trained, **self.finish_backbone(classifier)}

