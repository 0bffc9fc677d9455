"""Backbone names -> specs: registered names first, then the resolvers (Hugging Face, timm).

A spec says everything a plan needs to know about a backbone -- its modality, native input
size and sizing policy, its own from-scratch rate, whether pretrained weights exist and load
offline -- without building the model. `spec.build(...)` builds it, once per run.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable

from headstart.errors import HeadstartError
from headstart.registry import Registry


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    modality: str                     # the modality whose data it eats ("image", "text", ...)
    factory: Callable[..., object]    # factory(*, pretrained, weights, **modality options) -> Backbone
    has_pretrained: bool = False      # some weight source has pretrained weights for it
    offline: Callable[[], bool] = lambda: False  # ...and they load with no network right now
    description: str = ""
    input_size: int | None = None     # native input (pixels); None: the model decides when built
    sized_to_input: bool = False      # trains at the data's own resolution (small CNNs)
    scratch_lr: float | None = None   # its own peak rate when trained from scratch
    standalone: bool = False          # the factory builds a whole classifier (no head to add)

    @property
    def pretrained_offline(self) -> bool:
        return self.has_pretrained and bool(self.offline())

    def build(self, *, pretrained: bool = True, weights: str | None = None, **options):
        """The model: `weights` FILE wins; else pretrained weights from the sources, or random init."""
        return self.factory(pretrained=pretrained, weights=weights, **options)


Resolver = Callable[[str], "BackboneSpec | None"]

# registered names; other names go to the resolvers, so an unknown name is resolve_backbone's to
# report (its hint also lists what the resolvers know)
_REGISTRY: Registry[BackboneSpec] = Registry("backbone", hint="run `headstart zoo` to list the backbones")
_RESOLVERS: list[tuple[Resolver, Callable[[], list[str]]]] = []


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    return _REGISTRY.add(spec.name, spec)


def register_resolver(resolve: Resolver, *, known_names: Callable[[], list[str]] = list) -> None:
    """Names no spec is registered under go to the resolvers, in registration order.
    known_names feeds the "did you mean" hint."""
    _RESOLVERS.append((resolve, known_names))


def resolve_backbone(name: str) -> BackboneSpec:
    if not isinstance(name, str) or not name:
        raise HeadstartError(f"a backbone name is needed, got {name!r}", hint="run `headstart zoo`")
    if name in _REGISTRY:
        return _REGISTRY[name]
    for resolve, _ in _RESOLVERS:
        spec = resolve(name)
        if spec is not None:
            return spec
    raise HeadstartError(f"unknown backbone '{name}'", hint=_suggestion(name))


def get_backbone(name: str, *, pretrained: bool = True, weights: str | None = None, **options):
    """Build the backbone `name` (see BackboneSpec.build); options are the modality's
    (image_size for images; max_length, pooling, tokenizer_from for text)."""
    return resolve_backbone(name).build(pretrained=pretrained, weights=weights, **options)


def list_backbones(modality: str | None = None) -> list[dict]:
    """The registered backbones, for `headstart zoo` and ranking; offline is checked right now."""
    return [{"name": s.name, "modality": s.modality, "has_pretrained": s.has_pretrained,
             "pretrained_offline": s.pretrained_offline, "description": s.description}
            for s in _REGISTRY.values() if modality in (None, s.modality)]


def offline_backbone_names() -> list[str]:
    """Registered backbones whose pretrained weights load with no network right now."""
    return [s.name for s in _REGISTRY.values() if s.pretrained_offline]


def _suggestion(name: str) -> str:
    known = [*_REGISTRY, *(n for _, names in _RESOLVERS for n in names())]
    close = difflib.get_close_matches(name, list(dict.fromkeys(known)), n=5, cutoff=0.6)
    listing = "run `headstart zoo` to list the backbones (any timm or Hugging Face model name works too)"
    return f"did you mean {', '.join(repr(c) for c in close)}? {listing}" if close else listing
