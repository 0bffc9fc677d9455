"""Benchmark: headstart against fastai's vision_learner + fine_tune, same data, split and backbone.

Both sides train timm's tf_efficientnet_lite0 from the same offline ImageNet weights (headstart's
packaged ones: fastai's timm path would download them, and this machine has no network) on the
identical train/val/test images of headstart's own seeded split, on the same machine, in the
same run. fastai runs exactly as its docs show: vision_learner(dls, arch, metrics=accuracy) with
Resize(size) item transforms, aug_transforms() batch transforms, batch size 64, then
learn.fine_tune(epochs) with its defaults (1 frozen epoch, base_lr 2e-3, then `epochs` unfrozen).

The target is fastai's own final validation accuracy; fastai's time is its total training seconds
(validation excluded); headstart's time is the training seconds at its first validation
evaluation reaching that accuracy. Speed-up = fastai seconds / headstart seconds. Each seed runs
fastai and headstart back to back on the same split, alternating which goes first.

    pip install -e '.[bench]'
    python bench/vs_fastai.py --dataset elpv --image-size 128 --epochs 1 --seeds 3 --max-eval 500
    python bench/vs_fastai.py --dataset elpv --train-per-class 10 --image-size 64 --seeds 1 \
        --max-eval 40 --out /tmp/vs_fastai --results /tmp/vs_fastai.json        # smoke run
"""
from __future__ import annotations

import os

os.environ.setdefault("HEADSTART_QUIET", "1")  # before headstart reads it

import argparse
import json
import math
import statistics
import sys
import time
import warnings
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

from headstart.compare import machine_info, time_to_target
from headstart.config import FitConfig
from headstart.data import make_splits
from headstart.modalities import load_data
from headstart.pipeline import fit
from headstart.records import read_json, read_metrics
from headstart.zoo import get_backbone

BACKBONE = "tf_efficientnet_lite0"
ARMS = ("probe", "lp-ft")

try:
    import fastai
    import fastai.vision.learner as fastai_learner
    from fastai.vision.all import (Callback, CategoryBlock, DataBlock, ImageBlock, IndexSplitter,
                                   Recorder, Resize, accuracy, aug_transforms, noop, set_seed,
                                   vision_learner)
except ImportError as error:  # fastai is an optional, benchmark-only dependency
    sys.exit(f"bench/vs_fastai.py needs fastai ({error}): pip install -e '.[bench]'")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- fastai side

class _PrebuiltTimm:
    """Stands in for the `timm` module inside fastai.vision.learner for one call.

    vision_learner(dls, "<timm name>") calls timm.create_model(name, pretrained=True,
    num_classes=0, in_chans=3), which would download the weights. This hands it the model
    headstart built instead: the same architecture, headless, with the packaged ImageNet
    weights already loaded. Everything else (TimmBody, fastai's head, normalisation from the
    model's pretrained config, default_split, freeze) is vision_learner's own code path.
    """

    def __init__(self, model: torch.nn.Module, arch: str):
        self.model, self.arch = model, arch

    def create_model(self, arch, pretrained=True, num_classes=0, in_chans=3, **kwargs):
        if arch != self.arch or num_classes != 0 or in_chans != 3 or kwargs:
            raise RuntimeError(f"unexpected timm.create_model({arch!r}, num_classes={num_classes}, "
                               f"in_chans={in_chans}, {kwargs})")
        if not pretrained:
            raise RuntimeError("the prebuilt model is pretrained; vision_learner asked for random weights")
        return self.model


@contextmanager
def prebuilt_timm(model: torch.nn.Module, arch: str):
    saved = fastai_learner.timm
    fastai_learner.timm = _PrebuiltTimm(model, arch)
    try:
        yield
    finally:
        fastai_learner.timm = saved


class EpochClock(Callback):
    """Cumulative training seconds (before_train..after_train, validation excluded) and the
    validation metrics after every epoch, across both fit_one_cycle calls of fine_tune."""

    order = Recorder.order + 1  # after_epoch runs after the Recorder has filled in its values

    def __init__(self):
        self.seconds, self.curve, self.phase, self._started = 0.0, [], None, None

    def before_fit(self):
        # fine_tune: fit_one_cycle after freeze() (body's frozen_idx > 0), then after unfreeze()
        self.phase = "frozen" if getattr(self.learn.opt, "frozen_idx", 0) else "unfrozen"

    def before_train(self):
        self._started = time.perf_counter()

    def after_train(self):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - self._started

    def after_epoch(self):
        names = list(self.recorder.metric_names[1:-1])  # drop 'epoch' and 'time'
        values = dict(zip(names, self.recorder.values[-1]))
        row = {"phase": self.phase, "epoch": len(self.curve) + 1,
               "train_seconds": round(self.seconds, 4),
               "train_loss": float(values["train_loss"]), "val_loss": float(values["valid_loss"]),
               "val_accuracy": float(values["accuracy"])}
        self.curve.append(row)
        log(f"    fastai epoch {row['epoch']} ({row['phase']}): val acc {row['val_accuracy']:.4f} "
            f"at {row['train_seconds']:.1f} train s")


def _as_rgb(image: np.ndarray):
    from PIL import Image
    return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).convert("RGB")


def weights_check(learn, image_size: int, probe_images: np.ndarray) -> dict:
    """The fastai body against a fresh headstart backbone: same state dict, same features."""
    reference = get_backbone(BACKBONE, pretrained=True, image_size=image_size)
    body = learn.model[0].model  # fastai's TimmBody.model: the prebuilt timm network
    mine, theirs = body.state_dict(), reference.model.state_dict()
    same_weights = mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k].to(mine[k].device))
                                                         for k in mine)
    pre = reference.preprocessing
    x = torch.from_numpy(probe_images).permute(0, 3, 1, 2).float().div(255)
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
    x = (x - torch.tensor(pre.mean).view(1, 3, 1, 1)) / torch.tensor(pre.std).view(1, 3, 1, 1)
    x = torch.nn.functional.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True)
    was_training = learn.model.training
    learn.model.eval()
    with torch.no_grad():
        device = next(learn.model.parameters()).device
        pooled = learn.model[0](x.to(device)).mean((2, 3)).cpu()  # TimmBody gives the feature map
        expected = reference.eval()(x)
    learn.model.train(was_training)
    return {"headstart_weights": reference.weights, "state_dict_equal": bool(same_weights),
            "max_feature_difference": float((pooled - expected).abs().max())}


def run_fastai(splits, *, seed: int, image_size: int, epochs: int, batch_size: int, out: Path) -> dict:
    train, val, test = splits.train, splits.val, splits.test
    images = np.concatenate([train.images, val.images, test.images])
    labels = np.concatenate([train.labels, val.labels, test.labels])
    n_train, n_val = len(train), len(val)
    num_classes = len(train.classes)
    if n_train < batch_size:
        # fastai's training loader drops the last partial batch: it would take no step at all
        raise SystemExit(f"{n_train} training images is less than one fastai batch of {batch_size} "
                         f"(fastai drops the last partial batch); pass a smaller --bs or more images")

    set_seed(seed)
    block = DataBlock(
        blocks=(ImageBlock, CategoryBlock(vocab=list(range(num_classes)))),
        get_x=lambda i: _as_rgb(images[i]), get_y=lambda i: int(labels[i]),
        splitter=IndexSplitter(list(range(n_train, n_train + n_val))),
        item_tfms=Resize(image_size), batch_tfms=aug_transforms())
    dls = block.dataloaders(list(range(n_train + n_val)), bs=batch_size)

    backbone = get_backbone(BACKBONE, pretrained=True, image_size=image_size)
    out.mkdir(parents=True, exist_ok=True)
    with prebuilt_timm(backbone.model, BACKBONE):
        learn = vision_learner(dls, BACKBONE, metrics=accuracy, pretrained=True, path=out)
    learn.logger = noop  # the per-epoch table: EpochClock logs instead
    normalize = [t for t in dls.after_batch.fs if type(t).__name__ == "Normalize"]
    check = weights_check(learn, image_size, val.images[:4])
    clock = EpochClock()
    learn.add_cb(clock)

    with learn.no_bar():
        learn.fine_tune(epochs)
        learn.remove_cb(clock)  # validate() also fires after_epoch
        test_dl = dls.test_dl(list(range(n_train + n_val, len(images))), with_labels=True)
        test_loss, test_accuracy = learn.validate(dl=test_dl)
    return {
        "epochs": {"frozen": 1, "unfrozen": epochs},
        "batch_size": batch_size,
        "steps_per_epoch": n_train // batch_size,
        "num_workers": dls.train.fake_l.num_workers,  # fastai's default: min(16, CPU count)
        "final_val_accuracy": clock.curve[-1]["val_accuracy"],
        "train_seconds": round(clock.seconds, 4),
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "curve": clock.curve,
        "normalize": [{"mean": t.mean.flatten().tolist(), "std": t.std.flatten().tolist()} for t in normalize],
        "weights": backbone.weights,
        "weights_check": check,
        "sizes": {"train": n_train, "val": n_val, "test": len(test)},
    }


# --------------------------------------------------------------------------- headstart side

def run_headstart(data, splits, arm: str, *, seed: int, image_size: int, train_per_class, max_eval: int,
                  out: Path) -> dict:
    result = fit(FitConfig(data=data.name, backbone=BACKBONE, strategy=arm, image_size=image_size, seed=seed,
                           train_per_class=train_per_class, max_eval=max_eval, out=str(out)),
                 data=data, use_feature_cache=False)
    saved = read_json(result.run_dir / "splits.json")
    if any(saved[part] != splits.indices[part] for part in ("train", "val", "test")):
        raise RuntimeError(f"headstart's {arm} run used a different split than fastai's")
    rows = read_metrics(result.run_dir)
    val_rows = [r for r in rows if r["split"] == "val"]
    return {
        "arm": arm,
        "run_dir": str(result.run_dir),
        "test_accuracy": result.summary["test_accuracy"],
        "train_seconds": result.summary["train_seconds"],
        "best_val_accuracy": max((r["accuracy"] for r in val_rows), default=None),
        "weights": result.summary["weights"],
        "curve": [{"epoch": r["epoch"], "train_seconds": r["train_seconds"], "val_accuracy": r["accuracy"]}
                  for r in val_rows],
        "rows": rows,
    }


# --------------------------------------------------------------------------- the benchmark

def run_seed(data, seed: int, args, out: Path) -> dict:
    splits = make_splits(data, seed=seed, train_per_class=args.train_per_class, max_eval=args.max_eval)
    log(f"seed {seed}: {len(splits.train)} train / {len(splits.val)} val / {len(splits.test)} test "
        f"({', '.join(data.classes)})")

    def fastai_run():
        log("  fastai vision_learner + fine_tune")
        return run_fastai(splits, seed=seed, image_size=args.image_size, epochs=args.epochs,
                          batch_size=args.bs, out=out / "fastai")

    def headstart_runs():
        runs = {}
        for arm in ARMS:
            log(f"  headstart {arm}")
            runs[arm] = run_headstart(data, splits, arm, seed=seed, image_size=args.image_size,
                                      train_per_class=args.train_per_class, max_eval=args.max_eval,
                                      out=out / arm)
        return runs

    # alternate which side runs first, so warm caches favour neither on the median
    if seed % 2 == 0:
        fastai_result, headstart_result, first = fastai_run(), headstart_runs(), "fastai"
    else:
        headstart_result, first = headstart_runs(), "headstart"
        fastai_result = fastai_run()

    target = fastai_result["final_val_accuracy"]
    for run in headstart_result.values():
        seconds = time_to_target(run["rows"], target)
        run["time_to_fastai_val_accuracy"] = seconds
        run["speedup"] = (fastai_result["train_seconds"] / seconds if seconds else
                          (math.inf if seconds == 0 else None))
        del run["rows"]
    return {"seed": seed, "first": first, "target_val_accuracy": target, "fastai": fastai_result,
            "headstart": headstart_result, "split_sizes": {k: len(v) for k, v in splits.indices.items()}}


def median_row(seeds: list[dict]) -> dict:
    def med(values):
        return statistics.median(values) if values else None

    row = {"fastai": {k: med([s["fastai"][k] for s in seeds])
                      for k in ("final_val_accuracy", "train_seconds", "test_accuracy")},
           "headstart": {}}
    for arm in ARMS:
        runs = [s["headstart"][arm] for s in seeds]
        times = [r["time_to_fastai_val_accuracy"] for r in runs]
        reached = [t for t in times if t is not None]
        # "never" counts as infinitely slow (speed-up 0), so the median stays honest
        median_time = med([math.inf if t is None else t for t in times])
        median_speedup = med([0.0 if r["speedup"] is None else r["speedup"] for r in runs])
        row["headstart"][arm] = {
            "time_to_fastai_val_accuracy": None if median_time == math.inf else median_time,
            "speedup": median_speedup if median_speedup else None,
            "reached": f"{len(reached)}/{len(runs)}",
            "test_accuracy": med([r["test_accuracy"] for r in runs]),
            "best_val_accuracy": med([r["best_val_accuracy"] for r in runs if r["best_val_accuracy"] is not None]),
        }
    return row


def table(record: dict) -> str:
    a = record["args"]
    lines = [f"\n### {a['dataset']} @{a['image_size']}px — fastai fine_tune({a['epochs']}) vs headstart, "
             f"{BACKBONE}, {len(record['seeds'])} seed(s)\n",
             "| seed | fastai epochs | fastai final val acc | fastai train s | fastai test acc | "
             "headstart arm | time to fastai's val acc | speed-up | headstart test acc |",
             "|---|---|---|---|---|---|---|---|---|"]

    def when(run):
        t = run["time_to_fastai_val_accuracy"]
        if t is None:
            best = run.get("best_val_accuracy")
            return f"never (best val {best:.3f})" if best is not None else "never"
        return f"{t:.1f} s"

    def speed(run):
        return f"{run['speedup']:.1f}x" if run.get("speedup") else "—"

    epochs = f"1 frozen + {a['epochs']}"
    for s in record["seeds"]:
        f = s["fastai"]
        for arm in ARMS:
            h = s["headstart"][arm]
            lines.append(f"| {s['seed']} | {epochs} | {f['final_val_accuracy']:.3f} | {f['train_seconds']:.1f} | "
                         f"{f['test_accuracy']:.3f} | {arm} | {when(h)} | {speed(h)} | {h['test_accuracy']:.3f} |")
    m = record["median"]
    f = m["fastai"]
    for arm in ARMS:
        h = m["headstart"][arm]
        reach = "" if h["reached"].split("/")[0] == h["reached"].split("/")[1] else f", reached in {h['reached']}"
        lines.append(f"| **median** | {epochs} | {f['final_val_accuracy']:.3f} | {f['train_seconds']:.1f} | "
                     f"{f['test_accuracy']:.3f} | {arm} | {when(h)}{reach} | {speed(h)} | {h['test_accuracy']:.3f} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="elpv")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=1, help="fastai fine_tune epochs after its 1 frozen epoch")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--train-per-class", type=int)
    p.add_argument("--max-eval", type=int, default=500)
    p.add_argument("--bs", type=int, default=64, help="fastai batch size (its default: 64)")
    p.add_argument("--out", default="bench/runs/vs_fastai")
    p.add_argument("--results", default="bench/results/vs_fastai.json")
    args = p.parse_args()

    started = time.perf_counter()
    out = Path(args.out) / f"{args.dataset}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    data = load_data(args.dataset)
    seeds = [run_seed(data, seed, args, out / f"seed{seed}") for seed in range(args.seeds)]

    import fastcore
    import timm
    machine = machine_info()
    machine["versions"].update({"fastai": fastai.__version__, "fastcore": fastcore.__version__,
                                "timm": timm.__version__})
    record = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "argv": sys.argv,
              "args": vars(args), "backbone": BACKBONE, "machine": machine, "run_dir": str(out),
              "seeds": seeds, "median": median_row(seeds),
              "bench_wall_seconds": round(time.perf_counter() - started, 1)}
    print(table(record), flush=True)
    path = Path(args.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=str))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
