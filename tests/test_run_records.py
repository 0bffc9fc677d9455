"""Run.require_intact: a finished run's records read whole or refused by name, without a manifest
too (a run of an earlier version); what reads them that way (report, zoo add, pretrain --resume)."""
from __future__ import annotations

import json
import os

import pytest

from headstart.cli import main
from headstart.errors import HeadstartError
from headstart.run import Run

ROW = json.dumps({"split": "val", "accuracy": 0.5})


def _finished(folder, metrics: str, config: str = "data: x\nseed: 3\n"):
    folder.mkdir()
    (folder / "config.yaml").write_text(config)
    (folder / "summary.json").write_text("{}")
    (folder / "metrics.jsonl").write_text(metrics)
    return Run.open(folder).require_finished()


@pytest.mark.parametrize("metrics, rows, says", [
    (ROW + "\n" + ROW, 2, "its last row is cut short"),  # cut just before its newline
    (ROW + "\n" + ROW[:9] + "\n", 1, "row 2 is not a JSON object"),
    ("", 0, "no rows"),
])
def test_a_finished_runs_torn_metrics_are_damage_not_a_row_to_skip(tmp_path, metrics, rows, says):
    run = _finished(tmp_path / "run", metrics)
    assert len(run.metrics) == rows  # the lenient reader, as a live run is read
    with pytest.raises(HeadstartError, match=f"metrics.jsonl is damaged \\({says}") as refused:
        run.require_intact("metrics.jsonl")
    assert "manifest" not in refused.value.hint  # there is none to delete


@pytest.mark.parametrize("config, says", [
    ("data: x\nseed: 3", "cut short"),  # safe_dump ends every file with a newline
    ("- a list\n", "not the settings headstart writes"),
    (b"\xff\xfe data", "not text"),
])
def test_a_config_that_does_not_read_whole_is_refused_by_name(tmp_path, config, says):
    run = _finished(tmp_path / "run", ROW + "\n")
    (run.path / "config.yaml").write_bytes(config if isinstance(config, bytes) else config.encode())
    with pytest.raises(HeadstartError, match=f"config.yaml is damaged .*{says}"):
        run.require_intact("config.yaml")
    (run.path / "config.yaml").unlink()
    with pytest.raises(HeadstartError, match="config.yaml is missing"):
        run.require_intact("config.yaml")


def test_an_intact_run_passes(tmp_path):
    run = _finished(tmp_path / "run", ROW + "\n" + ROW + "\n")
    assert run.require_intact("config.yaml", "metrics.jsonl", "summary.json") is run


def test_pretrain_resume_refuses_a_damaged_config_by_name(tmp_path, capsys):
    run = tmp_path / "pre"
    run.mkdir()
    (run / "config.yaml").write_bytes(os.urandom(300))
    assert main(["-q", "pretrain", str(tmp_path), "--resume", "--out", str(run)]) == 2
    assert f"{run / 'config.yaml'} is damaged" in capsys.readouterr().err
