"""Training where a rank can read only its own rows: torchrun across machines without a shared
cache folder, where each node's decode cache holds its ranks' rows only (data/shared_cache.py).

Where every rank can read every row (one machine, a shared disk, data in memory) the loop keeps
its global order, split across ranks, and takes exactly the steps one process takes. Where some
node lacks rows, each rank trains on a fixed share, the training items it owns, shuffled within
the share each epoch, and evaluates its own validation items, the ranks exchanging the logits.
Every epoch still shows each item once and the gradient is still the mean over the ranks'
batches, but the batches group the items differently from one process's: the figures match one
process's within seed-to-seed noise, not to the digit.
"""
from __future__ import annotations

import numpy as np
import torch
from accelerate.utils import send_to_device
from torch.utils.data import DataLoader, Sampler

from ..data.ranks import gather, map_own_rows
from ..heads import predict_logits


class ShareSampler(Sampler):
    """This rank's items (positions in the dataset), `length` of them per epoch, in an order that is
    a function of (seed, epoch, rank); a share smaller than the largest repeats some of its own
    items, so every rank takes the same number of steps. With weights (a class-balanced sampler)
    it draws with replacement in proportion to them, within the share."""

    def __init__(self, positions: np.ndarray, length: int, seed: int, rank: int, weights=None):
        self.positions, self.length, self.seed, self.rank, self.epoch = positions, length, seed, rank, 0
        self.weights = None if weights is None else np.asarray(weights, dtype=float)[positions]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch, self.rank])
        if self.weights is not None and self.weights.sum() > 0:
            order = rng.choice(self.positions, self.length, p=self.weights / self.weights.sum())
        else:
            order = np.resize(rng.permutation(self.positions), self.length)
        return iter(order.tolist())


class OwnShareLoader:
    """A rank's loader over its own share, handing batches to its device (Accelerate's prepare
    would split global batches instead, which is what a rank without the other rows cannot read)."""

    def __init__(self, loader: DataLoader, device):
        self.loader, self.device = loader, device

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            yield send_to_device(batch, self.device)

    def set_epoch(self, epoch: int) -> None:
        self.loader.sampler.set_epoch(epoch)


def own_share_loader(dataset, batch_size: int, accelerator, *, seed: int, sample_weights=None,
                     collate_fn=None) -> OwnShareLoader | None:
    """The rank's own-share loader (per-rank batch: batch_size / processes) when some rank's node
    lacks some of the dataset's rows; None where every rank reads every row. Every rank calls it."""
    world = accelerator.num_processes
    rows = getattr(dataset, "source_rows", None)
    if world == 1 or not any(gather(rows is not None and bool(getattr(dataset, "lacks_rows", False)))):
        return None
    shares = [np.flatnonzero(np.asarray(rows) % world == r) for r in range(world)]
    length = max(len(s) for s in shares)
    per_rank = max(1, batch_size // world)
    rank = accelerator.process_index
    sampler = ShareSampler(shares[rank], length, seed, rank, sample_weights)
    loader = DataLoader(dataset, batch_size=per_rank, sampler=sampler, drop_last=length > per_rank,
                        collate_fn=collate_fn, num_workers=0)
    return OwnShareLoader(loader, accelerator.device)


def own_rows_logits(model, inputs) -> torch.Tensor:
    """predict_logits over `inputs`, each rank computing its own rows (every rank calls it)."""
    return torch.from_numpy(map_own_rows(lambda mine: predict_logits(model, mine).numpy(), inputs))
