"""Does storing features as float16 change the probe head's accuracy? (issue 25.2)

Each dataset is loaded and split as `headstart fit DATA --strategy probe` does (seed 0, the
probe's default backbone and size), its train / val / test parts are embedded once (the feature
cache), and the probe's head sweep (heads.sweep_head over PROBE_C_GRID, C chosen on validation)
runs twice: on the float32 features, and on the same features rounded through float16 -- exactly
the values a float16 feature store hands back (the head's math is float32 either way). Reported:
the chosen C and the head's validation and test accuracy on the features each way.

    .venv/bin/python bench/feature_dtype.py --out /tmp/feature_dtype.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from headstart.config import FitConfig
from headstart.embed import embed
from headstart.heads import PROBE_C_GRID, score, sweep_head
from headstart.modalities import modality_of
from headstart.pipeline import build, load, resolve_plan, split

DATASETS = {"bbc-news": {}, "fashion-mnist": {"train_per_class": 100}, "elpv": {}}


class _Clock:  # sweep_head's recorder: nothing is timed or logged here
    wall_seconds = train_seconds = 0.0

    def pause(self): ...
    def resume(self): ...
    def log(self, *a, **k): ...


def features(name: str, options: dict):
    config = FitConfig(data=name, strategy="probe", seed=0, **options)
    data = load(config)
    splits = split(config, data)
    model = build(resolve_plan(config, modality_of(data)), data)
    parts = [model.prepare(s) for s in (splits.train, splits.val, splits.test)]
    return [(np.asarray(embed(model, p, description=f"features ({name})")), p.labels) for p in parts], data.num_classes


def head(train, val, test, classes: int, dtype) -> dict:
    def stored(x):
        return x.astype(dtype).astype(np.float32)
    sweep = sweep_head(stored(train[0]), train[1], stored(val[0]), val[1], PROBE_C_GRID, _Clock(),
                       num_classes=classes, phase="probe")
    test_accuracy, _ = score(__import__("torch").from_numpy(sweep.logits(stored(test[0]))), test[1])
    return {"C": sweep.c, "val_accuracy": round(sweep.val_accuracy, 4), "test_accuracy": round(test_accuracy, 4)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = []
    for name in args.datasets:
        started = time.perf_counter()
        (train, val, test), classes = features(name, DATASETS[name])
        for dtype in (np.float32, np.float16):
            row = {"data": name, "train": len(train[0]), "val": len(val[0]), "test": len(test[0]),
                   "stored": np.dtype(dtype).name, **head(train, val, test, classes, dtype),
                   "seconds": round(time.perf_counter() - started, 1)}
            print(json.dumps(row), flush=True)
            rows.append(row)
        if args.out:
            args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
