"""Benchmark: feature-extraction engines for the probe (engines/extract.py), paired in one process.

For each packaged backbone and input size, every engine extracts features of the same
training, validation and test images (ELPV by default): its one-off preparation (export,
quantization, compilation; measured with an empty engine cache), its extraction speed over
the training images (median of --repeats passes), and the probe it gives (the same C sweep on
its features, scored on test). The engine `auto` should take, per modality, is the fastest whose
probe test accuracy stays within 0.5 points of PyTorch eager's.

    python bench/extract_engines.py --dataset elpv --sizes 128,224 --repeats 3
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


from headstart.compare import machine_info
from headstart.data import make_splits, resize_data
from headstart.engines.extract import ENGINES, make_engine
from headstart.heads import PROBE_C_GRID, HeadProblem, ImageClassifier
from headstart.modalities import load_data
from headstart.zoo import get_backbone

WITHIN = 0.005  # accuracy an engine may lose against eager and still be the default


def probe_accuracy(train_x, train_y, val_x, val_y, test_x, test_y, classes: int) -> tuple[float, float]:
    problem, best = HeadProblem(train_x, train_y, classes), None
    for c in sorted(PROBE_C_GRID):
        w, b = problem.solve(c)
        val = float(((val_x @ w.T + b).argmax(1) == val_y).mean())
        if best is None or val > best[0] + 1e-9:
            best = (val, float(((test_x @ w.T + b).argmax(1) == test_y).mean()))
    return best


def measure(backbone_name: str, size: int, splits, engines: list[str], repeats: int) -> list[dict]:
    train, val, test = (resize_data(s, size) for s in (splits.train, splits.val, splits.test))
    classifier = ImageClassifier(get_backbone(backbone_name, pretrained=True, image_size=size), 2).eval()
    rows = []
    for name in engines:
        with tempfile.TemporaryDirectory() as cache:  # a cold engine cache: the export is measured
            os.environ["HEADSTART_CACHE"] = cache
            started = time.perf_counter()
            engine = make_engine(name, classifier, calibration=train.images)
            engine.features(train.images[:2])  # the first batch makes the model (export, quantize, compile)
            prepare = time.perf_counter() - started
            passes = []
            for _ in range(repeats):
                started = time.perf_counter()
                train_x = engine.features(train.images)
                passes.append(time.perf_counter() - started)
            val_x, test_x = engine.features(val.images), engine.features(test.images)
        seconds = statistics.median(passes)
        val_acc, test_acc = probe_accuracy(train_x, train.labels, val_x, val.labels, test_x, test.labels,
                                           train.num_classes)
        rows.append({"backbone": backbone_name, "size": size, "engine": name, "prepare_seconds": round(prepare, 2),
                     "pass_seconds": [round(p, 3) for p in passes], "images_per_second": len(train) / seconds,
                     "val_accuracy": val_acc, "test_accuracy": test_acc, "train_images": len(train)})
        print(f"{backbone_name} @{size}px {name:18} prepare {prepare:6.1f} s  {len(train) / seconds:7.1f} img/s  "
              f"val {val_acc:.3f}  test {test_acc:.3f}", flush=True)
    return rows


def recommend(rows: list[dict]) -> dict:
    """Per (backbone, size): the fastest engine within WITHIN of eager's test accuracy."""
    picks = {}
    for key in sorted({(r["backbone"], r["size"]) for r in rows}):
        group = [r for r in rows if (r["backbone"], r["size"]) == key]
        eager = next(r for r in group if r["engine"] == "torch")
        fair = [r for r in group if r["test_accuracy"] >= eager["test_accuracy"] - WITHIN - 1e-9]
        best = max(fair, key=lambda r: r["images_per_second"])
        picks[f"{key[0]}@{key[1]}"] = {"engine": best["engine"],
                                       "speedup_vs_eager": best["images_per_second"] / eager["images_per_second"]}
    return picks


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="elpv")
    p.add_argument("--backbones", default="tf_efficientnet_lite0")
    p.add_argument("--sizes", default="128,224")
    p.add_argument("--engines", default=",".join(ENGINES))
    p.add_argument("--train-per-class", type=int)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--results", default="bench/results/extract_engines.json")
    args = p.parse_args()
    os.environ.setdefault("HEADSTART_QUIET", "1")

    data = load_data(args.dataset)
    splits = make_splits(data, seed=0, train_per_class=args.train_per_class)
    engines = [e for e in args.engines.split(",") if e]
    rows = []
    for backbone in args.backbones.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            rows += measure(backbone, size, splits, engines, args.repeats)
    picks = recommend(rows)
    print("\n| backbone | size | engine | one-off prepare (s) | img/s | vs eager | probe val | probe test |\n"
          "|---|---|---|---|---|---|---|---|")
    for r in rows:
        eager = next(e for e in rows if (e["backbone"], e["size"], e["engine"]) == (r["backbone"], r["size"], "torch"))
        print(f"| {r['backbone']} | {r['size']} px | {r['engine']} | {r['prepare_seconds']:.1f} | "
              f"{r['images_per_second']:.1f} | {r['images_per_second'] / eager['images_per_second']:.2f}x | "
              f"{r['val_accuracy']:.3f} | {r['test_accuracy']:.3f} |")
    for key, pick in picks.items():
        print(f"{key}: fastest within {WITHIN * 100:.1f} points of eager: {pick['engine']} "
              f"({pick['speedup_vs_eager']:.2f}x eager)")
    out = Path(args.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "argv": sys.argv,
                               "machine": machine_info(), "rows": rows, "recommended": picks}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
