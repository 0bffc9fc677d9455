"""The stages every command runs: resolve -> load -> build -> (embed) -> train -> finish.

`fit`, `compare`, the Python API and the commands to come compose these stages; each is
public. `fit` is begin_fit (start the run, load, split, add labels) then complete_fit (build,
train or keep a training already done, finish); --backbone auto and --strategy auto choose
between the two from above (choose/auto_fit.py): nothing here calls back into choose/.
Strategies train; this module decides what to build, and writes the run directory (only the
main process writes under torchrun).
"""
from __future__ import annotations

import resource
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch

from . import run_lock
from .config import FitConfig
from .config.budget import Deadline, claim_start
from .embed import embed  # noqa: F401  (the embed stage, with the others)
from .errors import HeadstartError
from .eval_budget import sized_for_budget
from .log import is_main_process, say
from .manifest import record
from .metrics import classification_summary, imbalance, misclassified_examples
from .modalities import Modality, load_data, modality_of
from .model_io import save_model
from .records import METRICS, Recorder, new_run_dir, read_metrics, write_json, write_yaml
from .run import SUMMARY, Run, RunData, register_data_reloader
from .summary import FitSummary
from .post_fit import budget_for_training, explain_report_examples, plan_closing, record_deploy_figures, render_fit_report
from .strategies import FitContext, Strategy, get_strategy
from .strategies.refit import delivered_line
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
    summary: FitSummary


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


def plan_decode_size(config: FitConfig, modality: Modality) -> int | None:
    """The size files are decoded at for this config: what its plan's backbone eats (--image-size
    when given), so decoding happens once."""
    return modality.decode_size(config.image_size, resolve_plan(config, modality).spec)


def load(config: FitConfig, *, decode_size: Callable[[FitConfig, Modality], int | None] = plan_decode_size):
    """The labelled data, decoded once at `decode_size(config, modality)` (default: the size the
    plan's backbone eats; a caller that chooses the backbone later passes its own)."""
    data = load_data(config.data, size=lambda modality: decode_size(config, modality), **config.load_options())
    data = data.only_classes(config.classes) if config.classes else data
    return drop_excluded(config, data)


def drop_excluded(config: FitConfig, data):
    """--exclude FILE: the items a user confirmed (audit.csv's exclude column, or a list) leave
    the data before it is split, so the seed's split, and a reloaded run's, are of what is kept."""
    if not config.exclude:
        return data
    import numpy as np

    from .label.exclude import read_exclusions

    drop = read_exclusions(config.exclude, data)
    keep = np.setdiff1d(np.arange(len(data)), drop)
    say(f"excluded {len(drop)} item(s) listed in {config.exclude}; {len(keep)} remain")
    # subset() leaves out the predefined test part (fashion-mnist's): it decides the split
    return replace(data.subset(keep), is_test=None if data.is_test is None else data.is_test[keep],
                   skipped=list(data.skipped), notes=dict(data.notes))


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
          use_feature_cache: bool = True, hold_refit: bool = False) -> dict:
    """Train `model` in place with the plan's strategy; returns the strategy's figures.
    hold_refit: see FitContext (auto's probe arm)."""
    train_part, val_part, test_part = parts
    model.warm_up(train_part)  # untimed: kernel loading and allocator start-up are not training
    ctx = FitContext(config=plan.config, train=train_part, val=val_part, recorder=recorder,
                     modality=plan.modality, spec=plan.spec, checkpoint_dir=checkpoint_dir,
                     use_feature_cache=use_feature_cache, test_size=len(test_part), hold_refit=hold_refit)
    outcome = plan.strategy.fit(model, ctx)
    recorder.pause()
    return outcome


def fit(config: FitConfig, *, data=None, use_feature_cache: bool = True, splits=None) -> FitResult:
    """Run one fit and write its run directory. `data` (a labelled data form) bypasses config.data;
    `splits` (data.Splits over that data) the split config would make (label curves pass subsets).
    --strategy auto and --backbone auto choose between these two stages (choose/auto_fit.py)."""
    if config.backbone == "auto" or config.strategy == "auto":
        raise HeadstartError("pipeline.fit trains what its config names: `auto` is chosen first, above it",
                             hint="call headstart.api.fit (or headstart.choose.auto_fit.fit_auto)")
    return complete_fit(begin_fit(config, data=data, splits=splits), use_feature_cache=use_feature_cache)


@dataclass
class FitStart:
    """A fit after its first stages (run started, data loaded and split, added labels joined to
    the training part): what is left is deciding what to train, then training and finishing."""

    config: FitConfig
    run_dir: Path
    data: object
    splits: object             # data.Splits: index lists over `data`
    added: dict | None         # what --add-labels added (None: nothing)
    started: float             # perf_counter at the start: the run's wall_seconds count from here
    decode_started: float      # ... and its decode_seconds from here

    @property
    def deadline(self) -> Deadline:
        """--budget's clock: from the command's start (the process's, for `headstart fit`)."""
        return Deadline(self.config.budget_seconds, self.started)


@dataclass
class KeptTraining:
    """Training already done that becomes the run's own (--strategy auto keeps its probe pilot):
    the model it trained, its recorder (clock and rows) and the strategy's figures."""

    model: object
    recorder: Recorder
    outcome: dict


def begin_fit(config: FitConfig, *, data=None, splits=None,
              decode_size: Callable[[FitConfig, Modality], int | None] = plan_decode_size) -> FitStart:
    """Start the run, load the data (unless given), split it and add --add-labels' examples."""
    started = claim_start()  # `headstart fit`: the process's start, so start-up counts against --budget
    config, run_dir = start_run(config)
    check_tracking(config)  # --track: a missing library or an unreachable server fails before training
    decode_started = time.perf_counter()
    data = load(config, decode_size=decode_size) if data is None else data
    splits = splits or split(config, data)
    added = add_labels(config, data, splits)
    return FitStart(config, run_dir, data, splits, added, started, decode_started)


def split(config: FitConfig, data):
    """The seed's train / validation / test split of `data`, as index lists (data.Splits)."""
    from .data import make_splits

    return make_splits(data, seed=config.seed, train_per_class=config.train_per_class,
                       train_size=config.train_size, val_fraction=config.val_fraction,
                       test_fraction=config.test_fraction, max_eval=config.max_eval)


def complete_fit(start: FitStart, config: FitConfig | None = None, *, kept: KeptTraining | None = None,
                 use_feature_cache: bool = True, extra: dict | None = None,
                 choosing_seconds: float = 0.0) -> FitResult:
    """Train (or keep `kept`'s training) and finish the run begun by `start`. `config`: what to
    train when a caller decided it after begin_fit (auto); `extra`: figures for the summary;
    `choosing_seconds`: time spent deciding, kept out of decode_seconds."""
    data, splits, run_dir = start.data, start.splits, start.run_dir
    plan = resolve_plan(config or start.config, modality_of(data))
    config = plan.config
    if data.skipped:
        say(f"skipped {len(data.skipped)} unusable example(s), e.g. {data.skipped[0][0]} ({data.skipped[0][1]})")
    if data.notes.get("replaced_bytes"):
        say(f"{data.notes['replaced_bytes']} text(s) held bytes that are not UTF-8; they were replaced with U+FFFD")
    model = build(plan, data) if kept is None else kept.model
    parts = tuple(model.prepare(s) for s in (splits.train, splits.val, splits.test))
    decode_seconds = time.perf_counter() - start.decode_started - choosing_seconds
    described = model.describe()
    figures, notes = plan.modality.data_notes(list(parts), described["preprocessing"])
    size = described["preprocessing"].get("input_size", described["preprocessing"].get("max_length"))
    unit = plan.modality.words.get("input_unit", "")
    say(f"data {data.name}: {len(parts[0])} train / {len(parts[1])} val / {len(parts[2])} test, "
        f"{data.num_classes} classes" + (f", {size} {unit}" if size else ""))
    for note in notes:
        say(note)
    # under --budget, held-out parts too slow to evaluate in full become stratified samples
    parts, sizing = sized_for_budget(model, parts, start.config.budget_seconds, config.seed, trained=kept is not None,
                                     standalone=plan.spec.standalone)
    if config.budget_seconds is None and is_main_process():
        _say_expected_time(plan, model, parts, use_feature_cache)

    write_run_start(run_dir, config, splits)
    if kept is None:
        recorder = start_recorder(run_dir, plan.strategy, config.resume)
        plan = replace(plan, config=budget_for_training(plan.config, start.deadline, recorder.wall_seconds,
                                                        plan.modality.name))
        outcome = train(plan, model, parts, recorder, checkpoint_dir=run_dir / "checkpoint",
                        use_feature_cache=use_feature_cache)
    else:  # the kept training is this fit's: its clock and rows are the run's
        recorder = Recorder(run_dir, plan.strategy.name, write=is_main_process(),
                            train_seconds=kept.recorder.train_seconds, rows=kept.recorder.rows)
        recorder.rewrite()
        outcome = kept.outcome
    extra = {"modality": plan.modality.name, "words": dict(plan.modality.words), "data_notes": notes, **figures,
             **({"added_labels": start.added} if start.added else {}),
             **({"image_size_choice": data.notes["image_size_choice"]} if "image_size_choice" in data.notes else {}),
             **sizing,
             **(extra or {})}
    result = finish(plan, model, data, parts, recorder, outcome, run_dir, start.started, decode_seconds, extra,
                    deadline=start.deadline)
    track_run(config, run_dir)  # --track: log the written run directory (the main process only)
    return result


def _say_expected_time(plan: Plan, model, parts, use_feature_cache: bool) -> None:
    """Without --budget, say up front how long this fit should take on this machine (the rates
    are measured in a few seconds once per machine and model, then cached)."""
    from .embed import feature_cache_path
    from .strategies.estimate import describe_seconds, expected_fit_seconds

    backbone = getattr(model, "backbone", None)
    cached = bool(use_feature_cache and backbone is not None and feature_cache_path(backbone, parts[0]).exists())
    seconds, how = expected_fit_seconds(plan.strategy, plan.config, plan.modality, model, parts,
                                        features_cached=cached)
    bound = "at most " if not plan.strategy.pretrained else "about "
    say(f"expected time: {bound}{describe_seconds(seconds)} ({how}); --budget caps it")


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


def reload_run_data(run: Run) -> RunData:
    """A run's labelled data as it trained (Run.reload_data): its data decoded as its plan
    decodes it, its split, and the labels it added joined to the training part."""
    from .data import Splits

    config = run.config
    data = load(config)
    splits = Splits.from_dict(data, {"indices": run.splits})
    return RunData(data, splits, add_labels(config, data, splits))


register_data_reloader(reload_run_data)


def start_run(config: FitConfig) -> tuple[FitConfig, Path]:
    """The run folder, owned (run_lock) at once if it exists (a resume, a second start), else
    from its first write (write_run_start): a refused fit leaves no folder behind."""
    run_dir = new_run_dir(config.out)
    if run_dir.exists() and is_main_process():
        run_lock.hold(run_dir, "fit --resume" if config.resume else "fit")
    run = Run(run_dir)
    if config.resume:
        if run.config_text is None:
            raise HeadstartError(f"nothing to resume in {run_dir}",
                                 hint="--resume continues a run started with the same --out")
        # a resumed run is the saved run: its own config, not the flags of this invocation
        return replace(run.config, resume=True, out=str(run_dir)), run_dir
    if run.finished or (run_dir / "checkpoint").exists():
        raise HeadstartError(f"{run_dir} already holds a run",
                             hint="choose a new --out, or add --resume to continue an interrupted run")
    return replace(config, out=str(run_dir)), run_dir


def finish(plan: Plan, model, data, parts, recorder: Recorder, outcome: dict, run_dir: Path, started: float,
           decode_seconds: float, extra: dict, *, deadline: Deadline | None = None) -> FitResult:
    """Score on test, write summary, model and report (under `deadline`, the closing parts that
    fit in what is left of --budget)."""
    train_part, val_part, test_part = parts
    test_logits = model.logits(test_part, description="test")
    test_accuracy, test_loss = score(test_logits, test_part.labels)
    recorder.log("test", test_accuracy, test_loss, phase="final")
    report = classification_summary(test_part.labels, test_logits.argmax(1).numpy(), data.classes)
    described = model.describe()
    pre = described["preprocessing"]
    summary = FitSummary(
        test_accuracy=test_accuracy,
        macro_f1=report["macro_f1"],
        balanced_accuracy=report["balanced_accuracy"],
        test_loss=test_loss,
        best_val_accuracy=outcome.get("best_val_accuracy"),
        train_seconds=round(recorder.train_seconds, 3),
        wall_seconds=round(time.perf_counter() - started, 3),
        decode_seconds=round(decode_seconds, 3),
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        strategy=plan.strategy.name,
        backbone=described["name"],
        weights=described["weights"],
        input_size=pre.get("input_size", pre.get("max_length")),
        data=data.name,
        classes=data.classes,
        sizes={"train": len(train_part), "val": len(val_part), "test": len(test_part)},
        skipped_files=len(data.skipped),
        train_imbalance=imbalance(train_part.labels, data.classes),
        per_class=report["per_class"],
        confusion_matrix=report["confusion_matrix"],
        misclassified=misclassified_examples(test_part, test_logits, data.classes),
        device="cuda" if torch.cuda.is_available() else "cpu",
        processes=int(torch.distributed.get_world_size()) if torch.distributed.is_initialized() else 1,
    )
    summary.add(extra)  # the modality's, the options' and the caller's sections
    summary.add({k: v for k, v in outcome.items() if k != "best_val_accuracy"})  # the strategy's figures
    summary.add({"delivered": delivered_line(outcome, plan.config, plan.strategy.name, len(train_part))})
    if is_main_process():
        save_model(run_dir, model, data.classes, plan.strategy.name)
        closing = plan_closing(plan.config, None if deadline is None else deadline.left(), plan.modality.name)
        summary.add(explain_report_examples(plan.config, model, test_part, test_logits, data.classes, run_dir,
                                            closing))
        summary.add(record_deploy_figures(model, test_part, test_accuracy, run_dir, closing))
        summary.add({**closing.figures(), "wall_seconds": round(time.perf_counter() - started, 3)})  # with them
        write_json(run_dir / SUMMARY, summary.to_dict())
        record(run_dir, SUMMARY, METRICS)  # the run's closing commit point (manifest.py)
        render_fit_report(run_dir, closing)
    return FitResult(run_dir=run_dir, classifier=model, classes=data.classes, summary=summary)


def write_run_start(run_dir: Path, config: FitConfig, splits) -> None:
    """config.yaml and splits.json, before any training (only the main process writes)."""
    if is_main_process():
        run_lock.hold(run_dir, "fit --resume" if config.resume else "fit")  # made and owned, if start_run could not
        write_yaml(run_dir / "config.yaml", config.to_dict())
        write_json(run_dir / "splits.json", {"seed": config.seed, **splits.indices})
        record(run_dir, "config.yaml", "splits.json")


def start_recorder(run_dir: Path, strategy: Strategy, resume: bool) -> Recorder:
    """The run's clock and metrics: a resumed run carries on from its rows (the loop cuts them back
    to its checkpoint's), a new one starts empty. So does a --resume with no checkpoint to continue
    from (killed before the first one): it starts over, and keeping the killed attempt's rows would
    draw two runs' curves as one."""
    main = is_main_process()
    continues = resume and any((run_dir / "checkpoint").glob("*.pt"))
    if not continues and main:
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    return Recorder(run_dir, strategy.name, write=main, rows=read_metrics(run_dir) if continues else [])
