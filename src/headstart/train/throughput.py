"""How fast this machine runs a model, measured in a few seconds and remembered.

`--strategy auto` needs it to know what fits the budget, and every `fit` and `compare` without
a budget uses it to say up front how long it expects to take. Two rates per model, in examples
per second at a batch of 16: inference (what a probe's feature pass costs) and a full training
step (forward, backward, AdamW step: what an epoch of fine-tuning or training from scratch
costs). The model measured is a copy, so the caller's weights and statistics are untouched.

Rates are cached per machine (CPU model, threads, device), architecture, input shape and batch
in cache_dir()/throughput/: measuring again would cost the seconds the estimate is for.
"""
from __future__ import annotations

import copy
import hashlib
import json
import platform
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..data.cache import cache_dir
from ..files import read_json, write_json
from ..heads import as_batch

BATCH = 16
REPEATS = 2  # timed steps after one untimed warm-up step


@dataclass(frozen=True)
class Rates:
    forward: float          # examples/s, inference without gradients
    train: float            # examples/s, forward + backward + optimizer step
    measured_seconds: float  # what measuring cost (0 when it came from the cache)
    cached: bool = False

    def to_dict(self) -> dict:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


def model_rates(classifier, inputs: np.ndarray, labels: np.ndarray, *, trainable: bool = True) -> Rates:
    """The classifier's rates on a batch of its own (prepared) inputs. trainable=False measures
    inference only (a frozen model's training rate is its inference rate)."""
    batch = as_batch(inputs[:BATCH])
    key = _key(classifier, batch, trainable)
    path = cache_dir() / "throughput" / f"{key}.json"
    if path.exists():
        try:
            return Rates(**{**read_json(path), "measured_seconds": 0.0, "cached": True})
        except (TypeError, ValueError, OSError):
            path.unlink(missing_ok=True)  # a damaged entry is measured again
    started = time.perf_counter()
    device = next(classifier.parameters()).device
    batch = batch.to(device)
    target = torch.from_numpy(np.asarray(labels[:len(batch)], dtype=np.int64)).to(device)
    forward = _forward_rate(classifier, batch)
    train = _train_rate(classifier, batch, target) if trainable else forward
    rates = Rates(forward=forward, train=train, measured_seconds=time.perf_counter() - started)
    write_json(path, {"forward": rates.forward, "train": rates.train})
    return rates


@torch.no_grad()
def _forward_rate(classifier, batch: torch.Tensor) -> float:
    was_training = classifier.training
    classifier.eval()
    try:
        classifier(batch)  # warm-up: kernels, allocator
        started = time.perf_counter()
        for _ in range(REPEATS):
            classifier(batch)
        return REPEATS * len(batch) / max(time.perf_counter() - started, 1e-9)
    finally:
        classifier.train(was_training)


def _train_rate(classifier, batch: torch.Tensor, target: torch.Tensor) -> float:
    model = copy.deepcopy(classifier).train()
    for p in model.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    times = []
    with torch.enable_grad():
        for _ in range(REPEATS + 1):
            started = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(batch), target).backward()
            optimizer.step()
            times.append(time.perf_counter() - started)
    del model, optimizer
    return REPEATS * len(batch) / max(sum(times[1:]), 1e-9)


def _key(classifier, batch: torch.Tensor, trainable: bool) -> str:
    described = classifier.describe()
    parts = {
        "architecture": described.get("architecture") or described.get("name"),
        "feature_dim": described.get("feature_dim"),
        "shape": list(batch.shape[1:]),
        "batch": len(batch),
        "trainable": trainable,
        "machine": machine_fingerprint(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def machine_fingerprint() -> dict:
    return {"cpu": _cpu_model(), "threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def engine_rates(classifier, engine, inputs: np.ndarray) -> Rates:
    """Inference through the extraction engine the probe will use (ONNX Runtime for images):
    what a probe's feature pass really costs. The first call pays the engine's one-off export
    (cached per machine after), so a pilot that follows is not charged for it."""
    batch = np.ascontiguousarray(inputs[:BATCH])
    key = _key(classifier, as_batch(batch), False) + f"-{engine.name}"
    path = cache_dir() / "throughput" / f"{key}.json"
    if path.exists():
        try:
            cached = read_json(path)
            engine.features(batch[:1])  # the engine itself must still be ready before a pilot
            return Rates(**{**cached, "measured_seconds": 0.0, "cached": True})
        except (TypeError, ValueError, OSError):
            path.unlink(missing_ok=True)
    started = time.perf_counter()
    engine.features(batch[:1])  # warm-up: the export (first use on this machine), sessions, kernels
    timed = time.perf_counter()
    for _ in range(REPEATS):
        engine.features(batch)
    forward = REPEATS * len(batch) / max(time.perf_counter() - timed, 1e-9)
    rates = Rates(forward=forward, train=forward, measured_seconds=time.perf_counter() - started)
    write_json(path, {"forward": rates.forward, "train": rates.train})
    return rates
