"""Turn a user's data spec (built-in name, folder of class folders, or CSV) into ImageData.

Text data (CSV/JSONL files, folders of .txt files) is recognised here and loaded by text_sources.

Files are decoded once, resized to a square and kept as one uint8 array; the array is cached
on disk so the next run over the same files skips decoding altogether.
"""
from __future__ import annotations

import csv
import difflib
import hashlib
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image, ImageOps

from headstart.data.cache import cache_dir, load_arrays, save_arrays
from headstart.data.dataset import ImageData, TextData
from headstart.errors import HeadstartError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
DEFAULT_SIZE = 224

_PATH_COLUMNS = ("path", "filename", "file", "image")
_LABEL_COLUMNS = ("label", "class", "target")
_MODALITIES = ("auto", "image", "text")
# Bump when the layout of a decoded-cache file changes, so stale files are never read.
_CACHE_FORMAT = 1
# Below this many files a progress bar is more noise than help.
_PROGRESS_MIN_FILES = 50


# --------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class _Builtin:
    name: str
    description: str
    loader: Callable[..., ImageData]
    available: Callable[[], bool]


_REGISTRY: dict[str, _Builtin] = {}


def register_dataset(
    name: str, *, description: str, available: Callable[[], bool] | None = None
) -> Callable[[Callable[..., ImageData]], Callable[..., ImageData]]:
    """Register a built-in dataset loader under `name`.

    The loader is called with keyword options (currently `elpv_grades`) and must accept and
    ignore the ones it does not use. `available` says whether it can load without a download
    or an optional package; it defaults to always.
    """

    def decorator(loader: Callable[..., ImageData]) -> Callable[..., ImageData]:
        _REGISTRY[name] = _Builtin(name, description, loader, available or (lambda: True))
        return loader

    return decorator


def list_datasets() -> list[dict]:
    """Built-in datasets as dicts (name, description, available), sorted by name."""
    return [
        {"name": b.name, "description": b.description, "available": bool(b.available())}
        for b in sorted(_REGISTRY.values(), key=lambda b: b.name)
    ]


# --------------------------------------------------------------------------- entry point

def load_data(
    spec: str,
    *,
    size: int | None = None,
    strict: bool = False,
    elpv_grades: bool = False,
    modality: str = "auto",
    text_column: str | None = None,
    label_column: str | None = None,
) -> ImageData | TextData:
    """Load a built-in dataset, a folder of class sub-folders, or a CSV / JSONL file.

    Built-in names win over a same-named path in the working directory; write `./name` to
    mean the path. `size` is the decode size of image files: each is resized (shorter side) and
    center-cropped to size x size (224 when None). Built-ins are already arrays and keep their
    native size whatever `size` says: resize_data after make_splits touches only the images a
    run uses (Fashion-MNIST at 224 px would be 3.5 GB). Files that cannot be decoded are
    listed in `skipped`, or raise with strict=True.

    `modality` "auto" tells text from images: a .jsonl file is text; a CSV is text when it has a
    text column and no image-path column, or when `text_column`/`label_column` is given; a
    folder is text when its class folders hold .txt files and no images. "image" or "text"
    forces the choice. `text_column`/`label_column` name the columns of text CSV/JSONL files.
    """
    # Imported here because text_sources builds on this module's helpers.
    from headstart.data import text_sources

    if modality not in _MODALITIES:
        raise HeadstartError(f"unknown modality {modality!r}", f"pass one of {', '.join(_MODALITIES)}")
    named_columns = text_column is not None or label_column is not None
    if named_columns and modality == "image":
        raise HeadstartError("--text-column and --label-column are for text data", "drop them, or the image modality")

    if spec in _REGISTRY:
        _refuse_columns(named_columns, f"the built-in dataset {spec}")
        data = _REGISTRY[spec].loader(elpv_grades=elpv_grades)
        if modality != "auto" and data.modality != modality:
            raise HeadstartError(f"{spec} is {data.modality} data, not {modality}", f"drop the {modality} modality")
        return data

    path = Path(spec).expanduser()
    side = DEFAULT_SIZE if size is None else size
    if side < 1 and modality != "text":
        raise HeadstartError(f"image size must be positive, got {side}", "pass a size such as 224")
    if path.is_dir():
        _refuse_columns(named_columns, "a folder")
        if modality == "text" or (modality == "auto" and text_sources.folder_is_text(path)):
            return text_sources.load_text_folder(path, strict=strict)
        return _load_folder(path, side, strict)
    if path.is_file():
        return _load_file(path, side, strict, modality, text_column, label_column)
    raise _unknown_spec(spec)


def _load_file(
    path: Path, side: int, strict: bool, modality: str, text_column: str | None, label_column: str | None
) -> ImageData | TextData:
    from headstart.data import text_sources

    suffix = path.suffix.lower()
    if suffix == ".csv":
        if modality == "text" or (modality == "auto" and text_sources.csv_is_text(path, text_column, label_column)):
            return text_sources.load_text_table(path, strict=strict, text_column=text_column, label_column=label_column)
        return _load_csv(path, side, strict)
    if suffix == ".jsonl":
        if modality == "image":
            raise HeadstartError(f"{path} is a JSONL file, which holds texts, not images", "drop the image modality")
        return text_sources.load_text_table(path, strict=strict, text_column=text_column, label_column=label_column)
    lone_txt = " (a lone .txt file has no labels)" if suffix == ".txt" else ""
    raise HeadstartError(
        f"{path} is a file but not a .csv or .jsonl{lone_txt}",
        "pass a folder with one sub-folder per class (of images or .txt files), a CSV with columns "
        'path,label or text,label, or a JSONL file of {"text": ..., "label": ...} lines',
    )


def _refuse_columns(named_columns: bool, what: str) -> None:
    # Silently ignoring an option the user typed would hide a mistake.
    if named_columns:
        raise HeadstartError(
            f"--text-column and --label-column name CSV or JSONL columns; {what} has none", "drop them"
        )


def _unknown_spec(spec: str) -> HeadstartError:
    names = sorted(_REGISTRY)
    close = difflib.get_close_matches(spec.lower(), names, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    hint += f"built-in datasets: {', '.join(names)}; otherwise pass an existing folder, CSV or JSONL file"
    return HeadstartError(f"'{spec}' is neither an existing file or folder nor a built-in dataset", hint)


# --------------------------------------------------------------------------- folder and CSV

def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _load_folder(root: Path, size: int, strict: bool) -> ImageData:
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    class_dirs = sorted((p for p in entries if p.is_dir()), key=lambda p: p.name)
    if not class_dirs:
        example = f"{root}/cat/1.jpg, {root}/dog/2.jpg"
        if entries:
            raise HeadstartError(
                f"{root} holds {len(entries)} file(s) but no class sub-folders",
                f"put each class's images in a sub-folder named after the class, e.g. {example}",
            )
        raise HeadstartError(f"{root} is empty", f"add one sub-folder of images per class, e.g. {example}")

    files: list[Path] = []
    labels: list[int] = []
    classes: list[str] = []
    for class_dir in class_dirs:
        # Nested folders inside a class still belong to that class (e.g. cat/2023/img.jpg).
        found = sorted(p for p in class_dir.rglob("*") if p.is_file() and _is_image(p))
        if not found:
            continue  # an empty or non-image sub-folder is not a class
        labels += [len(classes)] * len(found)
        classes.append(class_dir.name)
        files += found
    if not files:
        raise HeadstartError(
            f"no images found in the sub-folders of {root}",
            f"accepted extensions: {', '.join(IMAGE_EXTENSIONS)}",
        )
    return _decode_into_data(files, np.array(labels, dtype=np.int64), classes, root.name, size, strict)


def _load_csv(csv_path: Path, size: int, strict: bool) -> ImageData:
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:  # -sig: tolerate Excel's BOM
            reader = csv.DictReader(f)
            columns = list(reader.fieldnames or [])
            path_col = _pick_column(columns, _PATH_COLUMNS, "path", csv_path)
            label_col = _pick_column(columns, _LABEL_COLUMNS, "label", csv_path)
            # Short rows give None for missing cells; blank lines are dropped by the reader.
            rows = [((r[path_col] or "").strip(), (r[label_col] or "").strip()) for r in reader]
    except (UnicodeDecodeError, csv.Error) as e:
        raise HeadstartError(f"cannot read {csv_path} as CSV: {e}", "save it as UTF-8 text with a path,label header") from e
    rows = [(p, label) for p, label in rows if p or label]
    if not rows:
        raise HeadstartError(f"{csv_path} has a header but no rows", "add one row per image: path,label")

    base = csv_path.parent
    files = [base / p for p, _ in rows]  # an absolute path overrides `base`
    missing = [str(f) for f, (p, _) in zip(files, rows) if not p or not f.is_file()]
    if missing:
        raise HeadstartError(
            f"{len(missing)} of {len(rows)} rows in {csv_path} name files that do not exist, "
            f"e.g. {', '.join(missing[:3])}",
            f"paths are read relative to the CSV's folder ({base}); fix or remove those rows",
        )
    names = [label for _, label in rows]
    if "" in names:
        unlabelled = rows[names.index("")][0]
        raise HeadstartError(f"{csv_path}: the row for {unlabelled} has an empty label", "give every row a class label")

    classes = sorted(set(names), key=_natural_key)
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[n] for n in names], dtype=np.int64)
    return _decode_into_data(files, labels, classes, csv_path.stem, size, strict)


def _pick_column(columns: list[str], accepted: tuple[str, ...], role: str, csv_path: Path) -> str:
    by_name = {c.strip().lower(): c for c in columns if c}
    for name in accepted:
        if name in by_name:
            return by_name[name]
    raise HeadstartError(
        f"{csv_path} has no {role} column; its columns are: {', '.join(map(repr, columns)) or 'none'}",
        f"name the {role} column one of {', '.join(accepted)} (header row e.g. 'path,label')",
    )


def _natural_key(name: str) -> tuple:
    # Numeric labels sort as numbers ("2" before "10"); everything else alphabetically.
    return (0, int(name), "") if name.lstrip("-").isdigit() else (1, 0, name)


# --------------------------------------------------------------------------- decoding

def _decode_into_data(
    files: list[Path], labels: np.ndarray, classes: list[str], name: str, size: int, strict: bool
) -> ImageData:
    files = [f.resolve() for f in files]
    images, ok, skipped = _decode_cached(files, size, strict)
    if not ok.any():
        raise HeadstartError(
            f"none of the {len(files)} images in {name} could be decoded (first: {skipped[0][0]}: {skipped[0][1]})",
            "check that the files are images in a format Pillow reads",
        )
    return ImageData(
        images=images,
        labels=labels[ok],
        classes=classes,
        name=name,
        paths=[str(f) for f, good in zip(files, ok) if good],
        skipped=skipped,
    )


def _decode_cached(files: list[Path], size: int, strict: bool) -> tuple[np.ndarray, np.ndarray, list]:
    """Decoded images of the readable files, a mask of which files were readable, and the skips.

    The cache key covers every file's path, mtime and size plus the target size, so any edit,
    addition or removal decodes again; a hit never opens an image.
    """
    h = hashlib.sha256(json.dumps([_CACHE_FORMAT, size]).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f}\x00{st.st_mtime_ns}\x00{st.st_size}\n".encode())
    cache_file = cache_dir() / "decoded" / f"{h.hexdigest()[:32]}.npz"

    cached = load_arrays(cache_file)
    if cached is not None:
        images, ok = cached["images"], cached["ok"]
        skipped = [(str(p), str(r)) for p, r in zip(cached["skipped_paths"], cached["skipped_reasons"])]
    else:
        images, ok, skipped = _decode_all(files, size, strict)
        save_arrays(
            cache_file,
            images=images,
            ok=ok,
            skipped_paths=np.array([p for p, _ in skipped], dtype=str),
            skipped_reasons=np.array([r for _, r in skipped], dtype=str),
        )
    if strict and skipped:
        path, reason = skipped[0]
        raise HeadstartError(f"cannot decode {path}: {reason}", "remove or replace the file, or drop --strict to skip it")
    return images, ok, skipped


def _decode_all(files: list[Path], size: int, strict: bool) -> tuple[np.ndarray, np.ndarray, list]:
    out = np.empty((len(files), size, size, 3), dtype=np.uint8)
    ok = np.zeros(len(files), dtype=bool)
    skipped: list[tuple[str, str]] = []
    # Pillow releases the GIL while decoding, so threads use every core without pickling.
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool, _progress(len(files)) as advance:
        for i, (f, result) in enumerate(zip(files, pool.map(lambda f: _decode_one(f, size), files))):
            if isinstance(result, str):
                if strict:
                    pool.shutdown(cancel_futures=True)  # fail now, not after decoding the rest
                    raise HeadstartError(
                        f"cannot decode {f}: {result}", "remove or replace the file, or drop --strict to skip it"
                    )
                skipped.append((str(f), result))
            else:
                out[i] = result
                ok[i] = True
            advance()
    # Index only when something was skipped: the copy doubles peak memory on big folders.
    return (out if ok.all() else out[ok]), ok, skipped


def _decode_one(path: Path, size: int) -> np.ndarray | str:
    """The image as (size, size, 3) uint8, or the reason it cannot be read."""
    try:
        with Image.open(path) as img:
            # Let JPEG decode at a reduced scale when the file is much larger than needed.
            img.draft("RGB", (size, size))
            img = ImageOps.exif_transpose(img)  # phone photos store rotation in EXIF
            img = img.convert("RGB")
            # fit = resize the shorter side to `size`, then center-crop the longer one.
            img = ImageOps.fit(img, (size, size), method=Image.Resampling.BICUBIC)
            return np.asarray(img, dtype=np.uint8)
    except Exception as e:  # any decoder failure means this one file is unusable
        return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


@contextmanager
def _progress(total: int) -> Iterator[Callable[[], None]]:
    """Yield an `advance()` callable, drawing a rich bar only for many files on a terminal."""
    if total < _PROGRESS_MIN_FILES or not sys.stderr.isatty():
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("decoding images", total=total)
        yield lambda: bar.advance(task)


def decode_image(path: str | Path, size: int) -> np.ndarray:
    """One image as (size, size, 3) uint8, decoded exactly as training data is; raises on failure."""
    result = _decode_one(Path(path), size)
    if isinstance(result, str):
        raise HeadstartError(f"cannot decode {path}: {result}")
    return result
