"""fit: source -> split -> decoded uint8 tensors -> backbone -> head -> strategy -> run dir.

This is the wiring the CLI and the Python API share. Strategies train; this module decides
what to build, and writes the run directory (only the main process writes under torchrun).
"""
from __future__ import annotations

import os
import resource
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import yaml

from .config import DEFAULT_BACKBONES, FitConfig
from .data import load_data, make_splits
from .errors import HeadstartError
from .heads import build_classifier
from .metrics import classification_summary, imbalance, misclassified_examples
from .model_io import save_model
from .records import Recorder, new_run_dir, read_metrics, write_json, write_yaml
from .report import build_fit_report
from .strategies import FitContext, get_strategy
from .train.evaluate import predict_logits, score
from .zoo import get_backbone

# The zoo's small CNN trains at a modest resolution: it has no pretrained input size, and
# from scratch on 2 cores 64 px is where ResNet-9 stops gaining for its cost.
SMALL_INPUT_CAP = 64


@dataclass
class FitResult:
    run_dir: Path
    classifier: object  # ImageClassifier | TextClassifier | a standalone strategy's model
    classes: list[str]
    summary: dict


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _say(message: str) -> None:
    if _is_main() and os.environ.get("HEADSTART_QUIET") != "1":
        print(message, file=sys.stderr, flush=True)


def _check_run_dir(run_dir: Path, resume: bool) -> None:
    if resume:
        if not (run_dir / "config.yaml").exists():
            raise HeadstartError(f"nothing to resume in {run_dir}",
                                 hint="--resume continues a run started with the same --out")
        return
    if (run_dir / "summary.json").exists() or (run_dir / "checkpoint").exists():
        raise HeadstartError(f"{run_dir} already holds a run",
                             hint="choose a new --out, or add --resume to continue an interrupted run")


def _architecture(config: FitConfig, strategy) -> str:
    if not strategy.pretrained and config.scratch_model not in (None, "same"):
        return config.scratch_model
    return config.backbone


def _decode_size(config: FitConfig, architecture: str | None) -> int:
    """The size folders are decoded at: the backbone's input size, so decoding happens once."""
    if config.image_size:
        return config.image_size
    architecture = architecture or DEFAULT_BACKBONES["image"]
    if _backbone_modality(architecture) == "text":
        return 224  # a text backbone: the data must be text, and the size is never used
    shape_only = get_backbone(architecture, pretrained=False)
    if getattr(shape_only, "sized_to_input", False):
        return SMALL_INPUT_CAP
    return shape_only.preprocessing.input_size


def _build_backbone(config: FitConfig, strategy, architecture: str, data):
    if data.modality == "text":
        return _build_text_backbone(config, strategy, architecture)
    data_size = data.images.shape[1]
    size = config.image_size
    if not strategy.pretrained:
        shape_only = get_backbone(architecture, pretrained=False, image_size=size)
        if size is None and getattr(shape_only, "sized_to_input", False):
            # a small CNN sized to the data: native resolution up to the cap
            return get_backbone(architecture, pretrained=False, image_size=min(data_size, SMALL_INPUT_CAP))
        return shape_only
    return get_backbone(architecture, pretrained=config.pretrained, weights=config.weights, image_size=size)


def _build_text_backbone(config: FitConfig, strategy, architecture: str):
    text = {"max_length": config.max_length, "pooling": config.pooling}
    if strategy.pretrained:
        return get_backbone(architecture, pretrained=config.pretrained, weights=config.weights, **text)
    if architecture == config.backbone:  # scratch: same architecture and tokenizer, random weights
        return get_backbone(architecture, pretrained=False, **text)
    # a small scratch model reads the transfer backbone's tokens (its own length limit)
    return get_backbone(architecture, pretrained=False, tokenizer_from=config.backbone)


def _backbone_modality(architecture: str) -> str:
    from .zoo.embedding_bag import TEXT_SCRATCH_MODELS
    from .zoo.text_backbones import is_text_backbone_name
    return "text" if architecture in TEXT_SCRATCH_MODELS or is_text_backbone_name(architecture) else "image"


def _check_modality(data, architecture: str) -> None:
    """Before any model is built: text data needs a text backbone, images an image one."""
    kind = _backbone_modality(architecture)
    if data.modality != kind:
        hint = f"use a {data.modality} backbone, e.g. --backbone {DEFAULT_BACKBONES[data.modality]}"
        raise HeadstartError(f"{data.name} is {data.modality} data but {architecture} is a {kind} backbone",
                             hint=hint)


def fit(config: FitConfig, *, data=None, use_feature_cache: bool = True) -> FitResult:
    """Run one fit and write its run directory. `data` (an ImageData) bypasses config.data."""
    started = time.perf_counter()
    run_dir = new_run_dir(config.out)
    if config.resume:
        _check_run_dir(run_dir, True)
        # a resumed run is the saved run: its own config, not the flags of this invocation
        saved = FitConfig.from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
        config = replace(saved, resume=True, out=str(run_dir))
    else:
        _check_run_dir(run_dir, False)
    config.out = str(run_dir)
    strategy = get_strategy(config.strategy)

    decode_started = time.perf_counter()
    if data is None:
        data = load_data(config.data, size=_decode_size(config, _architecture(config, strategy)),
                         **config.load_options())
    if data.modality not in strategy.modalities:
        raise HeadstartError(f"--strategy {strategy.name} works on {' and '.join(strategy.modalities)} data, "
                             f"and {data.name} is {data.modality} data",
                             hint="choose another strategy: `headstart fit --help` lists them")
    config.backbone = config.backbone or DEFAULT_BACKBONES[data.modality]
    architecture = _architecture(config, strategy)
    splits = make_splits(data, seed=config.seed, train_per_class=config.train_per_class,
                         train_size=config.train_size, val_fraction=config.val_fraction,
                         test_fraction=config.test_fraction, max_eval=config.max_eval)
    if data.skipped:
        _say(f"skipped {len(data.skipped)} unusable example(s), e.g. {data.skipped[0][0]} ({data.skipped[0][1]})")
    if data.notes.get("replaced_bytes"):
        _say(f"{data.notes['replaced_bytes']} text(s) held bytes that are not UTF-8; they were replaced with U+FFFD")
    if getattr(strategy, "standalone", False):
        return _fit_standalone(config, strategy, data, splits, run_dir, started, decode_started)
    torch.manual_seed(config.seed)  # random inits (scratch backbones, heads) follow the seed
    _check_modality(data, architecture)
    backbone = _build_backbone(config, strategy, architecture, data)
    _say(f"backbone {backbone.name}: weights {backbone.weights}")
    pre = backbone.preprocessing
    train, val, test = (backbone.prepare(s) for s in (splits.train, splits.val, splits.test))
    decode_seconds = time.perf_counter() - decode_started
    unit = " tokens" if data.modality == "text" else "px"
    _say(f"data {data.name}: {len(train)} train / {len(val)} val / {len(test)} test, "
         f"{data.num_classes} classes, {pre.input_size}{unit}")
    truncated = sum(s.notes.get("truncated", 0) for s in (train, val, test)) if data.modality == "text" else 0
    if truncated:
        _say(f"{truncated} text(s) are longer than {pre.input_size} tokens and were truncated "
             f"(--max-length sets the limit)")

    _write_run_start(run_dir, config, splits)
    classifier = build_classifier(backbone, data.num_classes)
    if torch.cuda.is_available():
        classifier.cuda()
    _warm_up(classifier, train)
    recorder = _start_recorder(run_dir, strategy, config.resume)
    ctx = FitContext(config=config, train=train, val=val, recorder=recorder,
                     checkpoint_dir=run_dir / "checkpoint", use_feature_cache=use_feature_cache,
                     test_size=len(test))
    outcome = strategy.fit(classifier, ctx)
    recorder.pause()

    test_logits = predict_logits(classifier, test.inputs, description="test")
    extra = {"modality": data.modality, "truncated_texts": truncated,
             **({"max_length": pre.input_size} if data.modality == "text" else {})}
    return _finish(config, strategy, classifier, data, (train, val, test), test_logits, recorder, outcome,
                   run_dir, started, decode_seconds, backbone.describe(), extra)


def _finish(config, strategy, classifier, data, parts, test_logits, recorder, outcome, run_dir, started,
            decode_seconds, described: dict, extra: dict) -> FitResult:
    """Score on test, write summary, model and report: shared by every strategy."""
    train, val, test = parts
    main = _is_main()
    test_accuracy, test_loss = score(test_logits, test.labels)
    recorder.log("test", test_accuracy, test_loss, phase="final")
    report = classification_summary(test.labels, test_logits.argmax(1).numpy(), data.classes)
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
        "strategy": strategy.name,
        "backbone": described["name"],
        "weights": described["weights"],
        "input_size": described["preprocessing"].get("input_size", described["preprocessing"].get("max_length")),
        "data": data.name,
        "classes": data.classes,
        "sizes": {"train": len(train), "val": len(val), "test": len(test)},
        "skipped_files": len(data.skipped),
        "train_imbalance": imbalance(train.labels, data.classes),
        "per_class": report["per_class"],
        "confusion_matrix": report["confusion_matrix"],
        "misclassified": misclassified_examples(test, test_logits, data.classes),
        **extra,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "processes": int(os.environ.get("WORLD_SIZE", "1")),
        **{k: v for k, v in outcome.items() if k not in ("best_val_accuracy",)},
    }
    if main:
        save_model(run_dir, classifier, data.classes, strategy.name)
        write_json(run_dir / "summary.json", summary)
        build_fit_report(run_dir)
    return FitResult(run_dir=run_dir, classifier=classifier, classes=data.classes, summary=summary)


def _write_run_start(run_dir: Path, config: FitConfig, splits) -> None:
    """config.yaml and splits.json, before any training (only the main process writes)."""
    if _is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        write_yaml(run_dir / "config.yaml", config.to_dict())
        write_json(run_dir / "splits.json", {"seed": config.seed, **splits.indices})


def _start_recorder(run_dir: Path, strategy, resume: bool) -> Recorder:
    """The run's clock and metrics: a resumed run carries on from its rows, a new one starts empty."""
    main = _is_main()
    if not resume and main:
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    return Recorder(run_dir, strategy.name, write=main, rows=read_metrics(run_dir) if resume else [])


def _warm_up(classifier, train) -> None:
    """One untimed forward pass before the clock starts: CUDA context and kernel loading, or
    oneDNN's primitive creation on CPU, cost seconds once per process and are not training."""
    predict_logits(classifier, train.inputs[:2])


def _fit_standalone(config, strategy, data, splits, run_dir, started, decode_started) -> FitResult:
    """Strategies that bring their own model (TF-IDF + logistic regression): no backbone."""
    decode_seconds = time.perf_counter() - decode_started
    _say(f"data {data.name}: {len(splits.train)} train / {len(splits.val)} val / {len(splits.test)} test, "
         f"{data.num_classes} classes")
    _write_run_start(run_dir, config, splits)
    recorder = _start_recorder(run_dir, strategy, resume=False)  # nothing to resume: it refits in seconds
    ctx = FitContext(config=config, train=splits.train, val=splits.val, recorder=recorder,
                     test_size=len(splits.test))
    model, outcome = strategy.fit_standalone(data, ctx)
    recorder.pause()
    test_logits = model.logits_for_texts(splits.test.texts)
    return _finish(config, strategy, model, data, (splits.train, splits.val, splits.test), test_logits,
                   recorder, outcome, run_dir, started, decode_seconds, model.describe(),
                   {"modality": data.modality, "truncated_texts": 0})
