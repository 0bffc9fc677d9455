"""Benchmark: continual learning without forgetting (`headstart fit NEW --from RUN`).

Fashion-MNIST in five tasks of two classes (class-incremental: the model must tell all classes
seen so far apart, with no task label). Per seed (the class order: seed 0 the natural order,
other seeds a seeded permutation; the seed also draws the splits) two families:

- probe (EfficientNet-Lite0 features at --image-size px): `head` (the head refitted on the old
  classes' stored features plus the new data's) against `retrain-all` (a fresh probe on every
  class seen so far, at every step);
- fine-tuned (Lite0 lp-ft at --ft-image-size px, --ft-epochs): `rehearsal` (exemplar memory),
  `lwf` (memory + distillation), `naive` (new data only) against `retrain-all` (a fresh lp-ft on
  every class seen so far, at every step).

Task 1 is a plain fit; each later task continues the last run with --from. After the last
task: average accuracy over the 10 classes (per-class test accuracy, on the same test items for
every method: the lineage's tests, one per task), average forgetting (classes of tasks 1-4: best
accuracy at any earlier step minus the final one), and the training seconds summed over the
five tasks (the run's clock: extraction, head fits, training, memory; not evaluation), with
the ratio to the family's retrain-all. The feature cache is emptied before each chain, so no
method reuses another's features. Medians over seeds. Resumable: finished runs are reused.

    python bench/continual.py                                    # 3 seeds, both families
    python bench/continual.py --seeds 1 --train-per-class 30 --families probe   # smoke
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from headstart.adapt.lineage import TaskLoader
from headstart.api import fit
from headstart.files import read_json
from headstart.compare import machine_info
from headstart.data.builtins import FASHION_CLASSES
from headstart.model_io import load_model
from headstart.pipeline import load

FAMILIES = {"probe": ("head", "retrain-all"), "fine-tuned": ("rehearsal", "lwf", "naive", "retrain-all")}


def class_order(seed: int) -> list[str]:
    classes = list(FASHION_CLASSES)
    return classes if seed == 0 else [classes[i] for i in np.random.default_rng(seed).permutation(len(classes))]


def settings(family: str, seed: int, args) -> dict:
    common = dict(seed=seed, max_eval=args.max_eval, explain_examples=0, extract_engine="torch",
                  backbone="tf_efficientnet_lite0", batch_size=args.batch_size)
    if family == "probe":
        return {**common, "strategy": "probe", "image_size": args.image_size, "train_per_class": args.train_per_class}
    return {**common, "strategy": "lp-ft", "image_size": args.ft_image_size, "epochs": args.ft_epochs,
            "train_per_class": args.ft_train_per_class}


def run_once(out: Path, **config) -> dict:
    """One fit (or continuation), reused when a finished run is already there (resumable)."""
    if not (out / "summary.json").exists():
        shutil.rmtree(out, ignore_errors=True)
        fit("fashion-mnist", out=str(out), **config)
    return read_json(out / "summary.json")


def chain(family: str, method: str, seed: int, args, work: Path) -> list[Path]:
    order = class_order(seed)
    tasks = [order[2 * k:2 * k + 2] for k in range(5)]
    base = settings(family, seed, args)
    shutil.rmtree(Path(os.environ["HEADSTART_CACHE"]) / "features", ignore_errors=True)
    runs = []
    for k, task in enumerate(tasks):
        out = work / f"{family}-{method}-s{seed}" / f"task{k + 1}"
        if method == "retrain-all":  # validation and test as large per class as the lineage's
            run_once(out, classes=",".join(c for t in tasks[:k + 1] for c in t),
                     **{**base, "max_eval": args.max_eval * (k + 1)})
        elif k == 0:  # the plain first fit, shared by the family's continual methods
            out = work / f"{family}-task1-s{seed}"
            run_once(out, classes=",".join(task), **base)
        else:
            run_once(out, classes=",".join(task), from_run=str(runs[-1]), continual=method,
                     memory_per_class=args.memory_per_class, **base)
        runs.append(out)
    return runs


def step_accuracies(run: Path) -> dict[str, float]:
    """Each class's test accuracy after this step (class-incremental, the run's own test)."""
    s = read_json(run / "summary.json")
    return {c: v["recall"] for c, v in s["per_class"].items() if v["support"]}


def shared_test_accuracy(run: Path, lineage_run: Path) -> dict[str, float]:
    """`run`'s model on the test items of `lineage_run`'s lineage (all five tasks), per class."""
    tasks = read_json(lineage_run / "continual.json")["tasks"]
    model, meta = load_model(run)
    test = TaskLoader(load).part(tasks, "test", meta["classes"])
    predicted = model.logits(model.prepare(test)).argmax(1).numpy()
    return {c: float((predicted[test.labels == k] == k).mean()) for k, c in enumerate(meta["classes"])
            if (test.labels == k).any()}


def chain_figures(runs: list[Path], lineage_run: Path, order: list[str]) -> dict:
    steps = [step_accuracies(r) for r in runs]
    final = shared_test_accuracy(runs[-1], lineage_run)
    old = order[:8]  # the classes of tasks 1-4
    forgetting = [max(s[c] for s in steps[:-1] if c in s) - steps[-1][c] for c in old]
    train = [read_json(r / "summary.json")["train_seconds"] for r in runs]
    wall = [read_json(r / "summary.json")["wall_seconds"] for r in runs]
    return {"average_accuracy": float(np.mean(list(final.values()))), "per_class": final,
            "average_forgetting": float(np.mean(forgetting)), "train_seconds": float(sum(train)),
            "train_seconds_per_task": train, "wall_seconds": float(sum(wall)), "runs": [str(r) for r in runs]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--families", default="probe,fine-tuned")
    p.add_argument("--train-per-class", type=int, default=200)
    p.add_argument("--max-eval", type=int, default=100, help="val and test items per task (cap)")
    p.add_argument("--image-size", type=int, default=64, help="the probe family's input size")
    p.add_argument("--ft-image-size", type=int, default=64)
    p.add_argument("--ft-epochs", type=int, default=1)
    p.add_argument("--ft-train-per-class", type=int, default=100, help="the fine-tuned family's (it is 10x dearer)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--memory-per-class", type=int, default=20)
    p.add_argument("--work", default="bench/runs/continual")
    p.add_argument("--results", default="bench/results/continual.json")
    args = p.parse_args(argv)
    os.environ.setdefault("HEADSTART_QUIET", "1")
    os.environ.setdefault("HEADSTART_CACHE", str(Path(args.work) / "cache"))
    work, path = Path(args.work), Path(args.results)
    started = time.perf_counter()
    done = json.loads(path.read_text()).get("chains", {}) if path.exists() else {}
    for family in [f for f in args.families.split(",") if f]:
        for seed in range(args.seeds):
            for method in FAMILIES[family]:
                key = f"{family}/{method}/{seed}"
                if key in done:
                    continue
                print(f"{key} ...", flush=True)
                runs = chain(family, method, seed, args, work)
                # the same test items for every method: the lineage of the family's first method
                lineage = runs[-1] if method != "retrain-all" else chain(family, FAMILIES[family][0], seed, args,
                                                                          work)[-1]
                done[key] = {**chain_figures(runs, lineage, class_order(seed)), "class_order": class_order(seed)}
                _write(path, args, done, started)
    _write(path, args, done, started)
    print(json.dumps(_summary(done, args), indent=1))
    return 0


def _summary(done: dict, args) -> dict:
    table = {}
    for family, methods in FAMILIES.items():
        ref = [done[k]["train_seconds"] for k in done if k.startswith(f"{family}/retrain-all/")]
        for method in methods:
            rows = [done[k] for k in done if k.startswith(f"{family}/{method}/")]
            if not rows:
                continue
            median = lambda key: statistics.median(r[key] for r in rows)  # noqa: E731
            table[f"{family}/{method}"] = {
                "seeds": len(rows), "average_accuracy": median("average_accuracy"),
                "average_forgetting": median("average_forgetting"), "train_seconds": median("train_seconds"),
                "wall_seconds": median("wall_seconds"),
                "continuation_seconds": statistics.median(sum(r["train_seconds_per_task"][1:]) for r in rows),
                "last_task_seconds": statistics.median(r["train_seconds_per_task"][-1] for r in rows),
                "time_vs_retrain_all": median("train_seconds") / statistics.median(ref) if ref else None,
                "accuracy_vs_retrain_all": _paired_gap(done, family, method)}
    return table


def _paired_gap(done: dict, family: str, method: str) -> float | None:
    """Median over seeds of (method - retrain-all) average accuracy, seed by seed (same test items)."""
    gaps = [done[k]["average_accuracy"] - done[f"{family}/retrain-all/{k.rsplit('/', 1)[1]}"]["average_accuracy"]
            for k in done if k.startswith(f"{family}/{method}/")
            and f"{family}/retrain-all/{k.rsplit('/', 1)[1]}" in done]
    return statistics.median(gaps) if gaps else None


def _write(path: Path, args, done: dict, started: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    load_avg = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    path.write_text(json.dumps({
        "benchmark": "continual", "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python " + " ".join(["bench/continual.py", *sys.argv[1:]]), "settings": vars(args),
        "machine": machine_info(), "uptime": load_avg, "elapsed_seconds": round(time.perf_counter() - started, 1),
        "summary": _summary(done, args), "chains": done}, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
