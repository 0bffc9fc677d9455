"""A --resume that finds no checkpoint starts over: its curve is one run's, not the killed attempt's
rows followed by the new ones (pipeline.start_recorder); one that continues keeps its rows."""
from __future__ import annotations

import json

from headstart.pipeline import start_recorder
from headstart.strategies.base import get_strategy


def _killed_run(tmp_path, rows: int):
    run = tmp_path / "run"
    run.mkdir()
    lines = [json.dumps({"step": i, "epoch": i, "train_seconds": float(i), "wall_seconds": float(i),
                         "split": "val", "accuracy": 0.5, "loss": 1.0}) for i in range(rows)]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return run


def test_a_resume_without_a_checkpoint_starts_an_empty_curve(tmp_path):
    run = _killed_run(tmp_path, rows=3)
    recorder = start_recorder(run, get_strategy("scratch"), resume=True)
    assert recorder.rows == [] and not (run / "metrics.jsonl").exists()
    recorder.log("val", 0.6, 0.9)
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1


def test_a_resume_from_a_checkpoint_carries_on_from_its_rows(tmp_path):
    run = _killed_run(tmp_path, rows=3)
    (run / "checkpoint").mkdir()
    (run / "checkpoint" / "scratch.pt").write_bytes(b"a checkpoint")
    recorder = start_recorder(run, get_strategy("scratch"), resume=True)
    assert [r["step"] for r in recorder.rows] == [0, 1, 2]
    assert recorder.wall_seconds >= 2.0  # the clock goes on from the last row


def test_a_new_run_never_keeps_old_rows(tmp_path):
    run = _killed_run(tmp_path, rows=2)
    (run / "checkpoint").mkdir()
    (run / "checkpoint" / "scratch.pt").write_bytes(b"a checkpoint")
    assert start_recorder(run, get_strategy("scratch"), resume=False).rows == []
