"""Predict with a finished run: whatever its modality reads (image files and folders, texts)
in, (label, probability) out."""
from __future__ import annotations

from pathlib import Path

import torch

from .inputs import Prediction
from .modalities import modality_of
from .run import Run


def predict_inputs(run_dir: str | Path, inputs: list[str], text_file: str | None = None,
                   batch_size: int | None = None) -> list[Prediction]:
    """What the CLI calls: the run's modality reads the inputs (and --file lines, for text)."""
    run = Run.open(run_dir).require_finished()
    meta = run.model_info
    read = modality_of(meta).read_inputs(list(inputs), text_file, meta)
    model = run.model()
    results = [Prediction(name, None, None, error=read.errors.get(i), kind=read.kind)
               for i, name in enumerate(read.names)]
    if read.data is not None:
        logits = model.logits(model.prepare(read.data), batch_size=batch_size)
        best = torch.softmax(logits, 1).max(1)
        for j, i in enumerate(read.usable):
            results[i] = Prediction(read.names[i], meta["classes"][int(best.indices[j])], float(best.values[j]),
                                    kind=read.kind)
    return results
