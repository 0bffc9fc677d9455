"""Texts gathered row by row as a reader streams a file: one Python string per kept text, nothing more.

A million-line file is read without holding its bytes, its decoded content, a list of rows and a
list of names at once: each reader hands one row at a time to a TextCollector, labels become
integer codes at once, and where a text came from ("file:row 12") is a row number, named only
when someone asks (RowNames).
"""
from __future__ import annotations

from array import array
from collections.abc import Sequence

import numpy as np

from headstart.data.dataset import TextData
from headstart.data.sources import natural_key
from headstart.errors import HeadstartError


class RowNames(Sequence):
    """The "SOURCE:UNIT N" name of each item, made when indexed: 8 bytes an item, not a string."""

    def __init__(self, source: str, unit: str, numbers: np.ndarray):
        self.source, self.unit, self.numbers = source, unit, numbers

    def __len__(self) -> int:
        return len(self.numbers)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        return f"{self.source}:{self.unit} {int(self.numbers[i])}"

    # DataForm joins and compares names as lists
    def __add__(self, other):
        return list(self) + list(other)

    def __radd__(self, other):
        return list(other) + list(self)

    def __eq__(self, other):
        return list(self) == list(other) if isinstance(other, (list, RowNames)) else NotImplemented

    __hash__ = None

    def __repr__(self) -> str:
        return f"RowNames({self.source!r}, {len(self)} {self.unit}s)"


class TextCollector:
    """Texts (and labels) as a reader meets them; `finish` makes the TextData.

    An empty text is skipped and counted with where it was; a text whose bytes were not UTF-8
    is kept (bad bytes already replaced) and counted. Items are named by row number in
    `source` (RowNames), or by the `where` a reader passes (a file of a folder).
    """

    def __init__(self, source: str | None = None, unit: str = "row", first: int = 1):
        self.source, self.unit = source, unit
        self.seen = first            # the next row's number, where the reader does not say
        self.count = 0               # items met, empty ones included
        self.texts: list[str] = []
        self._numbers = array("q")
        self._wheres: list[str] = []
        self._codes = array("q")
        self._label_codes: dict[str, int] = {}
        self.skipped: list[tuple[str, str]] = []
        self.replaced: list[str] = []

    def name(self, number: int) -> str:
        return f"{self.source}:{self.unit} {number}"

    def add(self, text: str, label: str | None = None, *, number: int | None = None, where: str | None = None,
            bad: bool = False) -> None:
        number = self.seen if number is None else number
        self.seen = number + 1
        self.count += 1
        if bad:
            self.replaced.append(where or self.name(number))
        if not text.strip():
            self.skipped.append((where or self.name(number), "empty text"))
            return
        self.texts.append(text)
        if where is None:
            self._numbers.append(number)
        else:
            self._wheres.append(where)
        if label is not None:
            self._codes.append(self._label_codes.setdefault(label, len(self._label_codes)))

    def finish(self, name: str, strict: bool, *, labelled: bool = True) -> TextData:
        if strict and self.skipped:
            raise HeadstartError(f"{self.skipped[0][0]} has an empty text", "remove it, or drop --strict to skip it")
        if strict and self.replaced:
            raise HeadstartError(f"{self.replaced[0]} is not valid UTF-8",
                                 "save it as UTF-8, or drop --strict to replace the bad bytes")
        if not self.texts:
            raise HeadstartError(f"all {self.count} texts in {name} are empty", "check the data source")
        paths = RowNames(self.source, self.unit, np.frombuffer(self._numbers, dtype=np.int64)) \
            if self.source is not None and not self._wheres else self._wheres
        labels, classes = (self._labels() if labelled else (None, []))
        data = TextData(texts=self.texts, labels=labels, classes=classes, name=name, paths=paths,
                        skipped=self.skipped, notes={"replaced_bytes": len(self.replaced)})
        return data

    def _labels(self) -> tuple[np.ndarray, list[str]]:
        classes = sorted(self._label_codes, key=natural_key)
        # codes were given in first-seen order; renumber them in the classes' sorted order
        renumber = np.empty(len(classes), dtype=np.int64)
        for k, label in enumerate(classes):
            renumber[self._label_codes[label]] = k
        codes = np.frombuffer(self._codes, dtype=np.int64) if len(self._codes) else np.zeros(0, dtype=np.int64)
        return renumber[codes], classes
