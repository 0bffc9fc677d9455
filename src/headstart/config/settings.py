"""How a setting is declared, and how values become a config: the one place that reads the
declarations for the command line (cli_options.py derives the parser from them), for the
Python API (api.py's signatures) and for `--config FILE` defaults.

A setting is a dataclass field whose metadata says its help, its choices (a tuple, or the
registry that holds them, named as "module:attribute" and resolved only when a parser needs
it: this module sits at the bottom of the package and imports no registry), its flag and how
its text is read (`parse`). Every value given, from the command line or from Python, goes
through the declared parse, so `budget="2m"` and `--budget 2m` are read by one function.
"""
from __future__ import annotations

import inspect
import re
from dataclasses import MISSING, field, fields
from pathlib import Path

from ..errors import HeadstartError


def setting(default=MISSING, help: str = "", *, choices: str | tuple | None = None, flag: str | None = None,
            parse=None, per_arm: bool = False, positional: bool = False, metavar: str | None = None,
            extra_choices: tuple[str, ...] = (), checked_when_used: bool = False):
    """A declared setting.

    choices: a tuple, or the registry that holds them as "module:attribute" (relative to
    headstart; the attribute may be a function returning it), with `extra_choices` accepted
    beside its entries ("auto"). A setting with a `parse` reads a list or a value of its own
    form, so argparse does not check its text against the choices, nor where
    `checked_when_used` (the registry's own lookup refuses an unknown name, with its message);
    its help may name them as {choices}, or list each entry's summary as {summaries}.
    flag: the option's name when it is not --field-name; a setting without a default and
    without a flag is a positional argument, as is one declared `positional`.
    parse: turns the given text (or value) into the value. per_arm: `compare` sets it itself
    for each arm, so its command line does not offer it."""
    meta = {"help": help, "choices": choices, "extra_choices": tuple(extra_choices), "flag": flag, "parse": parse,
            "per_arm": per_arm, "positional": positional or (default is MISSING and flag is None),
            "metavar": metavar, "checked_when_used": checked_when_used}
    return field(default=default, metadata=meta)


def nested(cls, *, offer=lambda f: True):
    """A config inside a config (compare's and tune's shared fit settings): its settings that
    `offer` accepts are offered beside the outer ones (an outer setting of the same name wins),
    and it takes the outer config's DATA."""
    return field(default=None, metadata={"nested": cls, "offer": offer})


# ------------------------------------------------------------------- shared settings
# The settings several commands take, declared here once: their flag, type and words.

DATA_HELP = ("a folder of class sub-folders (images or .txt files), a CSV (path,label or text,label), a JSONL of "
             "texts, or a built-in dataset, with its options as NAME:OPTION (e.g. elpv:grades; see `headstart "
             "datasets`)")
RUN_HELP = "a run directory written by `headstart fit`"
NEW_RUN_HELP = "run directory (default: a new folder under runs/)"
INPUTS_HELP = "image files or folders; for a text run, the texts themselves"
TEXT_FILE_HELP = "text runs: a file with one text per line ('-' reads standard input)"
IMAGE_SIZE_HELP = "images: input size in pixels (default: the backbone's)"
IMAGE_SIZE_AUTO_HELP = ("; auto: the backbone's own input size unless a paired comparison on a sample of the "
                        "training data shows another of 96/128/160/224 px better, or a smaller one within a point "
                        "(at most a tenth of --budget)")
MAX_EVAL_HELP = "cap on the validation and test sizes, to keep evaluation cheap"
TRACK_URI_HELP = ("where --track logs: a TensorBoard log folder (default: RUN/tensorboard), or an MLflow folder, "
                  "tracking URI or server URL (default: RUN/../mlruns, an SQLite store)")


def data_setting(**kw):
    return setting(help=DATA_HELP, **kw)


def run_setting(help: str = RUN_HELP):
    return setting(help=help)


def out_setting(help: str = NEW_RUN_HELP):
    return setting(None, help)


def image_size_setting(help: str = IMAGE_SIZE_HELP, *, auto: bool = False):
    """--image-size N; with `auto`, also --image-size auto (chosen by measurement, choose/image_size.py)."""
    if auto:
        return setting(None, help + IMAGE_SIZE_AUTO_HELP, parse=parse_image_size_or_auto, metavar="PX|auto")
    return setting(None, help, parse=parse_image_size, metavar="PX")


def max_eval_setting(help: str = MAX_EVAL_HELP):
    return setting(1000, help)


def budget_setting(help: str, *, flag: str = "--budget", default=None, **kw):
    """A time cap: '90s', '5m', '1.5h' or seconds, held in seconds."""
    return setting(default, help, flag=flag, parse=parse_duration, **kw)


# ------------------------------------------------------------------- reading text

_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str | float | int | None) -> float | None:
    """'90s', '5m', '1.5h' or plain seconds -> seconds."""
    if text is None:
        return None
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", str(text))
        if not m:
            raise HeadstartError(f"cannot read the duration '{text}'", hint="write e.g. 90s, 5m or 1.5h")
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if seconds <= 0:
        raise HeadstartError(f"the budget must be positive, got '{text}'")
    return seconds


def parse_image_size(text) -> int | None:
    """'128' or 128 -> 128: a whole number of pixels."""
    if text is None:
        return None
    if isinstance(text, bool):
        size = None
    elif isinstance(text, (int, float)):
        size = int(text) if float(text).is_integer() else None
    else:
        size = int(str(text).strip()) if re.fullmatch(r"\s*[0-9]+\s*", str(text)) else None
    if size is None or size <= 0:
        raise HeadstartError(f"cannot read the image size '{text}'", hint="give a whole number of pixels, e.g. 128")
    return size


def parse_image_size_or_auto(text) -> int | str | None:
    """'auto' stays 'auto' (chosen later by measurement); anything else is a size in pixels."""
    if isinstance(text, str) and text.strip().lower() == "auto":
        return "auto"
    try:
        return parse_image_size(text)
    except HeadstartError:
        raise HeadstartError(f"cannot read the image size '{text}'",
                             hint="give a whole number of pixels, e.g. 128, or auto") from None


def parse_names(text) -> tuple[str, ...] | None:
    """'a,b' or ['a', 'b'] -> ('a', 'b'); nothing named -> None."""
    if text is None:
        return None
    names = tuple(n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip())
    return names or None


# ------------------------------------------------------------------- values -> config

def offered(cls) -> list[tuple[object, str | None]]:
    """The settings a config offers, as (field, the nested field holding it or None): its own
    declared ones, then those of its nested configs that the outer does not declare itself."""
    own = [(f, None) for f in fields(cls) if "help" in f.metadata]
    names = {f.name for f, _ in own}
    inner = []
    for holder in fields(cls):
        if "nested" in holder.metadata:
            inner += [(f, holder.name) for f in fields(holder.metadata["nested"])
                      if "help" in f.metadata and f.name not in names and holder.metadata["offer"](f)]
    return own + inner


def python_name(f) -> str:
    """A setting's keyword in the Python API: its field name, except a duration's, whose field
    carries its unit (budget_seconds) while a caller writes budget='2m', as the flag does."""
    if f.metadata.get("parse") is parse_duration and f.name.endswith("_seconds") and f.metadata.get("flag"):
        return f.metadata["flag"].removeprefix("--").replace("-", "_")
    return f.name


def build(cls, values: dict, *, command: str, defaults_file: str | Path | None = None):
    """A `cls` from the settings given (by field name), each read by its declared parse, over
    the settings of `defaults_file` (a YAML of them, e.g. tune's best.yaml); the rest are the
    declared defaults. A nested config takes the settings it holds, and the outer DATA."""
    values = {**(_read_defaults(cls, defaults_file, command) if defaults_file is not None else {}), **values}
    settings = offered(cls)
    for f, _ in settings:
        parse = f.metadata.get("parse")
        if parse is not None and values.get(f.name) is not None:
            values[f.name] = parse(values[f.name])
    missing = [f.name for f, holder in settings if holder is None and f.default is MISSING and f.name not in values]
    if missing:
        name = missing[0].upper()
        hint = f"give {name}, or --config FILE naming it (best.yaml does)" if defaults_file is not None else None
        raise HeadstartError(f"{command} needs {name}", hint=hint)
    own = {f.name: values[f.name] for f, holder in settings if holder is None and f.name in values}
    for holder in (f for f in fields(cls) if "nested" in f.metadata):
        inner = {f.name: values[f.name] for f, h in settings if h == holder.name and f.name in values}
        if "data" in own:
            inner["data"] = own["data"]
        own[holder.name] = holder.metadata["nested"](**inner)
    return cls(**own)


def _read_defaults(cls, path: str | Path, command: str) -> dict:
    """The settings a YAML file holds, as defaults; its out and resume are dropped (they name the
    run it came from)."""
    import yaml

    path = Path(path)
    loaded = yaml.safe_load(path.read_text()) if path.is_file() else None
    if not isinstance(loaded, dict):
        raise HeadstartError(f"{path} is not a YAML file of {command} settings",
                             hint="give tune's RUN/best.yaml or a run's config.yaml")
    unknown = sorted(set(loaded) - {f.name for f in fields(cls)})
    if unknown:
        raise HeadstartError(f"{path} holds setting(s) {command} does not know: {', '.join(unknown)}",
                             hint=f"remove them; `headstart {command} --help` lists the settings")
    return {k: v for k, v in loaded.items() if k not in ("out", "resume")}


def signature(cls, *, defaults_file: bool = False) -> inspect.Signature:
    """The Python API's signature for `cls`: its positional and required settings first, then
    every other setting it offers as a keyword with its declared default."""
    params = []
    for f, holder in offered(cls):
        default = inspect.Parameter.empty if f.default is MISSING else f.default
        if (f.metadata["positional"] or f.default is MISSING) and holder is None:
            if defaults_file and default is inspect.Parameter.empty:
                default = None  # the file may name it
            params.append(inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default))
        else:
            params.append(inspect.Parameter(python_name(f), inspect.Parameter.KEYWORD_ONLY, default=default))
    if defaults_file:
        params.append(inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None))
    positional = [p for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    return inspect.Signature(positional + [p for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY])


def field_names(cls) -> dict[str, str]:
    """Python keyword -> field name, for every setting `cls` offers."""
    return {python_name(f): f.name for f, _ in offered(cls)}
