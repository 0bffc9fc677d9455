"""Where the probe's head should switch from full-batch L-BFGS to mini-batches read from the file.

Synthetic features (10 classes, 1280 dims: Lite0's width; class means drawn at random, noisy
rows) written to a .npy and memory-mapped, as the feature store hands them to the head. For each
size, both solvers sweep the probe's C grid (heads.PROBE_C_GRID, warm-started as sweep_head does)
and pick C on a held-out validation part; the table gives wall seconds, peak RSS growth and test
accuracy of each.

    .venv/bin/python bench/head_switch.py --sizes 10000 50000 100000 --out /tmp/head_switch.json
"""
from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from headstart.heads import PROBE_C_GRID, HeadProblem, MiniBatchHeadProblem, head_logits


def synthetic(path: Path, n: int, dim: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    means = np.random.default_rng(0).normal(0, 1, (classes, dim)).astype(np.float32) * 0.05  # one task
    rng = np.random.default_rng(seed)  # its rows: train, val and test draw their own
    labels = rng.integers(0, classes, n)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
    for start in range(0, n, 8192):
        y = labels[start:start + 8192]
        out[start:start + len(y)] = means[y] + rng.normal(0, 1, (len(y), dim)).astype(np.float32)
    out.flush()
    del out
    return np.load(path, mmap_mode="r"), labels


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sweep(solver, x, y, val_x, val_y, test_x, test_y) -> dict:
    started, before = time.perf_counter(), rss_mb()
    problem = solver(x, y, int(y.max()) + 1)
    best = None
    for c in PROBE_C_GRID:
        w, b = problem.solve(c)
        val = float((head_logits(val_x, w, b).argmax(1) == val_y).mean())
        if best is None or val > best[0] + 1e-9:
            best = (val, c, w, b)
    val, c, w, b = best
    return {"seconds": round(time.perf_counter() - started, 1), "peak_rss_growth_mb": round(rss_mb() - before),
            "C": c, "val_accuracy": round(val, 4),
            "test_accuracy": round(float((head_logits(test_x, w, b).argmax(1) == test_y).mean()), 4)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 50000, 100000])
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--solvers", nargs="+", default=["minibatch", "lbfgs"])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    solvers = {"lbfgs": HeadProblem, "minibatch": MiniBatchHeadProblem}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        val_x, val_y = synthetic(Path(tmp) / "val.npy", 4000, args.dim, 10, seed=1)
        test_x, test_y = synthetic(Path(tmp) / "test.npy", 4000, args.dim, 10, seed=2)
        val_x, test_x = np.asarray(val_x), np.asarray(test_x)
        for n in args.sizes:
            x, y = synthetic(Path(tmp) / f"train{n}.npy", n, args.dim, 10, seed=0)
            for name in args.solvers:
                row = {"rows": n, "solver": name, **sweep(solvers[name], x, y, val_x, val_y, test_x, test_y)}
                print(json.dumps(row), flush=True)
                rows.append(row)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
