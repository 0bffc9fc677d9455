"""Torch datasets over decoded uint8 arrays or token ids: no file is opened during training."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


class ArrayImageDataset(Dataset):
    """Serves (uint8 CHW tensor, label) from an (N, H, W, C) uint8 array."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform=None):
        # One contiguous CHW tensor up front: per-item work is then a view plus augmentation.
        self.images = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        x = self.images[i]
        if self.transform is not None:
            x = self.transform(x)
        return x, self.labels[i]


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


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool, seed: int = 0,
                drop_last: bool = False) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    # Workers cost more than they save on 2 cores with data already decoded in memory.
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      drop_last=drop_last, num_workers=0)
