"""Predict with a finished run: image files/folders or raw texts in, (label, probability) out."""
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
    kind: str = "path"  # what `path` holds: "path" (an image file) or "text" (the text itself)


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


def is_text_run(meta: dict) -> bool:
    return meta.get("backbone", {}).get("modality") == "text"


def read_text_lines(path: str) -> list[str]:
    """One text per non-blank line; '-' is standard input. Bad bytes are replaced, not fatal."""
    import sys
    if path == "-":
        return [line.strip() for line in sys.stdin if line.strip()]
    p = Path(path)
    if not p.is_file():
        raise HeadstartError(f"no such file: {p}", hint="--file takes a text file with one text per line")
    return [line.strip() for line in p.read_bytes().decode("utf-8", "replace").splitlines() if line.strip()]


def predict_texts(run_dir: str | Path, texts: list[str], batch_size: int | None = None) -> list[Prediction]:
    """Label raw texts with a text run (a neural text classifier or TF-IDF + logistic regression)."""
    classifier, meta = load_model(Path(run_dir))
    if not is_text_run(meta):
        raise HeadstartError(f"{run_dir} holds an image model", hint="pass image files or folders to predict")
    results: list[Prediction | None] = [None] * len(texts)
    usable = [i for i, t in enumerate(texts) if t.strip()]
    for i in set(range(len(texts))) - set(usable):
        results[i] = Prediction(texts[i], None, None, error="empty text", kind="text")
    if usable:
        chosen = [texts[i] for i in usable]
        if hasattr(classifier, "logits_for_texts"):
            logits = classifier.logits_for_texts(chosen)
        else:
            tokens, _ = classifier.backbone.tokenize(chosen)  # long texts are truncated, as in training
            logits = predict_logits(classifier, tokens, batch_size)
        best = torch.softmax(logits, 1).max(1)
        for j, i in enumerate(usable):
            results[i] = Prediction(texts[i], meta["classes"][int(best.indices[j])], float(best.values[j]),
                                    kind="text")
    return results


def predict_inputs(run_dir: str | Path, inputs: list[str], text_file: str | None = None,
                   batch_size: int | None = None) -> list[Prediction]:
    """What the CLI calls: texts for a text run (arguments and --file lines), else image paths."""
    meta_path = Path(run_dir) / "model.json"
    from .records import read_json
    text_run = meta_path.exists() and is_text_run(read_json(meta_path))
    if text_run:
        texts = list(inputs) + (read_text_lines(text_file) if text_file else [])
        if not texts:
            raise HeadstartError("nothing to predict", hint='pass texts ("some text") or --file lines.txt')
        return predict_texts(run_dir, texts, batch_size)
    if text_file:
        raise HeadstartError("--file is for text runs", hint="pass image files or folders for an image run")
    if not inputs:
        raise HeadstartError("nothing to predict", hint="pass image files or folders")
    return predict_paths(run_dir, inputs, batch_size)


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
