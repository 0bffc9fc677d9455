"""Predict with a finished run: files or folders in, (label, probability) out."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .data import IMAGE_EXTENSIONS, decode_image
from .errors import HeadstartError
from .model_io import load_model
from .train.evaluate import predict_logits


@dataclass
class Prediction:
    path: str
    label: str | None
    probability: float | None
    error: str | None = None


def _expand(paths: list[str]) -> list[Path]:
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


def predict_paths(run_dir: str | Path, paths: list[str], batch_size: int | None = None) -> list[Prediction]:
    classifier, meta = load_model(Path(run_dir))
    size = meta["backbone"]["preprocessing"]["input_size"]
    files = _expand(paths)
    results: list[Prediction | None] = [None] * len(files)
    images, where = [], []
    for i, f in enumerate(files):
        try:
            images.append(decode_image(f, size))
            where.append(i)
        except Exception as e:  # one unreadable file must not cost the others their answers
            results[i] = Prediction(str(f), None, None, error=f"unreadable image: {e}")
    if images:
        probs = torch.softmax(predict_logits(classifier, np.stack(images), batch_size), 1)
        best = probs.max(1)
        for j, i in enumerate(where):
            results[i] = Prediction(str(files[i]), meta["classes"][int(best.indices[j])], float(best.values[j]))
    return results
