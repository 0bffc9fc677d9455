"""How fast this machine runs a model, measured in a few seconds and remembered.

`--strategy auto` needs it to know what fits the budget, and every `fit` and `compare` without
a budget uses it to say up front how long it expects to take. Two rates per model, in examples
per second at a batch of 16: inference (what a probe's feature pass costs) and a full training
step (forward, backward, AdamW step: what an epoch of fine-tuning or training from scratch
costs). The model measured is a copy, so the caller's weights and statistics are untouched.

Rates are cached per machine (CPU model, threads, device), architecture, input shape and batch
in cache_dir()/throughput/: measuring again would cost the seconds the estimate is for. A rate is
only as good as the machine was quiet: one measured while it was busy (load average above the
core count, CPU steal, or far below the rate cached before) is cached with a `busy` flag, and
a later read measures it again when the machine is quiet, or says it is using it. A run that
sees a cached rate off by more than a factor of two (reconcile) marks it stale: it is measured
again at its next use (once a fit announced 5 minutes for a probe that took 2.5 s).
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..data.cache import cache_dir
from ..files import read_json, write_json
from ..heads import as_batch
from ..log import say

BATCH = 16
REPEATS = 2  # timed steps after one untimed warm-up step


@dataclass(frozen=True)
class Rates:
    forward: float          # examples/s, inference without gradients
    train: float            # examples/s, forward + backward + optimizer step
    measured_seconds: float  # what measuring cost (0 when it came from the cache)
    cached: bool = False
    busy: str | None = None    # measured while the machine was busy: why it is not to be trusted
    source: str | None = None  # the cache file it was read from or written to

    def to_dict(self) -> dict:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()
                if k != "source" and not (k == "busy" and v is None)}


OFF_FACTOR = 2.0      # a cached rate this far from what a run observes is measured again
STEAL_SHARE = 0.1     # CPU time stolen by the hypervisor above this share while measuring: busy


def model_rates(classifier, inputs: np.ndarray, labels: np.ndarray, *, trainable: bool = True) -> Rates:
    """The classifier's rates on a batch of its own (prepared) inputs. trainable=False measures
    inference only (a frozen model's training rate is its inference rate)."""
    batch = as_batch(inputs[:BATCH])
    path = cache_dir() / "throughput" / f"{_key(classifier, batch, trainable)}.json"

    def measure() -> tuple[float, float]:
        device = next(classifier.parameters()).device
        on_device = batch.to(device)
        target = torch.from_numpy(np.asarray(labels[:len(on_device)], dtype=np.int64)).to(device)
        forward = _forward_rate(classifier, on_device)
        return forward, _train_rate(classifier, on_device, target) if trainable else forward

    return cached_or_measured(path, measure)


def cached_or_measured(path: Path, measure: Callable[[], tuple[float, float]],
                       when_cached: Callable[[], None] | None = None) -> Rates:
    """The rates cached at `path`, or measured now (measure() -> (forward, train)) and cached.
    A cached rate flagged busy or stale is measured again when the machine is quiet; a busy
    one still in use is said to be."""
    entry = _read_entry(path)
    quiet = busy_now() is None
    if entry is not None and (entry.get("stale") or (entry.get("busy") and quiet)):
        say(f"measuring this machine's rate again: the cached one was "
            f"{'off in a run (' + entry['stale'] + ')' if entry.get('stale') else 'measured on a busy machine'}")
    elif entry is not None:
        if when_cached is not None:
            when_cached()
        if entry.get("busy"):
            say(f"this machine's rate was measured while it was busy ({entry['busy']}): estimates from it may be long")
        return Rates(entry["forward"], entry["train"], 0.0, cached=True, busy=entry.get("busy"), source=str(path))
    started, cpu_before = time.perf_counter(), _cpu_times()
    forward, train = measure()
    busy = busy_now(cpu_before) or _far_below(entry, forward, train)
    rates = Rates(forward, train, time.perf_counter() - started, busy=busy, source=str(path))
    record = {"forward": forward, "train": train, **({"busy": busy} if busy else {})}
    if busy and entry is not None and not entry.get("busy"):
        record["before"] = {"forward": entry["forward"], "train": entry["train"]}  # the quiet rate, kept
    write_json(path, record)
    return rates


def _read_entry(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        entry = read_json(path)
        float(entry["forward"]), float(entry["train"])
        return entry
    except (TypeError, ValueError, KeyError, OSError):
        path.unlink(missing_ok=True)  # a damaged entry is measured again
        return None


def busy_now(cpu_before: tuple[int, int] | None = None) -> str | None:
    """Why this machine is too busy for a rate to be trusted (None: it is quiet): a 1-minute load
    average above the cores, or (since `cpu_before`) more than STEAL_SHARE of CPU time stolen."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    if load > cores:
        return f"load average {load:.1f} on {cores} core(s)"
    after = _cpu_times()
    if cpu_before is not None and after is not None:
        steal, total = after[0] - cpu_before[0], after[1] - cpu_before[1]
        if total > 0 and steal / total > STEAL_SHARE:
            return f"{100 * steal / total:.0f} % of CPU time stolen"
    return None


def _cpu_times() -> tuple[int, int] | None:
    """(steal, total) jiffies of all CPUs so far (/proc/stat), None where unreadable."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        return (fields[7] if len(fields) > 7 else 0), sum(fields)
    except (OSError, ValueError):
        return None


def _far_below(entry: dict | None, forward: float, train: float) -> str | None:
    """A fresh rate under half the quiet one cached before it: the machine is busier than it was."""
    if entry is None or entry.get("busy"):
        return None
    before = entry.get("before", entry)
    if forward < before["forward"] / OFF_FACTOR or train < before["train"] / OFF_FACTOR:
        return f"{forward:.3g}/s against {before['forward']:.3g}/s measured before"
    return None


def reconcile(rates: Rates | None, *, forward: float | None = None, train: float | None = None) -> str | None:
    """What a run observed against a cached rate: off by more than OFF_FACTOR, the entry is marked
    stale (measured again at its next use) and the reason returned; else None."""
    if rates is None or not rates.cached or rates.source is None:
        return None
    for name, seen, cached in (("inference", forward, rates.forward), ("training", train, rates.train)):
        if seen is None or seen <= 0 or cached <= 0:
            continue
        if max(seen / cached, cached / seen) > OFF_FACTOR:
            reason = f"{name} ran at {seen:.3g}/s against {cached:.3g}/s cached"
            path = Path(rates.source)
            entry = _read_entry(path)
            if entry is not None:
                write_json(path, {**entry, "stale": reason})
            say(f"this machine's cached {name} rate is off by more than {OFF_FACTOR:g}x ({reason}): "
                f"it is measured again at its next use")
            return reason
    return None


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

    def measure() -> tuple[float, float]:
        engine.features(batch[:1])  # warm-up: the export (first use on this machine), sessions, kernels
        timed = time.perf_counter()
        for _ in range(REPEATS):
            engine.features(batch)
        forward = REPEATS * len(batch) / max(time.perf_counter() - timed, 1e-9)
        return forward, forward

    # a cached rate still needs the engine ready before a pilot (its one-off export)
    return cached_or_measured(cache_dir() / "throughput" / f"{key}.json", measure,
                              when_cached=lambda: engine.features(batch[:1]))
