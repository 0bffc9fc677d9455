"""The backbone zoo: pretrained (or from-scratch) feature extractors by name.

Importing the package registers every built-in backbone and weight source.
"""
from headstart.zoo.backbone import Backbone, Preprocessing
from headstart.zoo.registry import get_backbone, list_backbones, register_backbone
from headstart.zoo.weights import (
    Weights,
    WeightsUnavailable,
    load_packaged_imagenet_model,
    register_weights_source,
)

# Imported for their registrations.
from headstart.zoo import small_cnn as _small_cnn  # noqa: E402,F401
from headstart.zoo import timm_backbones as _timm_backbones  # noqa: E402,F401

__all__ = [
    "Backbone",
    "Preprocessing",
    "Weights",
    "WeightsUnavailable",
    "get_backbone",
    "list_backbones",
    "load_packaged_imagenet_model",
    "register_backbone",
    "register_weights_source",
]
