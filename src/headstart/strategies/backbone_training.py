"""The loop of the strategies that train the backbone (fine-tuning, as against hyper-parameter tuning in choose/tune.py): plan it from config + defaults."""
from __future__ import annotations

import torch

from ..config import parse_synthesize
from ..heads import FINETUNE_START_C_GRID
from ..imbalance.balance import announced, decide_balance, sample_weights
from ..imbalance.synthesize import mixup_probability
from ..log import say
from ..train.loop import TrainPlan, train_model
from ..train.plateau import PLATEAU_RULE
from ..train.optim import layerwise_groups
from .base import FitContext, Strategy
from .linear import fit_logistic_head
from .refit import deliver_held_refit, wants_refit


def run_training_loop(strategy: Strategy, classifier, groups: list[dict], ctx: FitContext,
                      schedule: str | None = None, initial_val: float | None = None, objective=None,
                      initial_loss: float | None = None) -> dict:
    """Train every trainable layer of `classifier` from where it is. initial_val / initial_loss:
    the starting weights' validation accuracy and loss (a fitted head's); training must beat the
    accuracy, at no higher a loss, to replace them (train/loop.py _better)."""
    c, modality = ctx.config, ctx.modality
    augment = strategy.augment(c, modality)
    dataset = modality.training_dataset(ctx.train, augment, classifier.backbone.preprocessing.input_size)
    imbalance, extra = _imbalance_settings(ctx)
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
        # From random weights (scratch) the run is a baseline: it trains until its validation
        # accuracy plateaus, then anneals and stops (train/plateau.py), so compare's target is
        # the baseline at its best. An explicit --patience keeps the classic rule.
        plateau=PLATEAU_RULE if not strategy.pretrained and c.patience is None else None,
        objective=objective,  # adapt/: an extra loss term (distillation, a domain classifier)
        # pretrained batch-norm statistics stay as they are: small batches of a new domain
        # dragged them far enough to collapse a fine-tune (train/loop.py, TrainPlan); random
        # weights (--no-pretrained) have no statistics worth keeping
        frozen_norm_statistics=strategy.pretrained and (c.pretrained or c.weights is not None),
        max_val_loss=initial_loss,
        **imbalance,
    )
    result = train_model(classifier, groups, dataset, ctx.val, plan, ctx.recorder,
                         checkpoint_dir=ctx.checkpoint_dir, resume=c.resume, initial_val=initial_val)
    if result.mixed is not None:
        classes, mixed = ctx.train.classes, result.mixed
        extra["synthetic"] = {"method": "mixup/cutmix", "space": "pixels", "requested": str(c.synthesize),
                              "share_of_batches": round(plan.mixup, 4), "batches": mixed["batches"],
                              "per_class": {classes[k]: n for k, n in sorted(mixed["per_class"].items())},
                              "total": mixed["samples"], "examples": []}
        say(f"mixup/cutmix mixed {mixed['batches']} batch(es), {mixed['samples']} sample(s)")
    return {"best_val_accuracy": result.best_val_accuracy, "epochs_run": result.epochs_run,
            "stop_reason": result.stop_reason, "best_epoch": result.best_epoch, **extra}


def _imbalance_settings(ctx: FitContext) -> tuple[dict, dict]:
    """--balance and --synthesize for the loop: (TrainPlan settings, summary figures)."""
    config, labels, classes = ctx.config, ctx.train.labels, ctx.train.classes
    settings, extra = {"num_classes": len(classes)}, {}
    balance = decide_balance(config.balance, labels, len(classes))
    if balance.mode == "weights":
        settings["class_weights"] = tuple(float(w) for w in balance.weights)
    elif balance.mode == "sampler":
        settings["sample_weights"] = sample_weights(labels, len(classes))
        balance.reason += "; batches are drawn by a class-balanced sampler (with replacement, seeded per epoch)"
    extra.update(announced(balance, classes))
    if parse_synthesize(config.synthesize) is not None and ctx.modality.augments:
        settings["mixup"] = mixup_probability(config.synthesize, labels, len(classes))
        if settings["mixup"] == 0:
            say("--synthesize: no class is smaller than the largest; no batch is mixed")
    return settings, extra


def resuming_past_head(ctx: FitContext, phase: str) -> bool:
    """On --resume the loop's checkpoint already holds the fitted head: skip re-fitting it."""
    return bool(ctx.config.resume and ctx.checkpoint_dir and (ctx.checkpoint_dir / f"{phase}.pt").exists())


class HeadThenAllLayers(Strategy):
    """Fit a logistic head on cached features, then train every layer from it.

    Subclasses choose the head's C grid, the spread of layer-wise rates (stem = lr / spread)
    and the schedule. Training starts from the head's validation accuracy and loss and must beat
    the accuracy at no higher a loss, or the run keeps the head (and says so). Batch-norm layers
    keep their pretrained statistics throughout (TrainPlan.frozen_norm_statistics).
    """

    head_c_grid: tuple[float, ...] = FINETUNE_START_C_GRID
    lr_spread: float = 1.0
    schedule: str | None = None  # None: the config's --schedule

    def spread(self, n_groups: int, modality, config=None) -> float:
        # Layer-wise learning-rate decay (ULMFiT, ELECTRA) where --layer-decay or the modality
        # asks for it (transformers): each block down from the top trains at this fraction of
        # the rate above it. Otherwise fastai's spread: the stem at lr / lr_spread.
        decay = config.layer_decay if config is not None and config.layer_decay is not None \
            else self.default("layer_decay", modality)
        if decay is not None:
            return decay ** -(max(n_groups, 1) - 1)
        return self.lr_spread

    def prepare_backbone(self, classifier, ctx: FitContext) -> None:
        """Choose what trains: here every layer. LoRA overrides this with adapters."""
        classifier.backbone.set_trainable(True)
        freeze_stem_groups(classifier.backbone, ctx.config.freeze_depth)
        for p in classifier.head.parameters():
            p.requires_grad_(True)

    def finish_backbone(self, classifier) -> dict:
        """After training (e.g. merge adapters); returns figures for the summary."""
        return {}

    def fit(self, classifier, ctx: FitContext) -> dict:
        head = {}
        if not resuming_past_head(ctx, self.name):
            # the head's refit on train+val is solved now (features in hand) and held: it is
            # delivered only if fine-tuning never beats the train-only head it starts from
            head = fit_logistic_head(classifier, ctx, c_grid=self.head_c_grid,
                                     refit=wants_refit(ctx.config, cheap=True), hold=True)
        return self.fit_from_head(classifier, ctx, head)

    def fit_from_head(self, classifier, ctx: FitContext, head: dict) -> dict:
        """Train every layer from the head already in classifier.head; `head`: its sweep's figures
        (probe_val_accuracy among them; held_refit, the head refit on train+val, when solved).
        --strategy auto's lp-ft arm continues from the probe's head this way, so the probe's work
        is not done twice."""
        head = dict(head)
        held_refit = head.pop("held_refit", None)
        self.prepare_backbone(classifier, ctx)
        backbone_groups = classifier.backbone.param_groups()
        groups = layerwise_groups(backbone_groups, classifier.head, self.lr(ctx.config, ctx.modality),
                                  self.spread(len(backbone_groups), ctx.modality, ctx.config))
        start_accuracy, start_loss = head.get("probe_val_accuracy"), _head_val_loss(ctx)
        trained = run_training_loop(self, classifier, groups, ctx, schedule=self.schedule,
                                    initial_val=start_accuracy, initial_loss=start_loss)
        kept = _say_what_is_kept(self.name, trained, start_accuracy, start_loss)
        if held_refit is not None and trained.get("best_epoch", 0) == 0 and start_accuracy is not None:
            # the delivered model is the probe's, so it learns from every label as the probe does
            # (elpv, 100/class: 0.779 on test with the train-only head, 0.845 refit on train+val)
            kept = {**kept, **deliver_held_refit(held_refit, classifier.head.fc)}
        synthetic = _both_stages(head.get("synthetic"), trained.get("synthetic"), ctx)
        return {**head, **trained, **kept, **self.finish_backbone(classifier), **synthetic}


def _head_val_loss(ctx: FitContext) -> float | None:
    """The fitted head's validation loss, read from its sweep's rows (the best accuracy, the
    first to reach it, as the sweep keeps it); on --resume the rows come back from the run."""
    rows = [r for r in ctx.recorder.rows if r.get("split") == "val" and r.get("phase") == "probe"]
    if not rows:
        return None
    best = max(r["accuracy"] for r in rows)
    return next(float(r["loss"]) for r in rows if r["accuracy"] >= best - 1e-9)


def _say_what_is_kept(name: str, trained: dict, start_accuracy: float | None, start_loss: float | None) -> dict:
    """The run says which weights it delivers: the fine-tuned ones, or (fine-tuning never beat
    it on validation) the head it started from, kept as epoch 0."""
    if trained.get("best_epoch", 0) > 0 or start_accuracy is None:
        return {"kept_weights": "fine-tuned"}
    loss = f", loss {start_loss:.3f}" if start_loss is not None else ""
    say(f"{name}: fine-tuning never beat its starting head on validation (accuracy {start_accuracy:.4f}{loss}); "
        "the run keeps that head on the pretrained backbone (epoch 0)")
    return {"kept_weights": "head (epoch 0): fine-tuning did not beat it on validation"}


def freeze_stem_groups(backbone, depth: int | None) -> None:
    """--freeze-depth: the first `depth` layer groups (stem first) stay frozen; the rest train.
    Early layers hold the most generic features, so they are the ones a small dataset leaves be."""
    groups = backbone.param_groups()
    if not depth:
        return
    if depth < 0 or depth >= len(groups):
        from ..errors import HeadstartError
        raise HeadstartError(f"--freeze-depth {depth}: the backbone has {len(groups)} layer groups, so freeze "
                             f"0 to {len(groups) - 1} of them", hint="or use --strategy probe to freeze them all")
    for params in groups[:depth]:
        for p in params:
            p.requires_grad_(False)


def _both_stages(smote: dict | None, mixed: dict | None, ctx: FitContext) -> dict:
    """One "synthetic" entry for a head stage (SMOTE on features) and a backbone stage
    (mixup/cutmix on images; nothing on texts, whose token ids cannot be blended)."""
    if smote is None:
        return {"synthetic": mixed} if mixed else {}
    if mixed:
        return {"synthetic": {**smote, "method": "smote, then mixup/cutmix", "mixup": mixed}}
    if ctx.modality.augments:
        return {"synthetic": smote}
    note = ("the head stage trained with SMOTE samples; the backbone stage trained on real "
            f"{ctx.modality.words.get('noun', 'examples')} only (they cannot be blended)")
    return {"synthetic": {**smote, "note": note}}

