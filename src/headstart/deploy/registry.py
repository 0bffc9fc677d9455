"""The exporter seam: `headstart export RUN --format NAME` looks NAME up here.

An exporter writes a self-contained model file for a finished run, checks it against the
run's own model before it returns (outputs within tolerance, accuracy measured on the run's
test split), and records what it measured beside the file.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Callable

from headstart.errors import HeadstartError


@dataclass(frozen=True)
class Exporter:
    name: str
    export: Callable[..., dict]  # (run_dir, **options) -> what was written and measured
    summary: str                 # one line for --help


EXPORTERS: dict[str, Exporter] = {}
# The modules whose import registers exporters. None imports torch at module level, so the
# CLI can list the formats in its --help without paying for (or needing) PyTorch.
EXPORTER_MODULES = ("headstart.deploy.onnx_export",)


def load_exporters() -> dict[str, Exporter]:
    for module in EXPORTER_MODULES:
        import_module(module)
    return EXPORTERS


def register_exporter(name: str, *, summary: str):
    def wrap(fn):
        EXPORTERS[name] = Exporter(name, fn, summary)
        return fn
    return wrap


def get_exporter(name: str) -> Exporter:
    load_exporters()
    if name not in EXPORTERS:
        raise HeadstartError(f"unknown export format '{name}'", hint=f"choose one of: {', '.join(EXPORTERS)}")
    return EXPORTERS[name]
