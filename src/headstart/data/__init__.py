"""Data layer: load images or texts from built-ins, folders, CSV or JSONL files; resize images once; split."""
from headstart.data import builtins as _builtins  # noqa: F401  (registers the built-in datasets)
from headstart.data.cache import cache_dir
from headstart.data.dataset import ImageData, TextData
from headstart.data.resize import resize_data
from headstart.data.sources import (
    IMAGE_EXTENSIONS,
    decode_image,
    list_datasets,
    load_data,
    register_dataset,
)
from headstart.data.split import Splits, make_splits
from headstart.data.text_sources import load_text_folder, load_text_table

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageData",
    "Splits",
    "TextData",
    "cache_dir",
    "decode_image",
    "list_datasets",
    "load_data",
    "load_text_folder",
    "load_text_table",
    "make_splits",
    "register_dataset",
    "resize_data",
]
