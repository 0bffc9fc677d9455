"""The local zoo: the backbones of your own finished runs, by name, beside the pretrained ones.

`headstart zoo add RUN --name NAME` writes $HEADSTART_HOME/zoo/NAME/ (HEADSTART_HOME
defaults to ~/.headstart):

    backbone.safetensors   the run's backbone tensors, without its head; keys as the
                           backbone's own state_dict ("model.stem.0.weight", ...)
    spec.json              what rebuilds it (architecture, modality, preprocessing,
                           feature_dim) and where it came from (run, data, classes,
                           strategy, test accuracy, when, which headstart)
    tokenizer/             text backbones: the run's tokenizer, so the entry builds offline

After that NAME is a backbone like any other: its spec rebuilds the source architecture with
random weights at the recorded structure and loads the saved tensors; runs record the weights
as "zoo:NAME", and the source *architecture*, so predicting with, exporting or pruning them
never needs the entry again. Below the heads and modalities, this module reads a run
directory through `Run` and its backbone tensors from model.safetensors.
"""
from __future__ import annotations

import os
import re
import shutil
import uuid
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

from safetensors.torch import load_file, save_file

from headstart.errors import HeadstartError
from headstart import manifest
from headstart.files import atomic_dir, read_json, write_json
from headstart.registry import Registry
from headstart.run import CONFIG, PRUNED, Run
from headstart.untrusted import check_recorded_model
from headstart.zoo.backbone import Backbone
from headstart.zoo.registry import BackboneSpec
from headstart.zoo.weights import load_into, load_weights_file

ENTRY_FORMAT = "headstart-zoo-entry/1"
WEIGHTS_FILE = "backbone.safetensors"
SPEC_FILE = "spec.json"
TOKENIZER_FOLDER = "tokenizer"  # text entries: the run's tokenizer (modalities/text.py copies it)
# A name must be a single folder name and must read unambiguously wherever backbone names
# are parsed: no path separators (folders are text encoders), no "@" (ARCH@block layers), no
# ":" (rank's BACKBONE:SIZE candidates), no leading dot (our own temporary folders).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Words that mean something else where a backbone name goes (--backbone auto, scratch:same).
_RESERVED = {"auto", "same", "none"}
_BACKBONE_KEYS = "backbone."  # the classifier's backbone tensors; "head." is the head (heads.py)
_BACKBONE_RUNS = "add a run of a backbone + head (probe, lp-ft, finetune, lora or scratch)"
_NEEDED_KEYS = ("name", "modality", "architecture", "preprocessing", "source_run", "strategy")


def zoo_home() -> Path:
    """$HEADSTART_HOME/zoo, read at call time (tests and users point it elsewhere)."""
    return Path(os.environ.get("HEADSTART_HOME") or "~/.headstart").expanduser() / "zoo"


# ----------------------------------------------------------------------------- per modality

# How each modality's backbone is rebuilt with random weights at its recorded structure, and
# which files that reads: the modality's own `rebuild_backbone` and `copy_backbone_files`.
# register_modality adds each modality here (the zoo sits below the modalities, and never
# compares modality names), so code that adds or builds entries imports headstart.modalities.
BACKBONE_REBUILDERS: Registry = Registry(
    "modality", hint="the modalities register how their backbones are rebuilt when headstart.modalities is imported")


# ----------------------------------------------------------------------------- resolving

def resolve(name: str) -> BackboneSpec | None:
    """The resolver: a local entry by that name, else None (the next resolver is asked)."""
    if not _is_entry_name(name):
        return None
    record = _read_entry(name)
    return None if record is None else _spec(name, record)


def local_names(modality: str) -> list[str]:
    """The local entries that eat this modality's data, by name (rank's candidates)."""
    return [r["name"] for r in entries() if r["modality"] == modality]


def known_names() -> list[str]:
    """Every local entry's name, for the "did you mean" hint."""
    return [r["name"] for r in entries()]


def entries() -> list[dict]:
    """The spec.json of every local entry, by name."""
    home = zoo_home()
    if not home.is_dir():
        return []
    found = (_read_entry(p.name, damaged_ok=True) for p in sorted(home.iterdir()) if _is_entry_name(p.name))
    return [r for r in found if r is not None]


def listing_lines() -> list[str]:
    """`headstart zoo`'s section for the local entries."""
    if not (found := entries()):
        return [f"No local backbones in {zoo_home()}: `headstart zoo add RUN --name NAME` adds a finished run's."]
    return [f"{'local backbone':32} {'modality':9} {'test acc':9} source run"] + [
        f"{r['name']:32} {r['modality']:9} {_accuracy(r):9} {r['source_run']} ({r['architecture']}, "
        f"{r['strategy']} on {r.get('data_name') or r.get('data')})" for r in found]


def _accuracy(record: dict) -> str:
    return "-" if record.get("test_accuracy") is None else f"{record['test_accuracy']:.3f}"


def _spec(name: str, record: dict) -> BackboneSpec:
    return BackboneSpec(
        name=name, modality=record["modality"],
        factory=partial(_create, name, record, zoo_home() / name),
        has_pretrained=True, offline=lambda: True, description=_description(record),  # weights on this disk
        # images: the size it was trained at; text has no size of that kind
        input_size=record["preprocessing"].get("input_size"), sized_to_input=False)


def _description(record: dict) -> str:
    return (f"local: {record['architecture']} from {record['source_run']} ({record['strategy']} on "
            f"{record.get('data_name') or record.get('data')}, {len(record.get('classes') or [])} classes, "
            f"test accuracy {_accuracy(record)})")


def _create(name: str, record: dict, folder: Path, *, pretrained: bool = True, weights: str | None = None,
            **options) -> Backbone:
    """The spec's factory: the architecture at its recorded structure, then the weights
    (a --weights FILE wins; pretrained: the entry's own; else the random init)."""
    check_recorded_model(record, folder / SPEC_FILE)  # untrusted input: names no path, asks for no code
    manifest.verify(folder, WEIGHTS_FILE, TOKENIZER_FOLDER, hint=_readd_hint(name))
    try:
        backbone = BACKBONE_REBUILDERS.get(record["modality"]).rebuild_backbone(record, folder, **options)
    except HeadstartError:
        raise
    except Exception as e:  # noqa: BLE001 - an entry without a manifest: a damaged tokenizer folder raises anything
        raise HeadstartError(f"the local zoo entry '{name}' cannot be rebuilt from {folder}: {type(e).__name__}: "
                             f"{(str(e).splitlines() or [''])[0][:300]}", hint=_readd_hint(name)) from e
    backbone.name = name
    if weights is not None:
        load_into(backbone.model, load_weights_file(weights), source=str(weights))
        backbone.weights = f"file:{weights}"
    elif pretrained:
        load_into(backbone, _read_tensors(folder / WEIGHTS_FILE), source=f"the local zoo entry '{name}'")
        backbone.weights = f"zoo:{name}"
    else:
        backbone.weights = "random"
    return backbone


# ----------------------------------------------------------------------------- add / remove

def add_entry(run_dir: str | os.PathLike, name: str, *, force: bool = False) -> dict:
    """Register a finished run's backbone as NAME; every check runs before anything is
    written, and the entry appears whole (written in a temporary folder, then renamed)."""
    check_name(name)
    folder = zoo_home() / name
    if folder.exists() and not force:
        raise HeadstartError(f"the local zoo already has '{name}' ({folder})",
                             hint=f"pass --force to replace it, or choose another --name")
    check_not_shadowing(name)
    run_dir = Path(run_dir).expanduser().resolve()
    run, meta = _finished_run(run_dir)
    tensors = _backbone_tensors(run_dir, meta)
    record = _record(name, run, meta)
    modality = BACKBONE_REBUILDERS.get(record["modality"])
    # The proof that NAME will build: the architecture rebuilt as the factory will, the
    # tensors loaded strictly. A run whose shapes no longer match its name fails here.
    try:
        trial = modality.rebuild_backbone(record, run_dir)
        load_into(trial, tensors, source=f"run {run_dir}")
    except HeadstartError as e:
        raise HeadstartError(f"{run_dir}'s backbone cannot be rebuilt from its architecture name: {e}",
                             hint="add a run trained by this version of headstart") from e
    record["feature_dim"] = int(trial.feature_dim)
    del trial
    with atomic_dir(folder) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / WEIGHTS_FILE),
                  metadata={"format": ENTRY_FORMAT})
        modality.copy_backbone_files(run_dir, tmp)
        write_json(tmp / SPEC_FILE, record)
        manifest.record(tmp, WEIGHTS_FILE, SPEC_FILE, TOKENIZER_FOLDER)  # the entry's commit point, renamed with it
    return {**record, "folder": str(folder)}


def remove_entry(name: str) -> dict:
    """Remove the local entry NAME; returns its spec.json. Runs trained on it keep working
    (they rebuild from the source architecture and their own weights)."""
    check_name(name)
    folder = zoo_home() / name
    if not folder.is_dir():
        raise HeadstartError(f"the local zoo has no '{name}'",
                             hint=f"local backbones: {', '.join(known_names()) or 'none'} (`headstart zoo`)")
    record = _read_entry(name, damaged_ok=True)  # a damaged entry is removed all the same
    # Renamed aside first: a half-deleted folder must never resolve as an entry.
    doomed = folder.with_name(f".{name}.removing-{uuid.uuid4().hex[:8]}")
    os.replace(folder, doomed)
    shutil.rmtree(doomed)
    return {**(record or {"name": name}), "folder": str(folder)}


# ----------------------------------------------------------------------------- checks

def _is_entry_name(name) -> bool:
    return isinstance(name, str) and bool(_NAME.fullmatch(name)) and name.lower() not in _RESERVED


def check_name(name) -> None:
    if not _is_entry_name(name):
        raise HeadstartError(
            f"'{name}' cannot name a local backbone",
            hint="use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit (no '/', '@', ':' "
                 f"or spaces; not {', '.join(sorted(_RESERVED))})")


def check_not_shadowing(name: str) -> None:
    """A local entry is resolved before the Hugging Face and timm names: it must not hide one."""
    from headstart.zoo import text_backbones, timm_backbones
    from headstart.zoo.registry import list_backbones

    if name in {b["name"] for b in list_backbones()}:
        meaning = "a registered backbone"
    elif text_backbones.resolve(name) is not None:
        meaning = "a Hugging Face text encoder"
    else:
        try:
            meaning = "a timm architecture" if timm_backbones.resolve(name) is not None else None
        except HeadstartError:  # a timm architecture with an unknown tag: still timm's name
            meaning = "a timm architecture"
    if meaning:
        raise HeadstartError(f"'{name}' is already {meaning}: a local backbone by that name would hide it",
                             hint="choose another --name, e.g. one that says the data it was trained on")


def _finished_run(run_dir: Path) -> tuple[Run, dict]:
    """A finished run with a backbone and its model.json, or a refusal saying why not."""
    run = Run.open(run_dir).require_finished().require_intact(CONFIG)  # the entry records the data it names
    meta = run.model_info  # refuses a run without its model files
    if not isinstance(meta.get("backbone"), dict):
        raise HeadstartError(f"{run_dir} is not a headstart run (its model.json describes no model)",
                             hint="pass the --out folder of a `headstart fit` run")
    described = meta["backbone"]
    if _standalone(described):
        raise HeadstartError(
            f"{run_dir} holds a standalone model ({meta.get('format')}, strategy {meta.get('strategy')}) with no "
            "backbone: the whole model is one piece (e.g. TF-IDF + logistic regression), with no feature "
            "extractor apart from its head to reuse", hint=_BACKBONE_RUNS)
    if run.kind == PRUNED:
        raise HeadstartError(
            f"{run_dir} is a pruned run: its slimmer layers are recorded for the whole classifier, and the zoo "
            "rebuilds a backbone from its architecture name alone",
            hint="add the run it was pruned from (and prune the runs you train on it)")
    if meta["modality"] not in BACKBONE_REBUILDERS:
        raise HeadstartError(f"{run_dir} is a {meta['modality']} run",
                             hint=f"add a {' or '.join(BACKBONE_REBUILDERS)} run")
    return run, meta


def _standalone(described: dict) -> bool:
    from headstart.zoo.registry import resolve_backbone

    if "architecture" not in described or "feature_dim" not in described:
        return True
    try:
        return resolve_backbone(described["architecture"]).standalone
    except HeadstartError:  # an architecture this install does not know: the trial build says so
        return False


def _backbone_tensors(run_dir: Path, meta: dict) -> dict:
    """The classifier's backbone tensors, keyed as the backbone's own state_dict."""
    manifest.verify(run_dir, "model.safetensors")
    tensors = _read_tensors(run_dir / "model.safetensors")
    if not (found := {k[len(_BACKBONE_KEYS):]: v for k, v in tensors.items() if k.startswith(_BACKBONE_KEYS)}):
        raise HeadstartError(f"{run_dir}/model.safetensors holds no backbone tensors: a standalone model "
                             f"({meta.get('format')})", hint=_BACKBONE_RUNS)
    return found


def _read_tensors(path: Path) -> dict:
    try:
        return load_file(str(path), device="cpu")
    except Exception as e:  # noqa: BLE001 - safetensors raises its own and OS errors alike
        raise HeadstartError(f"cannot read {path}: {type(e).__name__}: {e}",
                             hint="the file is damaged: re-run the fit, or remove and re-add the entry") from e


def _readd_hint(name: str) -> str:
    return f"`headstart zoo remove {name}`, then add its run again (`headstart zoo add RUN --name {name}`)"


def _record(name: str, run: Run, meta: dict) -> dict:
    """spec.json: what rebuilds the backbone, then where it came from."""
    from importlib.metadata import version

    described, summary = meta["backbone"], run.summary
    record = {
        "format": ENTRY_FORMAT, "name": name, "modality": meta["modality"],
        "architecture": described["architecture"], "feature_dim": described["feature_dim"],
        "preprocessing": described["preprocessing"],
        # what the source run started from before it trained (e.g. "random", "hub:...")
        "source_weights": described.get("weights"),
        "source_run": str(run.path), "source_backbone": described.get("name"),
        # the data as config.yaml names it (a path or a built-in), and as the summary named it
        "data": str(run.recorded_config.get("data") or "") or summary.data, "data_name": summary.data,
        "classes": meta.get("classes") or summary.classes, "strategy": meta.get("strategy"),
        "test_accuracy": summary.test_accuracy,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "headstart_version": version("headstart"),
    }
    if described.get("model_config") is not None:  # text: the Hugging Face config, to rebuild offline
        record["model_config"] = described["model_config"]
    return record


def _read_entry(name: str, *, damaged_ok: bool = False) -> dict | None:
    """An entry's spec.json; None where there is no entry. A damaged one is an error that says
    so when it is asked for by name, and is left out of listings (damaged_ok)."""
    path = zoo_home() / name / SPEC_FILE
    try:
        if path.parent.is_dir():  # an entry whose manifest recorded a spec.json now lost is damaged, not absent
            manifest.verify(path.parent, SPEC_FILE, hint=_readd_hint(name))
        if not path.is_file():
            if path.parent.is_dir() and any(path.parent.iterdir()):  # its other files, without what rebuilds it
                raise HeadstartError(f"the local zoo entry '{name}' is damaged ({path} is missing)",
                                     hint=_readd_hint(name))
            return None
        record = read_json(path)
        missing = [k for k in _NEEDED_KEYS if k not in record]
    except HeadstartError:
        if damaged_ok:
            return None
        raise
    except (ValueError, TypeError) as e:
        missing, record = [f"readable JSON ({e})"], None
    # a modality not registered in this process is the build's to report (BACKBONE_REBUILDERS):
    # listing entries must not depend on which modules happen to be imported
    if not missing:
        return record
    if damaged_ok:
        return None
    lacks = ", ".join(missing)
    raise HeadstartError(f"the local zoo entry '{name}' is damaged ({path} lacks {lacks})",
                         hint=f"`headstart zoo remove {name}`, then add its run again")
