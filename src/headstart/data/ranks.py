"""Under torchrun: which rank this process is, which rows are its own, and the few collectives
that share small things (masks, features, logits) between ranks. Pixels never travel.

A file-backed row (row i of the decode cache is file i) belongs to rank i % world: that rank
decoded it, and on a machine without a shared cache folder it is the only one whose node holds
it (data/shared_cache.py). Rows made in memory (built-in datasets) are on every rank; they are
shared out by position, i % world, which every rank computes alike.
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np

# Files this process decoded: its share when the cache was filled, and rows its node lacked that
# something read anyway (then decoded on the spot; tests/test_multinode.py reads both).
DECODED = {"share": 0, "on_demand": 0}


def is_distributed() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def world() -> tuple[int, int]:
    """(number of processes, this process's rank); joins torchrun's process group if not yet joined."""
    if not is_distributed():
        return 1, 0
    import torch
    from accelerate import PartialState

    # cpu=: as the training loop's Accelerator says it (train/loop.py); without it a CPU-only
    # process under torchrun would not join the process group at all
    state = PartialState(cpu=not torch.cuda.is_available())
    return state.num_processes, state.process_index


def barrier() -> None:
    if is_distributed():
        world()
        import torch.distributed as dist

        dist.barrier()


def gather(value) -> list:
    """Every rank's `value` (small, picklable), in rank order, on every rank."""
    size, _ = world()
    if size == 1:
        return [value]
    import torch.distributed as dist

    out: list = [None] * size
    dist.all_gather_object(out, value)
    return out


def agree_all(flag: bool) -> bool:
    """True on every rank only when it is true on every rank."""
    return all(gather(bool(flag)))


def source_rows(inputs) -> np.ndarray | None:
    """The decode-cache rows `inputs` were read from (a split's ImageRows, or a batch read from
    one under torchrun), or None for inputs made in memory."""
    rows = getattr(inputs, "source_rows", None)
    return None if rows is None else np.asarray(rows)


def own_positions(inputs, size: int, rank: int) -> np.ndarray:
    """The positions in `inputs` this rank computes: the rows it owns (decoded, held by its node)
    when they come from the cache, else every size-th item from its rank."""
    rows = source_rows(inputs)
    if rows is None:
        return np.arange(rank, len(inputs), size)
    return np.flatnonzero(rows % size == rank)


def map_own_rows(compute: Callable[[object], np.ndarray], inputs) -> np.ndarray:
    """compute(inputs) as one process would get it, each rank computing its own rows only and the
    ranks exchanging the results (features, logits: small). Every rank must call it."""
    size, rank = world()
    if size == 1 or len(inputs) == 0:
        return compute(inputs)
    mine = own_positions(inputs, size, rank)
    local = np.asarray(compute(inputs[mine]))
    shares = gather((mine, local))
    width = next(s.shape[1:] for _, s in shares if s.ndim > 1 or len(s))
    out = np.empty((len(inputs), *width), dtype=local.dtype)
    for positions, share in shares:
        out[positions] = share
    return out
