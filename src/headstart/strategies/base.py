"""The Strategy seam and its registry.

A strategy gets a model (a backbone + fresh head, or a standalone model of the zoo) and the
splits, trains it in place through the recorder, and returns a few figures for the summary. It never opens files:
the pipeline hands it everything, the recorder writes everything.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import FitConfig
from ..modalities import Modality
from ..records import Recorder
from ..registry import Registry
from ..zoo import BackboneSpec


@dataclass
class FitContext:
    config: FitConfig
    train: object            # the training data as the model eats it (model.prepare)
    val: object
    recorder: Recorder
    modality: Modality       # whose defaults, datasets and augmentation apply
    spec: BackboneSpec | None = None  # the architecture being trained
    checkpoint_dir: Path | None = None
    use_feature_cache: bool = True
    test_size: int = 0       # the final test pass also has to fit inside --budget
    # --strategy auto's probe arm: solve the refit head (train+val) but keep the train-only one in
    # the model, returning the refit as outcome["held_refit"]; lp-ft may start from the probe's head,
    # and only a head that never saw validation lets validation judge lp-ft's epochs
    hold_refit: bool = False


class Strategy:
    name: str = ""
    pretrained: bool = True          # does it start from pretrained weights?
    default_epochs: int = 0
    default_lr: float = 0.0
    default_augment: str = "none"
    default_schedule: str = "onecycle"
    default_patience: int = 3
    default_layer_decay: float | None = None  # layer-wise rate decay per block (None: lr spread)
    description: str = ""
    requires_attention: bool = False  # needs a transformer backbone (LoRA)
    # The zoo model this strategy always trains, whatever --backbone says (tfidf); None: the backbone
    architecture: str | None = None

    def fit(self, model, ctx: FitContext) -> dict:
        """Train `model` in place through ctx.recorder; return figures for the summary."""
        raise NotImplementedError

    def default(self, key: str, modality: Modality):
        """The strategy's own default for `key`, as the modality adjusts it."""
        return modality.strategy_defaults.get(self.name, {}).get(key, getattr(self, f"default_{key}"))

    # settings the user may override, else the strategy's own defaults for the modality
    def epochs(self, config: FitConfig, modality: Modality) -> int:
        return config.epochs if config.epochs is not None else self.default("epochs", modality)

    def lr(self, config: FitConfig, modality: Modality) -> float:
        return config.lr if config.lr is not None else self.default("lr", modality)

    def patience(self, config: FitConfig, modality: Modality) -> int:
        return config.patience if config.patience is not None else self.default("patience", modality)

    def augment(self, config: FitConfig, modality: Modality) -> str:
        if not modality.augments:
            return "none"
        return config.augment if config.augment is not None else self.default("augment", modality)


# "auto" is a choice beside the strategies: --strategy auto races them (choose/auto.py)
STRATEGIES: Registry[Strategy] = Registry("strategy", extra_choices=("auto",))


def register_strategy(cls):
    """Class decorator: register an instance of the strategy under its `name`."""
    STRATEGIES.add(cls.name, cls())
    return cls


def get_strategy(name: str) -> Strategy:
    return STRATEGIES.get(name)
