"""The backbone zoo: pretrained (or from-scratch) models by name, as specs that build on demand.

Importing the package registers every built-in backbone, the name resolvers (Hugging Face text
encoders before timm architectures) and the standalone models' file format.
"""
from headstart.model_io import register_model_format
from headstart.zoo import embedding_bag, packaged, small_cnn, text_backbones, tfidf, timm_backbones, weights
from headstart.zoo import layers, local
from headstart.zoo.backbone import Backbone, Preprocessing
from headstart.zoo.packaged import load_packaged_imagenet_model
from headstart.zoo.registry import (
    BackboneSpec,
    get_backbone,
    list_backbones,
    offline_backbone_names,
    register_backbone,
    register_resolver,
    resolve_backbone,
)
from headstart.zoo.weights import Weights, WeightsUnavailable, register_weights_source


for _module in (small_cnn, timm_backbones, text_backbones, embedding_bag, tfidf):
    for _spec in _module.SPECS:
        register_backbone(_spec)
# "ARCH@blockK" / "ARCH@concat" is a layer of a timm architecture: first, as neither resolver
# below knows the '@'. A name like "org/model" or a local folder is a Hugging Face text
# encoder; anything else timm knows is an image architecture.
# No names for "did you mean" (every architecture's layers would be thousands): a mistyped layer
# of a known architecture gets this resolver's own error, which lists the blocks.
register_resolver(layers.resolve)
# Your own runs' backbones ($HEADSTART_HOME/zoo, zoo/local.py) before the hub and timm names;
# adding one refuses a name those already mean, so nothing is hidden.
register_resolver(local.resolve, known_names=local.known_names)
register_resolver(text_backbones.resolve, known_names=text_backbones.known_names)
register_resolver(timm_backbones.resolve, known_names=timm_backbones.known_names)
register_model_format(tfidf.FORMAT.split("/")[0], save=tfidf.save_tfidf, load=tfidf.load_tfidf,
                      input="raw texts; vocabulary.json + idf/coef/intercept in model.safetensors")

__all__ = [
    "Backbone",
    "BackboneSpec",
    "Preprocessing",
    "Weights",
    "WeightsUnavailable",
    "get_backbone",
    "list_backbones",
    "load_packaged_imagenet_model",
    "offline_backbone_names",
    "packaged",
    "register_backbone",
    "register_resolver",
    "register_weights_source",
    "resolve_backbone",
]
