"""The one training loop, on Hugging Face Accelerate.

Read it top to bottom: build optimizer and schedule, restore a checkpoint if resuming, then
for each epoch: train steps (clock running), evaluate on validation (clock paused), keep the
best weights, checkpoint, stop early on a plateau or at the budget. Works unchanged in one
process or under `torchrun --nproc_per_node 2` (Accelerate reads torchrun's environment).

The same loop trains without labels (`headstart pretrain`, TrainPlan.labelled=False): the loss
is what the model or the objective returns for a batch (objective.py), there is no validation
set, each step's loss is logged and each epoch's mean loss is its evaluation.
"""
from __future__ import annotations

import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs

from ..errors import HeadstartError
from ..log import progress_bar
from ..records import Recorder
from .batches import make_loader
from .. import interrupts
from .checkpoint import load_checkpoint, resumable, save_checkpoint
from .evaluate import predict_logits, score
from .objective import Mixer, check_finite, step_loss
from .optim import build_optimizer, build_schedule, cool_down, still_warming_up
from .plateau import PlateauRule, has_plateaued
from .shares import own_rows_logits, own_share_loader


EARLY_REPLAN_STEPS = 5


@dataclass
class TrainPlan:
    epochs: int
    optimizer: str = "adamw"
    schedule: str = "onecycle"
    weight_decay: float = 0.01
    batch_size: int = 32
    patience: int = 3
    budget_seconds: float | None = None
    evals_per_epoch: int = 1
    mixed_precision: str = "auto"
    label_smoothing: float = 0.1
    seed: int = 0
    phase: str = "train"  # a name for this loop in metrics and checkpoints
    reserve_images: int = 0  # images evaluated after training (the test set), kept inside the budget
    # class imbalance and synthetic samples (decided by the strategy, see label/)
    num_classes: int = 0
    class_weights: tuple[float, ...] | None = None  # a class-weighted loss (mean 1 over samples)
    sample_weights: object = None  # per training item: draw batches in proportion (a balanced sampler)
    mixup: float = 0.0             # share of batches mixed by mixup/cutmix (images only)
    # a baseline's stop rule (train/plateau.py): once validation accuracy plateaus, the rate
    # cools down and the run stops ("plateau"); it replaces `patience`, which stops on a
    # plateau too but at whatever rate it is at. None: patience.
    plateau: PlateauRule | None = None
    # Fine-tuning a pretrained network on little data: its batch-norm layers keep their pretrained
    # running statistics (eval mode; their scale and shift still train). Measured on mnist-5k at
    # 32 px, batch 16: one epoch of train-mode forward passes alone, no weight updated, moved the
    # running statistics far enough to take the probe head from 0.62 to 0.15 validation accuracy
    # (loss 1.5 -> 59), and batch statistics in train mode changed the features 4.7x, so the very
    # first steps trained a different function than the head was fitted on.
    frozen_norm_statistics: bool = False
    # The starting weights' validation loss (a fitted head's): a later state whose loss is above
    # it is never kept, however its accuracy reads (see _better). None: accuracy alone decides.
    max_val_loss: float | None = None
    # What a step computes besides the plain forward pass (adapt/: a domain classifier behind a
    # gradient reversal, distillation from the old model): objective(model, x, y) -> (logits,
    # extra loss or None); the extra is added to the classification loss. Its own parameters,
    # if any, come in the optimizer groups the caller passes. None: logits = model(x).
    # Without labels: objective(model, batch) -> the loss itself; None: loss = model(batch).
    objective: Callable | None = None
    # A loop without labels (self-supervised pre-training, adapt/pretrain_plan.py): batches are
    # whatever the dataset and `collate` make, there is no validation set (val=None), each
    # step's loss is logged (split "train"), each whole epoch's mean loss is its evaluation
    # (split "epoch"), and the last weights are kept (nothing to choose the best by).
    labelled: bool = True
    collate: Callable | None = None       # the loader's collate_fn (None: torch's default)
    after_step: Callable | None = None    # after_step(step, total_steps) after each update (BYOL's target)
    loss_name: str = "training"           # what the NaN stop calls the loss
    diverged_hint: str = "lower the learning rate (--lr), or try --optimizer sgd"


@dataclass
class TrainResult:
    best_val_accuracy: float | None  # None without labels
    epochs_run: float
    stop_reason: str  # completed | early-stop | plateau | budget
    best_epoch: float  # 0 = the starting weights (e.g. the probe's head) were never beaten
    mixed: dict | None = None  # mixup/cutmix: batches, samples, per_class (label index -> samples)
    resumed_from_epoch: int | None = None  # the checkpoint's epoch a --resume continued from


def make_accelerator(mixed_precision: str, any_frozen: bool) -> Accelerator:
    """One Accelerator per loop. DDP is told about unused parameters only when some are
    frozen: that flag costs an extra graph traversal each step, so it is set from the actual
    freeze state rather than always on."""
    if mixed_precision == "auto":
        mixed_precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    try:
        return _accelerator(mixed_precision, any_frozen)
    except ValueError as e:  # Accelerate fixes the precision once per process
        raise HeadstartError(f"this process already trained with another precision than {mixed_precision}: {e}",
                             hint="use one --mixed-precision per process") from e


def _accelerator(mixed_precision: str, any_frozen: bool) -> Accelerator:
    return Accelerator(
        mixed_precision=mixed_precision,
        cpu=not torch.cuda.is_available(),
        # split_batches: a global batch of B is split across ranks, so 2 processes take the
        # same optimisation steps as 1; the seedable sampler makes each epoch's order a
        # function of (seed, epoch), which is what lets --resume replay the same run.
        dataloader_config=DataLoaderConfiguration(split_batches=True, use_seedable_sampler=True),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=any_frozen)],
    )


def train_model(model, param_groups: list[dict], dataset, val, plan: TrainPlan, recorder: Recorder,
                checkpoint_dir: Path | None = None, resume: bool = False,
                initial_val: float | None = None) -> TrainResult:
    """Train `model` (a heads.Classifier) in place; on return it holds the best-validation weights
    (without labels, an adapt/ssl.SSLModel: the last weights).

    dataset: the training Dataset of (input, label), augmented as the modality decided (see
    Modality.training_dataset), or of unlabelled items (plan.labelled=False); val: prepared
    validation data (None without labels). param_groups: optimizer groups with
    their own "lr" (see optim.layerwise_groups). initial_val: validation accuracy of the
    starting weights (a fitted probe head); training must beat it to replace them, so
    fine-tuning can never return something worse than what it started from.
    """
    any_frozen = any(not p.requires_grad for p in model.parameters())
    accelerator = make_accelerator(plan.mixed_precision, any_frozen)
    torch.manual_seed(plan.seed)

    # Keep the batch a multiple of the process count so split_batches divides it evenly.
    batch_size = max(accelerator.num_processes, plan.batch_size - plan.batch_size % accelerator.num_processes)
    # across machines without a shared cache each rank trains on its own rows (train/shares.py)
    own_share = own_share_loader(dataset, batch_size, accelerator, seed=plan.seed,
                                 sample_weights=plan.sample_weights, collate_fn=plan.collate)
    loader = own_share or make_loader(dataset, batch_size, shuffle=True, seed=plan.seed,
                                      drop_last=len(dataset) > batch_size,
                                      sample_weights=plan.sample_weights, collate_fn=plan.collate)
    class_weight = torch.tensor(plan.class_weights, dtype=torch.float32, device=accelerator.device) \
        if plan.class_weights is not None else None
    mixer = Mixer(plan) if plan.mixup > 0 else None
    loss_of = step_loss(plan, class_weight, mixer)
    steps_per_epoch = len(loader)
    optimizer = build_optimizer(plan.optimizer, param_groups, plan.weight_decay)
    scheduler = build_schedule(plan.schedule, optimizer, plan.epochs * steps_per_epoch)
    if own_share is None:
        model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    else:
        model, optimizer = accelerator.prepare(model, optimizer)
    raw_model = accelerator.unwrap_model(model)

    state = {"epoch": 0, "step": 0, "best_val": -1.0, "best_loss": math.inf, "bad_epochs": 0, "best_state": None,
             "best_epoch": 0.0}
    if initial_val is not None:
        state["best_val"] = initial_val
        state["best_loss"] = plan.max_val_loss if plan.max_val_loss is not None else math.inf
        state["best_state"] = {k: v.detach().clone() for k, v in raw_model.state_dict().items()}
    ckpt_file = checkpoint_dir / f"{plan.phase}.pt" if checkpoint_dir else None
    resumed_from = None
    if resume and ckpt_file is not None and resumable(ckpt_file):
        state = load_checkpoint(ckpt_file, raw_model, optimizer, scheduler, recorder)
        resumed_from = state["epoch"]

    eval_every = max(1, steps_per_epoch // max(1, plan.evals_per_epoch))
    step_seconds: list[float] = []
    eval_seconds = 0.0
    stop_reason = "completed"
    best_state = state["best_state"]
    cooling = False  # the plateau rule fired: the rate anneals to the horizon's end, then the run stops
    n_val = len(val) if val is not None else 0
    epoch_losses: list[float] = []  # without labels: this epoch's step losses, its evaluation's mean
    last_loss = [float("inf")]      # the latest validation loss (evaluate_val's)

    def check_plateau() -> None:
        nonlocal cooling
        if plan.plateau is None or cooling or still_warming_up(scheduler):
            return  # a run whose rate is still rising has not had its chance to plateau yet
        curve = [r for r in recorder.rows if r["split"] == "val" and r.get("phase") == plan.phase]
        if has_plateaued([r["train_seconds"] for r in curve], [r["accuracy"] for r in curve], plan.plateau,
                         epochs=[r["epoch"] for r in curve]):
            cool_down(scheduler, steps_per_epoch)
            cooling = True

    def evaluate_val() -> float | None:
        nonlocal eval_seconds
        started = time.perf_counter()
        recorder.pause()
        if not plan.labelled:
            # a budget stop mid-epoch logs no mean: a partial epoch's would sit among whole ones
            if stop_reason == "completed" and epoch_losses:
                recorder.log("epoch", None, float(np.mean(epoch_losses)), phase=plan.phase)
            epoch_losses.clear()
            return None
        logits = predict_logits(raw_model, val.inputs) if own_share is None else own_rows_logits(raw_model, val.inputs)
        accuracy, loss = score(logits, val.labels)
        # timed before the row is logged: a listener (tune's pruner, auto's race parking this arm
        # between slices) is not evaluation, and the budget plans evaluations by this figure
        eval_seconds = time.perf_counter() - started
        recorder.log("val", accuracy, loss, phase=plan.phase, lr=optimizer.param_groups[-1]["lr"])
        last_loss[0] = loss
        return accuracy

    improved_this_epoch = False  # a mid-epoch evaluation kept a new best: the epoch counts as improving

    def keep_if_best(accuracy: float | None) -> bool:
        """Keep this state if it is the best evaluated so far, mid-epoch evaluations included: what
        a run reports as its best validation accuracy is then what it delivers (auto's race read a
        mid-epoch 0.866 for its scratch arm, which delivered its best epoch end, 0.79)."""
        nonlocal best_state, improved_this_epoch
        if accuracy is None or not _better(accuracy, last_loss[0], state["best_val"], state["best_loss"], plan):
            return False
        improved = accuracy > state["best_val"]  # a tie on a lower loss is kept, but is no progress to patience
        state["best_val"], state["best_loss"], state["best_epoch"] = accuracy, last_loss[0], recorder.epoch
        best_state = {k: v.detach().clone() for k, v in raw_model.state_dict().items()}
        improved_this_epoch = improved_this_epoch or improved
        return improved

    def over_budget() -> bool:
        # A promise, not a hope: stop before a step (plus the closing evaluation) would cross it.
        if plan.budget_seconds is None:
            return False
        next_step = float(np.median(step_seconds[-20:])) if step_seconds else 0.0
        # what must still fit after this step: the closing validation pass and the final test
        # pass. Before the first evaluation its cost is estimated from the step time (a
        # training step costs ~3 forward passes of the batch).
        per_image = eval_seconds / max(1, n_val) if eval_seconds else next_step / batch_size / 3
        closing = 1.2 * per_image * (n_val + plan.reserve_images)
        mine = recorder.wall_seconds + next_step + closing > plan.budget_seconds
        flag = torch.tensor([1.0 if mine else 0.0])
        # every rank must stop at the same step or DDP deadlocks on the next all-reduce
        return accelerator.reduce(flag, "max").item() > 0 if accelerator.num_processes > 1 else mine

    epoch = state["epoch"]
    recorder.step = state["step"]
    train_mode(model, plan)
    # Ctrl-C / SIGTERM wait for a safe point: a step's end (the last epoch's checkpoint is the
    # resume point) or the checkpoint just written; never a step or a checkpoint cut in half
    with progress_bar(f"{plan.phase}", total=plan.epochs * steps_per_epoch) as advance, interrupts.deferred():
        advance(epoch * steps_per_epoch)
        while epoch < plan.epochs and stop_reason == "completed":
            loader.set_epoch(epoch)
            recorder.resume()
            for i, batch in enumerate(loader):
                if over_budget():
                    stop_reason = "budget"
                    break
                started = time.perf_counter()
                with accelerator.autocast():
                    loss = loss_of(model, batch)
                check_finite(accelerator, loss, epoch, i, checkpoint_dir, recorder, plan)
                accelerator.backward(loss)
                lr = optimizer.param_groups[-1]["lr"]  # the rate this step used
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step_seconds.append(time.perf_counter() - started)
                if len(step_seconds) == EARLY_REPLAN_STEPS:  # plan the budget early, not after a
                    _fit_schedule_to_budget(scheduler, plan, recorder, step_seconds, eval_seconds,
                                            steps_per_epoch)  # whole epoch of warm-up
                recorder.step += 1
                recorder.epoch = epoch + (i + 1) / steps_per_epoch
                if plan.after_step is not None:
                    plan.after_step(recorder.step, scheduler.horizon.total)
                if not plan.labelled:  # its only measure: every step's loss (the report's curve)
                    epoch_losses.append(float(loss.detach()))
                    recorder.log("train", None, epoch_losses[-1], phase=plan.phase, lr=lr)
                advance(1)
                interrupts.check()
                if cooling and scheduler.last_epoch >= scheduler.horizon.total:
                    stop_reason = "plateau"  # cooled down: the closing evaluation follows
                    break
                if plan.labelled and plan.evals_per_epoch > 1 and (i + 1) % eval_every == 0 \
                        and i + 1 < steps_per_epoch:
                    keep_if_best(evaluate_val())
                    check_plateau()
                    train_mode(model, plan)
                    recorder.resume()
            recorder.pause()
            epoch += 1 if stop_reason == "completed" else 0
            accuracy = evaluate_val()
            check_plateau()
            if stop_reason == "completed":
                _fit_schedule_to_budget(scheduler, plan, recorder, step_seconds, eval_seconds,
                                        steps_per_epoch)
            train_mode(model, plan)
            if accuracy is None:
                pass  # without labels there is no best to keep: the last weights are the result
            elif keep_if_best(accuracy) or improved_this_epoch:
                state["bad_epochs"], improved_this_epoch = 0, False
            else:
                state["bad_epochs"] += 1
                if state["bad_epochs"] >= plan.patience and stop_reason == "completed" and plan.plateau is None:
                    stop_reason = "early-stop"
            if stop_reason == "completed" and ckpt_file is not None and accelerator.is_main_process:
                save_checkpoint(ckpt_file, raw_model, optimizer, scheduler, recorder,
                                epoch=epoch, best_val=state["best_val"],
                                bad_epochs=state["bad_epochs"], best_state=best_state,
                                best_epoch=state["best_epoch"], best_loss=state["best_loss"])
            accelerator.wait_for_everyone()
            kill_hook_for_tests(plan.phase, epoch)
            interrupts.check()
    if best_state is not None:
        raw_model.load_state_dict(best_state)
    accelerator.free_memory()
    return TrainResult(best_val_accuracy=state["best_val"] if plan.labelled else None, epochs_run=recorder.epoch,
                       stop_reason=stop_reason, best_epoch=state["best_epoch"],
                       mixed=mixer.counts if mixer is not None else None, resumed_from_epoch=resumed_from)


def train_mode(model, plan: TrainPlan) -> None:
    """model.train(), except that batch-norm layers stay in eval mode where the plan freezes their
    statistics (plan.frozen_norm_statistics): every evaluation switches the model back to train."""
    model.train()
    if plan.frozen_norm_statistics:
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()


def _better(accuracy: float, loss: float, best_accuracy: float, best_loss: float, plan: TrainPlan) -> bool:
    """Does this evaluation replace the kept state? Higher validation accuracy (what the run
    reports and compare races on) decides, and a tie goes to the lower validation loss: where
    accuracy saturates (digits: 1 error in 270 from mid-schedule on) the first state to reach it
    was kept, still at a high rate, over the annealed ones. Where the starting weights' loss is
    known (plan.max_val_loss) a state more confidently wrong than the start is refused: on a few
    hundred validation images accuracy can rise a point by chance while the loss, which reads
    every image's probability, says the model got worse."""
    if accuracy < best_accuracy or (accuracy == best_accuracy and not loss < best_loss):
        return False
    return plan.max_val_loss is None or loss <= plan.max_val_loss


def _fit_schedule_to_budget(scheduler, plan: TrainPlan, recorder: Recorder, step_seconds: list[float],
                            eval_seconds: float, steps_per_epoch: int) -> None:
    """Shorten the schedule to the steps that fit in what is left of the budget.

    Measured after each epoch: step time (median) and one evaluation's time. Only ever
    shortens: a plan that fits is left alone. Under torchrun the ranks agree on the shortest
    horizon, or their learning rates (and so their weights) would drift apart.
    """
    if plan.budget_seconds is None or not step_seconds:
        return
    step = float(np.median(step_seconds[-50:]))
    per_epoch = steps_per_epoch * step + max(1, plan.evals_per_epoch) * eval_seconds
    left = plan.budget_seconds - recorder.wall_seconds
    affordable_steps = scheduler.last_epoch + int(max(0.0, left) / per_epoch * steps_per_epoch)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        agreed = torch.tensor([affordable_steps], dtype=torch.int64)
        torch.distributed.all_reduce(agreed, op=torch.distributed.ReduceOp.MIN)
        affordable_steps = int(agreed.item())
    if affordable_steps < scheduler.horizon.total:
        scheduler.horizon.total = max(scheduler.last_epoch + 1, affordable_steps)


def kill_hook_for_tests(phase: str, epoch: int) -> None:
    # Lets the test-suite kill a run for real (SIGKILL) right after a checkpoint is written,
    # to prove that --resume continues the schedule instead of starting over.
    target = os.environ.get("HEADSTART_KILL_AFTER")
    if target and target == f"{phase}:{epoch}":
        os.kill(os.getpid(), signal.SIGKILL)
