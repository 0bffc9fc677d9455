"""Benchmark: the probe's speed-up against the scratch baseline at its plateau (issue 11).

For each dataset (binary `elpv`, and its four grades `elpv:grades`):

1. The probe's resolution, chosen by measurement: a probe (packaged EfficientNet-Lite0,
   feature cache off) at each candidate size on seed 0's split, scored on validation only.
   The rule: the smallest size whose validation accuracy is within 0.5 points of the best.
   Extraction cost grows with the pixels (~size^2: 224 px costs ~3x 128 px) while accuracy
   saturates, and half a point is below what one validation split of a few hundred images can
   tell apart (one binomial standard error is ~2 points at 0.8 on 400 images): a larger size
   must buy more than that to be worth its cost. The sweep's own seconds are reported beside
   the speed-up: they are what choosing costs, once per dataset.
2. `compare` with arms probe and scratch (ResNet-9 at the data's resolution up to its cap),
   --seeds 3: the probe at the chosen size under --budget; scratch until its validation
   accuracy plateaus (headstart/train/plateau.py) under its own cap (--baseline-budget,
   default 5x --budget). The target is scratch's plateau; the speed-up is scratch's seconds
   to its plateau over the probe's seconds to pass it, from the medians over seeds (and,
   beside it, the median of the per-seed ratios).

Goals (issue 11): >= 40x on elpv, >= 20x on elpv:grades. Results:
bench/results/scratch_plateau.json and markdown tables on stdout for BENCHMARKS.md.

    python bench/scratch_plateau.py                                  # both datasets, 3 seeds
    python bench/scratch_plateau.py --datasets elpv --seeds 1        # a quicker look
    python bench/scratch_plateau.py --train-per-class 20 --seeds 1 --budget 10s --baseline-budget 15s \\
        --sizes 96,128 --datasets elpv                               # smoke
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

from headstart.compare import CompareConfig, machine_info, run_compare
from headstart.config import FitConfig, parse_duration
from headstart.modalities import load_data
from headstart.pipeline import fit
from headstart.records import read_metrics

GOALS = {"elpv": 40.0, "elpv:grades": 20.0}
WITHIN = 0.005  # a larger probe resolution must beat the smallest by more than this (accuracy)


def probe_at(data, dataset: str, size: int, args) -> dict:
    """One probe fit at this input size on seed 0's split: its validation accuracy and time."""
    with tempfile.TemporaryDirectory() as tmp:
        summary = fit(FitConfig(data=dataset, backbone=args.backbone, strategy="probe", image_size=size,
                                train_per_class=args.train_per_class, max_eval=args.max_eval, explain_examples=0,
                                out=str(Path(tmp) / "run")),
                      data=data, use_feature_cache=False).summary
    return {"size": size, "val_accuracy": summary["best_val_accuracy"], "train_seconds": summary["train_seconds"]}


def choose_size(sweep: list[dict]) -> dict:
    """The smallest size within WITHIN of the best validation accuracy (see the module's note)."""
    best = max(r["val_accuracy"] for r in sweep)
    return min((r for r in sweep if r["val_accuracy"] >= best - WITHIN - 1e-9), key=lambda r: r["size"])


def per_seed_speedups(comparison: dict, run_dir: Path) -> list[float | None]:
    """scratch's seconds to its plateau over the probe's first evaluation at it, seed by seed."""
    plateau = comparison.get("baseline_plateau")
    if not plateau:
        return []
    probe = next(a for a in comparison["arms"] if a["name"] == "probe")
    folder = run_dir / probe["run_dir"]
    ratios = []
    for seed, scratch in enumerate(plateau["per_seed"]):
        arm_dir = folder if seed == 0 else folder.with_name(f"{folder.name}-seed{seed}")
        rows = [r for r in read_metrics(arm_dir) if r["split"] == "val" and r["accuracy"] >= plateau["accuracy"] - 1e-9]
        ratios.append(scratch["seconds"] / rows[0]["train_seconds"] if rows and rows[0]["train_seconds"] > 0 else None)
    return ratios


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default=",".join(GOALS))
    p.add_argument("--backbone", default="tf_efficientnet_lite0")
    p.add_argument("--sizes", default="96,128,160,224", help="candidate probe resolutions (px)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--budget", default="100s", help="per transfer arm, as the demo")
    p.add_argument("--baseline-budget", help="the scratch arm's cap (default: compare's, 5x --budget)")
    p.add_argument("--train-per-class", type=int)
    p.add_argument("--max-eval", type=int, default=1000)
    p.add_argument("--out", default="bench/runs/scratch_plateau")
    args = p.parse_args()
    os.environ.setdefault("HEADSTART_QUIET", "1")

    results = []
    for name in args.datasets.split(","):
        data = load_data(name)
        started = time.perf_counter()
        sweep = [probe_at(data, name, int(size), args) for size in args.sizes.split(",")]
        chosen = choose_size(sweep)
        sweep_seconds = time.perf_counter() - started
        print(f"\n{name}: probe resolution sweep (validation, seed 0): " + ", ".join(
            f"{r['size']} px {r['val_accuracy']:.3f} in {r['train_seconds']:.1f} s" for r in sweep)
            + f" -> {chosen['size']} px", flush=True)

        out = Path(args.out) / f"{name.replace(':', '-')}-{datetime.now().strftime('%H%M%S')}"
        started = time.perf_counter()
        shared = FitConfig(data=name, backbone=args.backbone, image_size=chosen["size"],
                           train_per_class=args.train_per_class, max_eval=args.max_eval, explain_examples=0)
        comparison = run_compare(CompareConfig(
            data=name, arms=("probe", "scratch"), scratch_model="resnet9", seeds=args.seeds,
            budget_seconds=parse_duration(args.budget),
            baseline_budget_seconds=parse_duration(args.baseline_budget) if args.baseline_budget else None,
            out=str(out), fit=shared))
        ratios = [r for r in per_seed_speedups(comparison, out) if r is not None]
        result = {"data": name, "goal": GOALS.get(name), "probe_sweep": sweep, "chosen_size": chosen["size"],
                  "sweep_seconds": sweep_seconds, "compare_wall_seconds": time.perf_counter() - started,
                  "run_dir": str(out), "speedup": comparison.get("speedup"),
                  "median_per_seed_speedup": statistics.median(ratios) if ratios else None,
                  "per_seed_speedups": ratios, "comparison": comparison}
        results.append(result)
        print(table(result), flush=True)

    print("\n| data | probe size | scratch plateau (val) | plateau at | probe passes it | speed-up | goal |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(summary_row(r))
    record = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "argv": sys.argv,
              "machine": machine_info(), "within": WITHIN, "results": results}
    path = Path("bench/results/scratch_plateau.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=str))
    print(f"wrote {path}")
    return 0


def table(r: dict) -> str:
    c = r["comparison"]
    lines = [f"\n### {r['data']} — probe at {r['chosen_size']} px, {c['seeds']} seed(s), budget "
             f"{c['budget_seconds_per_arm']:.0f} s/arm, scratch cap {c['baseline_budget_seconds']:.0f} s\n",
             "| arm | model | best val | test acc (median) | spread | train s | time to target | stop |",
             "|---|---|---|---|---|---|---|---|"]
    for a in c["arms"]:
        ttt = a["time_to_target_seconds"]
        lines.append(f"| {a['name']} | {a['backbone']} @{a['input_size']}px | {a['best_val_accuracy']:.3f} | "
                     f"{a['test_accuracy']:.3f} | {a['test_accuracy_spread']:.3f} | {a['train_seconds']:.1f} | "
                     f"{f'{ttt:.1f} s' if ttt is not None else 'never'} | {a.get('stop_reason') or '—'} |")
    lines.append(f"\nTarget {c['target_accuracy']:.3f} ({c['target_source']}). {c['verdict_sentence']}")
    lines.append(f"Choosing the resolution cost {r['sweep_seconds']:.0f} s (once per dataset).")
    return "\n".join(lines)


def summary_row(r: dict) -> str:
    c, plateau = r["comparison"], r["comparison"].get("baseline_plateau") or {}
    probe = next(a for a in c["arms"] if a["name"] == "probe")
    speed, goal = r["speedup"], r["goal"]
    if speed is None or goal is None:
        verdict = "n/a"
    elif speed >= goal:
        verdict = f"met (≥ {goal:.0f}x)"
    else:
        verdict = f"missed by {goal - speed:.1f}x (goal {goal:.0f}x)"
    ttt = probe["time_to_target_seconds"]
    capped = " (capped)" if plateau.get("reached_cap") else ""
    per_seed = r["median_per_seed_speedup"]
    return (f"| {r['data']} | {r['chosen_size']} px | {plateau.get('accuracy', float('nan')):.3f}{capped} | "
            f"{plateau.get('seconds', float('nan')):.1f} s | {f'{ttt:.1f} s' if ttt is not None else 'never'} | "
            f"**{f'{speed:.1f}x' if speed else 'n/a'}**"
            f"{f' (per-seed median {per_seed:.1f}x)' if per_seed else ''} | {verdict} |")


if __name__ == "__main__":
    sys.exit(main())
