"""The stages every command runs: resolve -> load -> build -> (embed) -> train -> finish.

`fit`, `compare`, the Python API and the commands to come compose these stages; each is
public. Strategies train; this module decides what to build, and writes the run directory
(only the main process writes under torchrun).
"""
from __future__ import annotations

import resource
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import yaml

from .config import FitConfig
from .embed import embed  # noqa: F401  (the embed stage, with the others)
from .errors import HeadstartError
from .log import is_main_process, say
from .metrics import classification_summary, imbalance, misclassified_examples
from .modalities import Modality, load_data, modality_of
from .model_io import save_model
from .records import Recorder, new_run_dir, read_metrics, write_json, write_yaml
from .post_fit import explain_report_examples, record_deploy_figures
from .report import build_fit_report
from .strategies import FitContext, Strategy, get_strategy
from .tracking import check_tracking, track_run
from .train.evaluate import score
from .zoo import BackboneSpec, resolve_backbone


@dataclass
class Plan:
    """What a fit will do, resolved from its config before anything is built or trained."""

    config: FitConfig          # with the backbone filled in
    modality: Modality
    strategy: Strategy
    spec: BackboneSpec         # the architecture that trains (the backbone, a scratch model, tfidf)

    @property
    def pretrained(self) -> bool:
        return self.strategy.pretrained


@dataclass
class FitResult:
    run_dir: Path
    classifier: object  # a model of the classifier protocol (heads.py)
    classes: list[str]
    summary: dict


def resolve_plan(config: FitConfig, modality: Modality) -> Plan:
    """Pure: the strategy, the backbone (the modality's default when none is named) and the
    spec of the architecture that will train. Refuses a model of another modality before
    anything is built."""
    strategy = get_strategy(config.strategy)
    config = replace(config, backbone=config.backbone or modality.default_backbone)
    spec = resolve_backbone(_architecture(config, strategy))
    if not modality.owns(spec):
        what = f"--strategy {strategy.name} trains {spec.name}, a {spec.modality} model" if strategy.architecture \
            else f"{spec.name} is a {spec.modality} backbone"
        raise HeadstartError(f"{config.data} is {modality.name} data but {what}",
                             hint=f"use a {modality.name} backbone, e.g. --backbone {modality.default_backbone}, "
                                  f"or another strategy (`headstart fit --help` lists them)")
    return Plan(config, modality, strategy, spec)


def _architecture(config: FitConfig, strategy: Strategy) -> str:
    if strategy.architecture:
        return strategy.architecture
    if not strategy.pretrained and config.scratch_model not in (None, "same"):
        return config.scratch_model
    return config.backbone


def load(config: FitConfig):
    """The labelled data, decoded once at the size the plan's backbone eats (--backbone auto: the
    largest size a candidate eats)."""
    def decode_size(modality: Modality):
        if config.backbone == "auto":
            from .choose.candidates import decode_size_for
            return decode_size_for(modality, config.image_size)
        planned = replace(config, strategy="probe") if config.strategy == "auto" else config
        return modality.decode_size(config.image_size, resolve_plan(planned, modality).spec)

    data = load_data(config.data, size=decode_size, **config.load_options())
    return data.only_classes(config.classes) if config.classes else data


def build(plan: Plan, data):
    """The model, built once: the spec's backbone with a new head for the data's classes (a
    standalone model of the zoo, such as TF-IDF, is the whole classifier)."""
    torch.manual_seed(plan.config.seed)  # random inits (scratch backbones, heads) follow the seed
    options = plan.modality.backbone_options(plan.config, plan.spec, pretrained=plan.pretrained, data=data)
    if plan.pretrained:
        made = plan.spec.build(pretrained=plan.config.pretrained, weights=plan.config.weights, **options)
    else:
        made = plan.spec.build(pretrained=False, **options)
    if plan.spec.standalone:
        return made
    say(f"backbone {made.name}: weights {made.weights}")
    model = plan.modality.build_classifier(made, data.num_classes)
    if torch.cuda.is_available():
        model.cuda()
    return model


def train(plan: Plan, model, parts, recorder: Recorder, *, checkpoint_dir: Path | None,
          use_feature_cache: bool = True) -> dict:
    """Train `model` in place with the plan's strategy; returns the strategy's figures."""
    train_part, val_part, test_part = parts
    model.warm_up(train_part)  # untimed: kernel loading and allocator start-up are not training
    ctx = FitContext(config=plan.config, train=train_part, val=val_part, recorder=recorder,
                     modality=plan.modality, spec=plan.spec, checkpoint_dir=checkpoint_dir,
                     use_feature_cache=use_feature_cache, test_size=len(test_part))
    outcome = plan.strategy.fit(model, ctx)
    recorder.pause()
    return outcome


def fit(config: FitConfig, *, data=None, use_feature_cache: bool = True, splits=None) -> FitResult:
    """Run one fit and write its run directory. `data` (a labelled data form) bypasses config.data;
    `splits` (data.Splits over that data) the split config would make (label curves pass subsets)."""
    started = time.perf_counter()
    config, run_dir = start_run(config)
    check_tracking(config)  # --track: a missing library or an unreachable server fails before training
    decode_started = time.perf_counter()
    data = load(config) if data is None else data
    from .data import make_splits
    splits = splits or make_splits(data, seed=config.seed, train_per_class=config.train_per_class,
                                   train_size=config.train_size, val_fraction=config.val_fraction,
                                   test_fraction=config.test_fraction, max_eval=config.max_eval)
    added = add_labels(config, data, splits)
    # --backbone auto / --strategy auto: chosen on this split, the time it took off the budget
    choosing_started = time.perf_counter()
    config, chosen, kept = choose_automatically(config, modality_of(data), splits, use_feature_cache)
    choosing_seconds = time.perf_counter() - choosing_started
    plan = resolve_plan(config, modality_of(data))
    config = plan.config
    if data.skipped:
        say(f"skipped {len(data.skipped)} unusable example(s), e.g. {data.skipped[0][0]} ({data.skipped[0][1]})")
    if data.notes.get("replaced_bytes"):
        say(f"{data.notes['replaced_bytes']} text(s) held bytes that are not UTF-8; they were replaced with U+FFFD")
    model = build(plan, data) if kept is None else kept["model"]
    parts = tuple(model.prepare(s) for s in (splits.train, splits.val, splits.test))
    decode_seconds = time.perf_counter() - decode_started - choosing_seconds
    described = model.describe()
    figures, notes = plan.modality.data_notes(list(parts), described["preprocessing"])
    size = described["preprocessing"].get("input_size", described["preprocessing"].get("max_length"))
    unit = plan.modality.words.get("input_unit", "")
    say(f"data {data.name}: {len(parts[0])} train / {len(parts[1])} val / {len(parts[2])} test, "
        f"{data.num_classes} classes" + (f", {size} {unit}" if size else ""))
    for note in notes:
        say(note)
    if config.budget_seconds is None and is_main_process():
        _say_expected_time(plan, model, parts, use_feature_cache)

    write_run_start(run_dir, config, splits)
    if kept is None:
        recorder = start_recorder(run_dir, plan.strategy, config.resume)
        outcome = train(plan, model, parts, recorder, checkpoint_dir=run_dir / "checkpoint",
                        use_feature_cache=use_feature_cache)
    else:  # --strategy auto kept its probe pilot: that run is this fit's training, clock and rows
        recorder = Recorder(run_dir, plan.strategy.name, write=is_main_process(),
                            train_seconds=kept["recorder"].train_seconds, rows=kept["recorder"].rows)
        recorder.rewrite()
        outcome = kept["outcome"]
    extra = {"modality": plan.modality.name, "words": dict(plan.modality.words), "data_notes": notes, **figures,
             **({"added_labels": added} if added else {}), **({"auto": chosen} if chosen else {})}
    result = finish(plan, model, data, parts, recorder, outcome, run_dir, started, decode_seconds, extra)
    track_run(config, run_dir)  # --track: log the written run directory (the main process only)
    return result


def _say_expected_time(plan: Plan, model, parts, use_feature_cache: bool) -> None:
    """Without --budget, say up front how long this fit should take on this machine (the rates
    are measured in a few seconds once per machine and model, then cached)."""
    from .choose.estimate import describe_seconds, expected_fit_seconds
    from .embed import feature_cache_path

    backbone = getattr(model, "backbone", None)
    cached = bool(use_feature_cache and backbone is not None and feature_cache_path(backbone, parts[0]).exists())
    seconds, how = expected_fit_seconds(plan.strategy, plan.config, plan.modality, model, parts,
                                        features_cached=cached)
    bound = "at most " if not plan.strategy.pretrained else "about "
    say(f"expected time: {bound}{describe_seconds(seconds)} ({how}); --budget caps it")


def choose_automatically(config: FitConfig, modality: Modality, splits, use_feature_cache: bool = True):
    """(config with the backbone and strategy filled in, what was chosen and why, the probe pilot
    when auto kept it as the run's model). The choosing time comes off --budget: the promise
    covers the whole fit."""
    chosen: dict = {}
    kept = None
    if config.backbone == "auto":
        from .choose.auto import choose_backbone
        started = time.perf_counter()
        chosen["backbone"] = choose_backbone(splits.train, modality.name, config)
        config = replace(config, backbone=chosen["backbone"]["backbone"],
                         image_size=chosen["backbone"]["image_size"] or config.image_size,
                         budget_seconds=_less(config.budget_seconds, time.perf_counter() - started))
    if config.strategy == "auto":
        from .choose.auto import choose_strategy
        choice = choose_strategy(splits.train, splits.val, len(splits.test), config.budget_seconds,
                                 _auto_stages(config, modality, splits, use_feature_cache), seed=config.seed)
        chosen["strategy"] = choice.to_dict()
        config = replace(config, strategy=choice.strategy, budget_seconds=choice.budget_left,
                         **_baseline_settings(config, modality, choice.strategy))
        kept = choice.kept
    return config, chosen, kept


def _less(budget: float | None, spent: float) -> float | None:
    return None if budget is None else max(budget - spent, 1.0)


def _baseline_settings(config: FitConfig, modality: Modality, strategy: str) -> dict:
    """A scratch choice trains the modality's small model at the data's own resolution, as
    compare's scratch arm does, not the pretrained backbone's architecture from random weights."""
    if strategy != "scratch":
        return {}
    model = config.scratch_model if config.scratch_model not in (None, "same") else modality.default_scratch_model
    sized = resolve_backbone(model).sized_to_input
    return {"scratch_model": model, **({"image_size": None} if sized else {})}


def _auto_stages(config: FitConfig, modality: Modality, splits, use_feature_cache: bool):
    """The pipeline's stages as --strategy auto uses them: measured rates, and short pilot fits
    that write nothing."""
    from .choose.auto import Stages
    from .choose.throughput import engine_rates, model_rates

    def planned(strategy: str, **changes) -> FitConfig:
        return replace(config, strategy=strategy, resume=False, **_baseline_settings(config, modality, strategy),
                       **changes)

    def rates(strategy: str):
        plan = resolve_plan(planned(strategy), modality)
        if plan.spec.standalone:
            return None  # one-shot models (TF-IDF): no rate to speak of
        sample = splits.train.subset(np.arange(min(len(splits.train), 16)))
        model = build(plan, sample)
        prepared = model.prepare(sample)
        if strategy == "probe":  # through the engine the probe extracts with (ONNX Runtime for images)
            from .deploy.engines import make_engine
            engine = make_engine(config.extract_engine, model, calibration=prepared.inputs)
            return engine_rates(model, engine, prepared.inputs)
        return model_rates(model, prepared.inputs, prepared.labels)

    def pilot(strategy: str, budget, train_data, val_data, evals_per_epoch: int = 1) -> dict:
        plan = resolve_plan(planned(strategy, budget_seconds=budget, evals_per_epoch=evals_per_epoch,
                                    explain_examples=0), modality)
        model = build(plan, train_data)
        parts = tuple(model.prepare(p) for p in (train_data, val_data, val_data.subset(np.arange(0))))
        recorder = Recorder(None, plan.strategy.name, write=False)
        outcome = train(plan, model, parts, recorder, checkpoint_dir=None, use_feature_cache=use_feature_cache)
        return {"best_val_accuracy": outcome["best_val_accuracy"], "rows": recorder.rows,
                "kept": {"model": model, "recorder": recorder, "outcome": outcome},
                "n_used": outcome.get("probe_train_used", len(train_data)),
                "train_seconds": recorder.train_seconds, "wall_seconds": recorder.wall_seconds}

    return Stages(rates=rates, pilot=pilot, no_transfer=modality.auto_baseline)


def add_labels(config: FitConfig, data, splits) -> dict | None:
    """--add-labels: the newly labelled items join the training part only (validation and test
    stay as the seed drew them, so runs before and after a labelling round compare fairly)."""
    if not config.add_labels:
        return None
    from .label.added import read_added_labels

    added = read_added_labels(config.add_labels, data)
    splits.train = splits.train.concat(added.data)
    described = added.describe(config.add_labels)
    say(f"added {described['added']} newly labelled example(s) from {config.add_labels} to the training data"
        + (f"; dropped {len(added.repeated)} already in the data" if added.repeated else "")
        + (f"; {added.waiting} row(s) wait for a label" if added.waiting else ""))
    return described


def training_part(run_dir: Path):
    """A finished run's labelled training data, as it trained on it (its split, plus the
    labels it added): what `select` must not pick again."""
    from .data import Splits
    from .records import read_json

    config = FitConfig.from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
    data = load(config)
    splits = Splits.from_dict(data, {"indices": read_json(run_dir / "splits.json")})
    add_labels(config, data, splits)
    return splits.train


def start_run(config: FitConfig) -> tuple[FitConfig, Path]:
    run_dir = new_run_dir(config.out)
    if config.resume:
        if not (run_dir / "config.yaml").exists():
            raise HeadstartError(f"nothing to resume in {run_dir}",
                                 hint="--resume continues a run started with the same --out")
        # a resumed run is the saved run: its own config, not the flags of this invocation
        saved = FitConfig.from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
        return replace(saved, resume=True, out=str(run_dir)), run_dir
    if (run_dir / "summary.json").exists() or (run_dir / "checkpoint").exists():
        raise HeadstartError(f"{run_dir} already holds a run",
                             hint="choose a new --out, or add --resume to continue an interrupted run")
    return replace(config, out=str(run_dir)), run_dir


def finish(plan: Plan, model, data, parts, recorder: Recorder, outcome: dict, run_dir: Path, started: float,
           decode_seconds: float, extra: dict) -> FitResult:
    """Score on test, write summary, model and report."""
    train_part, val_part, test_part = parts
    test_logits = model.logits(test_part, description="test")
    test_accuracy, test_loss = score(test_logits, test_part.labels)
    recorder.log("test", test_accuracy, test_loss, phase="final")
    report = classification_summary(test_part.labels, test_logits.argmax(1).numpy(), data.classes)
    described = model.describe()
    pre = described["preprocessing"]
    summary = {
        "test_accuracy": test_accuracy,
        "macro_f1": report["macro_f1"],
        "balanced_accuracy": report["balanced_accuracy"],
        "test_loss": test_loss,
        "best_val_accuracy": outcome.get("best_val_accuracy"),
        "train_seconds": round(recorder.train_seconds, 3),
        "wall_seconds": round(time.perf_counter() - started, 3),
        "decode_seconds": round(decode_seconds, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "strategy": plan.strategy.name,
        "backbone": described["name"],
        "weights": described["weights"],
        "input_size": pre.get("input_size", pre.get("max_length")),
        "data": data.name,
        "classes": data.classes,
        "sizes": {"train": len(train_part), "val": len(val_part), "test": len(test_part)},
        "skipped_files": len(data.skipped),
        "train_imbalance": imbalance(train_part.labels, data.classes),
        "per_class": report["per_class"],
        "confusion_matrix": report["confusion_matrix"],
        "misclassified": misclassified_examples(test_part, test_logits, data.classes),
        **extra,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "processes": int(torch.distributed.get_world_size()) if torch.distributed.is_initialized() else 1,
        **{k: v for k, v in outcome.items() if k not in ("best_val_accuracy",)},
    }
    if is_main_process():
        save_model(run_dir, model, data.classes, plan.strategy.name)
        summary.update(explain_report_examples(plan.config, model, test_part, test_logits, data.classes, run_dir))
        summary.update(record_deploy_figures(model, test_part, test_accuracy, run_dir))
        write_json(run_dir / "summary.json", summary)
        build_fit_report(run_dir)
    return FitResult(run_dir=run_dir, classifier=model, classes=data.classes, summary=summary)


def write_run_start(run_dir: Path, config: FitConfig, splits) -> None:
    """config.yaml and splits.json, before any training (only the main process writes)."""
    if is_main_process():
        run_dir.mkdir(parents=True, exist_ok=True)
        write_yaml(run_dir / "config.yaml", config.to_dict())
        write_json(run_dir / "splits.json", {"seed": config.seed, **splits.indices})


def start_recorder(run_dir: Path, strategy: Strategy, resume: bool) -> Recorder:
    """The run's clock and metrics: a resumed run carries on from its rows, a new one starts empty."""
    main = is_main_process()
    if not resume and main:
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    return Recorder(run_dir, strategy.name, write=main, rows=read_metrics(run_dir) if resume else [])
