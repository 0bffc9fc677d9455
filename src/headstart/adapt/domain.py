"""`fit DATA --adapt TARGET --method coral|dann`: unsupervised domain adaptation.

Labelled source data (DATA) and unlabelled data of the domain the model will serve (TARGET).
The fit composes the pipeline's stages (load, split, plan, build, finish) and hands the
training to a registered method: CORAL (coral.py) aligns cached features, DANN (dann.py)
trains the backbone against a domain classifier. The run directory has the fit contract;
summary["adaptation"] holds the source and target figures, with and without adaptation.

Target labels, when the target has them (a built-in, a folder of class sub-folders, a CSV
with a label column), are set aside before anything trains and used only to score the
target: no method sees them.
"""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from ..config import FitConfig
from ..data import make_splits
from ..data.registry import find_builtin
from ..errors import HeadstartError
from ..log import say
from ..modalities import load_data, load_pool, modality_of
from ..pipeline import (FitResult, Plan, build, finish, load, resolve_plan, start_recorder, start_run,
                        write_run_start)
from .domain_methods import ADAPTATIONS, AdaptJob, TargetDomain

# --------------------------------------------------------------------------- the fit


def fit_adapted(config: FitConfig, *, use_feature_cache: bool = True) -> FitResult:
    """A fit on labelled source data, adapted to the unlabelled target `config.adapt`."""
    if config.adapt_method not in ADAPTATIONS:
        _import_methods()
    started = time.perf_counter()
    config = _strategy_for(config)
    config, run_dir = start_run(config)
    decode_started = time.perf_counter()
    data = load(config)
    modality = modality_of(data)
    plan = resolve_plan(config, modality)
    config = plan.config
    # the target is read and checked before anything is written: bad input leaves no run behind
    target = load_target(config, data, plan)
    splits = make_splits(data, seed=config.seed, train_per_class=config.train_per_class,
                         train_size=config.train_size, val_fraction=config.val_fraction,
                         test_fraction=config.test_fraction, max_eval=config.max_eval)
    model = build(plan, data)
    parts = tuple(model.prepare(s) for s in (splits.train, splits.val, splits.test))
    target = replace(target, data=model.prepare(target.data))
    decode_seconds = time.perf_counter() - decode_started
    say(f"adapt {data.name} -> {target.name} with {config.adapt_method}: {len(parts[0])} labelled source "
        f"train {modality.words.get('noun', 'examples')}, {len(target.data)} target ones; {target.labels_note}")

    write_run_start(run_dir, config, splits)
    recorder = start_recorder(run_dir, plan.strategy, config.resume)
    model.warm_up(parts[0])
    job = AdaptJob(plan, model, parts, target, recorder, run_dir, use_feature_cache)
    outcome, adaptation = ADAPTATIONS[config.adapt_method](job)
    recorder.pause()
    adaptation = _describe(adaptation, config, data, parts, target)
    extra = {"modality": modality.name, "words": dict(modality.words), "adaptation": adaptation}
    return finish(plan, model, data, parts, recorder, outcome, run_dir, started, decode_seconds, extra)


def _import_methods() -> None:
    from . import coral, dann  # noqa: F401  (they register themselves)


def adaptation_methods() -> dict:
    """Every registered method, its module imported (fit's --method choices name this)."""
    _import_methods()
    return ADAPTATIONS


def _strategy_for(config: FitConfig) -> FitConfig:
    """CORAL aligns a frozen backbone's features: the probe. DANN trains the backbone: lp-ft by
    default (the probe's head, then every layer at a low rate), or finetune."""
    if config.adapt_method == "coral" and config.strategy != "probe":
        raise HeadstartError(f"--method coral aligns cached features under the probe; --strategy {config.strategy} "
                             f"trains the backbone", hint="drop --strategy (probe is the default), or use "
                                                          "--method dann, which fine-tunes")
    if config.backbone == "auto":
        raise HeadstartError("--adapt needs a named backbone: --backbone auto ranks backbones on the source alone",
                             hint="rank them first (`headstart rank DATA`), then pass --backbone NAME with --adapt")
    if config.adapt_method == "dann":
        if config.strategy == "probe":
            say("--method dann trains the backbone: the probe's head first, then every layer (lp-ft)")
            return replace(config, strategy="lp-ft")
        if config.strategy not in ("lp-ft", "finetune"):
            raise HeadstartError(f"--method dann fine-tunes a pretrained backbone; --strategy {config.strategy} "
                                 f"is not one it can train with", hint="use --strategy lp-ft (the default for "
                                                                       "dann) or finetune")
    return config


# --------------------------------------------------------------------------- the target


def load_target(config: FitConfig, source, plan: Plan) -> TargetDomain:
    """The target data decoded as the source is, its labels set aside, checked against the
    source's modality and classes."""
    spec, modality = config.adapt, plan.modality
    size = modality.decode_size(config.image_size, plan.spec)
    options = {"strict": config.strict, "text_column": config.text_column}
    labelled = _labelled_target(spec, size, options)
    target = labelled if labelled is not None else load_pool(spec, size=size, **options)
    if modality_of(target).name != modality.name:
        raise HeadstartError(f"the target {spec} is {modality_of(target).name} data but the source {source.name} is "
                             f"{modality.name} data", hint=f"--adapt takes {modality.name} data of the domain the "
                                                           f"model will serve")
    if len(target) == 0:
        raise HeadstartError(f"the target {spec} holds no examples", hint="pass a folder or file with some")
    if not target.is_labelled:
        return TargetDomain(target, None, target.name, "the target has no labels: no target accuracy is reported")
    labels = _source_indices(target, source, spec)
    what = "a built-in dataset" if find_builtin(spec) else "labelled"
    note = (f"the target is {what}: its labels were set aside and used only to score the target, "
            f"never to train or to choose anything")
    return TargetDomain(target.unlabelled(), labels, target.name, note)


def _labelled_target(spec: str, size: int | None, options: dict):
    """The target with its labels when it has some (a built-in, class sub-folders, a CSV with
    a label column); None when it is a pool."""
    if find_builtin(spec) is not None:
        return load_data(spec)
    try:
        data = load_data(spec, size=size, **options)
    except HeadstartError:
        return None  # no classes to read: an unlabelled pool
    return data if data.is_labelled and data.num_classes > 0 else None


def _source_indices(target, source, spec: str) -> np.ndarray:
    """The target's labels as indices of the source's classes. A target class the source does
    not have is a different task, not a domain shift: refused."""
    unknown = [c for c in target.classes if c not in source.classes]
    if unknown:
        raise HeadstartError(
            f"the target {spec} has class(es) {', '.join(repr(c) for c in unknown[:5])} that the source "
            f"{source.name} does not ({', '.join(source.classes[:10])}); the model cannot be scored on them",
            hint="name the target's class folders as the source's, or pass the target's images without class "
                 "folders (an unlabelled pool: no target accuracy)")
    index = np.array([source.classes.index(c) for c in target.classes], dtype=np.int64)
    return index[target.labels]


# --------------------------------------------------------------------------- figures and words


def _describe(adaptation: dict, config: FitConfig, data, parts, target: TargetDomain) -> dict:
    """The method's figures, plus what every adaptation reports: names, sizes, label use, headline."""
    described = {
        "method": config.adapt_method,
        "source": {"name": data.name, "train": len(parts[0]), "val": len(parts[1]), "test": len(parts[2])},
        "target": {"name": target.name, "spec": config.adapt, "size": len(target.data),
                   "labelled": target.labels is not None, "labels_use": target.labels_note},
        **adaptation,
    }
    described["headline"] = headline(described)
    return described


def headline(adaptation: dict) -> str:
    """One line for the CLI: target accuracy against no adaptation, and source accuracy."""
    method, arms = adaptation["method"], adaptation["arms"]
    mine, none = arms[adaptation["method"]], arms["none"]
    source = f"source test {mine['source_accuracy']:.4f} (none {none['source_accuracy']:.4f})"
    if mine.get("target_accuracy") is None:
        return (f"{method} to {adaptation['target']['name']} ({adaptation['target']['size']} unlabelled): "
                f"no target accuracy (the target has no labels); {source}")
    gain = (mine["target_accuracy"] - none["target_accuracy"]) * 100
    return (f"{method}: target accuracy {mine['target_accuracy']:.4f} on {adaptation['target']['name']} "
            f"(none {none['target_accuracy']:.4f}, {gain:+.1f} points); {source}; target labels used only to score")
