"""model.safetensors + model.json: everything predict needs, and nothing that can run code.

Saving and loading dispatch on model.json's "format": each kind of model registers how its
files are written and how it is rebuilt (modalities register their classifiers, the zoo its
standalone models), so this module knows no model and imports no strategy.
"""
from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import HeadstartError
from .files import atomic_path, read_json, write_json
from .manifest import record, verify
from .registry import Registry
from .untrusted import check_recorded_model

MODEL_INFO, WEIGHTS = "model.json", "model.safetensors"
# Every file a model may be saved as (a format writes its weights and, for text, its tokenizer
# folder or TF-IDF vocabulary): recorded together after a save, verified together before a load.
MODEL_FILES = (WEIGHTS, MODEL_INFO, "tokenizer", "vocabulary.json")
_REFIT_HINT = ("copy the run again from where it was made, or fit it again (`headstart fit ... --out NEW`); "
               "its config.yaml holds the settings")


@dataclass(frozen=True)
class ModelFormat:
    save: Callable[[object, Path], None]       # write the model's files (not model.json)
    load: Callable[[Path, dict], object]       # rebuild it from its files and model.json
    input: str                                 # what the model takes, for the record


# filled by the modalities (their classifiers) and the zoo (its standalone models)
_FORMATS: Registry[ModelFormat] = Registry("model format")


def register_model_format(name: str, *, save, load, input: str) -> None:
    """name: the format without its version ("headstart-image-classifier")."""
    _FORMATS.add(name, ModelFormat(save, load, input))


def versions() -> dict:
    """The versions a saved model was made with, read from the installed packages' metadata:
    importing timm, scikit-learn and accelerate to ask them would cost a fit seconds."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    def installed(package: str) -> str | None:
        try:
            return version(package)
        except PackageNotFoundError:
            return None

    return {"headstart": version("headstart"), "torch": torch.__version__, "torchvision": installed("torchvision"),
            "timm": installed("timm"), "accelerate": installed("accelerate"),
            "scikit-learn": installed("scikit-learn"), "python": platform.python_version()}


def save_module_weights(model, run_dir: Path) -> None:
    """An nn.Module's weights as model.safetensors (shared tensors handled; written atomically)."""
    from safetensors.torch import save_model as st_save

    with atomic_path(Path(run_dir) / WEIGHTS) as tmp:
        st_save(model, str(tmp))


def load_module_weights(model, run_dir: Path):
    from safetensors.torch import load_model as st_load

    st_load(model, str(Path(run_dir) / WEIGHTS))
    return model.eval()


def _kind(format_name: str) -> str:
    return format_name.split("/")[0]


def save_model(run_dir: Path, model, classes: list[str], strategy: str) -> None:
    run_dir = Path(run_dir)
    kind = _kind(model.format)
    if kind not in _FORMATS:
        raise HeadstartError(f"no way to save a model of format '{model.format}'")
    _FORMATS[kind].save(model, run_dir)
    described = model.describe()
    write_json(run_dir / MODEL_INFO, {
        "format": model.format,
        "modality": described.get("modality"),
        "backbone": described,
        "classes": list(classes),
        "num_classes": len(classes),
        "strategy": strategy,
        "input": _FORMATS[kind].input,
        "versions": versions(),
    })
    record(run_dir, *MODEL_FILES)  # the model's commit point: what a load will verify


def read_model_meta(run_dir: Path) -> dict:
    run_dir = Path(run_dir)
    meta_path, weights_path = run_dir / MODEL_INFO, run_dir / WEIGHTS
    verify(run_dir, MODEL_INFO, hint=_REFIT_HINT)
    if not meta_path.exists() or not weights_path.exists():
        raise HeadstartError(f"{run_dir} holds no finished model (model.json and model.safetensors)",
                             hint="pass the --out folder of a completed `headstart fit` run")
    try:
        meta = read_json(meta_path)
    except (ValueError, UnicodeDecodeError) as e:  # not JSON: someone else's file, or a damaged one
        raise HeadstartError(f"{run_dir} is not a headstart run (its model.json is not JSON: {e})",
                             hint="pass the --out folder of a `headstart fit` run") from e
    if not isinstance(meta, dict) or not isinstance(meta.get("backbone", {}), dict):
        raise HeadstartError(f"{run_dir} is not a headstart run (its model.json describes no model)",
                             hint="pass the --out folder of a `headstart fit` run")
    # runs written before model.json named its modality carry it in the backbone record
    meta.setdefault("modality", meta.get("backbone", {}).get("modality", "image"))
    check_recorded_model(meta["backbone"], meta_path)  # untrusted input: names no path, asks for no code
    return meta


def load_model(run_dir: Path, meta: dict | None = None):
    """(model, model.json) of a finished run; weights from safetensors, never a pickle. `meta`:
    model.json when the caller has read it already (Run.model)."""
    meta = read_model_meta(run_dir) if meta is None else meta
    kind = _kind(meta.get("format", "headstart-image-classifier/1"))
    if kind not in _FORMATS:
        raise HeadstartError(f"{run_dir} holds a model of an unknown format '{meta.get('format')}'",
                             hint="it was written by a newer headstart, or by a modality not installed here")
    verify(run_dir, *MODEL_FILES, hint=_REFIT_HINT)
    _check_weights_readable(Path(run_dir) / WEIGHTS)
    try:
        return _FORMATS[kind].load(Path(run_dir), meta), meta
    except HeadstartError:
        raise
    except Exception as e:  # noqa: BLE001 - a run without a manifest: torch, safetensors, JSON and tokenizers
        # raise their own errors for a damaged file; none of them may reach the user as a traceback
        files = ", ".join(n for n in MODEL_FILES if (Path(run_dir) / n).exists())
        raise HeadstartError(f"the model in {run_dir} could not be rebuilt from its files ({files}): "
                             f"{type(e).__name__}: {_first_line(e)}", hint=_REFIT_HINT) from e


def _check_weights_readable(path: Path) -> None:
    """model.safetensors' header and size, read before any tensor (safetensors checks that the
    header describes exactly the bytes that follow): a damaged file is named, not a traceback."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            f.keys()
    except (SafetensorError, OSError, ValueError) as e:
        raise HeadstartError(f"{path} is damaged or not a safetensors file ({_first_line(e)})", hint=_REFIT_HINT) from e


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0][:300]
