"""Augmentation presets, applied per sample on uint8 tensors (C, H, W).

Presets are a registry: a name maps to a function building a torchvision v2 transform for
the input size. Only strategies that train the backbone use them; the probe's cached
features are computed on clean images.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from ..registry import Registry

if TYPE_CHECKING:
    from torchvision.transforms import v2

# torchvision is imported by the presets that use it, not with this module: importing it loads
# torch._dynamo (~1.5 s of a process's start), which a fit that augments nothing never needs
AUGMENTATIONS: Registry[Callable[[int], "v2.Transform | None"]] = Registry("augmentation preset")


def register_augmentation(name: str):
    """Decorator: fn(input size) -> a v2 transform, or None for no augmentation."""
    return AUGMENTATIONS.register(name)


@register_augmentation("none")
def _none(size: int):
    return None


@register_augmentation("light")
def _light(size: int):
    from torchvision.transforms import v2

    # Mild crops and flips keep small datasets from being memorised without changing what
    # the pretrained features expect to see.
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=(0.7, 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
    ])


@register_augmentation("strong")
def _strong(size: int):
    from torchvision.transforms import v2

    return v2.Compose([
        v2.RandomResizedCrop(size, scale=(0.35, 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.TrivialAugmentWide(),
        v2.RandomApply([v2.ColorJitter(0.3, 0.3, 0.3)], p=0.5),
    ])


def build_mixup(num_classes: int, label_smoothing: float):
    """timm's Mixup for a batch it is asked to mix: mixup (alpha 0.8) or cutmix (alpha 1.0),
    half and half, per batch, as timm's ImageNet recipes do. Returns soft targets (label
    smoothing included). Which batches are mixed is the loop's choice (TrainPlan.mixup)."""
    from timm.data import Mixup

    return Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode="batch",
                 label_smoothing=label_smoothing, num_classes=num_classes)


def build_augmentation(name: str, size: int):
    return AUGMENTATIONS.get(name)(size)
