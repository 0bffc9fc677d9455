"""Image files into ImageData: a folder of class folders, a CSV of path,label, or an unlabelled pool.

Files are decoded once, resized to a square and written in chunks to one uint8 .npy in the
cache, which every run (this one included) reads memory-mapped: the pixels stay on disk, only
the pages a step reads are in memory, and the next run over the same files decodes nothing.
Under torchrun each rank decodes only its share of the files into that cache (shared_cache.py).
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from headstart.data.cache import array_writer, cache_dir, open_array
from headstart.data.dataset import ImageData, ImageRows
from headstart.data.ranks import DECODED, is_distributed
from headstart.data.shared_cache import Decoded, decode_shares, load_entry, save_side
from headstart.errors import HeadstartError
from headstart.files import WriteFailed
from headstart.log import progress_bar

from headstart.inputs import IMAGE_EXTENSIONS  # noqa: E402,F401  (one list: predict reads it without torch)
DEFAULT_SIZE = 224

PATH_COLUMNS = ("path", "filename", "file", "image")
LABEL_COLUMNS = ("label", "class", "target")
# Bump when the layout of a decoded-cache file changes, so stale files are never read.
_CACHE_FORMAT = 4  # 2: native sides cached; 3: pixels in a memory-mapped .npy; 4: ranks fill rows (shared_cache)
# Images decoded and written per step: bounds the memory decoding holds (~75 MB at 224 px).
_DECODE_CHUNK = 512
# Below this many files a progress bar is more noise than help.
_PROGRESS_MIN_FILES = 50


# --------------------------------------------------------------------------- folder and CSV

def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def load_image_folder(root: Path, size: int, strict: bool) -> ImageData:
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
        found = sorted(p for p in class_dir.rglob("*") if is_image_file(p) and p.is_file())
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


def load_image_csv(csv_path: Path, size: int, strict: bool) -> ImageData:
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:  # -sig: tolerate Excel's BOM
            reader = csv.DictReader(f)
            columns = list(reader.fieldnames or [])
            path_col = _pick_column(columns, PATH_COLUMNS, "path", csv_path)
            label_col = _pick_column(columns, LABEL_COLUMNS, "label", csv_path)
            # Short rows give None for missing cells; blank lines are dropped by the reader.
            rows = [((r[path_col] or "").strip(), (r[label_col] or "").strip()) for r in reader]
    except (UnicodeDecodeError, csv.Error) as e:
        raise HeadstartError(f"cannot read {csv_path} as CSV: {e}", "save it as UTF-8 text with a path,label header") from e
    rows = [(p, label) for p, label in rows if p or label]
    if not rows:
        raise HeadstartError(f"{csv_path} has a header but no rows", "add one row per image: path,label")

    base = csv_path.parent
    files = [base / p for p, _ in rows]  # an absolute path overrides `base`
    missing = [str(f) for f, (p, _) in zip(files, rows) if not p or not _names_a_file(f)]
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

    classes = sorted(set(names), key=natural_key)
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


def natural_key(name: str) -> tuple:
    # Numeric labels sort as numbers ("2" before "10"); everything else alphabetically.
    return (0, int(name), "") if name.lstrip("-").isdigit() else (1, 0, name)


# --------------------------------------------------------------------------- decoding

def _resolved(files: list[Path]) -> list[Path]:
    """What `f.resolve()` gives for each file, with each folder resolved once: a file's own name
    is followed only when it is a link. Resolving every path whole stats each of its folders
    again, which was 60 % of a warm load of 30,000 files (BENCHMARKS 15.6)."""
    folders: dict[Path, Path] = {}
    out = []
    for f in files:
        folder = folders.get(f.parent)
        if folder is None:
            folder = folders[f.parent] = f.parent.resolve()
        path = folder / f.name
        out.append(path.resolve() if path.is_symlink() else path)
    return out


def _decode_into_data(
    files: list[Path], labels: np.ndarray, classes: list[str], name: str, size: int, strict: bool
) -> ImageData:
    files = _resolved(files)
    images, ok, skipped, sides = _decode_cached(files, size, strict)
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
        # the files' own size (median shorter side, read from their headers while decoding):
        # what a model loses or invents by reading them at `size`
        notes={"native_size": int(np.median(sides[ok]))},
    )


def files_key(files: list[Path], size: int) -> str:
    """What names a decode of these files: every file's path, mtime and size plus the decode
    settings, so any edit, addition or removal is a new key; computed from the file system
    alone (one stat per file), never from the pixels."""
    h = hashlib.sha256(json.dumps([_CACHE_FORMAT, size]).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f}\x00{st.st_mtime_ns}\x00{st.st_size}\n".encode())
    return h.hexdigest()[:32]


def _decode_cached(files: list[Path], size: int, strict: bool) -> tuple[np.ndarray, np.ndarray, list, np.ndarray]:
    """Decoded images of the readable files (memory-mapped from the cache), a mask of which files
    were readable, the skips, and every file's native shorter side in pixels (0 for unreadable
    files). A cache hit never opens an image; a cache that cannot be written only warns, and the
    images are then decoded into memory. Under torchrun each rank decodes its share only."""
    key = files_key(files, size)
    stem = cache_dir() / "decoded" / key
    if is_distributed():
        decoded = decode_shares(files, size, stem, _decode_all, _decode_to_memory)
    else:
        decoded = load_entry(stem, len(files), np.arange(len(files)))  # every row: one process reads all
        if decoded is None:
            try:
                decoded = _decode_to_cache(files, size, strict, stem)
            except (OSError, WriteFailed) as e:  # WriteFailed: files.py's words for a full or read-only disk
                warnings.warn(f"headstart could not write its cache file {stem}.npy: {e}", stacklevel=2)
                decoded = _decode_to_memory(files, size, strict)
    images = _images_of(decoded, key, files, size)
    if strict and decoded.skipped:
        path, reason = decoded.skipped[0]
        raise HeadstartError(f"cannot decode {path}: {reason}", "remove or replace the file, or drop --strict to skip it")
    return images, decoded.ok, decoded.skipped, decoded.sides


def _images_of(decoded: Decoded, key: str, files: list[Path], size: int):
    """The readable files' images: the cache's rows of them (all of it, a memory map, when every
    file was readable in one process), or the in-memory array. The fingerprint of data over
    cached pixels is the files' key, not a hash of every pixel (an attribute of the map only: a
    copy is another array and hashes its pixels). Rows this node's cache lacks (another node's
    share) are decoded when something reads them."""
    base = decoded.images
    if not isinstance(base, np.memmap):
        return base
    base.source_key = key
    if not decoded.present.all():
        base.lacking = ~decoded.present
        base.decode_row = lambda i: _decode_lacking(files[i], size)
    if decoded.compact and not is_distributed():
        readable = base[: int(decoded.ok.sum())]  # a memory map still
        readable.source_key = key
        return readable
    return ImageRows(base, decoded.rows())


def _decode_lacking(path: Path, size: int) -> np.ndarray:
    DECODED["on_demand"] += 1
    return decode_image(path, size)


def _decode_to_cache(files: list[Path], size: int, strict: bool, stem: Path) -> Decoded:
    """One process decodes every file: the readable ones' rows first (a memory map of them is the
    data's images), written front to back."""
    with array_writer(stem.with_suffix(".npy"), (len(files), size, size, 3), np.uint8, "the decode cache") as append:
        ok, skipped, sides = _decode_all(files, size, strict, append)
    DECODED["share"] += len(files)
    decoded = Decoded(None, ok, skipped, sides, np.ones(len(files), dtype=bool), compact=True)
    save_side(stem, decoded)  # when it cannot be written (it warns), the next run decodes again
    decoded.images = open_array(stem.with_suffix(".npy"))
    if decoded.images is None:  # removed or damaged by another process in the meantime
        return _decode_to_memory(files, size, strict)
    return decoded


def _decode_to_memory(files: list[Path], size: int, strict: bool) -> Decoded:
    out = np.empty((len(files), size, size, 3), dtype=np.uint8)
    filled = 0

    def append(chunk: np.ndarray) -> None:
        nonlocal filled
        out[filled:filled + len(chunk)] = chunk
        filled += len(chunk)

    ok, skipped, sides = _decode_all(files, size, strict, append)
    DECODED["share"] += len(files)
    # a slice (a view, no copy) when something was skipped: the decoded images come first
    return Decoded(out[:filled], ok, skipped, sides, np.ones(len(files), dtype=bool))


def decode_workers() -> int:
    # Pillow releases the GIL while decoding, so threads use every core without pickling.
    return max(1, min(8, os.cpu_count() or 1))


def _decode_all(files: list[Path], size: int, strict: bool, append, workers: int | None = None, *,
                put=None) -> tuple[np.ndarray, np.ndarray, list]:
    """Decode `files` in order, a chunk at a time, handing each chunk of decoded images to
    `append` (readable files only, in file order), or with their indices in `files` to
    put(indices, chunk); returns the readable mask, the skips and every file's native shorter
    side. Memory held: one chunk of images, whatever N is."""
    ok = np.zeros(len(files), dtype=bool)
    sides = np.zeros(len(files), dtype=np.int64)
    skipped: list[tuple[str, str]] = []
    chunk = np.empty((_DECODE_CHUNK, size, size, 3), dtype=np.uint8)
    with ThreadPoolExecutor(workers or decode_workers()) as pool, \
            progress_bar("decoding images", len(files), min_total=_PROGRESS_MIN_FILES) as advance:
        for start in range(0, len(files), _DECODE_CHUNK):
            part = files[start:start + _DECODE_CHUNK]
            filled, rows = 0, []
            for i, (f, result) in enumerate(zip(part, pool.map(lambda f: decode_one(f, size), part)), start):
                if isinstance(result, str):
                    if strict:
                        pool.shutdown(cancel_futures=True)  # fail now, not after decoding the rest
                        raise HeadstartError(
                            f"cannot decode {f}: {result}", "remove or replace the file, or drop --strict to skip it"
                        )
                    skipped.append((str(f), result))
                else:
                    chunk[filled], sides[i] = result
                    ok[i] = True
                    filled += 1
                    rows.append(i)
                advance()
            if put is not None:
                put(rows, chunk[:filled])
            else:
                append(chunk[:filled])
    return ok, skipped, sides


def _names_a_file(path: Path) -> bool:
    """Whether a CSV cell names an existing file; a name the OS refuses (too long, a NUL byte)
    names none, rather than raising."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def decode_one(source, size: int) -> tuple[np.ndarray, int] | str:
    """(the image as (size, size, 3) uint8, its native shorter side), or the reason it cannot be read.
    `source` is a path or a binary file object (data/cells.py: the bytes of a table cell or a shard
    member), so every image headstart trains on is decoded by these same steps."""
    try:
        with Image.open(source) as img:
            side = min(img.size)  # from the header, before draft() shrinks a JPEG
            # Let JPEG decode at a reduced scale when the file is much larger than needed.
            img.draft("RGB", (size, size))
            img = ImageOps.exif_transpose(img)  # phone photos store rotation in EXIF
            img = img.convert("RGB")
            # fit = resize the shorter side to `size`, then center-crop the longer one.
            img = ImageOps.fit(img, (size, size), method=Image.Resampling.BICUBIC)
            return np.asarray(img, dtype=np.uint8), side
    except Exception as e:  # any decoder failure means this one file is unusable
        return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def decode_image(path: str | Path, size: int) -> np.ndarray:
    """One image as (size, size, 3) uint8, decoded exactly as training data is; raises on failure."""
    result = decode_one(Path(path), size)
    if isinstance(result, str):
        raise HeadstartError(f"cannot decode {path}: {result}")
    return result[0]


def load_image_pool(path: Path, size: int, strict: bool) -> ImageData:
    """Unlabelled images: every image file under a folder (at any depth), or the rows of a CSV
    with a path column. Labels, where the source has them, are not read."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and is_image_file(p)
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
    else:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            column = _pick_column(list(reader.fieldnames or []), PATH_COLUMNS, "path", path)
            files = [path.parent / row[column].strip() for row in reader if (row[column] or "").strip()]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise HeadstartError(f"{len(missing)} of {len(files)} rows in {path} name files that do not exist, "
                                 f"e.g. {', '.join(missing[:3])}",
                                 f"paths are read relative to the CSV's folder ({path.parent}); fix or remove those rows")
    if not files:
        raise HeadstartError(f"no images found in {path}", f"accepted extensions: {', '.join(IMAGE_EXTENSIONS)}")
    data = _decode_into_data(files, np.zeros(len(files), dtype=np.int64), [], path.stem or path.name, size, strict)
    return data.unlabelled()
