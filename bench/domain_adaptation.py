"""Benchmark: unsupervised domain adaptation, mnist-5k (28 px handwritten) -> digits (8 px scanned).

The source is mnist-5k with its labels (split by the seed as any fit splits it); the target is
all 1,797 images of scikit-learn's digits, whose labels are set aside and used only to score.
Per seed, paired on one source split:

  none / coral   one `fit mnist-5k --adapt digits --method coral` (EfficientNet-Lite0 probe
                 features at --probe-size px): the run fits the head on raw source features
                 (none) and on CORAL-aligned ones, and scores both
  coral@LAYER    the same on another feature layer of the zoo (--layers, e.g. @block4, @concat)
  ft-none        `fit mnist-5k --strategy lp-ft` at --ft-size px, scored on digits: the fair
                 "no adaptation" for DANN (the same fine-tune without the domain loss)
  dann           `fit mnist-5k --adapt digits --method dann` with the same settings

Reported: target accuracy and source test accuracy of each (medians over seeds), the gain of
CORAL over none and of DANN over ft-none (goal: >= 5 points), and seconds per run. Resumable:
finished (seed, arm) pairs in --results are kept.

    python bench/domain_adaptation.py                                    # 3 seeds
    python bench/domain_adaptation.py --seeds 1 --source-per-class 30 --ft-epochs 1 --layers ''  # smoke
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

from headstart.api import run_fit
from headstart.compare import machine_info
from headstart.config import FitConfig
from headstart.modalities import load_data

SOURCE, TARGET, BACKBONE = "mnist-5k", "digits", "tf_efficientnet_lite0"
GOAL_POINTS = 5.0


def _config(args, seed: int, out: str, backbone: str = BACKBONE, per_class: int | None = None,
            **changes) -> FitConfig:
    return FitConfig(data=SOURCE, seed=seed, out=out, explain_examples=0, train_per_class=per_class,
                     backbone=backbone, **changes)


def coral_arms(args, seed: int, backbone: str, tag: str) -> dict:
    """none and coral from one adapted probe fit."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        summary = run_fit(_config(args, seed, str(Path(tmp) / "run"), backbone, args.source_per_class,
                                  adapt=TARGET, adapt_method="coral", image_size=args.probe_size)).summary
        wall = time.perf_counter() - started
    arms = summary["adaptation"]["arms"]
    suffix = "" if tag == "" else f"@{tag}"
    return {f"none{suffix}": {**_figures(arms["none"]), "seconds": round(wall, 1), "shared_run": True},
            f"coral{suffix}": {**_figures(arms["coral"]), "seconds": round(wall, 1), "C": arms["coral"]["C"],
                               "covariance_gap": summary["adaptation"]["covariance_gap"]}}


def fine_tune_none(args, seed: int, target) -> dict:
    """lp-ft without the domain loss, scored on the whole target."""
    from headstart.adapt.domain_methods import accuracy_of

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = run_fit(_config(args, seed, str(Path(tmp) / "run"), per_class=args.ft_per_class, strategy="lp-ft",
                                 image_size=args.ft_size,
                                 epochs=args.ft_epochs))
        wall = time.perf_counter() - started
        model = result.classifier
        model.eval()
        logits = model.logits(model.prepare(target), description="target")
    return {"source_accuracy": result.summary["test_accuracy"],
            "target_accuracy": accuracy_of(logits, target.labels), "seconds": round(wall, 1)}


def dann_arm(args, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        summary = run_fit(_config(args, seed, str(Path(tmp) / "run"), per_class=args.ft_per_class, strategy="lp-ft",
                                 image_size=args.ft_size,
                                  epochs=args.ft_epochs, adapt=TARGET, adapt_method="dann")).summary
        wall = time.perf_counter() - started
    part = summary["adaptation"]
    return {**_figures(part["arms"]["dann"]), "seconds": round(wall, 1), "domain_accuracy": part["domain_accuracy"],
            "probe_head_before": _figures(part["arms"]["none"])}


def _figures(arm: dict) -> dict:
    return {"source_accuracy": arm["source_accuracy"], "target_accuracy": arm["target_accuracy"]}


def medians(seeds: dict) -> dict:
    names = sorted({name for row in seeds.values() for name in row})
    return {name: {key: round(statistics.median(row[name][key] for row in seeds.values() if name in row), 4)
                   for key in ("target_accuracy", "source_accuracy", "seconds")}
            for name in names}


def gains(med: dict) -> dict:
    out = {}
    for method, base in [("coral", "none"), ("dann", "ft-none")] + \
            [(n, "none@" + n.split("@", 1)[1]) for n in med if n.startswith("coral@")]:
        if method in med and base in med:
            points = round(100 * (med[method]["target_accuracy"] - med[base]["target_accuracy"]), 2)
            out[method] = {"over": base, "points": points, "goal_met": points >= GOAL_POINTS}
    return out


def _jobs(args, wanted: set, target) -> list:
    jobs = []
    if "coral" in wanted:
        jobs.append((("none", "coral"), lambda s: coral_arms(args, s, BACKBONE, "")))
    if "ft-none" in wanted:
        jobs.append((("ft-none",), lambda s: {"ft-none": fine_tune_none(args, s, target)}))
    if "dann" in wanted:
        jobs.append((("dann",), lambda s: {"dann": dann_arm(args, s)}))
    if "layers" in wanted:
        for layer in filter(None, args.layers.split(",")):
            jobs.append(((f"none@{layer}", f"coral@{layer}"),
                         lambda s, la=layer: coral_arms(args, s, f"{BACKBONE}@{la}", la)))
    return jobs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--probe-size", type=int, default=128, help="px for the probe features (none / CORAL)")
    p.add_argument("--ft-size", type=int, default=32, help="px for the fine-tunes (ft-none / DANN)")
    p.add_argument("--ft-epochs", type=int, default=3)
    p.add_argument("--ft-per-class", type=int, default=100, help="labelled source images per class for the "
                                                                  "fine-tunes (a CPU-sized run)")
    p.add_argument("--source-per-class", type=int, default=None, help="labelled source images per class (all)")
    p.add_argument("--layers", default="block4", help="other Lite0 feature layers for CORAL ('' none)")
    p.add_argument("--arms", default="coral,layers,ft-none,dann")
    p.add_argument("--results", default="bench/results/domain_adaptation.json")
    args = p.parse_args(argv)
    os.environ.setdefault("HEADSTART_QUIET", "1")
    path = Path(args.results)
    done = json.loads(path.read_text()) if path.exists() else {}
    seeds = done.get("seeds", {})
    target = load_data(TARGET)
    wanted = set(args.arms.split(","))
    started = time.perf_counter()
    command = "python bench/domain_adaptation.py " + " ".join(sys.argv[1:] if argv is None else argv)

    def save() -> None:
        med = medians(seeds)
        out = {"benchmark": "domain_adaptation", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "machine": machine_info(), "load_average": os.getloadavg(), "command": command,
               "source": SOURCE, "target": f"{TARGET} (all {len(target)} images; labels used only to score)",
               "backbone": BACKBONE, "probe_size": args.probe_size, "ft_size": args.ft_size,
               "ft_epochs": args.ft_epochs, "source_per_class": args.source_per_class,
               "ft_per_class": args.ft_per_class,
               "wall_seconds": round(done.get("wall_seconds", 0) + time.perf_counter() - started, 1),
               "seeds": seeds, "median": med, "gain_points": gains(med), "goal_points": GOAL_POINTS}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=1, default=str))

    # arm by arm over the seeds (the cheap, central arms first), so a cut run still has medians
    for names, job in _jobs(args, wanted, target):
        for seed in range(args.seeds):
            row = seeds.setdefault(str(seed), {})
            if all(n in row for n in names):
                continue
            row.update(job(seed))
            print(json.dumps({"seed": seed, **{n: row[n] for n in names}}, default=str), flush=True)
            save()
    save()
    print(json.dumps({"median": medians(seeds), "gain_points": gains(medians(seeds))}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
