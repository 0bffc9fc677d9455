"""Augmentation presets, applied per sample on uint8 tensors (C, H, W).

Presets are a registry: a name maps to a function building a torchvision v2 transform for
the input size. Only strategies that train the backbone use them; the probe's cached
features are computed on clean images.
"""
from __future__ import annotations

from typing import Callable

from torchvision.transforms import v2

from ..errors import HeadstartError

AUGMENTATIONS: dict[str, Callable[[int], v2.Transform | None]] = {}


def register_augmentation(name: str):
    def wrap(fn):
        AUGMENTATIONS[name] = fn
        return fn
    return wrap


@register_augmentation("none")
def _none(size: int):
    return None


@register_augmentation("light")
def _light(size: int):
    # Mild crops and flips keep small datasets from being memorised without changing what
    # the pretrained features expect to see.
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=(0.7, 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
    ])


@register_augmentation("strong")
def _strong(size: int):
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=(0.35, 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.TrivialAugmentWide(),
        v2.RandomApply([v2.ColorJitter(0.3, 0.3, 0.3)], p=0.5),
    ])


def build_augmentation(name: str, size: int):
    if name not in AUGMENTATIONS:
        raise HeadstartError(f"unknown augmentation preset '{name}'",
                             hint=f"choose one of: {', '.join(AUGMENTATIONS)}")
    return AUGMENTATIONS[name](size)
