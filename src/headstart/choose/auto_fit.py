"""A fit with `--backbone auto` or `--strategy auto`: the pipeline's stages, with the choice
between them.

    begin_fit (start the run, load, split, add labels) -> choose (a race whose winner's
    training is kept) -> complete_fit (finish)

The choice runs on the fit's own split, inside the fit's one deadline (config/budget.py): each
choice gets the time left at its start, less what the fit's closing parts are expected to cost,
so the promise covers the whole command. Choosing is this package's; the pipeline never calls back into it.
"""
from __future__ import annotations

import copy
import time
from dataclasses import replace

import numpy as np

from ..config import FitConfig
from ..config.budget import Deadline
from ..modalities import Modality, modality_of
from ..pipeline import FitResult, KeptTraining, begin_fit, build, complete_fit, plan_decode_size, resolve_plan, train
from ..post_fit import closing_reserve
from ..records import Recorder
from ..zoo import resolve_backbone
from .auto import Stages, choose_backbone, choose_strategy
from .candidates import decode_size_for


def chooses(config: FitConfig) -> bool:
    """Whether a fit of `config` is this module's (something is left to choose)."""
    return config.backbone == "auto" or config.strategy == "auto"


def fit_auto(config: FitConfig, *, data=None, use_feature_cache: bool = True, splits=None) -> FitResult:
    """`pipeline.fit`'s contract, choosing the backbone and/or the strategy on the fit's split
    (with nothing left to choose, it is pipeline.fit: the estimator calls it for every fit)."""
    start = begin_fit(config, data=data, splits=splits, decode_size=decode_size)
    choosing_started = time.perf_counter()
    config, chosen, kept = choose_automatically(start.config, modality_of(start.data), start.splits,
                                                use_feature_cache, deadline=start.deadline, data=start.data)
    return complete_fit(start, config, kept=kept, use_feature_cache=use_feature_cache,
                        extra={"auto": chosen} if chosen else None,
                        choosing_seconds=time.perf_counter() - choosing_started)


def decode_size(config: FitConfig, modality: Modality) -> int | None:
    """The size data is decoded at when auto chooses after loading. --backbone auto: the largest
    any candidate eats (each resizes down from it). --strategy auto: the backbone's, which the
    probe and lp-ft eat; the no-transfer baseline trains at the data's own resolution up to its
    cap, as compare's scratch arm does, so it asks for no size of its own."""
    if config.backbone == "auto":
        return decode_size_for(modality, config.image_size)
    if config.strategy == "auto":
        return modality.decode_size(config.image_size, resolve_backbone(config.backbone or modality.default_backbone))
    return plan_decode_size(config, modality)


def choose_automatically(config: FitConfig, modality: Modality, splits, use_feature_cache: bool = True, *,
                         deadline: Deadline | None = None, data=None):
    """(config with the backbone and strategy filled in, what was chosen and why, the race
    winner's training, which becomes the run's). Each choice gets what is left of `deadline` (by
    default one that starts now), less the fit's closing parts. `data`: the loaded data the
    splits index (its native size is evidence)."""
    chosen: dict = {}
    kept = None
    deadline = deadline or Deadline(config.budget_seconds, time.perf_counter())
    if config.backbone == "auto":
        chosen["backbone"] = choose_backbone(splits.train, modality.name,
                                             replace(config, budget_seconds=_left(deadline, config, modality)))
        config = replace(config, backbone=chosen["backbone"]["backbone"],
                         image_size=chosen["backbone"]["image_size"] or config.image_size)
    if config.strategy == "auto":
        choice = choose_strategy(splits.train, splits.val, len(splits.test), _left(deadline, config, modality),
                                 pipeline_stages(config, modality, splits, use_feature_cache, data=data),
                                 seed=config.seed, spent_before=chosen.get("backbone", {}).get("seconds", 0.0))
        chosen["strategy"] = choice.to_dict()
        config = replace(config, strategy=choice.strategy, budget_seconds=choice.budget_left,
                         **{**_baseline_settings(config, modality, choice.strategy), **choice.settings})
        kept = choice.kept
    return config, chosen, kept


def _left(deadline: Deadline, config: FitConfig, modality: Modality) -> float | None:
    """The seconds a choice may plan for: the deadline's, less the fit's closing parts."""
    return deadline.left_after(closing_reserve(config, modality.name))


def _baseline_settings(config: FitConfig, modality: Modality, strategy: str) -> dict:
    """A scratch choice trains the modality's small model at the data's own resolution, as
    compare's scratch arm does, not the pretrained backbone's architecture from random weights."""
    if strategy != "scratch":
        return {}
    model = config.scratch_model if config.scratch_model not in (None, "same") else modality.default_scratch_model
    sized = resolve_backbone(model).sized_to_input
    return {"scratch_model": model, **({"image_size": None} if sized else {})}


def pipeline_stages(config: FitConfig, modality: Modality, splits, use_feature_cache: bool, *, data=None) -> Stages:
    """The pipeline's stages as --strategy auto uses them: measured rates, the probe (and the
    one-shot baseline) under a budget, training loops run to a budget, and the cheap evidence.
    None of them writes anything: the winner's training is handed to complete_fit."""
    from ..engines.extract import make_engine
    from ..train.throughput import engine_rates, model_rates

    transfer = {"image_size": config.image_size}  # the probe's and lp-ft's: auto may lower it (auto._hedge)

    def planned(strategy: str, **changes) -> FitConfig:
        sized = _baseline_settings(config, modality, strategy) if strategy == modality.auto_baseline else transfer
        return replace(config, strategy=strategy, resume=False, explain_examples=0, **{**sized, **changes})

    def transfer_size(size: int) -> int | None:
        if config.image_size:  # the user's own size is kept
            return None
        transfer["image_size"] = size
        return size

    def rates(strategy: str):
        plan = resolve_plan(planned(strategy), modality)
        if plan.spec.standalone:
            return None  # one-shot models (TF-IDF): no rate to speak of
        sample = splits.train.subset(np.arange(min(len(splits.train), 16)))
        model = build(plan, sample)
        prepared = model.prepare(sample)
        if strategy == "probe":  # through the engine the probe extracts with (ONNX Runtime for images)
            engine = make_engine(config.extract_engine, model, calibration=prepared.inputs)
            return engine_rates(model, engine, prepared.inputs)
        return model_rates(model, prepared.inputs, prepared.labels)

    def parts_for(model, train_data, val_data) -> tuple:
        return tuple(model.prepare(p) for p in (train_data, val_data, val_data.subset(np.arange(0))))

    def pilot(strategy: str, budget, train_data, val_data, evals_per_epoch: int = 1, hold_refit: bool = False) -> dict:
        # hold_refit: a head lp-ft may continue from must have learnt from the training part alone;
        # its refit on train+val is solved beside it and delivered only if the probe wins
        plan = resolve_plan(planned(strategy, budget_seconds=budget, evals_per_epoch=evals_per_epoch), modality)
        model = build(plan, train_data)
        recorder = Recorder(None, plan.strategy.name, write=False)
        outcome = train(plan, model, parts_for(model, train_data, val_data), recorder, checkpoint_dir=None,
                        use_feature_cache=use_feature_cache, hold_refit=hold_refit)
        return {"best_val_accuracy": outcome["best_val_accuracy"], "rows": recorder.rows,
                "kept": KeptTraining(model, recorder, outcome),
                "n_used": outcome.get("probe_train_used", len(train_data)),
                "features_cached": bool(outcome.get("features_cached")),
                "train_seconds": recorder.train_seconds, "wall_seconds": recorder.wall_seconds}

    def loop(strategy: str, budget: float, evals_per_epoch: int, start: KeptTraining | None) -> KeptTraining:
        """A training loop run to `budget` seconds from now, in the calling thread (a race arm's)."""
        called = time.perf_counter()
        if start is not None:  # lp-ft from the probe's head: the probe's rows and clock are its start
            model = copy.deepcopy(start.model)
            recorder = Recorder(None, strategy, write=False, train_seconds=start.recorder.train_seconds,
                                rows=start.recorder.rows)
        else:
            model, recorder = None, Recorder(None, strategy, write=False)
        plan = resolve_plan(planned(strategy, budget_seconds=recorder.wall_seconds + budget,
                                    evals_per_epoch=evals_per_epoch), modality)
        model = model if model is not None else build(plan, splits.train)
        parts = parts_for(model, splits.train, splits.val)
        # the deadline stays where it was: building and preparing came out of this budget
        left = budget - (time.perf_counter() - called)
        plan = replace(plan, config=replace(plan.config, budget_seconds=recorder.wall_seconds + left))
        if start is None:
            outcome = train(plan, model, parts, recorder, checkpoint_dir=None, use_feature_cache=use_feature_cache)
        else:
            outcome = _finetune_from_head(plan, model, parts, recorder, start.outcome)
        return KeptTraining(model, recorder, outcome)

    def raw_knn() -> float | None:
        return _raw_knn(modality, splits, config.seed)

    def sizes() -> dict:
        native = (getattr(data, "notes", None) or {}).get("native_size")
        spec = resolve_backbone(config.backbone or modality.default_backbone)
        return {"native": native, "model": config.image_size or spec.input_size}

    return Stages(rates=rates, pilot=pilot, no_transfer=modality.auto_baseline, loop=loop, raw_knn=raw_knn,
                  sizes=sizes, transfer_size=transfer_size)


def _finetune_from_head(plan, model, parts, recorder: Recorder, head: dict) -> dict:
    """lp-ft from the head the probe fitted (its figures `head`): the loop alone, as
    HeadThenAllLayers.fit runs it after its own head sweep."""
    from ..strategies import FitContext

    model.warm_up(parts[0])  # untimed, as pipeline.train
    ctx = FitContext(config=plan.config, train=parts[0], val=parts[1], recorder=recorder, modality=plan.modality,
                     spec=plan.spec, checkpoint_dir=None, test_size=0)
    # the probe's figures, and its held refit: delivered if fine-tuning never beats the head
    outcome = plan.strategy.fit_from_head(model, ctx, {k: v for k, v in head.items()
                                                       if k.startswith("probe_") or k == "held_refit"})
    recorder.pause()
    return outcome


RAW_KNN_SAMPLE = (1000, 300)  # training and validation examples k-NN on raw inputs reads, at most


def _raw_knn(modality: Modality, splits, seed: int) -> float | None:
    """k-NN accuracy (k=5, cosine) of the raw inputs (modality.raw_features) on a sample: how far
    the inputs alone separate the classes, the evidence the diagnosis reads too."""
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(seed)
    train, val = (d.subset(np.sort(rng.permutation(len(d))[:cap])) for d, cap in zip((splits.train, splits.val),
                                                                                       RAW_KNN_SAMPLE))
    raw = modality.raw_features(train, val)
    if raw is None or len(train) < 6:
        return None
    knn = KNeighborsClassifier(n_neighbors=5, metric="cosine", algorithm="brute").fit(raw[0], train.labels)
    return round(float(np.mean(knn.predict(raw[1]) == np.asarray(val.labels))), 4)
