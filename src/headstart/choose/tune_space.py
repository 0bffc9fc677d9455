"""What `headstart tune` searches: a conditional space, one row of SEARCHED per setting.

The strategy is drawn first; every other setting is an Optuna parameter named after the
strategy it belongs to ("lp-ft/lr", "finetune/candidate"). That is Optuna's idiom for a
conditional space: each parameter keeps one distribution for the whole study (a learning rate
around lp-ft's default is not one around scratch's), and TPE (multivariate, grouped) models
each strategy's settings together. A probe samples only its candidate (it tunes C itself); a
scratch trial samples no candidate (it trains its own architecture from random weights).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from ..config import FitConfig
from ..errors import HeadstartError
from ..strategies import get_strategy
from ..strategies.base import Strategy
from ..train.augment import AUGMENTATIONS
from .candidates import Candidate

LR_SPAN = (0.1, 3.0)         # a strategy's rate is searched from a tenth of its default to three times it
EPOCH_SPAN = (0.5, 2.0)      # ... and its epochs from half its default to twice it
WEIGHT_DECAY = (1e-5, 0.1)   # log-uniform
LAYER_DECAY = (0.5, 1.0)     # each layer group down from the top trains at this share of the rate above it
FREEZE_SHARES = (0.0, 0.25, 0.5, 0.75)  # of the backbone's layer groups, frozen from the stem


@dataclass(frozen=True)
class BackboneFacts:
    groups: int | None   # layer groups (what --freeze-depth counts); None: unknown
    attention: bool      # has attention projections (what LoRA adapts)


@dataclass
class Space:
    """The study's choices: strategies and candidates, checked against the data's modality."""

    template: FitConfig            # every setting tune does not search (the data settings)
    modality: object               # the data's Modality
    strategies: list[str]
    candidates: list[Candidate]
    facts: Callable[[str], BackboneFacts]  # backbone name -> facts (built once, memoised)
    _memo: dict = field(default_factory=dict)

    def backbone_facts(self, backbone: str) -> BackboneFacts:
        if backbone not in self._memo:
            self._memo[backbone] = self.facts(backbone)
        return self._memo[backbone]

    def candidates_for(self, strategy: Strategy) -> list[Candidate]:
        if not strategy.requires_attention:
            return self.candidates
        return [c for c in self.candidates if self.backbone_facts(c.backbone).attention]


def _trains(strategy: Strategy, space: Space) -> bool:
    return strategy.default("epochs", space.modality) > 0  # the probe trains no layer


def _reshapes_backbone(strategy: Strategy, space: Space) -> bool:
    """Fine-tuning every layer from a pretrained start (lp-ft, finetune): where layer-wise
    decay and freezing mean something (LoRA trains adapters only, scratch has no stem to keep)."""
    return strategy.pretrained and _trains(strategy, space) and not strategy.requires_attention


def _candidate(trial, name: str, strategy: Strategy, space: Space, chosen: dict) -> dict:
    choices = {c.name: c for c in space.candidates_for(strategy)}
    c = choices[trial.suggest_categorical(name, list(choices))]
    return {"backbone": c.backbone, "image_size": c.image_size or space.template.image_size}


def _lr(trial, name: str, strategy: Strategy, space: Space, chosen: dict) -> dict:
    default = strategy.default("lr", space.modality)
    return {"lr": trial.suggest_float(name, default * LR_SPAN[0], default * LR_SPAN[1], log=True)}


def _epochs(trial, name: str, strategy: Strategy, space: Space, chosen: dict) -> dict:
    default = strategy.default("epochs", space.modality)
    low, high = max(1, int(default * EPOCH_SPAN[0])), max(2, int(default * EPOCH_SPAN[1]))
    return {"epochs": trial.suggest_int(name, low, high)}


def _weight_decay(trial, name: str, strategy: Strategy, space: Space, chosen: dict) -> dict:
    return {"weight_decay": trial.suggest_float(name, *WEIGHT_DECAY, log=True)}


def _layer_decay(trial, name: str, strategy: Strategy, space: Space, chosen: dict) -> dict:
    return {"layer_decay": trial.suggest_float(name, *LAYER_DECAY)}


def _freeze(trial, name: str, strategy: Strategy, space: Space, chosen: dict) -> dict:
    # a share, not a count: backbones differ in depth, and one share means the same thing on each
    share = trial.suggest_categorical(name, list(FREEZE_SHARES))
    groups = space.backbone_facts(chosen["backbone"]).groups
    return {"freeze_depth": min(int(share * groups), groups - 1) if groups else None}


def _augment(trial, name: str, strategy: Strategy, space: Space, chosen: dict) -> dict:
    return {"augment": trial.suggest_categorical(name, list(AUGMENTATIONS))}


@dataclass(frozen=True)
class Searched:
    name: str                                           # the parameter, after "<strategy>/"
    applies: Callable[[Strategy, Space], bool]
    sample: Callable                                    # (trial, name, strategy, space, chosen) -> FitConfig fields


SEARCHED = (
    Searched("candidate", lambda s, space: s.pretrained, _candidate),
    Searched("lr", _trains, _lr),
    Searched("weight_decay", _trains, _weight_decay),
    Searched("epochs", _trains, _epochs),
    Searched("augment", lambda s, space: _trains(s, space) and space.modality.augments, _augment),
    Searched("layer_decay", _reshapes_backbone, _layer_decay),
    Searched("freeze_share", lambda s, space: _reshapes_backbone(s, space) and len(space.candidates) > 0, _freeze),
)


def sample_config(trial, space: Space) -> FitConfig:
    """A trial's FitConfig: the template with the strategy and its settings drawn by `trial`."""
    strategy = get_strategy(trial.suggest_categorical("strategy", space.strategies))
    chosen: dict = {"strategy": strategy.name}
    if not strategy.pretrained:  # scratch: its own architecture, never a candidate
        chosen["scratch_model"] = space.template.scratch_model or space.modality.default_scratch_model
    for setting in SEARCHED:
        if setting.applies(strategy, space):
            chosen.update(setting.sample(trial, f"{strategy.name}/{setting.name}", strategy, space, chosen))
    return replace(space.template, **chosen)


def plain_params(params: dict) -> dict:
    """Optuna's prefixed parameters as settings: {"lp-ft/lr": 1e-4} -> {"lr": 1e-4}."""
    return {k.split("/", 1)[-1]: v for k, v in params.items()}


def check_strategies(requested: list[str] | None, space_candidates: list[Candidate], modality,
                     facts: Callable[[str], BackboneFacts]) -> list[str]:
    """--strategies, checked: known, backed by a backbone, and LoRA only with an attention
    candidate. Default: the modality's arms that train a backbone, LoRA where a candidate has
    attention."""
    if requested:
        names = [get_strategy(n).name for n in requested]  # an unknown name raises with a hint
        standalone = [n for n in names if get_strategy(n).architecture]
        if standalone:
            raise HeadstartError(f"tune searches backbones; {', '.join(standalone)} trains a fixed model of its own",
                                 hint="fit it directly: headstart fit DATA --strategy " + standalone[0])
    else:
        names = [n for n in modality.default_arms if not get_strategy(n).architecture]
    attention = any(facts(c.backbone).attention for c in space_candidates)
    if not attention:
        needs = [n for n in names if get_strategy(n).requires_attention]
        if requested and needs:
            raise HeadstartError(f"{needs[0]} needs an attention backbone (a transformer), and no candidate has one",
                                 hint="add a transformer candidate, or leave lora out of --strategies")
        names = [n for n in names if not get_strategy(n).requires_attention]
    if any(get_strategy(n).pretrained for n in names) and not space_candidates:
        raise HeadstartError("no candidate backbone to search", hint="give --candidates BACKBONE[:SIZE],...")
    return names


def backbone_facts(template: FitConfig, modality) -> Callable[[str], BackboneFacts]:
    """How to learn a backbone's layer groups and whether it has attention: build it once with
    random weights (a second or less; no weights are read), as the trial would shape it."""
    from ..strategies.lora import attention_targets
    from ..zoo import resolve_backbone

    def facts(backbone: str) -> BackboneFacts:
        spec = resolve_backbone(backbone)
        try:
            options = modality.backbone_options(replace(template, backbone=backbone), spec, pretrained=True, data=None)
            made = spec.build(pretrained=False, **options)
        except Exception:  # noqa: BLE001  (unknown facts only narrow the space: no freezing, no LoRA)
            return BackboneFacts(None, False)
        try:
            attention_targets(made.model)
            attention = True
        except HeadstartError:
            attention = False
        return BackboneFacts(len(made.param_groups()), attention)

    return facts
