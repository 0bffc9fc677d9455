"""`fit --add-labels FILE`: newly labelled items (the CSV `select` wrote with its label column
filled in, or a Label Studio export: JSON, JSON_MIN or CSV), read and checked against the data
they join.

Rows without a label are waiting for a labeller and are only counted. Labels that name no
class of the data, and items that cannot be read, are errors that name them: the run starts
only when every labelled row can be used. Items that repeat one already in the data (any
split: a copy of a test item would leak it into training) are dropped and reported.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import ImageData, TextData, decode_image
from ..errors import HeadstartError
from . import label_studio

HINT = ("pass the CSV `headstart select` wrote, with its label column filled in, or the project's Label Studio "
        "export (JSON, JSON_MIN or CSV)")


@dataclass
class AddedLabels:
    data: object               # the new items as a labelled data form of the base data's kind
    waiting: int               # rows with no label yet
    repeated: list[str]        # items already in the data, dropped

    def describe(self, source: str) -> dict:
        return {"file": source, "added": len(self.data), "waiting_for_a_label": self.waiting,
                "dropped_already_in_data": len(self.repeated), "examples_dropped": self.repeated[:5]}


def read_added_labels(path: str | Path, data) -> AddedLabels:
    """The labelled rows of `path` as items of `data`'s kind, classes and decoded size."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise HeadstartError(f"--add-labels {path}: no such file", hint=HINT)
    column = data.item_column
    rows, waiting = _labelled_rows(path, column)
    known = {c: i for i, c in enumerate(data.classes)}
    unknown = sorted({label for _, label in rows if label not in known})
    if unknown:
        raise HeadstartError(f"{path} labels items with class(es) the data does not have: {', '.join(unknown[:5])}",
                             hint=f"the classes are: {', '.join(data.classes)}; fix those rows (a new class "
                                  f"needs examples in the data itself)")
    labels = np.array([known[label] for _, label in rows], dtype=np.int64)
    added = _READERS[column]([item for item, _ in rows], labels, data, path)
    seen = set(data.item_hashes())
    hashes = added.item_hashes()
    fresh = np.array([i for i, h in enumerate(hashes) if h not in seen], dtype=np.int64)
    repeated = [added.item_names()[i] for i, h in enumerate(hashes) if h in seen]
    return AddedLabels(added.subset(fresh), waiting, repeated)


def _labelled_rows(path: Path, column: str) -> tuple[list[tuple[str, str]], int]:
    """(item, label) rows and the count of rows waiting for a label, from whichever of the
    four formats `path` is."""
    try:
        text = path.read_text(encoding="utf-8-sig")
        if path.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
            rows, waiting = label_studio.read_export(path)
        else:
            rows, waiting = _csv_rows(text, path, column)
    except (UnicodeDecodeError, csv.Error) as e:
        raise HeadstartError(f"cannot read {path}: {e}", hint="save it as UTF-8 (CSV or JSON)") from e
    if not rows:
        raise HeadstartError(f"{path} has no labelled rows" + (f" ({waiting} wait for a label)" if waiting else ""),
                             hint="fill in the label column of the rows you have labelled (in Label Studio: "
                                  "submit the annotations, then export)")
    return rows, waiting


def _csv_rows(text: str, path: Path, column: str) -> tuple[list[tuple[str, str]], int]:
    """select's CSV (the item column and `label`), or Label Studio's CSV export."""
    reader = csv.DictReader(io.StringIO(text))
    fields = list(reader.fieldnames or [])
    if column not in fields or "label" not in fields:
        if label_studio.is_label_studio_csv(fields):
            return label_studio.read_export(path)
        raise HeadstartError(f"{path} needs a '{column}' and a 'label' column; it has: {', '.join(fields)}", hint=HINT)
    cells = [((r.get(column) or "").strip(), (r.get("label") or "").strip()) for r in reader]
    rows = [(item, label) for item, label in cells if item and label]
    return rows, sum(1 for item, label in cells if item and not label)


def _read_images(items: list[str], labels: np.ndarray, data, path: Path) -> ImageData:
    files = [path.parent / item for item in items]  # an absolute path overrides the CSV's folder
    missing = [item for item, f in zip(items, files) if not f.is_file()]
    if missing:
        builtin = all("#" in item for item in missing)  # NAME#index: select ranked a built-in dataset
        raise HeadstartError(f"{len(missing)} labelled row(s) of {path} name no image file, e.g. "
                             f"{', '.join(missing[:3])}",
                             hint="NAME#index rows are items of a built-in dataset, which is labelled already: "
                                  "`headstart simulate-al NAME` studies labelling it" if builtin else
                             f"paths are read relative to the CSV's folder ({path.parent}); fix or remove them")
    images = np.stack([decode_image(f, data.decoded_size) for f in files])  # raises, naming a corrupt file
    if data.images.shape[3] == 1:  # grey data stays grey
        images = images.mean(axis=3, keepdims=True).round().astype(np.uint8)
    return ImageData(images=images, labels=labels, classes=data.classes, name=path.stem,
                     paths=[str(f) for f in files])


def _read_texts(items: list[str], labels: np.ndarray, data, path: Path) -> TextData:
    return TextData(texts=items, labels=labels, classes=data.classes, name=path.stem)


# how each kind of data names its items in the CSV -> how to read them
_READERS = {"path": _read_images, "text": _read_texts}
