"""The command line, derived from the commands' declarations: the only module that speaks argparse.

A command is a config of settings and a function over the API (`@command("export",
ExportConfig, help=...)` in cli.py). Its options come from the config's declared settings
(config/), and its config from the options given: every option defaults to "not given"
(argparse.SUPPRESS), so the derivation knows exactly which flags were typed, and `fit --config
FILE` can take the file's settings as defaults under them without a sentinel value.

Start-up stays fast: the top-level parser knows only the commands' names and help lines; the
chosen command's own parser is built alone, and a registry named by its settings ("choices
held by a registry") is imported only then. `headstart --help` and `headstart predict
--engine onnxruntime ...` import neither torch nor any registry.

Why a small derivation rather than jsonargparse or tyro: the declarations are plain dataclass
fields with metadata, argparse gives the help layout and error style users know, and the few
rules we need (per-arm settings left out of `compare`, registry-backed choices resolved late,
`--no-pretrained`, durations) fit in these lines without a new dependency in every install.
"""
from __future__ import annotations

import argparse
import types
import typing
from dataclasses import MISSING, dataclass
from importlib import import_module
from typing import Callable

from .config.settings import build, offered
from .registry import Registry

DESCRIPTION = ("Train an accurate classifier in a fraction of the time by reusing a pre-trained model, and prove "
               "the time saved.")
DEFAULTS_FILE_HELP = ("a YAML of fit settings (tune's RUN/best.yaml, any run's config.yaml) as the defaults: the "
                      "flags given win, and DATA may be left out when the file names it")


@dataclass(frozen=True)
class Command:
    name: str                       # the words after `headstart`: "export", "zoo add"
    config: type                    # the dataclass of its settings
    run: Callable[[object], int]    # config -> exit status
    help: str
    defaults_file: bool = False     # --config FILE: a YAML of the settings, as defaults under the flags given


COMMANDS: Registry[Command] = Registry("command", hint="`headstart --help` lists them")


def command(name: str, config: type, *, help: str, defaults_file: bool = False):
    """Decorator: `fn(config) -> int` is the command `name`, its options derived from `config`."""

    def register(fn):
        COMMANDS.add(name, Command(name, config, fn, help, defaults_file))
        return fn

    return register


# ------------------------------------------------------------------- choices

def _registry(f):
    """The registry a setting names ("module:attribute"; a function is called for it)."""
    module, _, attribute = f.metadata["choices"].partition(":")
    held = getattr(import_module(f"headstart.{module}"), attribute)
    return held() if callable(held) and not hasattr(held, "keys") else held


def registry_choices(f) -> list[str]:
    """The names a registry-backed setting accepts: its extra choices, then the registry's
    (its `.choices()` where it has one, else its keys)."""
    held = _registry(f)
    names = held.choices() if callable(getattr(held, "choices", None)) else list(held)
    names = [n if isinstance(n, str) else n.name for n in names]
    return list(dict.fromkeys([*f.metadata["extra_choices"], *names]))


def _summaries(f) -> str:
    return "; ".join(f"{name}: {entry.summary}" for name, entry in _registry(f).items())


def choices_of(f) -> list[str] | None:
    choices = f.metadata.get("choices")
    return registry_choices(f) if isinstance(choices, str) else (list(choices) if choices else None)


# ------------------------------------------------------------------- options

def _value_type(annotation) -> type:
    """int | None -> int; tuple[str, ...] -> tuple (annotations are strings under `from __future__`)."""
    hint = eval(annotation, {"tuple": tuple}) if isinstance(annotation, str) else annotation  # noqa: S307
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is tuple:
        return tuple
    return hint if hint in (int, float, str, bool) else str


def _help(f, kind: type) -> str:
    meta, text = f.metadata, f.metadata["help"]
    if "{choices}" in text:
        text = text.replace("{choices}", ", ".join(registry_choices(f)))
    if "{summaries}" in text:
        text = text.replace("{summaries}", _summaries(f))
    said = f.default in (None, MISSING) or "default" in text or meta["positional"] or kind is bool
    return text if said else f"{text} (default: {f.default})"


def _add_option(parser: argparse.ArgumentParser, f, *, optional_positionals: bool) -> None:
    meta = f.metadata
    kind = _value_type(f.type)
    options = {"default": argparse.SUPPRESS, "help": _help(f, kind)}
    if meta["positional"]:
        if kind is tuple:
            options["nargs"] = "*"
        elif optional_positionals or f.default is not MISSING:
            options["nargs"] = "?"
        parser.add_argument(f.name, **options)
        return
    flag = meta["flag"] or "--" + f.name.replace("_", "-")
    if kind is bool:
        parser.add_argument(flag, dest=f.name, action="store_false" if f.default else "store_true", **options)
        return
    if meta["parse"] is not None:  # read by its parse: a list, a duration; argparse sees text
        options.update(metavar=meta["metavar"] or "VALUE")
    else:
        choices = None if meta["checked_when_used"] else choices_of(f)
        options.update(type=str if kind is tuple else kind, choices=choices, metavar=meta["metavar"])
        if kind is tuple:
            options["nargs"] = "+"
    parser.add_argument(flag, dest=f.name, required=f.default is MISSING, **options)


def _fill(parser: argparse.ArgumentParser, name: str) -> None:
    """The options of the command `name`, and its sub-commands (`zoo add`) with theirs."""
    if name in COMMANDS:
        cmd = COMMANDS[name]
        for f, _ in offered(cmd.config):
            _add_option(parser, f, optional_positionals=cmd.defaults_file)
        if cmd.defaults_file:
            parser.add_argument("--config", default=argparse.SUPPRESS, help=DEFAULTS_FILE_HELP)
    children = [c for c in COMMANDS.values() if c.name.startswith(name + " ")]
    if children:
        sub = parser.add_subparsers(dest="action", required=name not in COMMANDS)
        for child in children:
            _fill(sub.add_parser(child.name.split()[-1], help=child.help), child.name)


# ------------------------------------------------------------------- the command line

@dataclass(frozen=True)
class Invocation:
    command: Command
    given: dict      # the settings typed, by field name (and `config`, the defaults file)
    quiet: bool

    def config(self):
        """The command's config: the settings given, read as declared, over the defaults."""
        given = dict(self.given)
        defaults_file = given.pop("config", None)
        return build(self.command.config, given, command=self.command.name, defaults_file=defaults_file)


def parse(argv: list[str]) -> Invocation:
    """The command and the settings `argv` gives (argparse exits 2 on a malformed line)."""
    parser = argparse.ArgumentParser(prog="headstart", description=DESCRIPTION)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or messages, only results")
    sub = parser.add_subparsers(dest="command", required=True)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for word in dict.fromkeys(name.split()[0] for name in COMMANDS):
        p = sub.add_parser(word, help=COMMANDS[word].help)
        if word == chosen:  # only the chosen command's parser is built: its registries load, no other's
            _fill(p, word)
    given = vars(parser.parse_args(argv))
    name = " ".join(w for w in (given.pop("command"), given.pop("action", None)) if w)
    quiet = given.pop("quiet")
    return Invocation(COMMANDS[name], given, quiet)
