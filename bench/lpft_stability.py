"""Benchmark: lp-ft against its own probe head, per dataset, input size and seed (issue 23).

For each (dataset, size, seed): one lp-ft fit, then one probe fit on the same split (it reuses
the features lp-ft's head stage cached, so it costs seconds; by default without the refit on
train + validation, so it is the very head lp-ft starts from). Recorded per fit: the probe's and
lp-ft's validation and test accuracy, lp-ft's validation accuracy and loss per epoch, the epoch
it kept (0: the probe head, fine-tuning never beat it) and whether its final validation loss is
above its first epoch's. The goal (BENCHMARKS.md): lp-ft >= probe - 0.5 points, medians of 3 seeds.

    python bench/lpft_stability.py --datasets digits mnist-5k fashion-mnist --sizes 32 64 --seeds 0 1 2
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
from headstart.config import FitConfig
from headstart.pipeline import fit
from headstart.records import read_metrics


def one_pair(dataset: str, size: int, seed: int, args, tmp: Path) -> dict:
    common = dict(data=dataset, image_size=size, seed=seed, train_per_class=args.train_per_class,
                  max_eval=args.max_eval, explain_examples=0, extract_engine="torch")
    started = time.perf_counter()
    lpft = fit(FitConfig(strategy="lp-ft", epochs=args.epochs, out=str(tmp / f"lpft-{dataset}-{size}-{seed}"),
                         **common))
    lpft_seconds = time.perf_counter() - started
    # lp-ft's own probe: the train-only head it starts from (a probe's default refit on train +
    # validation learns from labels lp-ft never trains on; --refit-probe measures that one)
    probe = fit(FitConfig(strategy="probe", refit="yes" if args.refit_probe else "no",
                          out=str(tmp / f"probe-{dataset}-{size}-{seed}"), **common)).summary
    s = lpft.summary
    curve = [(r["epoch"], round(r["accuracy"], 4), round(r["loss"], 4)) for r in read_metrics(lpft.run_dir)
             if r["split"] == "val" and r.get("phase") == "lp-ft"]
    return {"dataset": dataset, "size": size, "seed": seed,
            "probe_val": s["probe_val_accuracy"], "lpft_val": s["best_val_accuracy"],
            "probe_test": probe["test_accuracy"], "lpft_test": s["test_accuracy"],
            "gap_points": round(100 * (s["test_accuracy"] - probe["test_accuracy"]), 2),
            "kept_epoch": s["best_epoch"], "kept": s.get("kept_weights"), "val_curve": curve,
            "final_loss_above_first_epoch": _final_loss_above_first(curve, s["best_epoch"]),
            "lpft_seconds": round(lpft_seconds, 1)}


def _final_loss_above_first(curve: list, kept_epoch: float) -> bool | None:
    """Is the delivered state's validation loss above the first epoch's? (the probe head,
    epoch 0, is delivered with its own loss, which the loop caps every kept state at)."""
    if not curve:
        return None
    kept = [loss for epoch, _, loss in curve if abs(epoch - kept_epoch) < 1e-9]
    return bool(kept) and kept[0] > curve[0][2] + 1e-9


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["digits", "mnist-5k", "fashion-mnist"])
    p.add_argument("--sizes", nargs="+", type=int, default=[32, 64])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--train-per-class", type=int, default=100)
    p.add_argument("--max-eval", type=int, default=1000)
    p.add_argument("--epochs", type=int, help="lp-ft epochs (default: the strategy's)")
    p.add_argument("--refit-probe", action="store_true", help="compare with the probe refit on train + validation")
    p.add_argument("--out", default="bench/results/lpft_stability.json")
    args = p.parse_args()
    os.environ.setdefault("HEADSTART_QUIET", "1")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in args.datasets:
            for size in args.sizes:
                for seed in args.seeds:
                    rows.append(one_pair(dataset, size, seed, args, Path(tmp)))
                    r = rows[-1]
                    print(f"{dataset} {size}px seed {seed}: probe test {r['probe_test']:.4f}, lp-ft test "
                          f"{r['lpft_test']:.4f} ({r['gap_points']:+.2f} points), kept epoch {r['kept_epoch']}, "
                          f"val curve {r['val_curve']}", flush=True)
    print("\n| data | size | seeds | probe test | lp-ft test | lp-ft - probe (points) | kept the probe head | "
          "final val loss > first epoch's |\n|---|---|---|---|---|---|---|---|")
    for dataset in args.datasets:
        for size in args.sizes:
            group = [r for r in rows if r["dataset"] == dataset and r["size"] == size]
            med = {k: statistics.median(r[k] for r in group) for k in ("probe_test", "lpft_test", "gap_points")}
            fell_back = sum(r["kept_epoch"] == 0 for r in group)
            above = sum(bool(r["final_loss_above_first_epoch"]) for r in group)
            print(f"| {dataset} | {size}px | {len(group)} | {med['probe_test']:.4f} | {med['lpft_test']:.4f} | "
                  f"{med['gap_points']:+.2f} | {fell_back}/{len(group)} | {above}/{len(group)} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                               "argv": sys.argv, "machine": machine_info(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
