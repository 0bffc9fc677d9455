"""The in-memory forms data sources produce: decoded uint8 images, or texts, with int labels."""
from __future__ import annotations

import dataclasses
import hashlib
import mmap
import os
from dataclasses import dataclass, field

import numpy as np


@dataclass(kw_only=True)
class DataForm:
    """What every data form shares: `labels` index into `classes`.

    A pool (unlabelled data: what active learning ranks, what self-supervision and `embed`
    read) is the same form with labels=None and no classes; `unlabelled()` makes one.
    """

    labels: np.ndarray | None
    classes: list[str]
    name: str  # a short human name for the data ("fashion-mnist", a folder name, ...)
    paths: list[str] | None = None  # where each item came from (same order), for reports and predict
    # items that could not be used, as (where, reason): counted, never silently lost
    skipped: list[tuple[str, str]] = field(default_factory=list)
    # A source may carry a predefined test split (e.g. Fashion-MNIST's t10k): a boolean mask.
    is_test: np.ndarray | None = None
    notes: dict = field(default_factory=dict)  # counts a user should hear about

    noun = "examples"  # what messages call the items ("images", "examples")

    def __len__(self) -> int:
        return len(self.inputs_for_length())

    def inputs_for_length(self):
        return self.labels

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def is_labelled(self) -> bool:
        return self.labels is not None

    def unlabelled(self):
        """The same items without labels (a labelled folder passed where a pool is expected)."""
        return dataclasses.replace(self, labels=None, classes=[], is_test=None)

    def only_classes(self, names) -> "DataForm":
        """The items of these classes only (--classes), labels renumbered in the data's own class
        order; a predefined test part stays marked."""
        from headstart.errors import HeadstartError

        wanted = set(names)
        if missing := [n for n in names if n not in self.classes]:
            raise HeadstartError(f"{self.name} has no class {', '.join(repr(n) for n in missing)}",
                                 hint=f"its classes: {', '.join(self.classes)}")
        keep = [k for k, c in enumerate(self.classes) if c in wanted]
        index = np.flatnonzero(np.isin(self.labels, keep))
        renumber = np.full(len(self.classes), -1, dtype=np.int64)
        renumber[keep] = np.arange(len(keep))
        part = self.subset(index)
        return dataclasses.replace(part, labels=renumber[part.labels], classes=[self.classes[k] for k in keep],
                                   is_test=None if self.is_test is None else self.is_test[index],
                                   skipped=list(self.skipped), notes=dict(self.notes))

    def item_hashes(self) -> list[str]:
        """One content hash per item (what finds the same image or text twice, whatever its
        file is called); images compare at the decoded size, texts by their words."""
        return [hashlib.sha1(self._item_bytes(i)).hexdigest() for i in range(len(self))]

    def _item_bytes(self, i: int) -> bytes:
        raise NotImplementedError

    item_column = "item"  # what a CSV of items calls the column that names each one

    def item_names(self) -> list[str]:
        """What names each item in a CSV a user edits: its file, else NAME#index."""
        return self.paths if self.paths is not None else [f"{self.name}#{i}" for i in range(len(self))]

    @property
    def decoded_size(self) -> int | None:
        """The side images were decoded at (None for data that is not decoded to a size)."""
        return None

    def _hash_labels(self, h) -> None:
        if self.labels is not None:
            h.update(np.ascontiguousarray(self.labels.astype(np.int64)).data)
            h.update("\x00".join(self.classes).encode())


@dataclass(kw_only=True)
class ImageData(DataForm):
    """Decoded images held as one uint8 array, so no epoch ever decodes a file again.

    images: uint8 array of shape (N, H, W, C) with C == 1 (grey) or 3 (RGB); all images share
        one H x W (sources resize on load). Decoded files are a read-only memory map of the
        decode cache, and a subset of one is an ImageRows view (read a batch at a time).
    labels: int64 array of shape (N,), indices into `classes`.
    classes: class names, index i is label i.
    name: a short human name for the data ("fashion-mnist", a folder name, ...).
    paths: optional original file paths (same order), for reports and predict.
    skipped: files that could not be decoded, as (path, reason); counted, never silently lost.
    """

    images: "np.ndarray | ImageRows"

    modality = "image"
    noun = "images"

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N,H,W,C), got {self.images.dtype} {self.images.shape}")
        if self.labels is not None and len(self.images) != len(self.labels):
            raise ValueError("images and labels differ in length")

    def inputs_for_length(self):
        return self.images

    def _item_bytes(self, i: int) -> bytes:
        return np.ascontiguousarray(self.images[i]).tobytes()

    item_column = "path"

    @property
    def decoded_size(self) -> int | None:
        return int(self.images.shape[1])

    def concat(self, other: "ImageData") -> "ImageData":
        """These images followed by `other`'s (same size and classes), e.g. newly labelled ones."""
        if other.images.shape[1:3] != self.images.shape[1:3]:
            raise ValueError(f"images of {other.images.shape[1:3]} cannot join {self.images.shape[1:3]}")
        images = other.images
        if images.shape[3] != self.images.shape[3]:  # grey joins RGB data as RGB, and RGB grey as grey
            images = np.repeat(images, 3, axis=3) if images.shape[3] == 1 else \
                images.mean(axis=3, keepdims=True).round().astype(np.uint8)
        return dataclasses.replace(self, images=np.concatenate([self.images, images]),
                                   labels=np.concatenate([self.labels, other.labels]),
                                   paths=_joined_paths(self, other), is_test=_joined_test(self, other))

    @property
    def inputs(self) -> np.ndarray:
        """What a model eats: the uint8 (N, H, W, C) pixels."""
        return self.images

    def fingerprint(self) -> str:
        """Hash of the pixels' origin, labels and class names: the key of every cache built on it.
        Images decoded from files are named by the files' key (paths, sizes, mtimes and decode
        settings: sources.files_key), so a million files are not hashed pixel by pixel and an
        edited file is a new fingerprint; pixels made in memory are hashed."""
        h = hashlib.sha256()
        key = getattr(self.images, "source_key", None)
        if key is not None:
            h.update(f"files:{key}".encode())
        else:
            h.update(np.ascontiguousarray(self.images).data)
        self._hash_labels(h)
        return h.hexdigest()[:16]

    def subset(self, index: np.ndarray) -> "ImageData":
        """These rows only; over disk-backed pixels a view (ImageRows: no pixel is copied)."""
        return ImageData(
            images=_rows_of(self.images, index),
            labels=self.labels[index] if self.labels is not None else None,
            classes=self.classes,
            name=self.name,
            paths=[self.paths[i] for i in index] if self.paths is not None else None,
        )


class ImageRows:
    """Some rows of a disk-backed (N, H, W, C) uint8 array (a memory map), in a given order: what
    a split of memory-mapped images holds instead of a copy of its pixels. A row is read when it
    is indexed: an int gives one image, a slice or an index array those rows (a batch), as
    ndarrays (under torchrun an index array gives an ImageRows of those rows, still unread). Any other ndarray use (np.asarray, .reshape, .mean, np.concatenate) reads every
    row first: correct, and costs what the copy this replaces cost."""

    def __init__(self, base: np.ndarray, index: np.ndarray):
        self.base, self.index = base, index

    def __len__(self) -> int:
        return len(self.index)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *self.base.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.base.dtype

    @property
    def ndim(self) -> int:
        return self.base.ndim

    @property
    def nbytes(self) -> int:
        return len(self.index) * self.base[:1].nbytes

    @property
    def source_key(self) -> str | None:
        """The base's files' key and which rows these are (see ImageData.fingerprint); all the
        base's rows in order are the base itself."""
        key = getattr(self.base, "source_key", None)
        if key is None or (len(self.index) == len(self.base) and np.array_equal(self.index, np.arange(len(self.base)))):
            return key
        return f"{key}:{hashlib.sha256(self.index.tobytes()).hexdigest()[:16]}"

    @property
    def source_rows(self) -> np.ndarray:
        """Which rows of the base these are (under torchrun, a row's owner: data/ranks.py)."""
        return self.index

    def __getitem__(self, key):
        rows, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        where = self.index[rows]
        if np.ndim(where) == 0:
            return _read_rows(self.base, np.array([where]))[0][rest]
        distributed = os.environ.get("WORLD_SIZE", "1") != "1"
        if distributed and not rest and not isinstance(rows, slice):
            # picked rows stay unread under torchrun: the rank reads the ones it owns (data/ranks.py)
            return ImageRows(self.base, where)
        batch = _read_rows(self.base, where)
        if distributed:  # a rank then computes the rows it owns
            batch = batch.view(RowsRead)
            batch.source_rows = where
        return batch[(slice(None), *rest)] if rest else batch

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        rows = _read_rows(self.base, self.index)
        return rows if dtype is None else rows.astype(dtype)

    def __getattr__(self, name: str):
        if name.startswith("__") or name in ("base", "index"):
            raise AttributeError(name)
        return getattr(np.asarray(self), name)

    def __repr__(self) -> str:
        return f"ImageRows({len(self)} of {len(self.base)} rows, {self.shape[1:]} {self.dtype})"


class RowsRead(np.ndarray):
    """A batch read from a disk-backed base under torchrun, knowing which base rows it holds, so a
    rank can compute only the rows it owns (data/ranks.own_positions). Arrays made from it forget."""

    source_rows = None

    def __array_finalize__(self, obj) -> None:
        self.source_rows = None


def _read_rows(base: np.ndarray, where: np.ndarray) -> np.ndarray:
    """base[where], rows this node's cache lacks decoded now (data/shared_cache.py)."""
    where = np.asarray(where, dtype=np.int64)
    out = _pread_rows(base, where)
    lacking = getattr(base, "lacking", None)
    if lacking is not None and len(where):
        for k in np.flatnonzero(lacking[where % len(base)]):
            out[k] = base.decode_row(int(where[k] % len(base)))
    return out


def _pread_rows(base: np.ndarray, where: np.ndarray) -> np.ndarray:
    """base[where] read from the file with pread: pages touched through the memory map stay
    mapped, and on file systems with large page-cache folios each touch maps up to 2 MB
    (measured: 400 MB of RSS to read 500 rows of 150 kB); reads never count as the process's."""
    try:
        start = _file_position(base)
    except (AttributeError, TypeError, ValueError, BufferError):
        start = None
    inside = len(where) == 0 or (where.min() >= -len(base) and where.max() < len(base))
    if start is None or not inside or not hasattr(os, "preadv"):
        return np.asarray(base[where])  # through the map (and out-of-range rows raise as numpy's do)
    out = np.empty((len(where), *base.shape[1:]), dtype=base.dtype)
    row = base[:1].nbytes
    fd = os.open(base.filename, os.O_RDONLY)
    try:
        for k, i in enumerate(where % len(base)):
            if os.preadv(fd, [memoryview(out[k]).cast("B")], start + int(i) * row) != row:
                return np.asarray(base[where])  # the file changed under the map: read what the map sees
    finally:
        os.close(fd)
    return out


def _file_position(base: np.ndarray) -> int | None:
    """Where row 0 of a C-contiguous memory map starts in its file (None: not such a map)."""
    if not isinstance(base, np.memmap) or base._mmap is None or not base.flags.c_contiguous or base.filename is None:
        return None
    mapped = np.frombuffer(base._mmap, dtype=np.uint8)
    map_start = base.offset - base.offset % mmap.ALLOCATIONGRANULARITY
    return map_start + base.__array_interface__["data"][0] - mapped.__array_interface__["data"][0]


def _rows_of(images, index) -> "np.ndarray | ImageRows":
    index = np.asarray(index)
    index = np.flatnonzero(index) if index.dtype == bool else index.astype(np.int64, copy=False)
    if isinstance(images, ImageRows):
        return ImageRows(images.base, images.index[index])
    if isinstance(images, np.memmap):
        return ImageRows(images, index)
    return images[index]  # pixels in memory: a copy, as small as the data


@dataclass(kw_only=True)
class TextData(DataForm):
    """Labelled texts; `tokens` is filled in once a text backbone has tokenised them.

    texts: the raw strings (after decoding; never empty or whitespace-only).
    labels: int64 array of shape (N,), indices into `classes`.
    tokens: None, or int32 (N, L) token ids padded with -1 to the longest text (L <= the
        backbone's max length); -1 doubles as the attention mask, so one array is the input.
    skipped: examples that could not be used, as (where, reason): counted, never silently lost.
    notes: counts a user should hear about (e.g. {"replaced_bytes_files": 2, "truncated": 40}).
    """

    texts: list[str]
    tokens: np.ndarray | None = None

    modality = "text"

    def __post_init__(self) -> None:
        if self.labels is not None and len(self.texts) != len(self.labels):
            raise ValueError("texts and labels differ in length")
        if self.tokens is not None and (self.tokens.ndim != 2 or len(self.tokens) != len(self.texts)):
            raise ValueError(f"tokens must be (N, L) with N = {len(self.texts)}, got {self.tokens.shape}")

    def inputs_for_length(self):
        return self.texts

    def _item_bytes(self, i: int) -> bytes:
        return " ".join(self.texts[i].split()).encode("utf-8", "replace")

    item_column = "text"

    def item_names(self) -> list[str]:
        return list(self.texts)  # the text is its own name: a labeller reads it in the CSV

    def concat(self, other: "TextData") -> "TextData":
        """These texts followed by `other`'s (same classes; neither tokenised yet)."""
        return dataclasses.replace(self, texts=self.texts + other.texts, tokens=None,
                                   labels=np.concatenate([self.labels, other.labels]),
                                   paths=_joined_paths(self, other), is_test=_joined_test(self, other))

    @property
    def inputs(self) -> np.ndarray:
        """What a model eats: the token ids (tokenise with the backbone first)."""
        if self.tokens is None:
            raise ValueError(f"{self.name} is not tokenised yet")
        return self.tokens

    def fingerprint(self) -> str:
        """Content hash of texts, labels, class names and tokens (when tokenised)."""
        h = hashlib.sha256()
        for text in self.texts:
            h.update(text.encode("utf-8", "replace"))
            h.update(b"\x00")
        self._hash_labels(h)
        if self.tokens is not None:
            h.update(np.ascontiguousarray(self.tokens).data)
        return h.hexdigest()[:16]

    def subset(self, index: np.ndarray) -> "TextData":
        return TextData(
            texts=[self.texts[i] for i in index],
            labels=self.labels[index] if self.labels is not None else None,
            classes=self.classes,
            name=self.name,
            paths=[self.paths[i] for i in index] if self.paths is not None else None,
            tokens=self.tokens[index] if self.tokens is not None else None,
            notes=dict(self.notes),
        )


def _joined_paths(first: DataForm, second: DataForm) -> list[str] | None:
    if first.paths is None and second.paths is None:
        return None
    def names(d: DataForm) -> list[str]:
        return d.paths if d.paths is not None else [f"{d.name}#{i}" for i in range(len(d))]
    return names(first) + names(second)


def _joined_test(first: DataForm, second: DataForm) -> np.ndarray | None:
    """Items joined later are never test items."""
    if first.is_test is None:
        return None
    return np.concatenate([first.is_test, np.zeros(len(second), dtype=bool)])
