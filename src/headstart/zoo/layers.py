"""Intermediate layers as backbones: `ARCH@blockK` and `ARCH@concat`, for any timm architecture.

For data far from ImageNet (grey digits, solar cells) the last layer of an ImageNet CNN is
often too specialised: a middle block's features can transfer better. So a layer is a
backbone name like any other, and every command that takes one (fit, the probe, rank,
compare, predict and export of the run) takes `tf_efficientnet_lite0@block4` too.

    ARCH@blockK   block K's output, global-average-pooled; the blocks after K are cut off
                  (never computed, never stored). K counts timm's feature blocks without the
                  stem: EfficientNet/MobileNetV3 each entry of `model.blocks` (Lite0: 0..6),
                  ResNet layer1..4 (0..3), ConvNeXt stages (0..3), ViT blocks (0..11).
    ARCH@concat   the pooled outputs of the three blocks before the last one, and the final
                  (pooled pre-logit) features, side by side; see CONCAT_BLOCKS.

The weights load exactly as for the whole architecture (create_timm_backbone: a weights
FILE, else the weight sources, else random) before the model is cut, so a run rebuilds the
layer from its name alone and loads its own model.safetensors into it.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import lru_cache, partial

import torch
from torch import nn

from headstart.errors import HeadstartError
from headstart.zoo.backbone import Backbone
from headstart.zoo.registry import BackboneSpec
from headstart.zoo.timm_backbones import create_timm_backbone, timm_param_groups, resolve as resolve_timm

SEPARATOR = "@"
BLOCK_PREFIX = "block"
CONCAT = "concat"
# @concat joins the final features with the three blocks before the last one. Measured on
# EfficientNet-Lite0's pooled blocks (sklearn digits at 64 px, 10 labels per class, a
# standardised logistic probe, mean of 3 draws): block 4 0.90, block 5 0.87, block 3 0.86,
# block 6 0.82, final 0.74; blocks 3+4+5+final 0.83, 4+5+final 0.81, 4+5+6+final 0.81.
# So the middle blocks carry what far-from-ImageNet data needs, block 6 (a linear
# bottleneck whose 1x1 expansion *is* the final features) adds nothing, and the final
# features stay in because on ImageNet-like data they are the best layer. Lite0: 80 + 112 +
# 192 + 1280 = 1664 features.
CONCAT_BLOCKS = 3
# Which layers ranking tries by default is the modality's to say (Modality.default_layers: the
# image modality's come from the measurement above; text encoders have none, as a
# sentence-transformer's middle layers are not pooled sentence vectors).

# timm lists the stem as feature tap 0 for ResNets, RegNets and DenseNets: it is the input
# convolution (edges at half resolution), not a block, so block 0 is the first real block.
_STEM_MODULES = ("stem", "conv_stem", "bn1", "act1", "features.norm0", "features.pool0")


def split_layer_name(name: str) -> tuple[str, str] | None:
    """'arch@block4' -> ('arch', 'block4'); None for a name without a layer."""
    arch, sep, layer = name.rpartition(SEPARATOR)
    return (arch, layer) if sep else None


# -- where an architecture's blocks are ---------------------------------------------------------

@dataclass(frozen=True)
class _Blocks:
    """An architecture's blocks as timm's forward_intermediates numbers its taps."""

    modules: tuple[str, ...]   # module name of block K
    channels: tuple[int, ...]  # channels of block K's output
    first_tap: int             # forward_intermediates' index of block 0 (1 when tap 0 is the stem)
    per_block: bool            # EfficientNet-style: one tap per block (extra_blocks), not per stage

    def tap(self, k: int) -> int:
        return self.first_tap + k

    def options(self) -> dict:
        # Only the families with per-block taps take the argument at all.
        return {"extra_blocks": True} if self.per_block else {}

    def listing(self) -> str:
        return ", ".join(f"{k} ({module})" for k, module in enumerate(self.modules))


def _blocks_of(model: nn.Module) -> _Blocks | None:
    """None when timm cannot return (and cut at) this model's intermediate features."""
    if not (hasattr(model, "forward_intermediates") and hasattr(model, "prune_intermediate_layers")):
        return None
    takes = inspect.signature(model.forward_intermediates).parameters
    if "extra_blocks" in takes and isinstance(getattr(model, "blocks", None), nn.Sequential):
        # EfficientNet, MobileNetV3: every entry of model.blocks (a stage of repeats) is a tap;
        # the stage taps of feature_info would skip some (Lite0: blocks 3 and 5).
        return _Blocks(tuple(f"blocks.{i}" for i in range(len(model.blocks))),
                       tuple(int(stage[-1].feature_info("bottleneck")["num_chs"]) for stage in model.blocks),
                       first_tap=1, per_block=True)
    info = [dict(f) for f in (getattr(model, "feature_info", None) or [])]
    if not info:
        return None
    stem = 1 if _is_stem(info[0].get("module", "")) else 0
    info = info[stem:]
    return _Blocks(tuple(f["module"] for f in info), tuple(int(f["num_chs"]) for f in info),
                   first_tap=stem, per_block=False)


def _is_stem(module: str) -> bool:
    return any(module == s or module.startswith(f"{s}.") for s in _STEM_MODULES)


@lru_cache(maxsize=64)
def _blocks_for(arch: str) -> _Blocks | None:
    """The blocks of `arch`, read from a model built on the meta device (no memory, no weights)."""
    import timm

    with torch.device("meta"):
        return _blocks_of(timm.create_model(arch, pretrained=False, num_classes=0))


# -- the resolver ------------------------------------------------------------------------------

def resolve(name: str) -> BackboneSpec | None:
    """'ARCH@blockK' or 'ARCH@concat' for a timm ARCH; None for names without '@'."""
    parts = split_layer_name(name)
    if parts is None:
        return None
    arch, layer = parts
    base = resolve_timm(arch) if arch else None
    if base is None and not _looks_like_layer(layer):
        return None  # some other resolver's name with an '@' in it (a local folder, say)
    if base is None:
        raise HeadstartError(
            f"'{arch}' in '{name}' is not a timm image architecture, so it has no layers to choose",
            hint="write ARCH@blockK or ARCH@concat with a timm architecture, e.g. tf_efficientnet_lite0@block4",
        )
    blocks = _blocks_for(arch)
    if blocks is None:
        raise HeadstartError(
            f"'{arch}' cannot return intermediate features (timm has no forward_intermediates for it)",
            hint=f"use '{arch}' itself, or the layers of an EfficientNet, ResNet, ConvNeXt or ViT",
        )
    _check_layer(name, arch, layer, blocks)
    return BackboneSpec(
        name=name, modality=base.modality, factory=partial(create_layer_backbone, arch, layer, name=name),
        has_pretrained=base.has_pretrained, offline=base.offline, input_size=base.input_size,
        description=_layer_words(layer, blocks, arch),
    )


def _looks_like_layer(layer: str) -> bool:
    return layer == CONCAT or (layer.startswith(BLOCK_PREFIX) and layer.removeprefix(BLOCK_PREFIX).isdigit())


def _check_layer(name: str, arch: str, layer: str, blocks: _Blocks) -> None:
    if layer == CONCAT:
        if len(blocks.modules) <= CONCAT_BLOCKS:
            raise HeadstartError(f"'{name}': the architecture has too few blocks to concatenate",
                                 hint=f"use one block: {blocks.listing()}")
        return
    if not (_looks_like_layer(layer) and int(layer.removeprefix(BLOCK_PREFIX)) < len(blocks.modules)):
        raise HeadstartError(
            f"'{name}' names no layer of {arch}: it has blocks 0..{len(blocks.modules) - 1} and @{CONCAT}",
            hint=f"write @blockK with K one of the blocks {blocks.listing()}, or @{CONCAT}",
        )


def _layer_words(layer: str, blocks: _Blocks, arch: str) -> str:
    if layer == CONCAT:
        *first, last = blocks.modules[-1 - CONCAT_BLOCKS:-1]
        return f"{', '.join(first)} and {last} of {arch}, pooled, beside its final features"
    k = int(layer.removeprefix(BLOCK_PREFIX))
    return f"block {k} of {arch} ({blocks.modules[k]}: {blocks.channels[k]} channels), pooled"


# -- building ----------------------------------------------------------------------------------

class _PooledBlock(nn.Module):
    """The model cut after one tap; forward returns that tap's map, average-pooled to (B, C)."""

    def __init__(self, net: nn.Module, tap: int, options: dict):
        super().__init__()
        self.net = net
        self.tap = tap
        self.options = options

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (feature_map,) = self.net.forward_intermediates(x, indices=[self.tap], intermediates_only=True,
                                                        **self.options)
        return feature_map.mean((2, 3))


class _ConcatLayers(nn.Module):
    """The whole model; forward returns the pooled taps and the final features, concatenated."""

    def __init__(self, net: nn.Module, taps: list[int], options: dict):
        super().__init__()
        self.net = net
        self.taps = taps
        self.options = options

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        final, maps = self.net.forward_intermediates(x, indices=self.taps, **self.options)
        # forward_head(pre_logits=True) is what the whole model's pooled features are (pooling,
        # and the norm or pre-logits layer some architectures apply after it)
        return torch.cat([*(m.mean((2, 3)) for m in maps), self.net.forward_head(final, pre_logits=True)], 1)


class LayerBackbone(Backbone):
    """A Backbone whose features come from an intermediate layer, and says which."""

    def __init__(self, *args, source: str, **kwargs):
        super().__init__(*args, **kwargs)
        self._source = source

    def feature_source(self) -> str:
        return self._source


def create_layer_backbone(arch: str, layer: str, *, name: str, pretrained: bool = True,
                          weights: str | None = None, image_size: int | None = None) -> LayerBackbone:
    """`arch` with its weights loaded as create_timm_backbone loads them, then cut after `layer`."""
    whole = create_timm_backbone(arch, pretrained=pretrained, weights=weights, image_size=image_size)
    net = whole.model
    blocks = _blocks_of(net)
    if layer == CONCAT:
        ks = list(range(len(blocks.modules) - 1 - CONCAT_BLOCKS, len(blocks.modules) - 1))
        model: nn.Module = _ConcatLayers(net, [blocks.tap(k) for k in ks], blocks.options())
        feature_dim = sum(blocks.channels[k] for k in ks) + whole.feature_dim
    else:
        k = int(layer.removeprefix(BLOCK_PREFIX))
        # the blocks after K, the head convolution and the norm go: never computed, not stored
        net.prune_intermediate_layers([blocks.tap(k)], prune_head=True, **blocks.options())
        model = _PooledBlock(net, blocks.tap(k), blocks.options())
        feature_dim = blocks.channels[k]
    source = f"{_layer_words(layer, blocks, arch)}: {feature_dim} features"
    return LayerBackbone(name=name, model=model, feature_dim=feature_dim, preprocessing=whole.preprocessing,
                         groups=timm_param_groups(net), weights=whole.weights, architecture=name, source=source)
