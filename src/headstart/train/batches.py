"""Torch datasets over decoded uint8 arrays or token ids: no file is opened during training."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler


class ArrayImageDataset(Dataset):
    """Serves (uint8 CHW tensor, label) from an (N, H, W, C) uint8 array."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform=None):
        # One contiguous CHW tensor up front: per-item work is then a view plus augmentation.
        # Disk-backed pixels (a memory map, or a split's ImageRows of one) are read an item at a time.
        self.images = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))) \
            if type(images) is np.ndarray else _ItemsCHW(images)
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.transform = transform
        # which decode-cache rows the items are, and whether this node's cache lacks any of them
        # (torchrun across machines: each rank then trains on its own rows, train/shares.py)
        self.source_rows = getattr(images, "source_rows", None)
        lacking = getattr(getattr(images, "base", None), "lacking", None)
        self.lacks_rows = bool(lacking is not None and self.source_rows is not None
                               and lacking[self.source_rows].any())

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        x = self.images[i]
        if self.transform is not None:
            x = self.transform(x)
        return x, self.labels[i]


class _ItemsCHW:
    """item i of an (N, H, W, C) array-like as a (C, H, W) tensor, read when asked for."""

    def __init__(self, images):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(np.asarray(self.images[i]).transpose(2, 0, 1)))


class ArrayTokenDataset(Dataset):
    """Serves (inputs[i], label) from any (N, ...) array: token ids (N, L) padded with -1
    (batches keep the full width; a text backbone trims the padding columns per batch), or
    feature vectors."""

    def __init__(self, tokens: np.ndarray, labels: np.ndarray):
        self.tokens = torch.from_numpy(np.ascontiguousarray(tokens))
        self.labels = torch.from_numpy(labels.astype(np.int64))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.tokens[i], self.labels[i]


class BalancedSampler(WeightedRandomSampler):
    """Draws len(dataset) indices per epoch with replacement, each with probability
    proportional to its weight (1 / its class's count: every class equally often).

    Each epoch's draw is a function of (seed, epoch), like Accelerate's seedable sampler:
    every process draws the same global batches (split_batches then gives each its share),
    and a resumed run replays the same epochs. The loop calls set_epoch through Accelerate.
    """

    def __init__(self, weights, seed: int = 0):
        super().__init__(torch.as_tensor(np.asarray(weights), dtype=torch.double), num_samples=len(weights),
                         replacement=True)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        self.generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return super().__iter__()


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool, seed: int = 0,
                drop_last: bool = False, sample_weights=None, collate_fn=None) -> DataLoader:
    """sample_weights: draw with replacement in proportion to them (a class-balanced
    sampler) instead of shuffling. collate_fn: how items become a batch (None: torch's default)."""
    generator = torch.Generator().manual_seed(seed)
    sampler = BalancedSampler(sample_weights, seed) if sample_weights is not None else None
    # Workers cost more than they save on 2 cores with data already decoded in memory.
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                      generator=generator, drop_last=drop_last, collate_fn=collate_fn, num_workers=0)
