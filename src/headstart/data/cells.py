"""Images that arrive as encoded bytes (a Parquet or Arrow cell, a tar shard's member) and the labels
beside them, made into ImageData; shared by data/table_sources.py and data/shards.py.

A cell is decoded by the same function as an image file (sources.decode_one: JPEG draft, EXIF
rotation, RGB, shorter side to `size`, centre crop), so a model fitted on a folder reads the same
pixels from a table of the same files.
"""
from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path

import numpy as np

from headstart.data.dataset import ImageData
from headstart.data.sources import decode_one, natural_key
from headstart.errors import HeadstartError
from headstart.log import progress_bar

# Cells decoded per round of the thread pool: enough to keep every core busy, few enough that
# the encoded bytes waiting for their turn stay small (a few MB of JPEGs).
_ROUND = 256
_PROGRESS_MIN = 50


def decode_cell(raw: bytes | Path | None, size: int) -> tuple[np.ndarray, int] | str:
    """(the image as (size, size, 3) uint8, its native shorter side), or why it cannot be read.
    `raw` is the encoded bytes, a file to read them from, or None (an empty cell)."""
    if raw is None or (isinstance(raw, bytes) and not raw):
        return "empty cell (no image bytes)"
    return decode_one(raw if isinstance(raw, Path) else io.BytesIO(raw), size)


def decode_cells(cells: Iterable[tuple[str, bytes | Path | None, object]], size: int, strict: bool, *,
                 expected: int = 0) -> tuple[np.ndarray, list, list[str], list[tuple[str, str]], np.ndarray]:
    """Decode (where, raw, label) cells in parallel threads (Pillow lets go of the GIL).

    Returns the kept images as uint8 (K, size, size, 3), their labels and where each came from,
    the skipped cells as (where, reason), and the kept images' native shorter sides. Only one
    round of encoded cells is held at a time; `expected` (the row count, where the source knows
    it) sizes the output once instead of growing it. strict: the first bad cell is an error.
    """
    out = np.empty((max(expected, 1), size, size, 3), dtype=np.uint8)
    labels, wheres, sides, skipped = [], [], [], []
    workers = max(1, min(8, os.cpu_count() or 1))
    cells = iter(cells)
    with ThreadPoolExecutor(workers) as pool, progress_bar("decoding images", expected,
                                                           min_total=_PROGRESS_MIN) as advance:
        for round_ in _rounds(cells):
            for (where, _, label), result in zip(round_, pool.map(lambda c: decode_cell(c[1], size), round_)):
                advance()
                if isinstance(result, str):
                    if strict:
                        raise HeadstartError(f"cannot decode the image of {where}: {result}",
                                             "remove or replace it, or drop --strict to skip it")
                    skipped.append((where, result))
                    continue
                if len(wheres) == len(out):  # more rows than announced: grow geometrically
                    out = np.concatenate([out, np.empty_like(out)])
                out[len(wheres)], side = result
                labels.append(label)
                wheres.append(where)
                sides.append(side)
    kept = len(wheres)
    images = out if kept == len(out) else out[:kept].copy()  # a view would pin the spare rows
    return images, labels, wheres, skipped, np.array(sides, dtype=np.int64)


def _rounds(cells: Iterator) -> Iterator[list]:
    while round_ := list(islice(cells, _ROUND)):
        yield round_


def encode_labels(values: list, source: str, column: str, names: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """(int64 codes, class names) for one label value per item. Integers index `names` where the
    data names its classes (a `datasets` ClassLabel), else are their own names; strings are names.
    Classes no item has are left out; one class is refused (nothing to tell apart)."""
    if any(v is None or (isinstance(v, str) and not v.strip()) for v in values):
        first = next(i for i, v in enumerate(values) if v is None or (isinstance(v, str) and not v.strip()))
        raise HeadstartError(f"{source}: item {first} has an empty {column!r}", "give every item a class label")
    if names is not None and values and all(isinstance(v, (int, np.integer)) for v in values):
        bad = next((v for v in values if not 0 <= v < len(names)), None)
        if bad is not None:
            raise HeadstartError(f"{source}: {column!r} holds {bad}, but its class names are {names}",
                                 "fix the label, or its ClassLabel names")
        values = [names[v] for v in values]
        order = {name: k for k, name in enumerate(names)}
        classes = sorted({str(v) for v in values}, key=order.__getitem__)
    else:
        values = [str(v).strip() for v in values]
        classes = sorted(set(values), key=natural_key)
    if len(classes) < 2:
        raise HeadstartError(
            f"{source}: the label column {column!r} holds one class ({classes[0]!r})" if classes else
            f"{source} has no labelled items",
            "a classifier needs at least two classes; pass --label-column NAME to read another column")
    index = {c: k for k, c in enumerate(classes)}
    return np.array([index[str(v)] for v in values], dtype=np.int64), classes


def to_image_data(decoded, name: str, *, names: list[str] | None = None, column: str = "label",
                  labelled: bool = True) -> ImageData:
    """ImageData from decode_cells' result; refuses data none of whose images decode."""
    images, labels, wheres, skipped, sides = decoded
    if not wheres:
        first = f" (first: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise HeadstartError(f"none of the {len(skipped)} images in {name} could be decoded{first}",
                             "check that the cells hold images in a format Pillow reads")
    codes, classes = encode_labels(labels, name, column, names) if labelled else \
        (np.zeros(len(wheres), dtype=np.int64), [])
    return ImageData(images=images, labels=codes, classes=classes, name=name, paths=wheres, skipped=skipped,
                     notes={"native_size": int(np.median(sides))})
