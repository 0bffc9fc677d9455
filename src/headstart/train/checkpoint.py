"""Per-epoch checkpoints: model, optimizer, schedule, clock and early-stopping state.

Saved with torch.save and read back with weights_only=True: a checkpoint holds tensors and
plain numbers only, so loading it can never execute code.
"""
from __future__ import annotations

import io
from pathlib import Path

import torch

from ..errors import HeadstartError
from ..files import atomic_write_bytes
from ..records import Recorder


def save_checkpoint(path: Path, model, optimizer, scheduler, recorder: Recorder, *, epoch: int,
                    best_val: float, bad_epochs: int, best_state: dict | None, best_epoch: float) -> None:
    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        # LambdaLR saves its __dict__, which would include our Horizon object; the horizon
        # travels as a plain int instead, so the file stays loadable with weights_only=True
        "scheduler": {k: v for k, v in scheduler.state_dict().items() if k != "horizon"},
        "horizon": scheduler.horizon.total,
        "epoch": epoch,
        "step": recorder.step,
        "train_seconds": recorder.train_seconds,
        "metric_rows": len(recorder.rows),
        "best_val": best_val,
        "bad_epochs": bad_epochs,
        "best_epoch": best_epoch,
        "best_state": best_state,
        "rng": torch.get_rng_state(),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path, model, optimizer, scheduler, recorder: Recorder) -> dict:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: say which and how to proceed
        raise HeadstartError(f"cannot read the checkpoint {path}: {e}",
                             hint="delete it to start the run over, or run without --resume") from e
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    scheduler.horizon.total = payload["horizon"]
    torch.set_rng_state(payload["rng"])
    recorder.restore(rows=payload["metric_rows"], train_seconds=payload["train_seconds"],
                     step=payload["step"], epoch=payload["epoch"])
    return {"epoch": payload["epoch"], "step": payload["step"], "best_val": payload["best_val"],
            "bad_epochs": payload["bad_epochs"], "best_state": payload["best_state"],
            "best_epoch": payload["best_epoch"]}
