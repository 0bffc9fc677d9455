"""Benchmark: do intermediate layers turn the grey-digit negative transfer into a tie or a win?

On Fashion-MNIST (100 labels per class) and MNIST-5k the small scratch CNN beat every transfer
arm of the packaged EfficientNet-Lite0 (BENCHMARKS §1: negative transfer). Here, per seed on
one split: a probe on Lite0's final features and on its layers (`@block4`, `@block5`,
`@concat`), against the scratch ResNet-9 at the data's resolution trained to its plateau under a
cap; feature cache off, so every probe pays its own extraction. Reported: median test accuracy
and training seconds of each, and the best layer's gap to scratch.

    python bench/layers_vs_scratch.py                       # both datasets, 3 seeds
    python bench/layers_vs_scratch.py --datasets mnist-5k --seeds 1 --scratch-budget 20s   # smoke
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
from headstart.config import FitConfig, parse_duration
from headstart.pipeline import fit, load

DATASETS = {"fashion-mnist": 100, "mnist-5k": None}
PROBES = ("tf_efficientnet_lite0", "tf_efficientnet_lite0@block4", "tf_efficientnet_lite0@block5",
          "tf_efficientnet_lite0@concat")


def one(data, dataset, seed, args, **settings) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        s = fit(FitConfig(data=dataset, seed=seed, train_per_class=DATASETS[dataset], max_eval=args.max_eval,
                          image_size=args.image_size if settings.get("strategy") == "probe" else None,
                          explain_examples=0, out=str(Path(tmp) / "run"), **settings),
                data=data, use_feature_cache=False).summary
    return {"test_accuracy": s["test_accuracy"], "train_seconds": s["train_seconds"],
            "best_val_accuracy": s["best_val_accuracy"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--image-size", type=int, default=224, help="the probes' input size")
    p.add_argument("--scratch-budget", default="120s", help="scratch's cap (it stops at its plateau)")
    p.add_argument("--max-eval", type=int, default=500)
    p.add_argument("--results", default="bench/results/layers_vs_scratch.json")
    args = p.parse_args(argv)
    os.environ.setdefault("HEADSTART_QUIET", "1")
    started = time.perf_counter()
    results = {}
    for dataset in [d for d in args.datasets.split(",") if d]:
        data = load(FitConfig(data=dataset, strategy="probe", image_size=args.image_size))
        runs = {name: [] for name in (*PROBES, "scratch:resnet9")}
        for seed in range(args.seeds):
            for backbone in PROBES:
                runs[backbone].append(one(data, dataset, seed, args, strategy="probe", backbone=backbone))
            runs["scratch:resnet9"].append(one(data, dataset, seed, args, strategy="scratch", scratch_model="resnet9",
                                               budget_seconds=parse_duration(args.scratch_budget)))
            print(json.dumps({dataset: {k: round(v[-1]["test_accuracy"], 4) for k, v in runs.items()}}), flush=True)
        med = {k: {"test_accuracy": statistics.median(r["test_accuracy"] for r in v),
                   "train_seconds": statistics.median(r["train_seconds"] for r in v)} for k, v in runs.items()}
        best_layer = max(PROBES[1:], key=lambda k: med[k]["test_accuracy"])
        gap = med[best_layer]["test_accuracy"] - med["scratch:resnet9"]["test_accuracy"]
        results[dataset] = {"runs": runs, "median": med, "best_layer": best_layer, "best_layer_minus_scratch": gap}
    out = {"benchmark": "layers_vs_scratch", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "machine": machine_info(), "seeds": args.seeds, "image_size": args.image_size,
           "command": "python bench/layers_vs_scratch.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "wall_seconds": round(time.perf_counter() - started, 1), "results": results}
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(out, indent=1))
    for dataset, r in results.items():
        print(f"\n### {dataset}\n\n| model | test acc (median) | train s |\n|---|---|---|")
        for name, m in r["median"].items():
            print(f"| {name} | {m['test_accuracy']:.3f} | {m['train_seconds']:.1f} |")
        print(f"\nbest layer {r['best_layer']}: {100 * r['best_layer_minus_scratch']:+.1f} points against scratch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
