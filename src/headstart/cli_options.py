"""Command-line options derived from the settings declared in config.py.

Why a small helper rather than jsonargparse or tyro: the declarations are plain dataclass
fields with metadata, argparse gives the help layout and error style the rest of the CLI
uses, and the few rules we need (per-arm settings left out of `compare`, registry-backed
choices resolved at run time, `--no-pretrained`, durations) fit in these lines without a new
dependency in every install.
"""
from __future__ import annotations

import argparse
import types
import typing
from dataclasses import MISSING, fields


def _registry_choices(name: str) -> list[str]:
    # Imported when a parser is built: the registries fill as their packages import.
    if name == "strategies":
        from .strategies import STRATEGIES
        return [*STRATEGIES, "auto"]  # auto: chosen by evidence before anything trains (choose/auto.py)
    if name == "optimizers":
        from .train.optim import OPTIMIZERS
        return list(OPTIMIZERS)
    if name == "schedules":
        from .train.optim import SCHEDULES
        return list(SCHEDULES)
    if name == "augmentations":
        from .train.augment import AUGMENTATIONS
        return list(AUGMENTATIONS)
    if name == "modalities":
        from .modalities import modalities
        return ["auto", *(m.name for m in modalities())]
    if name == "explain_methods":
        from .explain import method_names
        return ["auto", *method_names()]
    raise KeyError(name)


def _value_type(annotation) -> type:
    """int | None -> int; str -> str (annotations are strings under `from __future__`)."""
    hint = eval(annotation, {"tuple": tuple}) if isinstance(annotation, str) else annotation  # noqa: S307
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return hint if hint in (int, float, str, bool) else str


def add_options(parser: argparse.ArgumentParser, cls, *, skip_per_arm: bool = False,
                skip: tuple[str, ...] = ()) -> None:
    """One option per declared field of `cls` (the field without a default is positional)."""
    for f in fields(cls):
        meta = f.metadata
        if "help" not in meta or f.name in skip or (skip_per_arm and meta.get("per_arm")):
            continue
        kind = _value_type(f.type)
        choices = meta.get("choices")
        if isinstance(choices, str):
            choices = _registry_choices(choices)
        if f.default is MISSING:
            parser.add_argument(f.name, help=meta["help"])
        elif kind is bool:
            flag = meta.get("flag") or "--" + f.name.replace("_", "-")
            action = "store_false" if f.default else "store_true"
            parser.add_argument(flag, dest=f.name, action=action, help=meta["help"])
        else:
            flag = meta.get("flag") or "--" + f.name.replace("_", "-")
            said = f.default is None or "default" in meta["help"]
            parser.add_argument(flag, dest=f.name, default=f.default, choices=choices,
                                type=str if meta.get("parse") else kind,
                                metavar="VALUE" if meta.get("parse") else None,
                                help=meta["help"] + ("" if said else f" (default: {f.default})"))


def from_options(cls, args: argparse.Namespace, *, skip_per_arm: bool = False, **extra):
    """An instance of `cls` from parsed options (those the parser had), parsed as declared;
    `extra` wins over the options."""
    values = {}
    for f in fields(cls):
        if not hasattr(args, f.name) or "help" not in f.metadata or (skip_per_arm and f.metadata.get("per_arm")):
            continue
        value = getattr(args, f.name)
        parse = f.metadata.get("parse")
        if parse is not None and isinstance(value, str):
            value = parse(value)
        values[f.name] = value
    return cls(**{**values, **extra})
