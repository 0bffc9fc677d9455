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

from .config import FitConfig
from .data import load_data, make_splits, resize_data
from .errors import HeadstartError
from .heads import ImageClassifier
from .metrics import classification_summary, imbalance
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
    classifier: ImageClassifier
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


def _decode_size(config: FitConfig, architecture: str) -> int:
    """The size folders are decoded at: the backbone's input size, so decoding happens once."""
    if config.image_size:
        return config.image_size
    shape_only = get_backbone(architecture, pretrained=False)
    if getattr(shape_only, "sized_to_input", False):
        return SMALL_INPUT_CAP
    return shape_only.preprocessing.input_size


def _build_backbone(config: FitConfig, strategy, architecture: str, data_size: int):
    size = config.image_size
    if not strategy.pretrained:
        shape_only = get_backbone(architecture, pretrained=False, image_size=size)
        if size is None and getattr(shape_only, "sized_to_input", False):
            # a small CNN sized to the data: native resolution up to the cap
            return get_backbone(architecture, pretrained=False, image_size=min(data_size, SMALL_INPUT_CAP))
        return shape_only
    return get_backbone(architecture, pretrained=config.pretrained, weights=config.weights, image_size=size)


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
    architecture = _architecture(config, strategy)
    if data is None:
        data = load_data(config.data, size=_decode_size(config, architecture), strict=config.strict,
                         elpv_grades=config.elpv_grades)
    torch.manual_seed(config.seed)  # random inits (scratch backbones, heads) follow the seed
    backbone = _build_backbone(config, strategy, architecture, data.images.shape[1])
    _say(f"backbone {backbone.name}: weights {backbone.weights}")
    splits = make_splits(data, seed=config.seed, train_per_class=config.train_per_class,
                         train_size=config.train_size, val_fraction=config.val_fraction,
                         test_fraction=config.test_fraction, max_eval=config.max_eval)
    pre = backbone.preprocessing
    train, val, test = (resize_data(s, pre.input_size, pre.interpolation)
                        for s in (splits.train, splits.val, splits.test))
    decode_seconds = time.perf_counter() - decode_started
    if data.skipped:
        _say(f"skipped {len(data.skipped)} unreadable file(s), e.g. {data.skipped[0][0]} ({data.skipped[0][1]})")
    _say(f"data {data.name}: {len(train)} train / {len(val)} val / {len(test)} test, "
         f"{data.num_classes} classes, {pre.input_size}px")

    main = _is_main()
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_yaml(run_dir / "config.yaml", config.to_dict())
        write_json(run_dir / "splits.json", {"seed": config.seed, **splits.indices})
    classifier = ImageClassifier(backbone, data.num_classes)
    if torch.cuda.is_available():
        classifier.cuda()
    _warm_up(classifier, train)
    rows = read_metrics(run_dir) if config.resume else []
    if not config.resume and main:
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    recorder = Recorder(run_dir, strategy.name, write=main, rows=rows)
    ctx = FitContext(config=config, train=train, val=val, recorder=recorder,
                     checkpoint_dir=run_dir / "checkpoint", use_feature_cache=use_feature_cache,
                     test_size=len(test))
    outcome = strategy.fit(classifier, ctx)
    recorder.pause()

    test_logits = predict_logits(classifier, test.images, description="test")
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
        "backbone": backbone.name,
        "weights": backbone.weights,
        "input_size": pre.input_size,
        "data": data.name,
        "classes": data.classes,
        "sizes": {"train": len(train), "val": len(val), "test": len(test)},
        "skipped_files": len(data.skipped),
        "train_imbalance": imbalance(train.labels, data.classes),
        "per_class": report["per_class"],
        "confusion_matrix": report["confusion_matrix"],
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "processes": int(os.environ.get("WORLD_SIZE", "1")),
        **{k: v for k, v in outcome.items() if k not in ("best_val_accuracy",)},
    }
    if main:
        save_model(run_dir, classifier, data.classes, strategy.name)
        write_json(run_dir / "summary.json", summary)
        build_fit_report(run_dir)
    return FitResult(run_dir=run_dir, classifier=classifier, classes=data.classes, summary=summary)


def _warm_up(classifier: ImageClassifier, train) -> None:
    """One untimed forward pass before the clock starts: CUDA context and kernel loading, or
    oneDNN's primitive creation on CPU, cost seconds once per process and are not training."""
    predict_logits(classifier, train.images[:2])
