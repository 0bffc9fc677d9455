"""The deploy table's figures: parameters, MFLOPs, file size, latency, throughput, on this machine.

Every engine (PyTorch, ONNX Runtime fp32 / int8 / fp16, a pruned model) is measured the same
way: `time_batches` takes a function of a numpy batch -- the same inputs the engine takes --
so the figures compare engines, not harnesses. Each measurement becomes a row of
RUN/deploy.json, which the fit report reads (reports read run directories, never live models):

    {"machine": {"cpu": ..., "cores": ..., "avx2": ..., "vnni": ..., ...},
     "rows": [{"name": "PyTorch fp32", "engine": "pytorch", "precision": "fp32", "file": ...,
               "file_mb": ..., "params": ..., "mflops": ..., "latency_ms_b1": ...,
               "latency_ms_b32": ..., "throughput_per_s": ..., "test_accuracy": ...,
               "measured": "2026-12-01T08:00:00+00:00"}, ...]}

Timings here are wall-clock on whatever else the machine is running: they compare engines
measured one after the other, they are not benchmarks.
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np

from headstart.files import read_json, write_json

DEPLOY_JSON = "deploy.json"
# /proc/cpuinfo flags for the int8 dot-product instructions (one vpdpbusd per 4 multiply-adds);
# without them an int8 multiply-add takes three AVX2 instructions, and int8 often runs slower.
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
FLOPS_NOTE = ("MFLOPs: millions of floating-point operations for one example, counted by "
              "torch.utils.flop_counter (a multiply-add counts as 2).")


# -- what the model is -----------------------------------------------------------------------

def count_parameters(module) -> int:
    """Every parameter of an nn.Module (trainable or frozen), shared tensors counted once."""
    seen, total = set(), 0
    for p in module.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return int(total)


def mflops(module, example) -> float | None:
    """FLOPs of one forward pass on `example` (a batch of 1: a tensor, or a tuple of them), in
    millions, as torch.utils.flop_counter counts them (a multiply-add is 2 FLOPs). None when
    the module cannot be traced by the counter (the table says "—" rather than a wrong figure)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    args = example if isinstance(example, tuple) else (example,)
    was_training = getattr(module, "training", False)
    try:
        module.eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            module(*args)
        return counter.get_total_flops() / 1e6  # exact: the table rounds, a tiny head stays non-zero
    except Exception:  # noqa: BLE001  (an op the counter cannot follow costs a cell, not the table)
        return None
    finally:
        module.train(was_training)


def file_mb(path: str | os.PathLike | None) -> float | None:
    """A model file's size in MB (10^6 bytes); a folder (a model with its tokenizer) counts whole."""
    if path is None or not Path(path).exists():
        return None
    path = Path(path)
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
    return round(size / 1e6, 3)


# -- how fast it runs ------------------------------------------------------------------------

def time_batches(run_batch: Callable[[np.ndarray], object], inputs: np.ndarray, batch_sizes=(1, 32),
                 max_seconds: float = 3.0, max_repeats: int = 20) -> dict:
    """Latency of `run_batch` at each batch size (ms per batch, the median of repeats after one
    untimed warm-up call) and throughput (examples/s) at the largest batch size.

    `inputs` (N, ...) are tiled when N is smaller than a batch. The whole measurement takes about
    `max_seconds`, shared equally among the batch sizes; each size still gets its warm-up and
    one timed call, so a model slower than its share overruns by those two calls."""
    inputs = np.asarray(inputs) if not isinstance(inputs, np.ndarray) else inputs
    if len(inputs) == 0:
        raise ValueError("time_batches needs at least one input")
    share = max_seconds / len(batch_sizes)
    out: dict = {}
    medians: dict[int, float] = {}
    for size in batch_sizes:
        batch = inputs[np.arange(size) % len(inputs)]
        started = time.perf_counter()
        run_batch(batch)  # warm-up: first-call allocation and kernel selection are not latency
        times: list[float] = []
        while not times or (len(times) < max_repeats
                            and time.perf_counter() - started + statistics.median(times) <= share):
            tick = time.perf_counter()
            run_batch(batch)
            times.append(time.perf_counter() - tick)
        medians[size] = statistics.median(times)
        out[f"latency_ms_b{size}"] = round(medians[size] * 1000, 3)
        out[f"repeats_b{size}"] = len(times)
    largest = max(batch_sizes)
    out["throughput_per_s"] = round(largest / max(medians[largest], 1e-9), 2)
    return out


# -- where it runs ---------------------------------------------------------------------------

def machine() -> dict:
    """The CPU the figures were measured on, and whether it has the int8 dot-product
    instructions (VNNI) that make int8 inference pay on x86."""
    flags: set[str] = set()
    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and cpu is None:
                cpu = value.strip()
            elif key == "flags" and not flags:
                flags = set(value.split())
    except OSError:  # not Linux: the flags stay unknown rather than guessed
        pass
    cpu = cpu or platform.processor() or platform.machine()
    found = [f for f in VNNI_FLAGS if f in flags]
    described = {"cpu": cpu, "cores": os.cpu_count(), "arch": platform.machine()}
    try:
        import torch
        described["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    if flags:
        described.update(avx2="avx2" in flags, avx512="avx512f" in flags, vnni=bool(found), vnni_flags=found,
                         avx512_fp16="avx512_fp16" in flags)
    return described


# -- the record ------------------------------------------------------------------------------

def read_deploy(run_dir: str | os.PathLike) -> dict:
    """RUN/deploy.json, or an empty table when there is none (or it cannot be read)."""
    path = Path(run_dir) / DEPLOY_JSON
    try:
        data = read_json(path) if path.exists() else {}
    except (ValueError, UnicodeDecodeError):
        data = {}
    return data if isinstance(data, dict) and isinstance(data.get("rows"), list) else {"rows": []}


def record_deploy_row(run_dir: str | os.PathLike, row: dict) -> None:
    """Add `row` to RUN/deploy.json, replacing the row of the same name (in its place), and
    note this machine. Written atomically: a reader never sees half a table.

    Keys: name (unique in the table), engine ("pytorch", "onnxruntime"), precision ("fp32",
    "int8", "fp16"), file, file_mb, params, mflops, latency_ms_b1, latency_ms_b32,
    throughput_per_s, test_accuracy; anything else is kept as extra (load_1min, the machine's
    load average when it was recorded, is added)."""
    if not row.get("name"):
        raise ValueError("a deploy row needs a name")
    row = {**row, "measured": row.get("measured") or datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if "load_1min" not in row and hasattr(os, "getloadavg"):
        row["load_1min"] = round(os.getloadavg()[0], 2)  # a busy machine inflates latencies: the report says so
    rows = read_deploy(run_dir)["rows"]
    names = [r.get("name") for r in rows]
    if row["name"] in names:
        rows[names.index(row["name"])] = row
    else:
        rows.append(row)
    write_json(Path(run_dir) / DEPLOY_JSON, {"machine": machine(), "flops_note": FLOPS_NOTE, "rows": rows})


def pytorch_row(model, test_part, test_accuracy: float | None, run_dir: str | os.PathLike,
                max_seconds: float = 1.5) -> dict:
    """The run's own model as trained ("PyTorch fp32"): an nn.Module classifier (heads.py) runs
    on its prepared inputs. A TF-IDF model (zoo/tfidf.py) is no nn.Module and PyTorch does not
    run it: its row is "scikit-learn fp32", with its coefficients as parameters, its vocabulary
    in its file size, no FLOP count, and latency from its logits on the raw texts."""
    run_dir = Path(run_dir)
    if hasattr(model, "parameters"):
        row = {"name": "PyTorch fp32", "engine": "pytorch", "precision": "fp32", "file": "model.safetensors",
               "file_mb": file_mb(run_dir / "model.safetensors")}
        row.update(_module_figures(model, test_part.inputs, max_seconds))
    else:
        files = [run_dir / "model.safetensors", run_dir / "vocabulary.json"]
        sizes = [file_mb(f) for f in files]
        row = {"name": "scikit-learn fp32", "engine": "scikit-learn", "precision": "fp32",
               "file": " + ".join(f.name for f in files),
               "file_mb": round(sum(sizes), 3) if None not in sizes else None}
        row.update(_texts_figures(model, test_part, max_seconds))
    return {**row, "test_accuracy": test_accuracy, "own_model": True}


def _module_figures(model, inputs: np.ndarray, max_seconds: float) -> dict:
    import torch

    from headstart.heads import as_batch

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()

    @torch.no_grad()
    def run_batch(batch: np.ndarray):
        return model(as_batch(batch).to(device)).cpu()  # .cpu() waits for a GPU to finish

    try:
        figures = {"params": count_parameters(model), "mflops": mflops(model, as_batch(inputs[:1]).to(device))}
        figures.update(time_batches(run_batch, inputs, max_seconds=max_seconds))
    finally:
        model.train(was_training)
    figures["device"] = device.type
    return figures


def _texts_figures(model, test_part, max_seconds: float) -> dict:
    texts = np.asarray(list(test_part.texts), dtype=object)
    coef, intercept = getattr(model, "coef", None), getattr(model, "intercept", None)
    params = (int(np.size(coef)) + int(np.size(intercept))) if coef is not None else None
    figures = {"params": params, "mflops": None}
    figures.update(time_batches(lambda batch: model.logits(SimpleNamespace(texts=list(batch))), texts,
                                max_seconds=max_seconds))
    return figures
