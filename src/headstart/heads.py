"""The one classifier protocol, and the classifiers built from a backbone and a linear head.

Every model a run trains or loads answers the same five calls, whatever it eats:
    prepare(data) -> data        the data as the model eats it (resized, tokenised, as is)
    logits(data) -> Tensor       (N, classes) for prepared data; no gradient
    warm_up(data)                one untimed pass (kernel and allocator start-up is not training)
    describe() -> dict           what model.json records about it
    format                       the model.json "format" that saving and loading dispatch on

And the one head sweep (`sweep_head`): a logistic head on cached features, C chosen on
validation. The probe, lp-ft's and LoRA's head stage, DANN's start, CORAL, the continual head
refits and TF-IDF all fit their heads through it, so they share one rule for the clock.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .log import progress_bar
from .zoo.backbone import Backbone


def as_batch(chunk: np.ndarray) -> torch.Tensor:
    """A slice of a data's inputs as the model's input tensor: images (N, H, W, C) uint8 become
    (N, C, H, W); token ids (N, L) and feature vectors (N, D) pass as they are."""
    if chunk.ndim == 4:
        return torch.from_numpy(np.ascontiguousarray(chunk.transpose(0, 3, 1, 2)))
    return torch.from_numpy(np.ascontiguousarray(chunk))


def inference_batch_size() -> int:
    # On CPU, small batches keep activations in cache: 16 ran 2.5x faster per image than 64
    # (EfficientNet-Lite0, 224 px, 2 cores). GPUs want large batches.
    return 128 if torch.cuda.is_available() else 16


@torch.no_grad()
def predict_logits(model: nn.Module, inputs: np.ndarray, batch_size: int | None = None,
                   description: str | None = None) -> torch.Tensor:
    """Outputs of `model` for a data's inputs: (N, H, W, C) uint8 images (the model normalises
    internally), (N, L) token ids padded with -1, or any (N, ...) array the model takes."""
    batch_size = batch_size or inference_batch_size()
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    with progress_bar(description, total=len(inputs)) as advance:
        for start in range(0, len(inputs), batch_size):
            chunk = as_batch(inputs[start:start + batch_size])
            out.append(model(chunk.to(device)).float().cpu())
            advance(len(chunk))
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


class LinearHead(nn.Module):
    """A linear layer over pooled features, with optional dropout before it."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(features))


class Classifier(nn.Module):
    """backbone -> pooled features -> linear head. Takes whatever its backbone takes (token
    ids padded with -1 for text backbones, which mask and pool themselves)."""

    def __init__(self, backbone: Backbone, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.head = LinearHead(backbone.feature_dim, num_classes, dropout)

    @property
    def format(self) -> str:
        return f"headstart-{self.backbone.modality}-classifier/1"

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def prepare(self, data):
        return self.backbone.prepare(data)

    def logits(self, data, *, batch_size: int | None = None, description: str | None = None) -> torch.Tensor:
        return predict_logits(self, data.inputs, batch_size, description)

    def warm_up(self, data) -> None:
        predict_logits(self, data.inputs[:2])

    def describe(self) -> dict:
        return self.backbone.describe()


class ImageClassifier(Classifier):
    """Takes uint8 (or 0..255 float) images (B, C, H, W) at the backbone's input size.

    Normalisation lives inside the model so that a saved model needs nothing but resized
    pixels: predict, export and the trainer all feed the same thing. Grey (C=1) inputs are
    repeated to the backbone's channel count.
    """

    def __init__(self, backbone: Backbone, num_classes: int, dropout: float = 0.0):
        super().__init__(backbone, num_classes, dropout)
        pre = backbone.preprocessing
        self.register_buffer("mean", torch.tensor(pre.mean).view(1, -1, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(pre.std).view(1, -1, 1, 1) * 255.0, persistent=False)
        self.channels = pre.channels
        # channels_last runs convolutions 1.5-2.5x faster on CPU (measured: EfficientNet-Lite0
        # at 224 px, 2 cores: 67 vs 26 img/s inference) and is what GPUs prefer too.
        self.to(memory_format=torch.channels_last)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if x.shape[1] == 1 and self.channels != 1:
            x = x.expand(-1, self.channels, -1, -1)
        return ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.normalize(x))


# ----------------------------------------------------------------------------- the head sweep

# Inverse regularisation strengths of a logistic head on embeddings, tried on validation (the
# probe, lp-ft's and LoRA's head stage, CORAL, the continual head refit). HeadProblem
# standardises the features first, so one grid suits every backbone.
PROBE_C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)
# The head that fine-tuning starts from (finetune, a continual rehearsal): one C, as a start it
# needs to be good rather than tuned, and the fine-tune must beat it anyway.
FINETUNE_START_C_GRID = (0.1,)


def score(logits: torch.Tensor, labels: np.ndarray) -> tuple[float, float]:
    """(accuracy, mean cross-entropy)."""
    y = torch.from_numpy(labels.astype(np.int64))
    accuracy = (logits.argmax(1) == y).float().mean().item()
    loss = F.cross_entropy(logits, y).item()
    return accuracy, loss


class HeadProblem:
    """Multinomial logistic regression, scikit-learn's objective (C * sum of log-losses +
    |W|^2 / 2, intercept unpenalised), solved with L-BFGS in torch on the features' device.
    Features are standardised once; `solve` for several C reuses them and warm-starts from the
    previous solution.

    Why not sklearn: on a many-core GPU host its BLAS threads fight torch's idle OpenMP
    threads, and a head fit that should take a blink took seconds; in torch it runs where
    the features are. sample_weight (mean 1: class weights) scales each log-loss, so C keeps
    its meaning.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, num_classes: int, sample_weight: np.ndarray | None = None):
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.mean, self.std = column_stats(x)
        self.z = torch.from_numpy(standardised(x, self.mean, self.std)).to(device)
        self.t = torch.from_numpy(y.astype(np.int64)).to(device)
        self.sw = None if sample_weight is None else torch.from_numpy(np.asarray(sample_weight, np.float32)).to(device)
        self.weight = torch.zeros(num_classes, self.z.shape[1], device=device)
        self.bias = torch.zeros(num_classes, device=device)

    def solve(self, c: float) -> tuple[np.ndarray, np.ndarray]:
        """(weight, bias) acting on raw, unstandardised features, for this C."""
        weight = self.weight.clone().requires_grad_(True)
        bias = self.bias.clone().requires_grad_(True)
        penalty = 1.0 / (c * len(self.z))  # sklearn's C, per sample: mean loss + |W|^2 / (2 C n)
        opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=300, history_size=20,
                                tolerance_grad=1e-6, tolerance_change=1e-9, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            losses = F.cross_entropy(self.z @ weight.T + bias, self.t, reduction="none")
            loss = (losses if self.sw is None else losses * self.sw).mean() + 0.5 * penalty * weight.pow(2).sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        self.weight, self.bias = weight.detach(), bias.detach()
        w = (self.weight.cpu().numpy() / self.std).astype(np.float32)
        b = (self.bias.cpu().numpy() - w @ self.mean).astype(np.float32)
        return w, b


# Read whole, standardised features take 4 bytes a value on the solver's device: full-batch L-BFGS
# while they fit this allowance (HEADSTART_HEAD_MEMORY_MB; 2 GiB is 400k rows of Lite0's 1280),
# mini-batches read from the (memory-mapped) file beyond it. Measured with bench/head_switch.py
# (synthetic 10 classes x 1280, the 5-C sweep, on 2 cores shared with six other jobs: LOADED,
# times noisy): 10k rows mini-batch 128 s / test 0.476 vs L-BFGS 441 s / 0.466; 30k 435 s / 0.542
# vs 152 s / 0.539; 100k 1204 s / 0.583 vs 231 s / 0.584. Accuracy agrees within 0.01 at every
# size and mini-batches are not reliably faster, so memory decides: L-BFGS (the exact optimum the
# probe's figures were measured with) wherever the features fit.
HEAD_MEMORY_BYTES = int(float(os.environ.get("HEADSTART_HEAD_MEMORY_MB", "2048")) * 2**20)
_STATS_ROWS = 8192  # rows read at a time when a pass over the features is chunked


def head_solver(x, y: np.ndarray, num_classes: int, sample_weight: np.ndarray | None = None):
    """The head's solver for these features: HeadProblem (full-batch L-BFGS) while the features
    fit HEAD_MEMORY_BYTES as float32, MiniBatchHeadProblem (the same objective by Adam over row
    batches read from the file) beyond it."""
    solver = HeadProblem if len(x) * x.shape[1] * 4 <= HEAD_MEMORY_BYTES else MiniBatchHeadProblem
    return solver(x, y, num_classes, sample_weight)


def column_stats(x) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std + 1e-6) of each column, float32, read in chunks (a memory map is never copied
    whole; float64 sums, so a float16 or float32 file gives the same figures)."""
    total, squares = np.zeros(x.shape[1]), np.zeros(x.shape[1])
    for start in range(0, len(x), _STATS_ROWS):
        chunk = np.asarray(x[start:start + _STATS_ROWS], dtype=np.float64)
        total += chunk.sum(0)
        squares += np.square(chunk).sum(0)
    mean = total / max(len(x), 1)
    var = np.maximum(squares / max(len(x), 1) - mean ** 2, 0.0)
    return mean.astype(np.float32), (np.sqrt(var) + 1e-6).astype(np.float32)


def standardised(x, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(x - mean) / std as one float32 array, filled chunk by chunk (no float64 or second copy)."""
    out = np.empty(x.shape, dtype=np.float32)
    for start in range(0, len(x), _STATS_ROWS):
        out[start:start + _STATS_ROWS] = (np.asarray(x[start:start + _STATS_ROWS], np.float32) - mean) / std
    return out


class MiniBatchHeadProblem:
    """HeadProblem's objective for features beyond the memory allowance: Adam over batches of rows
    read from `x` (a memory map) and standardised as they are read; only a batch is in memory.
    Batches are runs of consecutive rows in a shuffled order (the file is read in long runs, not
    row by row); each C warm-starts from the last, as HeadProblem's."""

    # 8 passes over the file per C, and at least 200 Adam steps (a small file has few batches)
    EPOCHS, MIN_STEPS, BATCH, RUN, LR = 8, 200, 2048, 256, 0.01

    def __init__(self, x, y: np.ndarray, num_classes: int, sample_weight: np.ndarray | None = None, seed: int = 0):
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.x, self.y = x, y.astype(np.int64)
        self.mean, self.std = column_stats(x)
        self.sw = None if sample_weight is None else np.asarray(sample_weight, np.float32)
        self.weight = torch.zeros(num_classes, x.shape[1], device=self.device)
        self.bias = torch.zeros(num_classes, device=self.device)
        self.rng = np.random.default_rng(seed)

    def _batches(self):
        runs = self.rng.permutation(np.arange(0, len(self.x), self.RUN))
        per_batch = max(self.BATCH // self.RUN, 1)
        for i in range(0, len(runs), per_batch):
            starts = np.sort(runs[i:i + per_batch])
            rows = np.concatenate([np.arange(r, min(r + self.RUN, len(self.x))) for r in starts])
            x = np.concatenate([np.asarray(self.x[r:r + self.RUN], np.float32) for r in starts])
            yield rows, torch.from_numpy((x - self.mean) / self.std).to(self.device)

    def solve(self, c: float) -> tuple[np.ndarray, np.ndarray]:
        weight = self.weight.clone().requires_grad_(True)
        bias = self.bias.clone().requires_grad_(True)
        penalty = 1.0 / (c * len(self.x))
        opt = torch.optim.Adam([weight, bias], lr=self.LR)
        per_epoch = -(-len(self.x) // (max(self.BATCH // self.RUN, 1) * self.RUN))
        epochs = max(self.EPOCHS, -(-self.MIN_STEPS // per_epoch))
        schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.LR, total_steps=epochs * per_epoch, pct_start=0.1)
        with torch.enable_grad():
            for _ in range(epochs):
                for rows, z in self._batches():
                    t = torch.from_numpy(self.y[rows]).to(self.device)
                    losses = F.cross_entropy(z @ weight.T + bias, t, reduction="none")
                    if self.sw is not None:
                        losses = losses * torch.from_numpy(self.sw[rows]).to(self.device)
                    loss = losses.mean() + 0.5 * penalty * weight.pow(2).sum()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    if schedule.last_epoch < schedule.total_steps - 1:
                        schedule.step()
        self.weight, self.bias = weight.detach(), bias.detach()
        w = (self.weight.cpu().numpy() / self.std).astype(np.float32)
        b = (self.bias.cpu().numpy() - w @ self.mean).astype(np.float32)
        return w, b


@dataclass
class HeadSweep:
    """What a sweep found: the best C's head (weight, bias act on the raw features the sweep
    was given) and every C's validation accuracy, in the order solved."""

    c: float
    val_accuracy: float
    weight: np.ndarray
    bias: np.ndarray
    scores: dict[float, float]

    def logits(self, x) -> np.ndarray:
        return head_logits(x, self.weight, self.bias)

    def write_into(self, layer: nn.Linear) -> None:
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(np.asarray(self.weight, np.float32)))
            layer.bias.copy_(torch.from_numpy(np.asarray(self.bias, np.float32)))


def head_logits(x, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Logits of a linear head on features (a dense array, or TF-IDF's sparse rows), float32."""
    return np.asarray(x @ weight.T + bias, dtype=np.float32)


def sweep_head(train_x, train_y: np.ndarray, val_x, val_y: np.ndarray, c_grid, recorder, *, num_classes: int,
               phase: str, sample_weight: np.ndarray | None = None, solver: Callable | None = None,
               out_of_time: Callable[[float], bool] | None = None, **row) -> HeadSweep:
    """Solve along the C grid, score each head on validation, keep the best.

    C ascends and each solve warm-starts from the last (the penalty only loosens, so the last
    solution is already close). A tie keeps the smaller C: the more regularised head. solver:
    solver(x, y, num_classes, sample_weight) with .solve(C) -> (weight, bias) (head_solver by
    default: HeadProblem, or MiniBatchHeadProblem for features beyond the memory allowance;
    TF-IDF passes scikit-learn's on sparse rows).

    The clock, one rule for every caller: building the problem and each solve are training;
    scoring on validation and logging are evaluation, paused. The recorder is left paused.
    out_of_time(seconds of the last solve) is asked before each C after the first: True keeps
    the best so far (a --budget: fewer candidates rather than overtime). Each C logs a "val"
    row with its phase, C and `row`'s keys.
    """
    recorder.resume()
    problem = (solver or head_solver)(train_x, train_y, num_classes, sample_weight)
    recorder.pause()
    best, scores, solve_seconds = None, {}, 0.0
    for c in sorted(c_grid):
        if best is not None and out_of_time is not None and out_of_time(solve_seconds):
            break
        recorder.resume()
        started = recorder.train_seconds
        weight, bias = problem.solve(c)
        solve_seconds = recorder.train_seconds - started
        recorder.pause()
        accuracy, loss = score(torch.from_numpy(head_logits(val_x, weight, bias)), val_y)
        recorder.log("val", accuracy, loss, phase=phase, C=c, **row)
        scores[c] = accuracy
        if best is None or accuracy > best.val_accuracy + 1e-9:
            best = HeadSweep(c, accuracy, weight, bias, scores)
    return best


def budget_rule(recorder, budget_seconds: float | None) -> Callable[[float], bool] | None:
    """The probe's --budget rule for a sweep: no C whose solve (as long as the last) would end
    past the budget."""
    if budget_seconds is None:
        return None
    return lambda solve_seconds: recorder.wall_seconds + solve_seconds > budget_seconds
