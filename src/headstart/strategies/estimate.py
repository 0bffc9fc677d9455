"""How long a fit will take, from this machine's measured rates (train/throughput.py).

Used two ways: `--strategy auto` asks what fits the budget; a `fit` or `compare` without a
budget says up front how long it expects to run. The estimate counts the work the strategy
does per example -- one inference pass for the probe's features, a training step per example
per epoch, validation passes -- and nothing else, so it is a floor on a busy machine. A rate
measured while the machine was busy says so in the estimate (train/throughput.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..train.throughput import Rates

HEAD_FIT_SECONDS = 2.0   # the probe's regularisation sweep on cached features, roughly
ONE_SHOT_SECONDS = 5.0   # TF-IDF and other models fitted in one pass, on data of this size


@dataclass(frozen=True)
class Workload:
    train: int               # training examples
    val: int                 # validation examples (evaluated evals_per_epoch times an epoch)
    test: int                # the final test pass
    epochs: int = 0          # epochs of training (0: none, a probe)
    evals_per_epoch: int = 1
    features_cached: bool = False  # the probe's features are on disk already


def probe_seconds(w: Workload, rates: Rates) -> float:
    if w.features_cached:
        return HEAD_FIT_SECONDS + w.test / rates.forward
    return (w.train + w.val + w.test) / rates.forward + HEAD_FIT_SECONDS


def epoch_seconds(w: Workload, rates: Rates) -> float:
    """One epoch of training every layer, with its validation passes."""
    return w.train / rates.train + w.evals_per_epoch * w.val / rates.forward


# What each strategy costs, by the work it does (a registry, so a new strategy adds a line)
def _head_then_layers(w: Workload, rates: Rates) -> float:
    return probe_seconds(w, rates) + w.epochs * epoch_seconds(w, rates)


def _layers_only(w: Workload, rates: Rates) -> float:
    return w.epochs * epoch_seconds(w, rates) + w.test / rates.forward


COSTS = {
    "probe": probe_seconds,
    "lp-ft": _head_then_layers,
    "finetune": _head_then_layers,
    "lora": _head_then_layers,
    "scratch": _layers_only,
}


def strategy_seconds(strategy: str, w: Workload, rates: Rates | None) -> float:
    """Expected seconds of `strategy` on this workload; one-shot models (no rates) cost a few seconds."""
    if rates is None or strategy not in COSTS:
        return ONE_SHOT_SECONDS
    return COSTS[strategy](w, rates)


def describe_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def expected_fit_seconds(strategy, config, modality, model, parts, *, features_cached: bool = False) -> tuple[float, str]:
    """(seconds, how) a fit of `strategy` with `model` on (train, val, test) parts is expected to
    take here, from rates measured on its own training examples (cached per machine)."""
    from ..train.throughput import model_rates

    train, val, test = parts
    if getattr(model, "backbone", None) is None:  # a standalone one-shot model (TF-IDF)
        return ONE_SHOT_SECONDS, "one pass over the data"
    trains = strategy.name != "probe"
    rates = model_rates(model, train.inputs, train.labels, trainable=trains)
    epochs = strategy.epochs(config, modality) if trains else 0
    work = Workload(train=len(train), val=len(val), test=len(test), epochs=epochs,
                    evals_per_epoch=config.evals_per_epoch, features_cached=features_cached)
    seconds = strategy_seconds(strategy.name, work, rates)
    unit = modality.words.get("noun", "examples")
    how = (f"{len(train)} training {unit} at {rates.forward:.0f}/s inference" +
           (f", {rates.train:.0f}/s training, {epochs} epoch(s)" if trains else "") +
           (", features cached" if features_cached else "") +
           (f"; the rate was measured while this machine was busy ({rates.busy}), so this may be long"
            if rates.busy else ""))
    return seconds, how
