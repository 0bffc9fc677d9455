"""A pruned model on disk without pickle: its slimmer layer shapes in model.json.

torch-pruning saves a pruned model with torch.save (a pickle of the whole module). Instead, a
pruned run records, for every layer whose shape the pruning changed, the few numbers that
define it (channels, groups for depthwise convolutions, features), under model.json's "pruned":

    {"layers": {"backbone.model.conv_head": {"kind": "conv", "in_channels": 224,
                                              "out_channels": 896, "groups": 1}, ...},
     "feature_dim": 896, ...}

Loading rebuilds the original architecture, applies them (modalities/image.py,
apply_pruned_shapes: the loader of image classifiers, so `predict` and `export` read pruned
runs with what they already import, torch-pruning not among it), then reads model.safetensors.
"""
from __future__ import annotations

from torch import nn

# layer kind -> (its module type, the attributes that define its shape)
_SHAPED = {
    "conv": (nn.Conv2d, ("in_channels", "out_channels", "groups")),
    "batchnorm": (nn.modules.batchnorm._BatchNorm, ("num_features",)),
    "linear": (nn.Linear, ("in_features", "out_features")),
}


def layer_shapes(model: nn.Module) -> dict[str, dict]:
    """{module name: {"kind", shape attributes}} for every conv, batch norm and linear layer."""
    shapes = {}
    for name, module in model.named_modules():
        for kind, (cls, attributes) in _SHAPED.items():
            if isinstance(module, cls):
                shapes[name] = {"kind": kind, **{a: int(getattr(module, a)) for a in attributes}}
                break
    return shapes


def changed_shapes(before: dict[str, dict], after: dict[str, dict]) -> dict[str, dict]:
    """The layers whose shape differs: what model.json must carry to rebuild the pruned model."""
    return {name: shape for name, shape in after.items() if before.get(name) != shape}
