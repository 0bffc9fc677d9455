"""Benchmark: the probe against its floor, one bare inference pass over the training set.

For each repeat (paired, same process, same data): time a bare forward pass of the frozen
backbone over the decoded training images (inference mode, the same batch size and memory
format the probe uses), then a full `probe` fit with the feature cache off. The probe's
training clock (feature extraction + provisional heads + the C sweep) over the bare pass is
the overhead headstart adds; the goal is <= 1.3x.

    python bench/probe_floor.py --dataset elpv --repeats 3
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from headstart.compare import machine_info
from headstart.config import FitConfig
from headstart.data import make_splits, resize_data
from headstart.modalities import load_data
from headstart.heads import ImageClassifier, inference_batch_size
from headstart.pipeline import fit
from headstart.zoo import get_backbone, resolve_backbone


def bare_pass_seconds(backbone_name: str, image_size: int | None, images) -> float:
    backbone = get_backbone(backbone_name, pretrained=True, image_size=image_size)
    model = ImageClassifier(backbone, 2).eval()
    batch = inference_batch_size()
    x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    with torch.inference_mode():
        model.features(x[:batch])  # warm-up, as the probe's first batch pays it too
        started = time.perf_counter()
        for i in range(0, len(x), batch):
            model.features(x[i:i + batch])
        return time.perf_counter() - started


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="elpv")
    p.add_argument("--backbone", default="tf_efficientnet_lite0")
    p.add_argument("--image-size", type=int)
    p.add_argument("--train-per-class", type=int)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    os.environ.setdefault("HEADSTART_QUIET", "1")

    data = load_data(args.dataset)
    size = args.image_size or resolve_backbone(args.backbone).input_size
    train = resize_data(make_splits(data, seed=0, train_per_class=args.train_per_class).train, size)
    rows = []
    for repeat in range(args.repeats):
        bare = bare_pass_seconds(args.backbone, size, train.images)
        with tempfile.TemporaryDirectory() as tmp:
            summary = fit(FitConfig(data=args.dataset, backbone=args.backbone, strategy="probe", image_size=size,
                                    train_per_class=args.train_per_class, out=str(Path(tmp) / "run")),
                          data=data, use_feature_cache=False).summary
        rows.append({"repeat": repeat, "bare_pass_seconds": bare, "probe_train_seconds": summary["train_seconds"],
                     "ratio": summary["train_seconds"] / bare, "test_accuracy": summary["test_accuracy"]})
        print(f"repeat {repeat}: bare pass {bare:.1f} s, probe {summary['train_seconds']:.1f} s, "
              f"ratio {rows[-1]['ratio']:.2f}, test acc {summary['test_accuracy']:.3f}", flush=True)
    median = {k: statistics.median(r[k] for r in rows) for k in ("bare_pass_seconds", "probe_train_seconds", "ratio")}
    print(f"\n| data | images | size | bare pass (s) | probe (s) | probe / bare |\n|---|---|---|---|---|---|\n"
          f"| {args.dataset} | {len(train)} | {size}px | {median['bare_pass_seconds']:.1f} | "
          f"{median['probe_train_seconds']:.1f} | **{median['ratio']:.2f}x** |")
    out = Path("bench/results/probe_floor.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                               "argv": sys.argv, "machine": machine_info(), "rows": rows, "median": median},
                              indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
