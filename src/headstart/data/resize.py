"""Resize a whole ImageData once, so training never resizes per batch or per epoch."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from headstart.data.dataset import ImageData
from headstart.errors import HeadstartError

_MODES = ("nearest", "bilinear", "bicubic")
# Images per interpolate call: bounds the float32 working copy (~150 MB at 224x224x3).
_CHUNK = 256


def resize_data(data: ImageData, size: int, interpolation: str = "bicubic") -> ImageData:
    """Return `data` with every image size x size (uint8, same channels, labels, classes, paths).

    Non-square images are center-cropped to a square first, as folder loading does. Returns
    `data` itself when it already has that size.
    """
    if interpolation not in _MODES:
        raise HeadstartError(
            f"unknown interpolation '{interpolation}'", f"use one of {', '.join(_MODES)}"
        )
    if size < 1:
        raise HeadstartError(f"image size must be positive, got {size}", "pass a size such as 224")
    n, h, w, c = data.images.shape
    if h == w == size:
        return data

    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    out = np.empty((n, size, size, c), dtype=np.uint8)
    # Antialiasing matters when shrinking (else aliasing moire); nearest does not support it.
    extra = {} if interpolation == "nearest" else {"align_corners": False, "antialias": True}
    with torch.no_grad():
        for start in range(0, n, _CHUNK):
            # rows first, then the crop: a memory-mapped source (or a split's view of one) is read
            # a chunk at a time
            rows = np.asarray(data.images[start : start + _CHUNK])
            chunk = torch.from_numpy(np.ascontiguousarray(rows[:, top : top + side, left : left + side]))
            x = chunk.permute(0, 3, 1, 2).float()
            y = F.interpolate(x, size=(size, size), mode=interpolation, **extra)
            # Bicubic overshoots past 0..255 near edges: round and clamp before the cast.
            out[start : start + _CHUNK] = y.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return dataclasses.replace(data, images=out)
