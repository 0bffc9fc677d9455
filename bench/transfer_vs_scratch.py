"""Benchmark: headstart's transfer arms against scratch arms, on several datasets.

Each dataset runs `headstart compare` with --seeds K (paired: every arm sees the same split
and seed), arms probe, lp-ft, finetune and two scratch arms: the zoo's small CNN at the
data's own resolution, and the backbone's own architecture from random weights. Results:
bench/results/transfer_vs_scratch.json and a markdown table on stdout for BENCHMARKS.md.

    python bench/transfer_vs_scratch.py                 # all datasets, 3 seeds
    python bench/transfer_vs_scratch.py --datasets elpv --seeds 1 --budget 30s   # quick look
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from headstart.compare import CompareConfig, run_compare
from headstart.config import FitConfig, parse_duration

DATASETS = {
    # name: (budget per arm, fit settings shared by every arm); the 28 px sets converge sooner.
    "elpv": ("90s", {}),
    "fashion-mnist": ("45s", {"train_per_class": 100}),
    "mnist-5k": ("45s", {}),
}
ARMS = ("probe", "lp-ft", "finetune", "scratch:resnet9", "scratch:same")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--budget", help="per arm (default: per dataset, see DATASETS)")
    p.add_argument("--image-size", type=int, default=128, help="input size of the transfer arms")
    p.add_argument("--max-eval", type=int, default=500)
    p.add_argument("--evals-per-epoch", type=int, default=2)
    p.add_argument("--out", default="bench/runs/transfer_vs_scratch")
    args = p.parse_args()

    os.environ.setdefault("HEADSTART_QUIET", "1")
    results = []
    for name in args.datasets.split(","):
        out = Path(args.out) / f"{name}-{datetime.now().strftime('%H%M%S')}"
        started = time.perf_counter()
        shared = FitConfig(data=name, backbone="tf_efficientnet_lite0", image_size=args.image_size,
                           max_eval=args.max_eval, **DATASETS[name][1])
        comparison = run_compare(CompareConfig(
            data=name, arms=ARMS, seeds=args.seeds, budget_seconds=parse_duration(args.budget or DATASETS[name][0]),
            evals_per_epoch=args.evals_per_epoch, out=str(out), fit=shared))
        comparison["bench_wall_seconds"] = time.perf_counter() - started
        comparison["run_dir"] = str(out)
        results.append(comparison)
        print(table(comparison), flush=True)

    record = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "argv": sys.argv,
              "results": results}
    path = Path("bench/results/transfer_vs_scratch.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2))
    print(f"wrote {path}")
    return 0


def table(c: dict) -> str:
    lines = [f"\n### {c['data']} — target {c['target_accuracy']:.3f} ({c['target_source']}), "
             f"{c['seeds']} seeds, budget {c['budget_seconds_per_arm']:.0f} s/arm\n",
             "| arm | model | best val | test acc (median) | spread | train s | time to target |",
             "|---|---|---|---|---|---|---|"]
    for a in c["arms"]:
        ttt = a["time_to_target_seconds"]
        lines.append(f"| {a['name']} | {a['backbone']} @{a['input_size']}px | {a['best_val_accuracy']:.3f} | "
                     f"{a['test_accuracy']:.3f} | {a['test_accuracy_spread']:.3f} | {a['train_seconds']:.1f} | "
                     f"{f'{ttt:.1f} s' if ttt is not None else 'never'} |")
    speed = f"{c['speedup']:.1f}x" if c.get("speedup") else "n/a"
    lines.append(f"\nSpeed-up to target: **{speed}**. Verdict: **{c['verdict']}** — {c['verdict_sentence']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
