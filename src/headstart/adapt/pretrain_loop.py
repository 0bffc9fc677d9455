"""The pre-training loop: epochs of SSL steps inside a budget, checkpointed so a killed run resumes.

Read it top to bottom: restore the newest checkpoint if resuming; then for each epoch, shuffle
(a function of seed and epoch, so a resumed run replays the same epochs), take steps with a
warm-up + cosine learning rate, log the loss of each step to metrics.jsonl, stop before a step
would cross the budget, and checkpoint at the end of the epoch. The checkpoint is two files per
epoch, both written aside and renamed: the model's weights as safetensors, and the optimizer's
state with the loop's counters via torch.save, read back with weights_only=True (tensors and
numbers only: loading never runs code). The state file is written last, so an epoch counts as
saved only once both are whole.
"""
from __future__ import annotations

import copy
import io
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from headstart.errors import HeadstartError
from headstart.files import atomic_path, atomic_write_bytes, atomic_write_text, json_default
from headstart.log import progress_bar
from headstart.train.loop import kill_hook_for_tests  # the suite's SIGKILL hook, shared with `fit`

CHECKPOINTS = "checkpoint"
PHASE = "pretrain"  # HEADSTART_KILL_AFTER=pretrain:EPOCH kills the run after that epoch's checkpoint
TRIAL_STEPS = 3     # steps timed (after one warm-up step) to plan epochs inside a budget


@dataclass
class LoopPlan:
    epochs: int
    batch_size: int
    steps_per_epoch: int
    seed: int
    strategy: str                     # "pretrain:simclr", for metrics rows
    budget_seconds: float | None = None
    spent_before: float = 0.0         # seconds the budget already paid (the timing trial)

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


def make_optimizer(model, method, *, lr: float | None, continued: bool) -> torch.optim.Optimizer:
    """AdamW: the method's rate for new heads (and a randomly initialised backbone); a backbone
    that starts from pretrained weights at the method's lower continued rate, in proportion."""
    head_lr = lr or method.lr
    backbone_lr = head_lr * (method.continued_lr / method.lr if continued else 1.0)
    groups = [{"params": model.head_parameters(), "lr": head_lr},
              {"params": model.backbone_parameters(), "lr": backbone_lr}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=method.weight_decay)
    for group in optimizer.param_groups:
        group["peak_lr"] = group["lr"]
    return optimizer


def lr_factor(step: int, total: int) -> float:
    """Linear warm-up over the first tenth (at most 200 steps), then cosine to 1 % of the peak."""
    warm = max(1, min(200, total // 10))
    if step < warm:
        return (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def make_loader(model, dataset, batch_size: int, seed: int, epoch: int) -> DataLoader:
    # Workers cost more than they save on a few cores with the pool already decoded in memory.
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True, generator=generator,
                      collate_fn=model.collate, num_workers=0)


def _seed_augmentations(seed: int, epoch: int) -> None:
    # Views and masks draw from the global generators (torchvision: torch; lightly's blur: numpy).
    torch.manual_seed(seed * 100_003 + epoch)
    np.random.seed((seed * 100_003 + epoch) % 2**32)
    random.seed(seed * 100_003 + epoch)


def step_seconds(model, method, dataset, batch_size: int, *, lr: float | None, continued: bool,
                 seed: int) -> float:
    """Median seconds of one step, measured on a copy (the real model starts untouched)."""
    trial = copy.deepcopy(model).train()
    optimizer = make_optimizer(trial, method, lr=lr, continued=continued)
    _seed_augmentations(seed, -1)
    batches = iter(make_loader(trial, dataset, batch_size, seed, -1))
    times = []
    for _ in range(TRIAL_STEPS + 1):  # the first step pays one-off costs (allocations, kernels)
        started = time.perf_counter()
        trial.loss(next(batches)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - started)
    return float(np.median(times[1:]))


def train(model, optimizer, dataset, plan: LoopPlan, run_dir: Path, *, resume: bool, label: str) -> dict:
    """Pre-train `model` in place; returns what happened (steps, epochs, seconds, losses)."""
    checkpoints = Path(run_dir) / CHECKPOINTS
    rows: list[dict] = []
    state = {"epoch": 0, "step": 0, "train_seconds": 0.0}
    if resume and (saved := latest_checkpoint(checkpoints)) is not None:
        state = load_checkpoint(saved, model, optimizer)
        rows = read_rows(run_dir)[:state["metric_rows"]]
        atomic_write_text(Path(run_dir) / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    resumed_from = state["epoch"] if state["step"] else None
    epoch, step, before = state["epoch"], state["step"], state["train_seconds"]
    started, stop_reason, times, save_seconds = time.perf_counter(), "completed", [], 1.0
    elapsed = lambda: before + time.perf_counter() - started  # noqa: E731
    model.train()
    with progress_bar(label, total=plan.total_steps) as advance:
        advance(step)
        while epoch < plan.epochs and stop_reason == "completed":
            _seed_augmentations(plan.seed, epoch)
            losses = []
            for batch in make_loader(model, dataset, plan.batch_size, plan.seed, epoch):
                if _over_budget(plan, elapsed(), times, save_seconds):
                    stop_reason = "budget"
                    break
                t0 = time.perf_counter()
                for group in optimizer.param_groups:
                    group["lr"] = group["peak_lr"] * lr_factor(step, plan.total_steps)
                loss = model.loss(batch)
                if not torch.isfinite(loss.detach()):
                    raise HeadstartError(f"the pre-training loss became {loss.item()} at epoch {epoch + 1}, step "
                                         f"{step + 1}; training stopped", hint="lower --lr; --resume continues from "
                                         "the last epoch's checkpoint")
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                model.after_step(step, plan.total_steps)
                times.append(time.perf_counter() - t0)
                losses.append(float(loss.detach()))
                rows.append(_row(plan, "train", step, epoch + len(losses) / plan.steps_per_epoch, elapsed(),
                                 losses[-1], lr=optimizer.param_groups[-1]["lr"]))
                _append(run_dir, rows[-1])
                advance(1)
            if len(losses) == plan.steps_per_epoch:  # a whole epoch: its mean loss, and a checkpoint
                epoch += 1
                rows.append(_row(plan, "epoch", step, epoch, elapsed(), float(np.mean(losses))))
                _append(run_dir, rows[-1])
                t0 = time.perf_counter()
                save_checkpoint(checkpoints, model, optimizer, epoch=epoch, step=step,
                                train_seconds=elapsed(), metric_rows=len(rows))
                save_seconds = time.perf_counter() - t0
                kill_hook_for_tests(PHASE, epoch)
    epoch_rows = [r for r in rows if r["split"] == "epoch"]
    return {"steps": step, "epochs": epoch, "train_seconds": round(elapsed(), 3), "stop_reason": stop_reason,
            "resumed_from_epoch": resumed_from, "first_loss": rows[0]["loss"] if rows else None,
            "final_loss": epoch_rows[-1]["loss"] if epoch_rows else (rows[-1]["loss"] if rows else None),
            "epoch_losses": [r["loss"] for r in epoch_rows]}


def _over_budget(plan: LoopPlan, elapsed: float, times: list[float], save_seconds: float) -> bool:
    # A promise, not a hope: stop before a step (plus the closing save) would cross the budget.
    if plan.budget_seconds is None:
        return False
    next_step = float(np.median(times[-20:])) if times else 0.0
    return plan.spent_before + elapsed + next_step + 2 * save_seconds > plan.budget_seconds


def _row(plan: LoopPlan, split: str, step: int, epoch: float, seconds: float, loss: float, **extra) -> dict:
    return {"strategy": plan.strategy, "phase": PHASE, "step": step, "epoch": round(epoch, 4),
            "train_seconds": round(seconds, 4), "split": split, "loss": loss, **extra}


def _append(run_dir: Path, row: dict) -> None:
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(run_dir) / "metrics.jsonl", "a") as f:
        f.write(json.dumps(row, default=json_default) + "\n")


def read_rows(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ----------------------------------------------------------------------------- checkpoints

def save_checkpoint(folder: Path, model, optimizer, **counters) -> None:
    from safetensors.torch import save_model

    name = f"epoch-{counters['epoch']:04d}"
    with atomic_path(folder / f"{name}.safetensors") as tmp:
        save_model(model, str(tmp))  # shared tensors (BYOL's none, MLM's tied embeddings) handled
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), **counters}, buffer)
    atomic_write_bytes(folder / f"{name}.pt", buffer.getvalue())  # last: the epoch is saved once this exists
    for old in folder.glob("epoch-*"):
        if not old.name.startswith(name):
            old.unlink(missing_ok=True)


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest epoch whose two files are both whole (the state file is written last)."""
    states = sorted(p for p in folder.glob("epoch-*.pt") if p.with_suffix(".safetensors").is_file())
    return states[-1] if states else None


def load_checkpoint(path: Path, model, optimizer) -> dict:
    from safetensors.torch import load_model

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        load_model(model, str(path.with_suffix(".safetensors")))
    except Exception as e:  # a foreign or damaged file: say which and how to go on
        raise HeadstartError(f"cannot read the checkpoint {path}: {type(e).__name__}: {e}",
                             hint="delete the run folder's checkpoint/ to start over, or run without --resume") from e
    optimizer.load_state_dict(payload["optimizer"])
    for group in optimizer.param_groups:  # load_state_dict restores the saved groups' keys, peak_lr included
        group.setdefault("peak_lr", group["lr"])
    return {k: payload[k] for k in ("epoch", "step", "train_seconds", "metric_rows")}
