"""Data layer: load images from built-ins, folders or CSVs, resize them once, split them."""
from headstart.data.dataset import ImageData
from headstart.data.sources import (IMAGE_EXTENSIONS, cache_dir, decode_image, list_datasets, load_data,
                                   register_dataset)
from headstart.data import builtins as _builtins  # noqa: F401  (registers the built-in datasets)
from headstart.data.resize import resize_data
from headstart.data.split import Splits, make_splits

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageData",
    "Splits",
    "cache_dir",
    "decode_image",
    "list_datasets",
    "load_data",
    "make_splits",
    "register_dataset",
    "resize_data",
]
