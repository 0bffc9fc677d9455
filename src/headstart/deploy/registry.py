"""The exporter seam: `headstart export RUN --format NAME` looks NAME up here.

An exporter writes a self-contained model file for a finished run, checks it against the
run's own model before it returns (outputs within tolerance, accuracy measured on the run's
test split), and records what it measured beside the file.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Callable

from headstart.registry import Registry


@dataclass(frozen=True)
class Exporter:
    name: str
    export: Callable[..., dict]  # (run_dir, **options) -> what was written and measured
    summary: str                 # one line for --help


EXPORTERS: Registry[Exporter] = Registry("export format")
# The modules whose import registers exporters. None imports torch at module level, so the
# CLI can list the formats in its --help without paying for (or needing) PyTorch.
EXPORTER_MODULES = ("headstart.deploy.onnx_export",)


def load_exporters() -> Registry[Exporter]:
    for module in EXPORTER_MODULES:
        import_module(module)
    return EXPORTERS


def register_exporter(name: str, *, summary: str):
    def wrap(fn):
        EXPORTERS.add(name, Exporter(name, fn, summary))
        return fn
    return wrap


def get_exporter(name: str) -> Exporter:
    return load_exporters().get(name)
