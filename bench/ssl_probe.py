"""Benchmark: does self-supervised pre-training on the unlabelled pool beat random init (and ImageNet)?

Per dataset and seed, every arm is probed the same way (`headstart fit --strategy probe`: a
logistic head on frozen features, with the same split, the same 100 labels per class, the same
seed and evaluation cap), so the only difference is the backbone's weights:

  ssl_resnet9      ResNet-9 pre-trained with SimCLR on the pool (`headstart pretrain`, random start)
  random_resnet9   the same architecture at the same size, random init (seeded), no pre-training
  imagenet_lite0   EfficientNet-Lite0 with its packaged ImageNet weights
  dapt_lite0       Lite0 from ImageNet, then domain-adaptive SimCLR continued on the pool

plus the pre-training seconds each SSL arm cost. The seed varies the probe's split and the
pre-training (init, views, order). Pools: elpv's 2,624 images, labels unused (the test images
included: transductive, as SSL on "all the unlabelled data you have"); Fashion-MNIST: 10,000
images drawn from its training part only (written as a folder, so the test images never enter).
Resumable: finished cells are skipped, and the results file is rewritten after each cell.

    python bench/ssl_probe.py                                   # both datasets, 3 seeds
    python bench/ssl_probe.py --datasets elpv --seeds 1 --ssl-budget 40s --dapt-budget 60s --pool-items 300  # smoke
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from headstart.compare import machine_info
from headstart.config import FitConfig, PretrainConfig, parse_duration
from headstart.errors import HeadstartError

ARMS = ("ssl_resnet9", "random_resnet9", "imagenet_lite0", "dapt_lite0")
SIZES = {"elpv": 64, "fashion-mnist": 32}  # ResNet-9's input: 64 px for elpv, Fashion-MNIST's 28 px -> 32
LITE0_SIZE = 128
LABELS_PER_CLASS = 100


def probe(dataset: str, seed: int, args, tmp: Path, **settings) -> dict:
    from headstart.pipeline import fit

    config = FitConfig(data=dataset, strategy="probe", train_per_class=LABELS_PER_CLASS, seed=seed,
                       max_eval=args.max_eval, explain_examples=0, out=str(tmp / "probe"), **settings)
    s = fit(config, use_feature_cache=False).summary
    return {"test_accuracy": s["test_accuracy"], "probe_seconds": s["train_seconds"],
            "probe_config": {k: v for k, v in config.to_dict().items() if k != "out"}}


def pretrain(pool: str, seed: int, name: str, tmp: Path, **settings) -> dict:
    from headstart.adapt.pretrain import run_pretrain

    s = run_pretrain(PretrainConfig(pool=pool, name=name, method="simclr", seed=seed, out=str(tmp / name),
                                    force=True, **settings))
    return {"pretrain_seconds": s["train_seconds"], "pretrain_epochs": s["epochs"], "pretrain_steps": s["steps"],
            "pool_items": s["items"], "final_loss": s["final_loss"], "epoch_losses": s["epoch_losses"]}


def random_weights(size: int, seed: int, path: Path) -> str:
    """A seeded random-init ResNet-9 saved as a weights file, so the probe reads the same network."""
    import torch
    from safetensors.torch import save_file

    from headstart.zoo import get_backbone

    torch.manual_seed(seed)
    model = get_backbone("resnet9", pretrained=False, image_size=size).model
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return str(path)


def fashion_pool(items: int, folder: Path) -> str:
    """`items` Fashion-MNIST training images (never its test part) as a flat folder of PNGs."""
    from PIL import Image

    from headstart.modalities import load_data

    if folder.is_dir() and len(list(folder.glob("*.png"))) == items:
        return str(folder)
    data = load_data("fashion-mnist")
    train = np.flatnonzero(~data.is_test) if data.is_test is not None else np.arange(len(data))
    chosen = np.random.default_rng(0).choice(train, items, replace=False)
    folder.mkdir(parents=True, exist_ok=True)
    for i in chosen:
        Image.fromarray(data.images[i][..., 0]).save(folder / f"{i:05d}.png")
    return str(folder)


def run_cell(dataset: str, seed: int, arm: str, args, pool: str, tmp: Path) -> dict:
    size = args.resnet_size or SIZES[dataset]
    if arm == "ssl_resnet9":
        pre = pretrain(pool, seed, f"ssl-{dataset}-{seed}", tmp, backbone="resnet9", image_size=size,
                       budget_seconds=parse_duration(args.ssl_budget), batch_size=args.batch_size)
        return {**pre, **probe(dataset, seed, args, tmp, backbone=f"ssl-{dataset}-{seed}")}
    if arm == "random_resnet9":
        weights = random_weights(size, seed, tmp / "random.safetensors")
        return probe(dataset, seed, args, tmp, backbone="resnet9", weights=weights, image_size=size)
    if arm == "imagenet_lite0":
        return probe(dataset, seed, args, tmp, backbone="tf_efficientnet_lite0", image_size=LITE0_SIZE)
    pre = pretrain(pool, seed, f"dapt-{dataset}-{seed}", tmp, backbone="tf_efficientnet_lite0",
                   image_size=LITE0_SIZE, budget_seconds=parse_duration(args.dapt_budget),
                   batch_size=args.dapt_batch_size, max_items=args.dapt_items)
    return {**pre, **probe(dataset, seed, args, tmp, backbone=f"dapt-{dataset}-{seed}")}


def medians(cells: dict, dataset: str) -> dict:
    out = {}
    for arm in ARMS:
        done = [c for k, c in cells.items() if k.startswith(f"{dataset}/") and k.endswith(f"/{arm}")
                and "test_accuracy" in c]
        if done:
            out[arm] = {"test_accuracy": statistics.median(c["test_accuracy"] for c in done), "seeds": len(done),
                        "pretrain_seconds": statistics.median(c.get("pretrain_seconds", 0.0) for c in done)}
    return out


def verdicts(med: dict) -> dict:
    acc = {k: v["test_accuracy"] for k, v in med.items()}
    def gap(a, b):
        return round(100 * (acc[a] - acc[b]), 1) if a in acc and b in acc else None
    return {"ssl_minus_random_points": gap("ssl_resnet9", "random_resnet9"),
            "ssl_minus_imagenet_points": gap("ssl_resnet9", "imagenet_lite0"),
            "dapt_minus_imagenet_points": gap("dapt_lite0", "imagenet_lite0")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default="elpv,fashion-mnist")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--arms", default=",".join(ARMS), help="which arms to run (a later call can add the others)")
    p.add_argument("--resnet-size", type=int, default=None,
                   help="ResNet-9's input size for every dataset (default: 64 px elpv, 32 px Fashion-MNIST)")
    p.add_argument("--ssl-budget", default="4m", help="ResNet-9 SimCLR pre-training budget per run")
    p.add_argument("--batch-size", type=int, default=64, help="ResNet-9 SimCLR batch")
    p.add_argument("--dapt-budget", default="4m", help="Lite0 domain-adaptive SimCLR budget per run")
    p.add_argument("--dapt-items", type=int, default=512, help="Lite0 DAPT pool (a seeded subset: 128 px is costly)")
    p.add_argument("--dapt-batch-size", type=int, default=32)
    p.add_argument("--pool-items", type=int, default=10_000, help="Fashion-MNIST pool (training images)")
    p.add_argument("--max-eval", type=int, default=1000, help="validation/test images per probe, at most")
    p.add_argument("--results", default="bench/results/ssl_probe.json")
    args = p.parse_args(argv)
    os.environ.setdefault("HEADSTART_QUIET", "1")
    results_path = Path(args.results)
    saved = json.loads(results_path.read_text()) if results_path.exists() else {}
    cells = saved.get("cells", {})
    # each dataset's settings and command, as the invocation that ran it gave them
    runs_by_dataset = saved.get("runs_by_dataset") or {
        d: {"settings": saved["settings"], "command": saved.get("command")}
        for d in (saved.get("settings") or {}).get("datasets", "").split(",") if d}
    command = "python bench/ssl_probe.py " + " ".join(sys.argv[1:] if argv is None else argv)
    runs_by_dataset.update({d: {"settings": vars(args), "command": command} for d in args.datasets.split(",") if d})
    started, wall_before = time.perf_counter(), saved.get("wall_seconds", 0.0)
    work = Path("bench/runs/ssl_probe")
    with tempfile.TemporaryDirectory(dir=work.parent if work.parent.exists() else None) as home:
        os.environ["HEADSTART_HOME"] = home  # the benchmark's zoo entries never touch the user's
        for dataset in [d for d in args.datasets.split(",") if d]:
            pool = dataset if dataset != "fashion-mnist" else fashion_pool(args.pool_items,
                                                                          work / f"fashion-pool-{args.pool_items}")
            for seed in range(args.seeds):
                for arm in [a for a in args.arms.split(",") if a]:
                    key = f"{dataset}/{seed}/{arm}"
                    if key in cells and "test_accuracy" in cells[key]:
                        continue
                    with tempfile.TemporaryDirectory() as tmp:
                        t0 = time.perf_counter()
                        try:
                            cells[key] = run_cell(dataset, seed, arm, args, pool, Path(tmp))
                        except HeadstartError as e:  # e.g. a budget too short for one epoch on a loaded machine
                            cells[key] = {"refused": str(e), "hint": e.hint}
                        cells[key]["cell_wall_seconds"] = round(time.perf_counter() - t0, 1)
                    print(key, json.dumps({k: v for k, v in cells[key].items() if k != "probe_config"}), flush=True)
                    _write(results_path, args, runs_by_dataset, cells, wall_before + time.perf_counter() - started)
    out = _write(results_path, args, runs_by_dataset, cells, wall_before + time.perf_counter() - started)
    for dataset, r in out["results"].items():
        print(f"\n### {dataset}\n\n| arm | probe test acc (median) | seeds | pre-training s (median) |")
        print("|---|---|---|---|")
        for arm, m in r["median"].items():
            print(f"| {arm} | {m['test_accuracy']:.3f} | {m['seeds']} | {m['pretrain_seconds']:.0f} |")
        print(json.dumps(r["verdicts"]))
    return 0


def _write(path: Path, args, runs_by_dataset: dict, cells: dict, wall: float) -> dict:
    datasets = sorted({k.split("/")[0] for k in cells})
    results = {d: {"median": (med := medians(cells, d)), "verdicts": verdicts(med)} for d in datasets}
    out = {"benchmark": "ssl_probe", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "machine": machine_info(), "load_average": _load(),
           "default_resnet9_sizes": SIZES, "lite0_size": LITE0_SIZE, "labels_per_class": LABELS_PER_CLASS,
           "runs_by_dataset": runs_by_dataset,
           "wall_seconds": round(wall, 1), "results": results, "cells": cells}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1))
    os.replace(tmp, path)
    return out


def _load() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


if __name__ == "__main__":
    sys.exit(main())
