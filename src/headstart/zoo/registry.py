"""Backbone names -> factories: the registered ones first, then any timm architecture."""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

from headstart.errors import HeadstartError
from headstart.zoo.backbone import Backbone
from headstart.zoo.weights import offline_available

# factory(*, pretrained, weights, image_size) -> Backbone
BackboneFactory = Callable[..., Backbone]

_MIN_IMAGE_SIZE = 8  # below this even the small CNN has nothing left to pool


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    factory: BackboneFactory
    has_pretrained: bool  # some weight source has ImageNet-like weights for it
    pretrained_offline: bool  # those weights can ship offline (a package), if installed
    description: str


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(name: str, *, pretrained_offline: bool, has_pretrained: bool, description: str):
    """Decorator: register `factory(*, pretrained, weights, image_size) -> Backbone` as `name`."""

    def decorate(factory: BackboneFactory) -> BackboneFactory:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} is already registered")
        _REGISTRY[name] = BackboneSpec(name, factory, has_pretrained, pretrained_offline, description)
        return factory

    return decorate


def get_backbone(
    name: str,
    *,
    pretrained: bool = True,
    weights: str | None = None,
    image_size: int | None = None,
    max_length: int | None = None,
    pooling: str | None = None,
    tokenizer_from: str | None = None,
) -> Backbone:
    """Build the backbone `name`: a registered one, else any timm architecture (optionally "arch.tag").

    weights: a .safetensors / torch state_dict file; when given it is loaded whatever
        `pretrained` says. Otherwise pretrained=True tries the weight sources (hub, then
        packaged offline weights) and pretrained=False gives random init.
    image_size: input side in pixels; overrides the backbone's default input size.
    max_length, pooling: text backbones only (tokens per text; mean | cls).
    tokenizer_from: for text models trained from scratch (embedding-bag): whose tokenizer.
    """
    from headstart.zoo import text_backbones as text
    from headstart.zoo.embedding_bag import TEXT_SCRATCH_MODELS

    if name in TEXT_SCRATCH_MODELS:
        return TEXT_SCRATCH_MODELS[name](tokenizer_from=tokenizer_from, max_length=max_length)
    if text.is_text_backbone_name(name):
        return text.create_text_backbone(name, pretrained=pretrained, weights=weights,
                                         max_length=max_length, pooling=pooling)
    if image_size is not None and (not isinstance(image_size, int) or image_size < _MIN_IMAGE_SIZE):
        raise HeadstartError(
            f"image size must be a whole number of pixels >= {_MIN_IMAGE_SIZE}, got {image_size!r}",
            hint="leave --image-size unset to use the backbone's own input size",
        )
    spec = _REGISTRY.get(name)
    if spec is not None:
        return spec.factory(pretrained=pretrained, weights=weights, image_size=image_size)
    if _is_timm_name(name):
        # Imported here: timm_backbones imports this module to register its backbones.
        from headstart.zoo.timm_backbones import create_timm_backbone

        return create_timm_backbone(name, pretrained=pretrained, weights=weights, image_size=image_size)
    raise HeadstartError(f"unknown backbone '{name}'", hint=_suggestion(name))


def list_backbones() -> list[dict]:
    """The registered backbones, for `headstart zoo`; pretrained_offline is checked right now."""
    return [
        {
            "name": spec.name,
            "has_pretrained": spec.has_pretrained,
            "pretrained_offline": spec.has_pretrained and offline_available(spec.name),
            "description": spec.description,
        }
        for spec in _REGISTRY.values()
    ]


def offline_backbone_names() -> list[str]:
    """Registered backbones whose pretrained weights load with no network right now."""
    return [s.name for s in _REGISTRY.values() if s.has_pretrained and offline_available(s.name)]


@lru_cache(maxsize=1)
def _timm_names() -> frozenset[str]:
    import timm

    return frozenset(timm.list_models(pretrained=False))


def _is_timm_name(name: str) -> bool:
    from timm.models import get_pretrained_cfg, split_model_name_tag

    arch, tag = split_model_name_tag(name)
    if arch not in _timm_names():
        return False
    if tag:
        try:
            get_pretrained_cfg(name)
        except RuntimeError:
            import timm

            tags = [t.split(".", 1)[1] for t in timm.list_pretrained(f"{arch}.*")]
            raise HeadstartError(
                f"'{arch}' has no pretrained tag '{tag}'",
                hint=f"known tags: {', '.join(tags) or 'none'}; or use '{arch}' for the default",
            ) from None
    return True


def _suggestion(name: str) -> str:
    from headstart.zoo.embedding_bag import TEXT_SCRATCH_MODELS
    from headstart.zoo.text_hub import ALIASES

    candidates = dict.fromkeys([*_REGISTRY, *ALIASES, *TEXT_SCRATCH_MODELS, *sorted(_timm_names())])  # registered first, no repeats
    close = difflib.get_close_matches(name, list(candidates), n=5, cutoff=0.6)
    listing = "run `headstart zoo` to list the backbones (any timm model name works too)"
    return f"did you mean {', '.join(repr(c) for c in close)}? {listing}" if close else listing
