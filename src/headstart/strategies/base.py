"""The Strategy seam and its registry.

A strategy gets a classifier (backbone + fresh head) and the splits, trains it in place
through the recorder, and returns a few figures for the summary. It never opens files:
the pipeline hands it everything, the recorder writes everything.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import FitConfig
from ..errors import HeadstartError
from ..records import Recorder


@dataclass
class FitContext:
    config: FitConfig
    train: object            # ImageData at the backbone's input size, or tokenised TextData
    val: object
    recorder: Recorder
    checkpoint_dir: Path | None = None
    use_feature_cache: bool = True
    test_size: int = 0       # the final test pass also has to fit inside --budget

    @property
    def modality(self) -> str:
        return getattr(self.train, "modality", "image")


class Strategy:
    name: str = ""
    pretrained: bool = True          # does it start from pretrained weights?
    default_epochs: int = 0
    default_lr: float = 0.0
    default_augment: str = "none"
    default_schedule: str = "onecycle"
    default_patience: int = 3
    description: str = ""
    modalities: tuple[str, ...] = ("image", "text")  # the data it can train on
    requires_attention: bool = False                 # needs a transformer backbone (LoRA)
    # Overrides of the defaults above for text backbones ({"lr": 1e-4, ...}): a transformer
    # wants rates ~10x lower than a CNN.
    text_defaults: dict = {}

    def fit(self, classifier, ctx: FitContext) -> dict:
        raise NotImplementedError

    def default(self, key: str, modality: str = "image"):
        if modality == "text" and key in self.text_defaults:
            return self.text_defaults[key]
        return getattr(self, f"default_{key}")

    # settings the user may override, else the strategy's own defaults for the modality
    def epochs(self, config: FitConfig, modality: str = "image") -> int:
        return config.epochs if config.epochs is not None else self.default("epochs", modality)

    def lr(self, config: FitConfig, modality: str = "image") -> float:
        return config.lr if config.lr is not None else self.default("lr", modality)

    def patience(self, config: FitConfig, modality: str = "image") -> int:
        return config.patience if config.patience is not None else self.default("patience", modality)

    def augment(self, config: FitConfig, modality: str = "image") -> str:
        if modality == "text":
            return "none"  # the augmentation presets are image transforms
        return config.augment if config.augment is not None else self.default("augment", modality)


STRATEGIES: dict[str, Strategy] = {}


def register_strategy(cls):
    STRATEGIES[cls.name] = cls()
    return cls


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        import difflib
        close = difflib.get_close_matches(name, list(STRATEGIES), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise HeadstartError(f"unknown strategy '{name}'",
                             hint=f"{hint}choose one of: {', '.join(STRATEGIES)}")
    return STRATEGIES[name]
