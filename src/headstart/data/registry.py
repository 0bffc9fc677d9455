"""Built-in datasets by name, with their own options: `elpv`, `elpv:grades`.

A dataset's options travel with its name (NAME:OPTION[,OPTION]) rather than as global flags,
so a new dataset brings its options without touching the command line.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Callable

from headstart.errors import HeadstartError
from headstart.registry import Registry


@dataclass(frozen=True)
class Builtin:
    name: str
    description: str
    loader: Callable[..., object]      # loader(**{option: True}) -> ImageData | TextData
    available: Callable[[], bool]
    options: dict[str, str] = field(default_factory=dict)  # option -> what it does

    def load(self, options: list[str]):
        unknown = [o for o in options if o not in self.options]
        if unknown:
            known = ", ".join(f"{self.name}:{o} ({what})" for o, what in self.options.items()) or "none"
            raise HeadstartError(f"the built-in dataset {self.name} has no option '{unknown[0]}'",
                                 hint=f"its options: {known}")
        return self.loader(**{o: True for o in options})


# A name that is neither a file nor an entry gets unknown_spec's message (it may be a mistyped path)
_REGISTRY: Registry[Builtin] = Registry("built-in dataset")


def register_dataset(name: str, *, description: str, available: Callable[[], bool] | None = None,
                     options: dict[str, str] | None = None):
    """Decorator: register a built-in dataset loader under `name`. The loader takes each of
    `options` as a boolean keyword. `available` says whether it loads without a download or
    an optional package (default: always)."""

    def decorator(loader):
        _REGISTRY.add(name, Builtin(name, description, loader, available or (lambda: True), dict(options or {})))
        return loader

    return decorator


def find_builtin(spec: str) -> tuple[Builtin, list[str]] | None:
    """The built-in a spec names ("elpv" or "elpv:grades"), with its options; None otherwise."""
    name, _, options = spec.partition(":")
    if name not in _REGISTRY:
        return None
    return _REGISTRY[name], [o.strip() for o in options.split(",") if o.strip()]


def list_datasets() -> list[dict]:
    """Built-in datasets as dicts (name, description, available, options), sorted by name."""
    return [{"name": b.name, "description": b.description, "available": bool(b.available()),
             "options": dict(b.options)}
            for b in sorted(_REGISTRY.values(), key=lambda b: b.name)]


def unknown_spec(spec: str) -> HeadstartError:
    names = sorted(_REGISTRY)
    close = difflib.get_close_matches(spec.lower(), names, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    hint += f"built-in datasets: {', '.join(names)}; otherwise pass an existing folder, CSV or JSONL file"
    return HeadstartError(f"'{spec}' is neither an existing file or folder nor a built-in dataset", hint)
