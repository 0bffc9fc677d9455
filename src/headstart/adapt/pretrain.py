"""`headstart pretrain`: self-supervised pre-training on unlabelled data, registered in the local zoo.

    headstart pretrain POOL --method simclr|byol|mae|mlm --backbone NAME --budget 10m --name NAME

The stages: check everything that can be checked before any file is written (the name, the
method against the backbone and the pool, the pool itself, and with --budget whether one epoch
fits: a few steps are timed and the epoch estimated, pretrain_plan.py); then pre-train through
the one training loop (train/loop.py without labels: budget, progress bar, per-epoch checkpoints,
--resume after a kill, metrics through the Recorder); then write the run directory of the
same contract as `fit` (config.yaml, metrics.jsonl, model.safetensors with the backbone's tensors
keyed "backbone.<key>", model.json, summary.json, report.html) and register it with the local
zoo's add_entry, so NAME is a backbone for fit, compare and rank like any other.
"""
from __future__ import annotations

import shutil
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import torch

from headstart.adapt import mae, mlm  # noqa: F401  (the methods beside ssl.py register themselves)
from headstart.adapt.pretrain_plan import CHECKPOINTS, PHASE, PretrainPlan, new_plan, pretrain, strategy_of
from headstart.adapt.ssl import get_ssl_method, ssl_methods
from headstart.config import PretrainConfig
from headstart.errors import HeadstartError
from headstart.files import atomic_dir, atomic_path, write_json, write_yaml
from headstart.log import say
from headstart.manifest import record
from headstart.post_fit import skipped
from headstart import run_lock
from headstart.records import Recorder, new_run_dir, read_metrics
from headstart.run import CONFIG, Run

MODEL_FORMAT = "headstart-pretrained-backbone/1"


def run_pretrain(config: PretrainConfig) -> dict:
    """Pre-train, write the run directory, register it as config.name; returns the summary
    (with "run_dir" and the zoo "entry"). The run folder is owned (run_lock) while it runs."""
    run_dir = new_run_dir(config.out, prefix="pretrain")
    with run_lock.owning(run_dir, "pretrain --resume" if config.resume else "pretrain"):
        return _pretrain(config, run_dir)


def _pretrain(config: PretrainConfig, run_dir: Path) -> dict:
    config, run_dir = _start(config, run_dir)
    method = get_ssl_method(config.method)
    recorder = _recorder(run_dir, method, config.resume)  # --budget counts the whole command from here
    _check_name(config)
    spec = _backbone_spec(config, method)
    pool, set_aside = _load_pool(config, method, spec)
    backbone = _build_backbone(config, spec)
    pool = backbone.prepare(pool)
    model = method.build(backbone, {"seed": config.seed})
    model.to(memory_format=torch.channels_last)  # CNNs run faster so on CPU (ImageClassifier does the same)
    dataset = model.dataset(pool)
    continued = backbone.weights != "random"
    plan = _plan(config, method, model, dataset, run_dir, recorder, continued)
    if not config.resume or not (run_dir / "config.yaml").exists():
        write_yaml(run_dir / "config.yaml", {"data": config.pool, "command": "pretrain", **config.to_dict(),
                                             "plan": plan.record()})
        record(run_dir, "config.yaml")
    say(f"pre-training {backbone.name} ({'from ' + backbone.weights if continued else 'random init'}) with "
        f"{method.name} on {len(pool)} {pool.noun}: {plan.epochs} epoch(s) of {plan.steps_per_epoch} steps")
    outcome = pretrain(model, dataset, plan, method, recorder, run_dir, lr=config.lr, continued=continued,
                       budget_seconds=config.budget_seconds, resume=config.resume)
    summary = _finish(run_dir, config, method, backbone, pool, plan, outcome, set_aside)
    from headstart.zoo.local import add_entry

    entry = add_entry(run_dir, config.name, force=config.force)
    summary["entry"] = entry["name"]
    write_json(run_dir / "summary.json", summary)
    record(run_dir, "summary.json")
    return {**summary, "run_dir": str(run_dir), "entry": entry}


def print_pretrain(summary: dict) -> None:
    loss = summary.get("epoch_losses") or []
    print(f"Pre-trained {summary['architecture']} with {summary['method']} on {summary['items']} items of "
          f"{summary['data']} ({summary['epochs']} epoch(s), {summary['steps']} steps, "
          f"{summary['train_seconds']:.0f} s, stopped: {summary['stop_reason']}).")
    if loss:
        print(f"SSL loss per epoch: {' -> '.join(f'{v:.3f}' for v in loss)}")
    print(f"Registered in the local zoo as '{summary['entry']['name']}' ({summary['entry']['folder']}).")
    print(f"Run folder: {summary['run_dir']} (report.html)")
    print(f"Use it: headstart fit DATA --backbone {summary['entry']['name']}")


# ----------------------------------------------------------------------------- checks

def _start(config: PretrainConfig, run_dir: Path) -> tuple[PretrainConfig, Path]:
    """The run folder's checks; a resumed run is the saved run (its own config, as `fit --resume`)."""
    if config.resume:
        if not (run_dir / "config.yaml").exists():
            raise HeadstartError(f"nothing to resume in {run_dir}",
                                 hint="--resume continues a pre-training started with the same --out")
        if (run_dir / "summary.json").exists():
            raise HeadstartError(f"{run_dir} is a finished pre-training",
                                 hint=f"`headstart zoo add {run_dir} --name NAME` registers it again")
        saved = Run(run_dir).require_intact(CONFIG).recorded_config  # verified and whole, or refused by name
        known = {f.name for f in fields(PretrainConfig)}
        return replace(PretrainConfig(**{k: v for k, v in saved.items() if k in known}),
                       resume=True, out=str(run_dir)), run_dir
    if run_dir.exists() and any(p.name != run_lock.LOCK for p in run_dir.iterdir()):
        raise HeadstartError(f"{run_dir} already holds files",
                             hint="choose a new --out, or add --resume to continue an interrupted pre-training")
    return config, run_dir


def _check_name(config: PretrainConfig) -> None:
    """The local zoo's own checks, before any training: a missing, invalid, taken or shadowing name."""
    from headstart.zoo.local import check_name, check_not_shadowing, zoo_home

    if not config.name:
        raise HeadstartError("--name is needed: the pre-trained backbone is registered in the local zoo under it",
                             hint="e.g. --name elpv-ssl; then `headstart fit DATA --backbone elpv-ssl`")
    check_name(config.name)
    if (zoo_home() / config.name).exists() and not config.force:
        raise HeadstartError(f"the local zoo already has '{config.name}' ({zoo_home() / config.name})",
                             hint="pass --force to replace it, or choose another --name")
    check_not_shadowing(config.name)


def _backbone_spec(config: PretrainConfig, method):
    from headstart.modalities import get_modality
    from headstart.zoo import resolve_backbone

    default = get_modality(method.modality).default_pretrain_backbone
    spec = resolve_backbone(config.backbone or default)
    if spec.modality != method.modality or spec.standalone:
        raise HeadstartError(
            f"--method {method.name} pre-trains {method.modality} backbones; {spec.name} is "
            f"{'a standalone model' if spec.standalone else 'a ' + spec.modality + ' backbone'}",
            hint=f"for {spec.modality} data use --method {' or '.join(ssl_methods(spec.modality)) or '(none)'}; "
                 f"for {method.modality} pass a {method.modality} backbone (e.g. {default})")
    return spec


# Self-supervised pre-training of a sized small CNN (resnet9) runs at this size unless told:
# BENCHMARKS 12.1 measured it there. (fit's scratch baseline trains at 32 px, the size its recipe
# benchmark chose; a pre-trained resnet9 records its own size, which fit then uses.)
PRETRAIN_SMALL_SIZE = 64


def _image_size(config: PretrainConfig, spec) -> int | None:
    """The input size (None for text): --image-size, else PRETRAIN_SMALL_SIZE for a sized small
    CNN such as resnet9, else the backbone's native size."""
    from headstart.modalities import get_modality
    from headstart.zoo.backbone import check_image_size

    check_image_size(config.image_size)
    if config.image_size is None and getattr(spec, "sized_to_input", False):
        return PRETRAIN_SMALL_SIZE
    return get_modality(spec.modality).decode_size(config.image_size, spec)


def _load_pool(config: PretrainConfig, method, spec):
    """The pool as unlabelled items; a labelled source is used for its items, and says so."""
    from headstart.data.registry import find_builtin
    from headstart.modalities import load_pool

    pool = load_pool(config.pool, size=_image_size(config, spec))
    labelled = find_builtin(config.pool) is not None or _labelled_path(Path(config.pool))
    if pool.modality != method.modality:
        raise HeadstartError(f"{config.pool} holds {pool.modality} data; --method {method.name} learns from "
                             f"{method.modality}", hint=f"for {pool.modality} use --method "
                                                    f"{' or '.join(ssl_methods(pool.modality))}")
    if config.max_items is not None and config.max_items < len(pool):
        pool = pool.subset(np.sort(np.random.default_rng(config.seed).choice(len(pool), config.max_items,
                                                                             replace=False)))
    if len(pool) < 2:
        raise HeadstartError(f"{config.pool} has {len(pool)} usable item(s): self-supervised pre-training "
                             "needs a pool of many", hint="pass a folder (or file) with at least hundreds of items")
    if labelled:
        say(f"the labels of {config.pool} are set aside: pre-training reads its {len(pool)} {pool.noun} only")
    return pool, labelled


def _labelled_path(path: Path) -> bool:
    """Does a path look like labelled data (class folders, or a table with a label column)?"""
    import json

    from headstart.data.text_sources import TEXTLABEL_COLUMNS  # the image label columns and more

    if path.is_dir():
        visible = [p for p in path.iterdir() if not p.name.startswith(".")]
        folders = [p for p in visible if p.is_dir() and any(c.is_file() for c in p.iterdir())]
        return len(folders) >= 2 and not any(p.is_file() for p in visible)
    if not path.is_file() or path.suffix.lower() not in (".csv", ".jsonl"):
        return False
    with open(path, encoding="utf-8-sig") as f:
        first = f.readline()
    try:
        columns = list(json.loads(first)) if path.suffix.lower() == ".jsonl" else first.split(",")
    except (ValueError, TypeError):
        return False
    return any(str(c).strip().strip('"').lower() in TEXTLABEL_COLUMNS for c in columns)


def _build_backbone(config: PretrainConfig, spec):
    torch.manual_seed(config.seed)  # the random init of the backbone and of the new heads
    size = _image_size(config, spec)
    options = {} if size is None else {"image_size": size}
    return spec.build(pretrained=config.pretrained and spec.has_pretrained, **options)


# ----------------------------------------------------------------------------- the plan

def _recorder(run_dir: Path, method, resume: bool) -> Recorder:
    """The run's clock and metrics.jsonl: a resumed run carries on from its checkpoint's rows; a
    --resume that finds no checkpoint (killed inside the first epoch) starts over."""
    resumable = resume and (run_dir / CHECKPOINTS / f"{PHASE}.pt").is_file()
    if resume and not resumable:  # the loop says so when it looks for the checkpoint (train/checkpoint.py)
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    return Recorder(run_dir, strategy_of(method), rows=read_metrics(run_dir) if resumable else [])


def _plan(config: PretrainConfig, method, model, dataset, run_dir: Path, recorder: Recorder,
          continued: bool) -> PretrainPlan:
    """Epochs and batch: a resumed run keeps its own; --budget is planned from timed steps."""
    if config.resume:
        return PretrainPlan(**Run(run_dir).recorded_config["plan"])  # read whole by _start
    return new_plan(config, method, model, dataset, recorder, continued=continued)


# ----------------------------------------------------------------------------- the run directory

def _finish(run_dir: Path, config: PretrainConfig, method, backbone, pool, plan: PretrainPlan, outcome: dict,
            set_aside: bool) -> dict:
    """model.safetensors, model.json, (tokenizer/), summary.json, report.html; the checkpoints go."""
    from safetensors.torch import save_file

    from headstart.model_io import MODEL_FILES, versions

    tensors = {f"backbone.{k}": v.detach().cpu().contiguous().clone() for k, v in backbone.state_dict().items()}
    with atomic_path(run_dir / "model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": MODEL_FORMAT})
    described = backbone.describe()
    if getattr(backbone, "tokenizer", None) is not None:  # text: the zoo copies RUN/tokenizer
        with atomic_dir(run_dir / "tokenizer") as folder:
            backbone.tokenizer.save_pretrained(str(folder))
    write_json(run_dir / "model.json", {
        "format": MODEL_FORMAT, "modality": described["modality"], "backbone": described, "classes": [],
        "num_classes": 0, "strategy": plan.strategy, "input": "a backbone without a head: features only",
        "versions": versions()})
    record(run_dir, *MODEL_FILES)  # the pre-trained backbone's commit point (manifest.py)
    summary = {
        "command": "pretrain", "data": pool.name, "pool": config.pool, "modality": described["modality"],
        "method": method.name, "method_summary": method.summary, "strategy": plan.strategy,
        "backbone": backbone.name, "architecture": described["architecture"], "started_from": backbone.weights,
        "input_size": backbone.preprocessing.input_size, "items": len(pool), "labels_set_aside": set_aside,
        "batch_size": plan.batch_size, "planned_epochs": plan.epochs, "budget_seconds": config.budget_seconds,
        "lr": config.lr or method.lr, "seed": config.seed, "classes": [], "test_accuracy": None,
        "name": config.name, **outcome}
    write_json(run_dir / "summary.json", summary)
    record(run_dir, "summary.json", "metrics.jsonl")
    if not skipped("report"):  # HEADSTART_SKIP=report (the test suite's default) skips it, as a fit's
        from headstart.report.pretrain import build_pretrain_report

        build_pretrain_report(run_dir)
    shutil.rmtree(run_dir / CHECKPOINTS, ignore_errors=True)  # the finished weights are saved
    return summary

