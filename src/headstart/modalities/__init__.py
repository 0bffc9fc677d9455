"""Modalities: one registered object per kind of data (image, text). Importing the package
registers both, and the model formats of their classifiers."""
from headstart.modalities import image, text  # noqa: F401  (registers the modalities)
from headstart.modalities.base import (Inputs, LoadOptions, Modality, get_modality, modalities, modality_of,
                                       register_modality)
from headstart.modalities.loading import load_data, load_pool

__all__ = ["Inputs", "LoadOptions", "Modality", "get_modality", "load_data", "load_pool", "modalities",
           "modality_of", "register_modality"]
