"""The run directory: the contract between training, reports and predict.

RUN/config.yaml, metrics.jsonl, model.safetensors, model.json, summary.json, splits.json,
checkpoint/. Every file is written through files.py (aside, then renamed), so a killed run never
leaves a half-written file behind. `Run` (run.py) is the one reader of a run directory; the
Recorder below writes its metrics.
"""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

from .files import append_text, atomic_write_text, json_default, read_json, write_json, write_yaml  # noqa: F401  (the run directory's writers)

METRICS = "metrics.jsonl"


def read_metrics(run_dir: Path) -> list[dict]:
    """metrics.jsonl's rows, the one parser of it. A line that is not a JSON object is skipped:
    the Recorder appends, so a run killed mid-write leaves a half-written last line, and a
    resume, a report or a tracker must still read every row before it."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def new_run_dir(out: str | None, prefix: str = "fit") -> Path:
    """`--out DIR` as given, else a fresh timestamped folder under runs/."""
    if out:
        return Path(out)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{prefix}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = Path(f"{base}-{n}")
    return path


# Listeners every Recorder tells of each row it logs (observe_evaluations).
_OBSERVERS: list[Callable[[dict], None]] = []


@contextmanager
def observe_evaluations(callback: Callable[[dict], None]) -> Iterator[None]:
    """Call `callback(row)` with every row any Recorder logs while inside, after the row is
    written and with the training clock paused. `tune` reports each validation accuracy to its
    study this way; an exception the callback raises (optuna.TrialPruned) ends the run there
    and propagates out of the fit, its metrics so far written."""
    _OBSERVERS.append(callback)
    try:
        yield
    finally:
        _OBSERVERS.remove(callback)


class Recorder:
    """Owns the training clock and metrics.jsonl.

    train_seconds counts only time between resume() and pause(): evaluation, checkpointing and
    report-making run paused, so time-to-accuracy curves measure training alone. wall_seconds
    counts everything since the recorder started.
    """

    def __init__(self, run_dir: Path | None, strategy: str, *, write: bool = True,
                 train_seconds: float = 0.0, rows: list[dict] | None = None):
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.strategy = strategy
        self.write = write and self.run_dir is not None
        self._train_seconds = train_seconds  # carried over on resume
        self._running_since: float | None = None
        self._wall_start = time.perf_counter()
        self._wall_offset = rows[-1]["wall_seconds"] if rows else 0.0
        self.rows: list[dict] = list(rows or [])
        self.step = 0
        self.epoch = 0.0

    # -- the clock -------------------------------------------------------------------------
    def resume(self) -> None:
        if self._running_since is None:
            self._running_since = time.perf_counter()

    def pause(self) -> None:
        if self._running_since is not None:
            self._train_seconds += time.perf_counter() - self._running_since
            self._running_since = None

    @property
    def train_seconds(self) -> float:
        running = time.perf_counter() - self._running_since if self._running_since is not None else 0.0
        return self._train_seconds + running

    @property
    def wall_seconds(self) -> float:
        return self._wall_offset + time.perf_counter() - self._wall_start

    # -- metrics ---------------------------------------------------------------------------
    def log(self, split: str, accuracy: float | None, loss: float | None, **extra: Any) -> dict:
        """Append one evaluation; the clock is paused while we write. accuracy None: a loop
        without labels (pretrain), whose rows measure its loss alone."""
        was_running = self._running_since is not None
        self.pause()
        row = {
            "strategy": self.strategy,
            "step": self.step,
            "epoch": round(self.epoch, 4),
            "train_seconds": round(self.train_seconds, 4),
            "wall_seconds": round(self.wall_seconds, 4),
            "split": split,
            "accuracy": None if accuracy is None else float(accuracy),
            "loss": None if loss is None else float(loss),
            **extra,
        }
        self.rows.append(row)
        if self.write:
            append_text(self.run_dir / METRICS, json.dumps(row, default=json_default) + "\n")
        for observe in list(_OBSERVERS):  # paused: a listener's time is not training time
            observe(row)
        if was_running:
            self.resume()
        return row

    def restore(self, *, rows: int, train_seconds: float, step: int, epoch: float) -> None:
        """Go back to a checkpoint: keep its first `rows` metrics (rows a killed run logged
        later describe training about to be redone), its clock, step and epoch."""
        self.pause()
        self.rows = self.rows[:rows]
        self.rewrite()
        self._train_seconds = train_seconds
        self.step = step
        self.epoch = float(epoch)

    def rewrite(self) -> None:
        """Rewrite metrics.jsonl from memory (after resuming from a checkpoint that predates
        rows a killed run had already appended)."""
        if self.write:
            text = "".join(json.dumps(r, default=json_default) + "\n" for r in self.rows)
            atomic_write_text(self.run_dir / METRICS, text)
