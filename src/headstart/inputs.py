"""What `predict` and `explain` read from the command line -- image files and folders, text
files of one text per line -- and what a prediction is. No PyTorch: the onnxruntime predictor
(deploy/onnx_predict.py) reads inputs with these too, in a process that never imports torch."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import HeadstartError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass
class Prediction:
    path: str
    label: str | None
    probability: float | None
    error: str | None = None
    kind: str = "path"  # what `path` holds: "path" (a file) or "text" (the text itself)


def expand_image_paths(paths: list[str]) -> list[Path]:
    """Files as given; folders as every image file under them (sorted)."""
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise HeadstartError(f"no images found in the folder {p}")
            files.extend(found)
        elif p.exists():
            files.append(p)
        else:
            raise HeadstartError(f"no such file or folder: {p}")
    return files


def read_text_lines(path: str) -> list[str]:
    """One text per non-blank line; '-' is standard input. Bad bytes are replaced, not fatal."""
    if path == "-":
        return [line.strip() for line in sys.stdin if line.strip()]
    p = Path(path)
    if not p.is_file():
        raise HeadstartError(f"no such file: {p}", hint="--file takes a text file with one text per line")
    return [line.strip() for line in p.read_bytes().decode("utf-8", "replace").splitlines() if line.strip()]
