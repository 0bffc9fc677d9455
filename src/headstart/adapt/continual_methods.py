"""How a continued run keeps its old classes: one registered function per method.

head       refit the logistic head on the old classes' stored features (or their exemplars'
           features) plus the new data's; only the new data is embedded. The backbone stays frozen.
rehearsal  fine-tune (the plan's lp-ft / finetune recipe, house loop) on the new data plus the
           exemplar memory.
lwf        rehearsal plus distillation from the old model (Learning without Forgetting, Li &
           Hoiem 2016): the old model's logits on the old classes, temperature 2, KL.
naive      fine-tune on the new data alone: the forgetting baseline.

Every method starts from the grown classifier (the old model; head rows: the old head's, new
rows empty), refits the head on what it trains on, and the fine-tuning methods then train every
layer from that head (LP-FT).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..embed import embed
from ..heads import FINETUNE_START_C_GRID, PROBE_C_GRID, budget_rule, sweep_head
from ..registry import Registry
from ..strategies import FitContext
from ..strategies.backbone_training import run_training_loop
from ..train.optim import layerwise_groups
from .memory import Memory, relabelled

DISTILL_TEMPERATURE = 2.0
DISTILL_WEIGHT = 1.0

# "auto": the plan's choice (continual.py)
CONTINUAL_METHODS: Registry[Callable] = Registry("continual-learning method", extra_choices=("auto",))


def register_continual(name: str):
    """A method: fn(job: Job) -> the strategy outcome; it trains job.classifier in place."""
    return CONTINUAL_METHODS.register(name)


@dataclass
class Job:
    """Everything a method needs: the grown classifier it trains in place, the frozen old model,
    the new data (raw: not yet prepared), the memory, and the validation set of every task."""

    plan: object             # pipeline.Plan
    classifier: object       # the old model with a grown head
    old_model: object        # the old run's classifier, frozen
    old_classes: list[str]
    classes: list[str]       # old classes + new ones
    new_train: object        # raw, labelled over `classes`
    val_parts: list          # raw: the new data's val, then each old task's (embedded, and cached, apart)
    memory: Memory
    recorder: object
    use_feature_cache: bool = True
    test_size: int = 0
    trained_features: tuple | None = field(default=None)  # head: (x, y) the head was fitted on
    new_features: np.ndarray | None = field(default=None)  # new_train under the backbone the head saw
    _exemplar_x: np.ndarray | None = field(default=None)

    @property
    def val(self):
        joined = self.val_parts[0]
        for part in self.val_parts[1:]:
            joined = joined.concat(part)
        return joined

    def exemplar_features(self) -> np.ndarray:
        """The exemplars under the old model, computed once when first needed."""
        if self._exemplar_x is None:
            self._exemplar_x = embed(self.old_model, self.memory.exemplars, cache=False,
                                     description="features (exemplars)")
        return self._exemplar_x


def rehearsal_items(job: Job):
    return relabelled(job.memory.exemplars, job.classes)


def fit_grown_head(job: Job, x: np.ndarray, y: np.ndarray, c_grid=PROBE_C_GRID) -> dict:
    """Fit the grown head on (x, y), C picked on the validation features (every task's); writes
    it into the classifier. Leaves the clock paused."""
    rec = job.recorder
    rec.pause()
    # task by task: an old task's validation features are cached while the backbone stays frozen
    val_x = np.concatenate([embed(job.classifier, part, cache=job.use_feature_cache, description="features (val)")
                            for part in job.val_parts])
    val_y = np.concatenate([part.labels for part in job.val_parts])
    # Solved cold along the C grid, as the probe does: the L2-regularised logistic loss is convex
    # with one minimum whatever the start, and starting L-BFGS from the old head's rows measured
    # ~7x slower (about 20 s per C instead of 3 s at 1,600 x 1,280 features, bench/continual.py:
    # the old rows sit far from the new optimum at small C). The old head is the grown
    # classifier's start; the refit sees every class's features, so it needs nothing more.
    head = sweep_head(x, y, val_x, val_y, c_grid, rec, num_classes=len(job.classes), phase="continual-head",
                      out_of_time=budget_rule(rec, job.plan.config.budget_seconds), n_train=len(x))
    head.write_into(job.classifier.head.fc)
    return {"probe_C": head.c, "probe_val_accuracy": head.val_accuracy, "head_train_size": int(len(x))}


@register_continual("head")
def refit_head(job: Job) -> dict:
    rec = job.recorder
    rec.resume()
    new_x = embed(job.classifier, job.new_train, cache=job.use_feature_cache, description="features (new train)")
    fingerprint = _fingerprint(job.classifier)
    stored = job.memory.features_for(fingerprint)
    old_x, old_y = stored if stored is not None else (job.exemplar_features(), job.memory.exemplars.labels)
    x, y = np.concatenate([old_x, new_x]), np.concatenate([old_y, job.new_train.labels])
    head = fit_grown_head(job, x, y)
    job.trained_features, job.new_features = (x, y), new_x
    return {**head, "best_val_accuracy": head["probe_val_accuracy"],
            "old_features_from": "stored features" if stored is not None else "exemplars",
            "old_features_used": int(len(old_x))}


@register_continual("rehearsal")
def rehearsal(job: Job) -> dict:
    return fine_tune(job, rehearse=True, distill=False)


@register_continual("lwf")
def learning_without_forgetting(job: Job) -> dict:
    return fine_tune(job, rehearse=True, distill=True)


@register_continual("naive")
def naive(job: Job) -> dict:
    return fine_tune(job, rehearse=False, distill=False)


def fine_tune(job: Job, *, rehearse: bool, distill: bool) -> dict:
    """The plan's fine-tuning recipe (lp-ft or finetune) from the grown head, on the new data
    (plus the exemplar memory), with LwF's distillation term when asked."""
    rec, classifier, plan = job.recorder, job.classifier, job.plan
    train_raw = job.new_train.concat(rehearsal_items(job)) if rehearse else job.new_train
    train = classifier.prepare(train_raw)
    classifier.warm_up(train)  # untimed, as the pipeline does
    rec.resume()
    x = embed(classifier, train_raw, cache=job.use_feature_cache, description="features (train)")
    head = fit_grown_head(job, x, train_raw.labels, c_grid=FINETUNE_START_C_GRID)
    job.new_features = x[:len(job.new_train)]  # the memory's herding reuses them (train_raw: new items first)
    strategy, config, modality = plan.strategy, plan.config, plan.modality
    ctx = FitContext(config=config, train=train, val=classifier.prepare(job.val), recorder=rec, modality=modality,
                     spec=plan.spec, checkpoint_dir=None, use_feature_cache=job.use_feature_cache,
                     test_size=job.test_size)
    strategy.prepare_backbone(classifier, ctx)
    backbone_groups = classifier.backbone.param_groups()
    groups = layerwise_groups(backbone_groups, classifier.head, strategy.lr(config, modality),
                              strategy.spread(len(backbone_groups), modality, config))
    objective = distillation_objective(job.old_model, len(job.old_classes)) if distill else None
    trained = run_training_loop(strategy, classifier, groups, ctx, schedule=strategy.schedule,
                                initial_val=head["probe_val_accuracy"], objective=objective)
    classifier.eval()
    return {**head, **trained, "rehearsal_items": int(len(train_raw) - len(job.new_train)),
            **({"distillation": {"temperature": DISTILL_TEMPERATURE, "weight": DISTILL_WEIGHT}} if distill else {})}


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      temperature: float = DISTILL_TEMPERATURE) -> torch.Tensor:
    """KL(teacher || student) on temperature-softened distributions, scaled by T^2 so its
    gradients keep their size whatever T is (Hinton et al. 2015). Zero when they agree."""
    t = temperature
    teacher = F.softmax(teacher_logits.float() / t, dim=1)
    student = F.log_softmax(student_logits.float() / t, dim=1)
    return F.kl_div(student, teacher, reduction="batchmean") * t * t


def distillation_objective(old_model, n_old: int, weight: float = DISTILL_WEIGHT):
    """The training loop's objective: the model's logits, and the distillation of the old
    model's logits on the old classes (the old model frozen, in eval mode: its batch-norm
    statistics and dropout must not move)."""
    old_model.eval()
    for p in old_model.parameters():
        p.requires_grad_(False)

    def objective(model, x, y):
        logits = model(x)
        with torch.no_grad():
            teacher = old_model(x)[:, :n_old]
        return logits, weight * distillation_loss(logits[:, :n_old], teacher)
    return objective


def _fingerprint(classifier) -> str:
    from ..embed import weights_fingerprint

    return weights_fingerprint(classifier.backbone)
