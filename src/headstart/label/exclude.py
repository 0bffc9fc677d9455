"""`fit --exclude FILE`: the items a user confirmed should go (wrong labels, leaked or repeated
copies, junk), read and checked against the data they leave.

FILE is `headstart audit`'s audit.csv with the rows to drop marked in its `exclude` column (any
mark but 0/no/false), or any CSV with the data's item column (path or text) and/or an `index`
column (every row is dropped), or a plain list with one item per line. Items are named as the
audit, `select` and `--add-labels` name them: the file path (relative to the file's folder, or
as the data names it), NAME#index for built-in data, the text itself. A name the data does not
hold, or an index whose item is not the one the row names, is an error: a file made for other
data must not silently drop the wrong items.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ..errors import HeadstartError

# marks in the `exclude` column that mean "keep it" (an empty cell too)
NOT_MARKED = {"", "0", "no", "n", "false", "keep"}
HINT = ("mark the rows to drop in audit.csv's exclude column, or give a list of items (one per line, named as "
        "audit.csv names them)")


def read_exclusions(path: str | Path, data) -> np.ndarray:
    """Sorted, unique indices into `data` of the items FILE names."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise HeadstartError(f"--exclude {path}: no such file", hint=HINT)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise HeadstartError(f"cannot read {path} as text: {e}", hint="save it as UTF-8") from e
    if not text.strip():
        raise HeadstartError(f"--exclude {path} is empty", hint=HINT)
    column = data.item_column
    header = next(csv.reader(io.StringIO(text)), [])
    if column in header or "index" in header:
        rows = _marked_rows(text, path, column)
    else:  # a plain list: one item per line
        rows = [(line.strip(), None) for line in text.splitlines() if line.strip()]
    return _indices(rows, data, path)


def _marked_rows(text: str, path: Path, column: str) -> list[tuple[str | None, int | None]]:
    reader = csv.DictReader(io.StringIO(text))
    try:
        records = list(reader)
    except csv.Error as e:
        raise HeadstartError(f"cannot read {path} as CSV: {e}", hint=HINT) from e
    if "exclude" in (reader.fieldnames or []):
        records = [r for r in records if (r.get("exclude") or "").strip().lower() not in NOT_MARKED]
        if not records:
            raise HeadstartError(f"no row of {path} is marked in its exclude column", hint=HINT)
    rows = []
    for n, r in enumerate(records, 2):  # line numbers as an editor shows them (the header is line 1)
        item = (r.get(column) or "").strip() or None
        raw = (r.get("index") or "").strip()
        if item is None and not raw:
            raise HeadstartError(f"{path} line {n} names no item", hint=HINT)
        try:
            index = int(raw) if raw else None
        except ValueError:
            raise HeadstartError(f"{path} line {n}: index {raw!r} is not a whole number", hint=HINT) from None
        rows.append((item, index))
    return rows


def _indices(rows: list[tuple[str | None, int | None]], data, path: Path) -> np.ndarray:
    names = data.item_names()
    files = data.item_column == "path"  # items named by files: compare them as resolved paths too
    where: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        where.setdefault(name, []).append(i)
        resolved = _resolved(name, path) if files else None
        if resolved is not None and resolved != name:
            where.setdefault(resolved, []).append(i)
    chosen, unknown, mismatched = set(), [], []
    for item, index in rows:
        if index is not None:
            if not 0 <= index < len(names):
                unknown.append(f"index {index}")
            elif item is not None and index not in _named(item, where, path, files):
                mismatched.append(f"index {index} is {names[index][:60]!r}, not {item[:60]!r}")
            else:
                chosen.add(index)
            continue
        found = _named(item, where, path, files)
        if found:
            chosen.update(found)  # the same text (or file) twice: every copy goes
        else:
            unknown.append(item[:60])
    if mismatched:
        raise HeadstartError(f"{len(mismatched)} row(s) of {path} do not match the data: {'; '.join(mismatched[:3])}",
                             hint="the file was made for other data (or the data changed since): audit it again")
    if unknown:
        raise HeadstartError(f"{len(unknown)} item(s) of {path} are not in {data.name}, e.g. "
                             f"{', '.join(repr(u) for u in unknown[:3])}", hint=HINT)
    return np.array(sorted(chosen), dtype=np.int64)


def _named(item: str, where: dict[str, list[int]], path: Path, files: bool) -> list[int]:
    found = where.get(item, [])
    if not found and files:
        found = where.get(_resolved(item, path) or "", [])
    return found


def _resolved(name: str, path: Path) -> str | None:
    """A file name as an absolute path (relative names are read from the list's folder), so
    `a.png` in a list beside the images matches the data's /data/a.png; None for other names."""
    if "#" in name or "\n" in name or len(name) > 1024:
        return None
    candidate = Path(name).expanduser()
    candidate = candidate if candidate.is_absolute() else path.parent / candidate
    try:
        return str(candidate.resolve()) if candidate.exists() else None
    except OSError:
        return None
