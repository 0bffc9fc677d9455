"""Explanation methods, registered per modality, and how one is chosen for a model.

A method turns (model, prepared data, requests) into one attribution per request, where a
request is (item index, class index): "why this class for this item". Images get a heat-map
(H, W) in [0, 1] over the model's input pixels; texts get (piece of the text, score in
[-1, 1]) segments that cover the whole text, positive where the piece is evidence for the
class. Methods register in preference order: `auto` takes the first one that applies.

One name may explain several modalities ("ig" for images and texts), each with its own
function: METHODS maps a name to {modality: Method}, so `--method` choices and a misspelt name's
"did you mean" come from one registry.
"""
from __future__ import annotations

import itertools
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

from headstart.errors import HeadstartError
from headstart.registry import Registry


@dataclass(frozen=True)
class Method:
    name: str
    modality: str
    explain: Callable   # (model, prepared data, [(item, class)], **options) -> [attribution]
    applies: Callable   # (model) -> None when it can explain the model, else the reason it cannot
    summary: str        # one sentence for help texts and reports
    order: int = 0      # registration sequence: a modality's preference order


# name -> {modality: Method}; "auto": the first method that applies (choose_method)
METHODS: Registry[dict[str, Method]] = Registry("explanation method", extra_choices=("auto",))
_sequence = itertools.count()


def register_method(modality: str, name: str, *, summary: str, applies: Callable | None = None):
    """Decorator: register fn(model, data, requests, **options) as `name` for `modality`."""

    def decorate(fn):
        by_modality = METHODS.get(name, None) or METHODS.add(name, {})
        if modality in by_modality:
            raise ValueError(f"explanation method {name!r} is already registered for {modality}")
        by_modality[modality] = Method(name, modality, fn, applies or (lambda model: None), summary,
                                       next(_sequence))
        return fn

    return decorate


def method_names() -> list[str]:
    """Every registered method name (for --method choices), in registration order."""
    return list(METHODS)


def methods_for(modality: str) -> list[Method]:
    """The methods registered for a modality, in preference order."""
    return sorted((by_modality[modality] for by_modality in METHODS.values() if modality in by_modality),
                  key=lambda method: method.order)


def choose_method(model, modality: str, requested: str | None = "auto") -> Method:
    """The requested method if it applies to `model`, else a clear error; `auto`: the first
    registered method for the modality that applies."""
    available = {method.name: method for method in methods_for(modality)}
    if not available:
        raise HeadstartError(f"no explanation method is registered for {modality} models")
    if requested in (None, "auto"):
        reasons = {}
        for method in available.values():
            reasons[method.name] = method.applies(model)
            if reasons[method.name] is None:
                return method
        raise HeadstartError(f"no explanation method applies to this {modality} model: "
                             + "; ".join(f"{k}: {v}" for k, v in reasons.items()))
    if requested not in available:
        METHODS.get(requested)  # a name no modality has: the registry's message, with a did-you-mean
        raise HeadstartError(f"--method {requested} does not explain {modality} models",
                             hint=f"choose one of: {', '.join(available)}")
    method = available[requested]
    reason = method.applies(model)
    if reason is not None:
        others = [m.name for m in available.values() if m is not method and m.applies(model) is None]
        raise HeadstartError(f"--method {requested} cannot explain this model: {reason}",
                             hint=f"use --method {' or '.join(others)}" if others else None)
    return method


@contextmanager
def weights_frozen(model):
    """No weight gradients while explaining: the methods need gradients of the class score with
    respect to inputs or activations only, and a backward into every weight costs as much again."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in trainable:
            p.requires_grad_(True)
