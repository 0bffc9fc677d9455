"""Benchmark: `--image-size auto` against every fixed size, on the probe.

For each dataset: the probe at each fixed candidate size (96, 128, 160, 224 px; same seed, same
split, so the probe at the chosen size is exactly one of these runs), then the chooser alone on
the same split (settle_image_size: its sample, its scores, its seconds, the feature cache off so
its cost is paid). The table: the chosen size, its test accuracy, the best fixed size's, and the
gap. Issue 24 (2): on elpv 160 px beat 224 px. The chooser runs with no --budget: its allowance is
then a quarter of the probe's own expected feature pass (choose/image_size.py).

    python bench/image_size_auto.py --datasets elpv,fashion-mnist --train-per-class 100 --max-eval 500
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from headstart.choose.image_size import CANDIDATE_SIZES, settle_image_size
from headstart.config import FitConfig
from headstart.pipeline import fit, load


def run_dataset(name: str, args, root: Path) -> dict:
    base = FitConfig(data=name, strategy="probe", seed=args.seed, train_per_class=args.train_per_class,
                     max_eval=args.max_eval, explain_examples=0, image_size="auto")
    from headstart.choose.image_size import _largest_decode
    data = load(base, decode_size=_largest_decode)  # decoded once at the backbone's size; each size resizes down
    fixed = {}
    for size in CANDIDATE_SIZES:
        config = replace(base, image_size=size, out=str(root / f"{name}-{size}"))
        started = time.perf_counter()
        result = fit(config, data=data, use_feature_cache=False)
        fixed[size] = {"test_accuracy": result.summary.test_accuracy,
                       "seconds": round(time.perf_counter() - started, 1)}
    os.environ["HEADSTART_CACHE"] = str(root / "cache-choice")  # the chooser pays its extraction
    started = time.perf_counter()
    settled = settle_image_size(base, data)
    choose_seconds = time.perf_counter() - started
    chosen = settled.image_size
    best = max(fixed, key=lambda s: fixed[s]["test_accuracy"])
    return {"dataset": name, "chosen": chosen, "choice": data.notes.get("image_size_choice"),
            "choose_seconds": round(choose_seconds, 1), "fixed": fixed, "best_fixed": best,
            "chosen_accuracy": fixed[chosen]["test_accuracy"] if chosen in fixed else None,
            "gap_points": round(100 * (fixed[best]["test_accuracy"] - fixed.get(chosen, {"test_accuracy": 0})
                                       ["test_accuracy"]), 1)}


def table(rows: list[dict]) -> str:
    sizes = CANDIDATE_SIZES
    head = ("| data | chosen | sample scores (size: k-fold probe acc) | choosing | test acc at chosen | "
            + " | ".join(f"{s} px" for s in sizes) + " | gap to best fixed |")
    lines = [head, "|" + "---|" * (6 + len(sizes))]
    for r in rows:
        scores = (", ".join(f"{c['size']}: {c['accuracy']:.3f}" for c in r["choice"]["candidates"])
                  + f" ({r['choice']['sample']} images)")
        lines.append(f"| {r['dataset']} | {r['chosen']} px | {scores} | {r['choose_seconds']} s | "
                     f"{r['chosen_accuracy']:.3f} | "
                     + " | ".join(f"{r['fixed'][s]['test_accuracy']:.3f}" for s in sizes)
                     + f" | {r['gap_points']:+.1f} (best {r['best_fixed']} px) |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="elpv,fashion-mnist")
    p.add_argument("--train-per-class", type=int, default=100)
    p.add_argument("--max-eval", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--results", default="bench/results/image_size_auto.json")
    args = p.parse_args()
    os.environ.setdefault("HEADSTART_QUIET", "1")
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_dataset(name, args, Path(tmp)) for name in args.datasets.split(",")]
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(rows, indent=2))
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
