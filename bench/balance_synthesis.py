"""Benchmark: does acting on class imbalance help the probe? --balance none / weights / sampler
and --synthesize auto (SMOTE on embeddings), on imbalanced real data.

Two imbalanced sets from ELPV's solar cells, decoded once:

- `elpv:grades`: the four expert grades as they come (functional, possibly-, likely-defective,
  defective), naturally skewed (~14:1 between the largest and smallest grade);
- `elpv 10:1`: functional vs defective with the defective cells subsampled (fixed seed) to a
  tenth of the functional ones.

Each arm runs the probe's own head fit (strategies.linear.fit_logistic_head: --synthesize, then
--balance, then the C sweep on validation), with tf_efficientnet_lite0 at 128 px. The frozen
features of every image are computed once per data set and laid into the feature cache for
each seed's split, so every arm of every seed reads them as a warm-cache probe would; test
is scored on the same cached features. The split follows the seed (stratified: validation
and test keep the data's own skew). Reported: test accuracy, macro-F1, balanced accuracy and
the recall of the smallest training class, medians over the seeds; train seconds are the
probe's training clock (SMOTE and oversampling included, feature extraction not).

    python bench/balance_synthesis.py --seeds 0,1,2
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

import numpy as np

import torch

from headstart.compare import machine_info
from headstart.config import FitConfig
from headstart.data import make_splits
from headstart.data.dataset import ImageData
from headstart.embed import compute_features, feature_cache_path, save_cached_features
from headstart.metrics import classification_summary, imbalance
from headstart.modalities import modality_of
from headstart.pipeline import build, load, resolve_plan
from headstart.records import Recorder
from headstart.strategies import FitContext
from headstart.strategies.linear import fit_logistic_head

ARMS = {
    "none": {},
    "weights": {"balance": "weights"},
    "sampler": {"balance": "sampler"},
    "smote": {"synthesize": "auto"},
}
# The head fits (L-BFGS on a ~2000 x 1280 matrix) run on one thread: on a 2-core machine shared
# with other work, two OpenMP threads made each fit ~14x slower (7.6 s against 0.5 s measured).
HEAD_THREADS = 1
FIGURES = ("test_accuracy", "macro_f1", "balanced_accuracy", "minority_recall", "train_seconds")


def datasets(backbone: str, size: int) -> dict[str, ImageData]:
    grades = load(FitConfig(data="elpv:grades", backbone=backbone, image_size=size, strategy="probe"))
    defective = grades.labels >= 2  # likely-defective and defective: probability >= 0.5, as `elpv` has it
    rng = np.random.default_rng(0)
    functional, bad = np.flatnonzero(~defective), np.flatnonzero(defective)
    keep = np.sort(np.concatenate([functional, rng.choice(bad, len(functional) // 10, replace=False)]))
    binary = ImageData(images=grades.images[keep], labels=defective[keep].astype(np.int64),
                       classes=["functional", "defective"], name="elpv-10to1",
                       paths=[grades.paths[i] for i in keep] if grades.paths else None)
    return {"elpv:grades": grades, "elpv 10:1": binary}


def arms_on(data: ImageData, seeds: list[int], backbone: str, size: int):
    """Every arm on every seed's split of `data`: yields result rows."""
    base = FitConfig(data=data.name, backbone=backbone, strategy="probe", image_size=size)
    plan = resolve_plan(base, modality_of(data))
    model = build(plan, data).eval()
    started = time.perf_counter()
    features = compute_features(model, model.prepare(data).inputs, "features (all)")
    print(f"{data.name}: features of {len(data)} images in {time.perf_counter() - started:.0f} s", flush=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(HEAD_THREADS)
    for seed in seeds:
        config = FitConfig(**{**base.to_dict(), "seed": seed})
        splits = make_splits(data, seed=seed, train_per_class=config.train_per_class, train_size=config.train_size,
                             val_fraction=config.val_fraction, test_fraction=config.test_fraction,
                             max_eval=config.max_eval)
        parts = {name: model.prepare(getattr(splits, name)) for name in ("train", "val", "test")}
        for name, part in parts.items():  # a warm feature cache for this split
            save_cached_features(feature_cache_path(model.backbone, part), features[splits.indices[name]])
        test_x = torch.from_numpy(features[splits.indices["test"]])
        counts = imbalance(parts["train"].labels, data.classes)
        minority = min(counts["class_counts"], key=counts["class_counts"].get)
        for arm, settings in ARMS.items():
            recorder = Recorder(None, "probe")
            ctx = FitContext(config=FitConfig(**{**config.to_dict(), **settings}), train=parts["train"],
                             val=parts["val"], recorder=recorder, modality=plan.modality, spec=plan.spec,
                             test_size=len(parts["test"]))
            head = fit_logistic_head(model, ctx)
            recorder.pause()
            with torch.no_grad():
                predicted = model.head(test_x).argmax(1).numpy()
            s = classification_summary(parts["test"].labels, predicted, data.classes)
            yield {"arm": arm, "seed": seed, "test_accuracy": s["accuracy"], "macro_f1": s["macro_f1"],
                   "balanced_accuracy": s["balanced_accuracy"], "minority": minority,
                   "minority_recall": s["per_class"][minority]["recall"],
                   "train_seconds": round(recorder.train_seconds, 2),
                   "sizes": {k: len(v) for k, v in parts.items()}, "train_counts": counts["class_counts"],
                   "imbalance_ratio": counts["imbalance_ratio"], "probe_C": head["probe_C"],
                   "synthetic_total": (head.get("synthetic") or {}).get("total", 0),
                   "balance_mode": (head.get("balance") or {}).get("mode", "none")}
    torch.set_num_threads(threads)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--backbone", default="tf_efficientnet_lite0")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--out", default="bench/results/balance_synthesis.json")
    args = p.parse_args()
    os.environ.setdefault("HEADSTART_QUIET", "1")
    seeds = [int(s) for s in args.seeds.split(",")]
    started = time.perf_counter()
    rows = []
    all_data = datasets(args.backbone, args.image_size)  # decoded through the user's cache
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["HEADSTART_CACHE"] = tmp  # the split features stay out of the user's cache
        for name, data in all_data.items():
            for row in arms_on(data, seeds, args.backbone, args.image_size):
                rows.append({"data": name, **row})
                print(f"{name:12s} seed {row['seed']} {row['arm']:8s} acc {row['test_accuracy']:.3f} "
                      f"macro-F1 {row['macro_f1']:.3f} minority ({row['minority']}) recall "
                      f"{row['minority_recall']:.3f}  [{row['train_seconds']:.1f} s]", flush=True)
    medians = {}
    for name in dict.fromkeys(r["data"] for r in rows):
        for arm in ARMS:
            mine = [r for r in rows if r["data"] == name and r["arm"] == arm]
            medians.setdefault(name, {})[arm] = {k: statistics.median(r[k] for r in mine) for k in FIGURES}
    lines = ["| data | arm | test accuracy | macro-F1 | balanced accuracy | minority recall | train s |",
             "|---|---|---|---|---|---|---|"]
    for name, arms in medians.items():
        for arm, m in arms.items():
            lines.append(f"| {name} | {arm} | {m['test_accuracy']:.3f} | {m['macro_f1']:.3f} | "
                         f"{m['balanced_accuracy']:.3f} | {m['minority_recall']:.3f} | {m['train_seconds']:.1f} |")
    print("\n" + "\n".join(lines))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "argv": sys.argv,
                               "machine": machine_info(), "head_fit_threads": HEAD_THREADS, "wall_seconds": round(time.perf_counter() - started, 1),
                               "arms": ARMS, "medians": medians, "table": lines, "rows": rows}, indent=2))
    print(f"\nwrote {out} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
