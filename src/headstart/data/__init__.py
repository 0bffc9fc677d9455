"""Data layer: images and texts from built-ins, folders, CSV or JSONL files; resize once; split.

Which loader reads a given path is the modalities' decision (headstart.modalities.load_data);
this package holds the loaders, the data forms and the splits.
"""
from headstart.data import builtins as _builtins  # noqa: F401  (registers the built-in datasets)
from headstart.data.cache import cache_dir
from headstart.data.dataset import DataForm, ImageData, TextData
from headstart.data.registry import find_builtin, list_datasets, register_dataset
from headstart.data.resize import resize_data
from headstart.data.sources import IMAGE_EXTENSIONS, decode_image
from headstart.data.split import Splits, make_splits
from headstart.data.text_sources import load_text_folder, load_text_table

__all__ = [
    "IMAGE_EXTENSIONS",
    "DataForm",
    "ImageData",
    "Splits",
    "TextData",
    "cache_dir",
    "decode_image",
    "find_builtin",
    "list_datasets",
    "load_text_folder",
    "load_text_table",
    "make_splits",
    "register_dataset",
    "resize_data",
]
