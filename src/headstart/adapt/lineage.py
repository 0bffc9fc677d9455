"""The lineage of a continued run: every task it learned, so its tests can be reloaded.

RUN/continual.json lists the tasks in order, each with the settings that load its data
(data spec, --classes, load options, sizes), its class names, and its validation and test
indices into that data. Task 5 evaluates task 1's classes by reloading task 1's test items:
nothing is copied, so a lineage costs a few kilobytes. A plain fit run is a lineage of one task
(its config.yaml and splits.json).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import yaml

from ..config import FitConfig
from ..data.dataset import DataForm
from ..files import read_json, write_json
from ..run import Run
from .memory import relabelled

LINEAGE_FILE = "continual.json"


def task_record(config: FitConfig, classes: list[str], indices: dict, run_dir: Path) -> dict:
    return {"run": str(run_dir), "config": config.to_dict(), "classes": list(classes),
            "val": [int(i) for i in indices["val"]], "test": [int(i) for i in indices["test"]]}


def read_lineage(run_dir: Path, config: FitConfig, classes: list[str]) -> list[dict]:
    """The tasks a finished run learned (a plain fit: one, from its config and split)."""
    run_dir = Path(run_dir)
    if (run_dir / LINEAGE_FILE).exists():
        return list(read_json(run_dir / LINEAGE_FILE)["tasks"])
    return [task_record(config, classes, Run(run_dir).splits, run_dir)]  # Run: verified, damage named


def write_lineage(run_dir: Path, tasks: list[dict]) -> None:
    write_json(Path(run_dir) / LINEAGE_FILE, {"tasks": tasks})


class TaskLoader:
    """Loads each task's data once per source (tasks that split one dataset by --classes share a
    single decode), then keeps the task's classes."""

    def __init__(self, load):
        self._load = load  # pipeline.load
        self._sources: dict[str, DataForm] = {}

    def data(self, task: dict) -> DataForm:
        config = FitConfig.from_dict(task["config"])
        whole = replace(config, classes=None, from_run=None)
        key = yaml.safe_dump(whole.to_dict(), sort_keys=True)
        if key not in self._sources:
            self._sources[key] = self._load(whole)
        data = self._sources[key]
        return data.only_classes(config.classes) if config.classes else data

    def part(self, tasks: list[dict], part: str, classes: list[str]) -> DataForm | None:
        """The `part` items (val or test) of every task, labelled over `classes`, in task order."""
        joined = None
        for task in tasks:
            data = self.data(task)
            items = relabelled(data.subset(_indices(task[part])), classes)
            joined = items if joined is None else joined.concat(items)
        return joined


def _indices(values):
    import numpy as np

    return np.array(values, dtype=np.int64)
