"""compare: transfer arms against baseline arms (from scratch; TF-IDF for text) on the same
split and seed.

Each arm is an ordinary fit run in RUN/arms/NAME/ (NAME-seedK for extra seeds). Its clock
starts with the decoded data in memory; feature caches are off, so a probe pays for its
feature extraction like any arm pays for its training. From the arms' validation curves we
read the time to a target accuracy, the speed-up, and a verdict in one plain sentence.

The baseline is given its best chance: a speed-up against a scratch run stopped by the
transfer arms' clock measures the clock, not the transfer. So a baseline that trains
iteratively (scratch) has its own budget, --baseline-budget, by default "until its validation
accuracy plateaus" (train/plateau.py) under a cap, and the default target is that plateau,
read robustly (one lucky evaluation cannot set it). TF-IDF fits in one shot: its target is
its best validation accuracy, under the transfer arms' budget.
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from .config import CompareConfig
from . import run_lock
from .errors import HeadstartError
from .manifest import record
from .modalities import modality_of
from .post_fit import skipped
from .records import new_run_dir, read_json, read_metrics, write_json
from .summary import fit_summary
from .tracking import start_comparison
# time_to_target, is_baseline and judge are read here by the benches and tests too
from .baseline import (_brief, baseline_bar, baseline_budget, is_baseline,  # noqa: F401
                       time_to_target, trains_iteratively)
from .verdict import judge, validation_band

def resolve_defaults(config: CompareConfig, modality) -> CompareConfig:
    """Fill the settings left to the data's modality (arms, backbone, scratch model)."""
    return replace(config, arms=tuple(config.arms or modality.default_arms),
                   scratch_model=config.scratch_model or modality.default_scratch_model,
                   fit=replace(config.fit, backbone=config.fit.backbone or modality.default_backbone))


def parse_arm(arm: str, default_scratch_model: str | None) -> tuple[str, str | None]:
    """'probe' -> ('probe', None); 'scratch' -> ('scratch', default); 'scratch:same' ->
    ('scratch', 'same'): a scratch arm may name its own architecture, so one comparison can
    hold the small CNN and the backbone's own architecture side by side."""
    strategy, _, model = arm.partition(":")
    if strategy == "scratch":
        return strategy, model or default_scratch_model
    return strategy, None


def validate(config: CompareConfig) -> None:
    from .strategies import STRATEGIES

    config.fit.refuse_keep_learning("compare")
    arms = config.arms or ()
    unknown = [a for a in arms if parse_arm(a, config.scratch_model)[0] not in STRATEGIES
               or (":" in a and not a.startswith("scratch:"))]
    if unknown:
        raise HeadstartError(f"unknown arm(s): {', '.join(unknown)}",
                             hint=f"arms are strategies: {', '.join(STRATEGIES)}; a scratch arm may "
                                  f"name its architecture, e.g. scratch:same or scratch:resnet9")
    if len(set(arms)) != len(arms):
        raise HeadstartError("an arm is listed twice", hint="list each strategy once in --arms")
    if config.target is not None and not 0 < config.target <= 1:
        raise HeadstartError(f"--target must be an accuracy in (0, 1], got {config.target}",
                             hint="e.g. --target 0.9 for 90% validation accuracy")
    if config.seeds < 1:
        raise HeadstartError("--seeds must be at least 1")
    if config.budget_seconds is not None and config.budget_seconds < 5:
        raise HeadstartError(f"a budget of {config.budget_seconds:g} s per arm leaves no time for a single "
                             "evaluation", hint="give each arm at least 5s, e.g. --budget 2m")
    if config.baseline_budget_seconds is not None and config.baseline_budget_seconds < 5:
        raise HeadstartError(f"a baseline budget of {config.baseline_budget_seconds:g} s leaves no time for a "
                             "single evaluation", hint="give the baseline at least 5s, e.g. --baseline-budget 10m")
    if config.arms is not None and not any(is_baseline(parse_arm(a, "")[0]) for a in arms) \
            and config.target is None:
        raise HeadstartError("without a scratch (or tfidf) arm there is no default target",
                             hint="add scratch to --arms, or set --target")


def _sized_to_input(scratch_model: str | None, backbone: str) -> bool:
    if scratch_model in (None, "same", backbone):
        return False
    from .zoo import resolve_backbone
    return resolve_backbone(scratch_model).sized_to_input


def run_compare(config: CompareConfig) -> dict:
    from .choose.auto_fit import decode_size as auto_decode_size  # --backbone auto: the largest candidate's
    from .compare_budget import CommandClock, command_started
    from .pipeline import build, load, resolve_plan

    command_start = command_started()  # --budget counts from here: the process's start (compare_budget.py)
    validate(config)  # what can be checked before the data is loaded
    run_dir = new_run_dir(config.out, prefix="compare")
    run_lock.hold(run_dir, "compare")  # made and owned from here, for the process's life
    if (run_dir / "comparison.json").exists():
        raise HeadstartError(f"{run_dir} already holds a comparison", hint="choose a new --out")
    if (run_dir / "arms").exists() and not config.resume:  # killed among its arms
        raise HeadstartError(f"{run_dir} holds an interrupted comparison: its arms were started and its "
                             "comparison.json was never written",
                             hint="run the same command with --resume to continue it (finished arms are kept), "
                                  "or choose a new --out")
    if config.resume and not run_dir.is_dir():
        raise HeadstartError(f"nothing to resume in {run_dir}",
                             hint="--resume continues a comparison started with the same --out")
    tracked = start_comparison(config.fit, run_dir)  # --track: the comparison's run; the arms nest under it

    # Decode once, timed once: every arm then starts its clock with the data in memory.
    started = time.perf_counter()
    # decoded at the transfer backbone's input size (or --image-size): the arms resize from it
    data = load(replace(config.fit, data=config.data, strategy="probe"), decode_size=auto_decode_size)
    decode_seconds = time.perf_counter() - started
    config = resolve_defaults(config, modality_of(data))
    validate(config)
    if config.fit.image_size == "auto":  # measured once, on seed 0's split: every transfer arm shares the size
        from .choose.image_size import settle_image_size
        config = replace(config, fit=settle_image_size(replace(config.fit, data=config.data, seed=0,
                                                               budget_seconds=config.budget_seconds), data))
    chosen = None
    if config.fit.backbone == "auto":  # ranked once, on seed 0's split: every arm and seed then shares it
        config, chosen = choose_backbone_once(config, data)

    # label curves: the arms again on nested subsets of the training labels, drawn (and a budget
    # too small for a class refused) before anything trains
    from .label_curves import plan as plan_label_curves, run_label_curves
    planned = plan_label_curves(config, data) if config.label_fractions else None
    if config.budget_seconds is None:
        say_expected_time(config, data)
    clock = CommandClock.for_compare(config, [_arm_budget(config, arm) for arm in config.arms],
                                     1 + (len(planned) if planned else 0), command_start)
    runs = run_arms(config, data, run_dir, tracked.arm_settings, resume=config.resume, clock=clock)
    comparison = summarise(config, runs, run_dir)
    comparison["decode_seconds"] = round(decode_seconds, 3)
    if chosen:
        comparison["auto"] = {"backbone": chosen}
    if planned is not None:
        comparison["label_curve"] = run_label_curves(
            data, comparison, runs, run_dir, planned,
            run_arms=lambda root, splits_for: run_arms(config, data, root, {"track": None}, splits_for,
                                                       resume=config.resume, clock=clock))
    # why transfer did not pay: under --budget only when its cost here fits in what is left
    if comparison["verdict"] in ("negative transfer", "inconclusive") and clock.affords("diagnosis"):
        from .diagnosis import diagnose
        # the pretrained backbone and head the probe arm builds, for its frozen features
        probe = resolve_plan(replace(config.fit, data=config.data, strategy="probe"), modality_of(data))
        with clock.timed("diagnosis"):
            comparison["diagnosis"] = diagnose(config, data, runs, comparison,
                                               feature_model=lambda: build(probe, data))
    comparison.update(clock.figures())
    write_json(run_dir / "comparison.json", comparison)
    record(run_dir, "comparison.json")  # the comparison's commit point (manifest.py); each arm records its own
    if not skipped("report"):  # HEADSTART_SKIP=report (the test suite's default) skips it, as a fit's
        from .report import build_comparison_report
        with clock.timed("comparison-report"):
            comparison["report"] = str(build_comparison_report(run_dir))
    tracked.finish()
    return comparison


def choose_backbone_once(config: CompareConfig, data) -> tuple[CompareConfig, dict]:
    """--backbone auto for a comparison: rank the candidates on seed 0's training split."""
    from .choose.auto import choose_backbone
    from .data import make_splits

    f = config.fit
    splits = make_splits(data, seed=0, train_per_class=f.train_per_class, train_size=f.train_size,
                         val_fraction=f.val_fraction, test_fraction=f.test_fraction, max_eval=f.max_eval)
    chosen = choose_backbone(splits.train, modality_of(data).name, replace(f, budget_seconds=config.budget_seconds))
    fit = replace(f, backbone=chosen["backbone"], image_size=chosen["image_size"] or f.image_size)
    return replace(config, fit=fit), chosen


def say_expected_time(config: CompareConfig, data) -> None:
    """Without --budget, say up front how long the comparison should take on this machine: each
    arm's model is built once and its rates measured (a few seconds, cached per machine)."""
    from .strategies.estimate import describe_seconds, expected_fit_seconds
    from .data import make_splits
    from .log import say
    from .pipeline import build, resolve_plan

    f = config.fit
    splits = make_splits(data, seed=0, train_per_class=f.train_per_class, train_size=f.train_size,
                         val_fraction=f.val_fraction, test_fraction=f.test_fraction, max_eval=f.max_eval)
    total, parts_said = 0.0, []
    for arm in config.arms:
        strategy, scratch_model = parse_arm(arm, config.scratch_model)
        shared = replace(f, image_size=None) if _sized_to_input(scratch_model, config.backbone) else f
        plan = resolve_plan(replace(shared, data=config.data, strategy=strategy, scratch_model=scratch_model,
                                    evals_per_epoch=config.evals_per_epoch), modality_of(data))
        model = build(plan, data)
        parts = tuple(model.prepare(s) for s in (splits.train, splits.val, splits.test))
        seconds, _ = expected_fit_seconds(plan.strategy, plan.config, plan.modality, model, parts)
        if is_baseline(strategy) and trains_iteratively(strategy):
            seconds = min(seconds, baseline_budget(config))  # it stops at its plateau, under its cap
        total += seconds * config.seeds
        parts_said.append(f"{arm} {describe_seconds(seconds)}")
        del model
    say(f"expected time: about {describe_seconds(total)} for {len(config.arms)} arm(s) x {config.seeds} seed(s) "
        f"({', '.join(parts_said)}; scratch stops at its plateau, often sooner); --budget caps each arm")


def _arm_budget(config: CompareConfig, arm: str) -> float | None:
    """An arm's own budget: the baseline's trains to its plateau under its own cap, not to the
    transfer arms' clock."""
    strategy, _ = parse_arm(arm, config.scratch_model)
    return baseline_budget(config) if is_baseline(strategy) and trains_iteratively(strategy) \
        else config.budget_seconds


def run_arms(config: CompareConfig, data, root: Path, arm_settings: dict, splits_for=None, *,
             resume: bool = False, clock=None) -> dict[str, list[dict]]:
    """Every arm, each seed, as an ordinary fit run in ROOT/arms/NAME[-seedK]. splits_for(seed),
    when given, is the split each seed's arms train on (label curves: a subset of the labels).
    resume: an arm a killed comparison finished is read back, not trained again (_resumed_arm).
    clock: the command's promise (compare_budget.CommandClock), which may shorten an arm's budget."""
    from .pipeline import fit

    runs: dict[str, list[dict]] = {}
    for arm in config.arms:
        strategy, scratch_model = parse_arm(arm, config.scratch_model)
        folder = arm.replace(":", "-")
        shared = config.fit
        if _sized_to_input(scratch_model, config.backbone):
            # --image-size is the transfer backbone's; the small CNN keeps the data's own
            # resolution (up to its cap), as a from-scratch user would train it
            shared = replace(shared, image_size=None)
        budget = _arm_budget(config, arm)
        for seed in range(config.seeds):
            arm_dir = root / "arms" / (folder if seed == 0 else f"{folder}-seed{seed}")
            fit_config = replace(shared, data=config.data, strategy=strategy, scratch_model=scratch_model,
                                 seed=seed, budget_seconds=clock.arm_budget(budget) if clock else budget,
                                 evals_per_epoch=config.evals_per_epoch, out=str(arm_dir), resume=False,
                                 **arm_settings)
            kept = _resumed_arm(arm_dir) if resume else None
            if kept is not None:
                summary = kept
            else:
                fit_config = replace(fit_config, resume=resume and (arm_dir / "checkpoint").is_dir())
                summary = fit(fit_config, data=data, use_feature_cache=False,
                              splits=splits_for(seed) if splits_for else None).summary
            runs.setdefault(arm, []).append({"dir": arm_dir, "summary": summary, "rows": read_metrics(arm_dir)})
    return runs


def _resumed_arm(arm_dir: Path) -> dict | None:
    """A finished arm's summary (verified: a damaged arm is refused by name), or None where the
    arm must train. An unfinished arm with a checkpoint continues from it (fit --resume); one
    without any (killed before its first checkpoint, or an arm that keeps none, like the probe)
    starts over in a clean folder, so its clock and curve hold one run's rows, not two."""
    import shutil

    from .run import Run

    if Run(arm_dir).finished:
        # owned for the read: taking the lock sweeps what the killed writer left aside (a manifest
        # update in flight after the summary's rename), and refuses an arm another process writes
        with run_lock.owning(arm_dir, "compare --resume"):
            Run.open(arm_dir).require_finished()  # parsed and checked against its manifest, or refused by name
            return read_json(arm_dir / "summary.json")  # as the arm's fit returned it
    if arm_dir.exists() and not (arm_dir / "checkpoint").is_dir():
        shutil.rmtree(arm_dir)
    return None


def summarise(config: CompareConfig, runs: dict[str, list[dict]], run_dir: Path) -> dict:
    """Target, time-to-target, speed-up and verdict from the arms' records."""
    def median(values):
        values = [v for v in values if v is not None]
        return float(np.median(values)) if values else None

    # the best baseline arm sets the bar: the most accurate model one could train without
    # transfer: an iterative one at its plateau, a one-shot one (TF-IDF) at its best
    bars = {name: baseline_bar(config, name, seeds) for name, seeds in runs.items()
            if is_baseline(fit_summary(seeds[0]["summary"]).strategy)}
    best_bar = max(bars, key=lambda name: bars[name]["accuracy"], default=None)
    plateau = bars[best_bar] if best_bar is not None and "rule" in bars[best_bar] else None
    if config.target is not None:
        target, source = config.target, "user"
    else:
        target = bars[best_bar]["accuracy"]
        source = "baseline-plateau" if plateau else "baseline-best-val"

    n_val = fit_summary(runs[next(iter(runs))][0]["summary"]).sizes.get("val")
    # Every arm, the baseline too, is read one way: its first validation evaluation within the
    # noise of the target (a model one could stop at and keep). The baseline's plateau is a
    # measurement on n_val images: an arm one image below it has matched it as far as the data
    # can tell (verdict.validation_band). A user's --target is no measurement: read exactly.
    reached_at = target - validation_band(target, n_val) if source == "baseline-plateau" else target
    arms = []
    for name, seeds in runs.items():
        times = [time_to_target(r["rows"], reached_at) for r in seeds]
        reached = [t for t in times if t is not None]
        summaries = [fit_summary(r["summary"]) for r in seeds]  # as run_arms keeps them, or their on-disk form
        first = summaries[0]
        tests = [s.test_accuracy for s in summaries]
        arms.append({
            "name": name,
            "strategy": first.strategy,
            "backbone": first.backbone,
            "weights": first.weights,
            "input_size": first.input_size,
            "best_val_accuracy": median([s.best_val_accuracy for s in summaries]),
            "test_accuracy": median(tests),
            "test_accuracy_spread": float(max(tests) - min(tests)),
            "train_seconds": median([s.train_seconds for s in summaries]),
            # median over seeds, counting only if most seeds reached the target
            "time_to_target_seconds": median(reached) if len(reached) * 2 > len(times) else None,
            "baseline": is_baseline(first.strategy),
            "input_unit": first.input_unit,
            "val_size": first.sizes.get("val"),  # the verdict's validation noise is read from it
            "seeds": len(seeds),
            "stop_reason": first.stop_reason,
            "run_dir": str(seeds[0]["dir"].relative_to(run_dir)),
            # an iterative baseline's plateau (the verdict names it); see baseline_bar
            **({"plateau": _brief(bars[name])} if "rule" in bars.get(name, {}) else {}),
        })

    verdict = judge(arms, target, n_test=fit_summary(runs[next(iter(runs))][0]["summary"]).sizes["test"])
    return {
        "data": config.data,
        "target_accuracy": target,
        "target_source": source,
        "target_reached_at": round(reached_at, 6),  # the validation accuracy that counts as reaching it
        "arms": arms,
        **verdict,
        **({"baseline_plateau": plateau} if plateau else {}),
        "budget_seconds_per_arm": config.budget_seconds,
        "baseline_budget_seconds": baseline_budget(config),
        "seeds": config.seeds,
        "machine": machine_info(),
    }


def machine_info() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from .model_io import versions
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "platform": platform.platform(),
        "versions": versions(),
    }
