"""Per-epoch checkpoints: model, optimizer, schedule, clock and early-stopping state.

Saved with torch.save and read back with weights_only=True: a checkpoint holds tensors and
plain numbers only, so loading it can never execute code.
"""
from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import torch

from .. import manifest
from ..errors import HeadstartError
from ..files import atomic_write_bytes
from ..log import say
from ..records import Recorder


def save_checkpoint(path: Path, model, optimizer, scheduler, recorder: Recorder, *, epoch: int,
                    best_val: float, bad_epochs: int, best_state: dict | None, best_epoch: float,
                    best_loss: float = float("inf")) -> None:
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
        "best_loss": best_loss,  # breaks ties of best_val (train/loop.py _better)
        "bad_epochs": bad_epochs,
        "best_epoch": best_epoch,
        "best_state": best_state,
        "rng": torch.get_rng_state(),
        # numpy's and Python's global generators too: augmentations draw from them (lightly's
        # blur and solarization, timm's mixup), and a resumed run should replay the same draws
        **_host_generators(),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    manifest.record(*_in_run(path))  # a checkpoint is a commit point (manifest.py)


_START_OVER = "delete it, and --resume starts this part of the run over; or copy the run again from where it was made"


def resumable(path: Path) -> bool:
    """Whether `--resume` continues from the checkpoint at `path`. Where there is none, this
    loop starts over from its first epoch and says so, naming the file (and that the run had
    written it, when its manifest recorded one). A missing checkpoint is not refused: deleting
    it is how a run is started over (a damaged one's refusal says so), and its config.yaml and
    split still make the same run. A damaged one is refused by load_checkpoint: a good copy may
    exist, and starting over would throw its training away."""
    if path.is_file():
        return True
    try:
        manifest.verify(*_in_run(path))
        lost = ""
    except HeadstartError:
        lost = " (the run had written it: deleted, or lost in a copy)"
    say(f"no checkpoint {path}{lost}: --resume starts {path.stem} over from its first epoch")
    return False


def load_checkpoint(path: Path, model, optimizer, scheduler, recorder: Recorder) -> dict:
    manifest.verify(*_in_run(path), hint=_START_OVER)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: say which and how to proceed (torch's own advice,
        # to load it with weights_only=False, would let a foreign file run code)
        raise HeadstartError(f"cannot read the checkpoint {path}: it is damaged or not a headstart checkpoint "
                             f"({type(e).__name__})", hint=_START_OVER) from e
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    scheduler.horizon.total = payload["horizon"]
    torch.set_rng_state(payload["rng"])
    if "numpy_rng" in payload:  # absent in checkpoints of earlier versions
        _restore_host_generators(payload)
    recorder.restore(rows=payload["metric_rows"], train_seconds=payload["train_seconds"],
                     step=payload["step"], epoch=payload["epoch"])
    return {"epoch": payload["epoch"], "step": payload["step"], "best_val": payload["best_val"],
            "best_loss": payload.get("best_loss", float("inf")),  # absent before ties were broken by loss
            "bad_epochs": payload["bad_epochs"], "best_state": payload["best_state"],
            "best_epoch": payload["best_epoch"]}


def _in_run(path: Path) -> tuple[Path, str]:
    """RUN/checkpoint/PHASE.pt as (RUN, "checkpoint/PHASE.pt"): the run's manifest records it."""
    path = Path(path)
    return path.parent.parent, f"{path.parent.name}/{path.name}"


def _host_generators() -> dict:
    """numpy's and Python's global generator states as tensors and numbers (weights_only-safe)."""
    _, keys, position, has_gauss, gauss = np.random.get_state()
    version, state, gauss_next = random.getstate()
    return {"numpy_rng": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                          "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "python_rng": {"version": int(version), "state": torch.tensor(state, dtype=torch.int64),
                           "gauss_next": gauss_next}}


def _restore_host_generators(payload: dict) -> None:
    saved = payload["numpy_rng"]
    np.random.set_state(("MT19937", saved["keys"].numpy().astype(np.uint32), saved["position"],
                         saved["has_gauss"], saved["gauss"]))
    saved = payload["python_rng"]
    random.setstate((saved["version"], tuple(int(v) for v in saved["state"]), saved["gauss_next"]))
