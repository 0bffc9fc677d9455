"""load_data and load_pool: which modality reads a user's data spec, and reading it."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from headstart.data.registry import find_builtin, unknown_spec
from headstart.data.shards import is_shard_spec
from headstart.errors import HeadstartError
from headstart.modalities.base import LoadOptions, Modality, get_modality, modalities


def load_data(spec: str, *, modality: str = "auto", size=None, strict: bool = False,
              text_column: str | None = None, label_column: str | None = None, image_column: str | None = None):
    """Load a built-in dataset (NAME or NAME:OPTION), or a path that some modality recognises.

    Built-in names win over a same-named path in the working directory; write `./name` to
    mean the path. `modality` "auto" asks each registered modality, most specific first,
    whether it recognises the path; a modality name forces the choice. `size` is the decode
    size of image files (224 when None), or a function of the chosen modality giving it (so a
    plan can decode at its backbone's input size); built-ins keep their native size.
    """
    options = LoadOptions(size=None if callable(size) else size, strict=strict, text_column=text_column,
                          label_column=label_column, image_column=image_column)
    forced = None if modality == "auto" else get_modality(modality)
    builtin = find_builtin(spec)
    if builtin is not None:
        dataset, dataset_options = builtin
        if options.names_columns:
            raise HeadstartError(f"--text-column, --label-column and --image-column name columns of a file; the "
                                 f"built-in dataset {dataset.name} has none", "drop them")
        data = dataset.load(dataset_options)
        if forced is not None and data.modality != forced.name:
            raise HeadstartError(f"{spec} is {data.modality} data, not {forced.name}", f"drop the {forced.name} modality")
        return data
    path = _existing(spec)
    chosen = forced or _detect(path, options)
    if callable(size):
        options = replace(options, size=size(chosen))
    return chosen.load(path, options)


def load_pool(spec: str, *, modality: str = "auto", size: int | None = None, strict: bool = False,
              text_column: str | None = None, image_column: str | None = None):
    """Unlabelled data (a pool): a path, or a built-in dataset with its labels set aside."""
    options = LoadOptions(size=size, strict=strict, text_column=text_column, image_column=image_column)
    builtin = find_builtin(spec)
    if builtin is not None:
        return builtin[0].load(builtin[1]).unlabelled()
    path = _existing(spec)
    chosen = get_modality(modality) if modality != "auto" else _detect_pool(path, options)
    return chosen.load_pool(path, options)


def _existing(spec: str) -> Path:
    path = Path(spec).expanduser()
    if not path.exists() and not is_shard_spec(path):  # a brace pattern names shards that each exist
        raise unknown_spec(spec)
    return path


def _detect(path: Path, options: LoadOptions) -> Modality:
    for modality in modalities():
        if modality.recognises(path, options):
            return modality
    lone_txt = " (a lone .txt file has no labels)" if path.suffix.lower() == ".txt" else ""
    raise HeadstartError(f"{path} is not data headstart can read{lone_txt}",
                         "pass " + "; or ".join(m.formats for m in modalities() if m.formats))


def _detect_pool(path: Path, options: LoadOptions) -> Modality:
    # A pool has no class folders: a flat folder of images, a text file of lines, ...
    for modality in modalities():
        if modality.recognises_pool(path, options):
            return modality
    raise HeadstartError(f"{path} holds no unlabelled data headstart can read",
                         "pass a folder of images, a .txt file with one text per line, or a CSV/JSONL file")
