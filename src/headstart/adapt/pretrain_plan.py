"""What `headstart pretrain` plans before it hands the model to the one training loop.

The loop itself (train/loop.py, without labels) owns the schedule, the NaN stop, the budget,
the per-epoch checkpoint (RUN/checkpoint/pretrain.pt, resumable after a kill) and metrics.jsonl
through the Recorder: each step's loss (split "train") and each whole epoch's mean (split
"epoch"). Here: the optimizer's groups, the epochs and batch (with --budget, as many whole
epochs as fit, from a few timed steps, refused before any file is written when not even one
does), and what the loop's outcome means for the summary.
"""
from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from headstart.errors import HeadstartError
from headstart.records import Recorder
from headstart.train.batches import make_loader
from headstart.train.loop import TrainPlan, train_model
from headstart.train.optim import build_optimizer

CHECKPOINTS = "checkpoint"  # RUN/checkpoint/, removed once the run is finished
PHASE = "pretrain"  # the loop's phase: metrics rows, checkpoint/pretrain.pt, HEADSTART_KILL_AFTER=pretrain:EPOCH
SCHEDULE = "cosine"  # the house schedule: a short linear warm-up, then cosine to ~0
TRIAL_STEPS = 3      # steps timed (after one warm-up step) to plan epochs inside a budget
SAVE_RESERVE = 0.05  # share of --budget kept for the closing save, report and registration
PLANNING_MARGIN = 2.0  # seconds: start-up of the loop (an Accelerator, the loader) beside the epochs


@dataclass
class PretrainPlan:
    """Recorded in config.yaml as "plan": a resumed run replays the same epochs and batches."""
    epochs: int
    batch_size: int
    steps_per_epoch: int
    seed: int
    strategy: str  # "pretrain:simclr", the metrics rows' and the summary's strategy

    def record(self) -> dict:
        return asdict(self)


def strategy_of(method) -> str:
    """The run's strategy in its metrics rows and summary: "pretrain:simclr"."""
    return f"pretrain:{method.name}"


def param_groups(model, method, *, lr: float | None, continued: bool) -> list[dict]:
    """The method's rate for new heads (and a randomly initialised backbone); a backbone that
    starts from pretrained weights at the method's lower continued rate, in proportion."""
    head_lr = lr or method.lr
    backbone_lr = head_lr * (method.continued_lr / method.lr if continued else 1.0)
    return [{"params": model.head_parameters(), "lr": head_lr},
            {"params": model.backbone_parameters(), "lr": backbone_lr}]


def loop_plan(plan: PretrainPlan, method, model, budget_seconds: float | None) -> TrainPlan:
    """The house loop's plan for a pre-training: no labels, the model's forward is its loss.
    The loop must end SAVE_RESERVE before --budget: what follows (save, report, zoo) needs it."""
    return TrainPlan(epochs=plan.epochs, optimizer="adamw", schedule=SCHEDULE, weight_decay=method.weight_decay,
                     batch_size=plan.batch_size, seed=plan.seed, phase=PHASE, label_smoothing=0.0,
                     budget_seconds=None if budget_seconds is None else budget_seconds * (1 - SAVE_RESERVE),
                     labelled=False, collate=model.collate, after_step=model.after_step,
                     loss_name="pre-training", diverged_hint="lower --lr")


def pretrain(model, dataset, plan: PretrainPlan, method, recorder: Recorder, run_dir: Path, *, lr: float | None,
             continued: bool, budget_seconds: float | None, resume: bool) -> dict:
    """Pre-train `model` in place through the house loop; returns the summary's figures."""
    # views and masks draw from numpy's and Python's global generators too (lightly's blur and
    # solarization); the loop seeds torch's, and its checkpoint carries all three over a --resume
    np.random.seed(plan.seed)
    random.seed(plan.seed)
    result = train_model(model, param_groups(model, method, lr=lr, continued=continued), dataset, None,
                         loop_plan(plan, method, model, budget_seconds), recorder,
                         checkpoint_dir=Path(run_dir) / CHECKPOINTS, resume=resume)
    steps = [r for r in recorder.rows if r["split"] == "train"]
    epochs = [r for r in recorder.rows if r["split"] == "epoch"]
    final = epochs[-1] if epochs else (steps[-1] if steps else None)
    return {"steps": recorder.step, "epochs": math.floor(result.epochs_run + 1e-9),
            "train_seconds": round(recorder.train_seconds, 3), "stop_reason": result.stop_reason,
            "resumed_from_epoch": result.resumed_from_epoch, "first_loss": steps[0]["loss"] if steps else None,
            "final_loss": final["loss"] if final else None, "epoch_losses": [r["loss"] for r in epochs]}


def new_plan(config, method, model, dataset, recorder: Recorder, *, continued: bool) -> PretrainPlan:
    """Epochs and batch of a new run: --epochs (else the method's), and with --budget no more
    whole epochs than fit in what is left of it, judged from a few timed steps."""
    batch = max(2, min(config.batch_size or method.batch_size, len(dataset)))
    per_epoch = len(dataset) // batch
    plan = PretrainPlan(epochs=config.epochs or method.epochs, batch_size=batch, steps_per_epoch=per_epoch,
                        seed=config.seed, strategy=strategy_of(method))
    if config.budget_seconds is None:
        return plan
    step = step_seconds(model, method, dataset, batch, lr=config.lr, continued=continued, seed=config.seed)
    epoch_seconds = per_epoch * step
    spent = recorder.wall_seconds  # the command so far: loading, building, the timed steps
    usable = config.budget_seconds * (1 - SAVE_RESERVE) - spent - PLANNING_MARGIN
    affordable = int(usable // (epoch_seconds * 1.05)) if usable > 0 else 0
    if affordable < 1:
        minimum = math.ceil((spent + PLANNING_MARGIN + epoch_seconds * 1.05) / (1 - SAVE_RESERVE))
        raise HeadstartError(
            f"--budget {config.budget_seconds:g}s is too short for one epoch of {method.name} on {len(dataset)} "
            f"items: an epoch is {per_epoch} steps of {step:.2f} s here (measured), about {epoch_seconds:.0f} s",
            hint=f"pass --budget {_duration(minimum)} or more, or pre-train on fewer items (--max-items)")
    plan.epochs = min(config.epochs or affordable, affordable)
    return plan


def step_seconds(model, method, dataset, batch_size: int, *, lr: float | None, continued: bool,
                 seed: int) -> float:
    """Median seconds of one step, measured on a copy (the real model starts untouched) on the
    device the loop will train on."""
    from accelerate.utils import send_to_device

    device = "cuda" if torch.cuda.is_available() else "cpu"
    trial = copy.deepcopy(model).to(device).train()
    optimizer = build_optimizer("adamw", param_groups(trial, method, lr=lr, continued=continued),
                                method.weight_decay)
    loader = make_loader(dataset, batch_size, shuffle=True, seed=seed, drop_last=True, collate_fn=model.collate)
    batches = (batch for _ in range(TRIAL_STEPS + 1) for batch in loader)  # a pool of few batches comes round again
    times = []
    for _ in range(TRIAL_STEPS + 1):  # the first step pays one-off costs (allocations, kernels)
        started = time.perf_counter()
        trial(send_to_device(next(batches), device)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return float(np.median(times[1:]))


def _duration(seconds: int) -> str:
    return f"{seconds}s" if seconds < 120 else f"{math.ceil(seconds / 60)}m"
