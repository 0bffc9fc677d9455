"""Turn text data (a CSV or JSONL file of text,label rows, or class folders of .txt files) into TextData.

Bad input is never silently lost: empty texts are listed in `skipped`, and bytes that are not
UTF-8 are replaced with U+FFFD and counted in `notes["replaced_bytes"]`; strict=True refuses both.
"""
from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from headstart.data.dataset import TextData
from headstart.data.sources import IMAGE_EXTENSIONS, LABEL_COLUMNS, PATH_COLUMNS, is_image_file, natural_key
from headstart.errors import HeadstartError

TEXT_COLUMNS = ("text", "sentence", "content", "body", "review", "document", "message")
TEXTLABEL_COLUMNS = LABEL_COLUMNS + ("category", "intent", "sentiment")

# Undecodable bytes first become lone surrogates (errors="surrogateescape"), which valid UTF-8
# never produces: so a cell holding one is exactly a cell that had bad bytes.
_BAD_BYTE = re.compile("[\udc80-\udcff]")


# --------------------------------------------------------------------------- detection

def folder_is_text(root: Path) -> bool:
    """True when class sub-folders of `root` hold .txt files and none holds an image (images win).

    .txt files in a single class are no text dataset (one class cannot be trained) and are more
    likely a stray readme: that case raises, naming both ways to fix it.
    """
    text_classes = []
    for class_dir in _class_dirs(root):
        has_text = False
        for p in class_dir.rglob("*"):
            if not p.is_file():
                continue
            if is_image_file(p):  # the same test the image loader uses, so it finds what we saw
                return False
            has_text = has_text or _is_text_file(p, class_dir)
        if has_text:
            text_classes.append(class_dir.name)
    if len(text_classes) == 1:
        raise HeadstartError(
            f"no images found in the sub-folders of {root}, and .txt files only in '{text_classes[0]}'",
            f"for images use the extensions {', '.join(IMAGE_EXTENSIONS)}; for texts put .txt files "
            "in at least two class sub-folders",
        )
    return bool(text_classes)


def csv_is_text(path: Path, text_column: str | None = None, label_column: str | None = None) -> bool:
    """True when a CSV names texts: a text column and no image-path column, or a column option given."""
    if text_column is not None or label_column is not None:
        return True
    columns = _csv_header(path)
    lowered = {c.strip().lower() for c in columns}
    has_text, has_path = bool(lowered & set(TEXT_COLUMNS)), bool(lowered & set(PATH_COLUMNS))
    if not has_text and not has_path:
        # Neither loader would know what to read; say both ways out, not just the image one.
        raise HeadstartError(
            f"{path} has neither an image path column nor a text column; its columns are: {_listing(columns)}",
            f"for images name a column one of {', '.join(PATH_COLUMNS)}; for texts one of "
            f"{', '.join(TEXT_COLUMNS)}, or pass --text-column NAME",
        )
    return has_text and not has_path


def _csv_header(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
            return next(csv.reader(f), [])
    except csv.Error as e:
        raise HeadstartError(f"cannot read {path} as CSV: {e}", "save it as UTF-8 text with a header row") from e


# --------------------------------------------------------------------------- folders of .txt files

def load_text_folder(root: Path, *, strict: bool = False, name: str | None = None) -> TextData:
    """One example per .txt file; its label is the class sub-folder it sits in (at any depth).

    Hidden files and folders are ignored, and so are files directly in `root` (a README is no
    example). Classes that end up with no usable text are dropped.
    """
    class_dirs = _class_dirs(root)
    if not class_dirs:
        raise HeadstartError(
            f"{root} has no class sub-folders",
            f"put each class's .txt files in a sub-folder named after the class, e.g. {root}/sports/1.txt",
        )
    examples: list[tuple[str, str, str]] = []
    replaced: list[str] = []
    for class_dir in class_dirs:
        files = sorted(p for p in class_dir.rglob("*") if p.is_file() and _is_text_file(p, class_dir))
        for file in files:
            text, bad = _decode(file.read_bytes())
            if bad:
                replaced.append(str(file))
            examples.append((str(file), text, class_dir.name))
    if not examples:
        raise HeadstartError(f"no .txt files found in the sub-folders of {root}", "add one .txt file per example")
    return _to_text_data(examples, replaced, name or root.name, strict)


def _class_dirs(root: Path) -> list[Path]:
    return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _is_text_file(path: Path, class_dir: Path) -> bool:
    hidden = any(part.startswith(".") for part in path.relative_to(class_dir).parts)
    return path.suffix.lower() == ".txt" and not hidden


def _decode(raw: bytes) -> tuple[str, bool]:
    """The text of `raw`, and whether some bytes were not UTF-8 (those become U+FFFD)."""
    try:
        return raw.decode("utf-8-sig"), False  # -sig: a BOM is no part of the text
    except UnicodeDecodeError:
        return raw.decode("utf-8-sig", errors="replace"), True


# --------------------------------------------------------------------------- CSV and JSONL

def load_text_table(
    path: Path, *, strict: bool = False, text_column: str | None = None, label_column: str | None = None
) -> TextData:
    """Texts and labels from the rows of a CSV (header row) or a JSONL file (one object per line).

    Columns are guessed from TEXT_COLUMNS and TEXTLABEL_COLUMNS (case-insensitive) unless named.
    """
    raw = path.read_bytes()
    try:
        content, dirty = raw.decode("utf-8-sig"), False
    except UnicodeDecodeError:
        content, dirty = raw.decode("utf-8-sig", errors="surrogateescape"), True
    columns, rows = _jsonl_rows(path, content) if path.suffix.lower() == ".jsonl" else _csv_rows(path, content)
    text_col = _choose_column(columns, text_column, TEXT_COLUMNS, "text", path)
    label_col = _choose_column(columns, label_column, TEXTLABEL_COLUMNS, "label", path)

    examples: list[tuple[str, str, str]] = []
    replaced: list[str] = []
    for where, cells in rows:
        if not any(v.strip() for v in cells.values()):
            continue  # a blank row carries nothing to lose
        text, label = cells.get(text_col, ""), cells.get(label_col, "").strip()
        if dirty and (_BAD_BYTE.search(text) or _BAD_BYTE.search(label)):
            replaced.append(where)
            text, label = _replace_bad_bytes(text), _replace_bad_bytes(label)
        if text.strip() and not label:
            raise HeadstartError(f"{where} has an empty {label_col!r}", "give every row a class label")
        examples.append((where, text, label))
    if not examples:
        raise HeadstartError(f"{path} has no rows", f"add one row per example with a {text_col!r} and a {label_col!r}")
    return _to_text_data(examples, replaced, path.stem, strict)


def _csv_rows(path: Path, content: str) -> tuple[list[str], list[tuple[str, dict[str, str]]]]:
    rows = []
    with _large_csv_fields():
        reader = csv.reader(io.StringIO(content, newline=""))
        try:
            header = next(reader, [])
            end = reader.line_num
            for cells in reader:
                # A quoted cell may span lines: a row is named by the line it starts on (header = row 1).
                where, end = f"{path}:row {end + 1}", reader.line_num
                rows.append((where, dict(zip(header, cells))))  # short rows lack cells: read as ""
        except csv.Error as e:
            raise HeadstartError(f"cannot read {path} as CSV near line {reader.line_num}: {e}", "fix that line") from e
    return header, rows


@contextmanager
def _large_csv_fields() -> Iterator[None]:
    # A document can be longer than the csv module's default 128 KiB cell limit. The limit is
    # process-wide, so raise it only while reading.
    old = csv.field_size_limit()
    csv.field_size_limit(1 << 30)
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _jsonl_rows(path: Path, content: str) -> tuple[list[str], list[tuple[str, dict[str, str]]]]:
    columns: dict[str, None] = {}  # every key seen, in first-seen order: a dict is an ordered set
    rows = []
    # Split on "\n" only: JSON strings may hold U+2028 and the like, which str.splitlines splits on.
    for number, line in enumerate(content.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:line {number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise HeadstartError(f"{where} is not valid JSON: {e.msg}", "write one JSON object per line") from e
        if not isinstance(obj, dict):
            raise HeadstartError(f"{where} is a JSON {type(obj).__name__}, not an object", 'write e.g. {"text": "...", "label": "..."}')
        columns.update(dict.fromkeys(obj))
        rows.append((where, {key: _cell(value, key, where) for key, value in obj.items()}))
    return list(columns), rows


def _cell(value: object, key: str, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, (str, int, float, bool)):
        return str(value)
    raise HeadstartError(f"{where}: {key!r} is a JSON {type(value).__name__}", "give texts and labels as strings or numbers")


def _choose_column(columns: list[str], named: str | None, accepted: tuple[str, ...], role: str, path: Path) -> str:
    by_name = {c.strip().lower(): c for c in columns if c}
    wanted = (named.strip().lower(),) if named is not None else accepted
    for name in wanted:
        if name in by_name:
            return by_name[name]
    missing = f"no column {named!r}" if named is not None else f"no {role} column"
    raise HeadstartError(
        f"{path} has {missing}; its columns are: {_listing(columns)}",
        f"pass --{role}-column NAME with one of those columns"
        + ("" if named is not None else f", or name the column one of {', '.join(accepted)}"),
    )


def _replace_bad_bytes(cell: str) -> str:
    return cell.encode("utf-8", "surrogateescape").decode("utf-8", "replace") if _BAD_BYTE.search(cell) else cell


def _listing(columns: list[str]) -> str:
    return ", ".join(map(repr, columns)) or "none"


# --------------------------------------------------------------------------- shared

def _to_text_data(examples: list[tuple[str, str, str]], replaced: list[str], name: str, strict: bool) -> TextData:
    """TextData from (where, text, label) examples in order; empty texts become `skipped`."""
    skipped = [(where, "empty text") for where, text, _ in examples if not text.strip()]
    if strict and skipped:
        raise HeadstartError(f"{skipped[0][0]} has an empty text", "remove it, or drop --strict to skip it")
    if strict and replaced:
        raise HeadstartError(
            f"{replaced[0]} is not valid UTF-8", "save it as UTF-8, or drop --strict to replace the bad bytes"
        )
    kept = [(where, text, label) for where, text, label in examples if text.strip()]
    if not kept:
        raise HeadstartError(f"all {len(examples)} texts in {name} are empty", "check the data source")
    classes = sorted({label for _, _, label in kept}, key=natural_key)
    index = {c: i for i, c in enumerate(classes)}
    return TextData(
        texts=[text for _, text, _ in kept],
        labels=np.array([index[label] for _, _, label in kept], dtype=np.int64),
        classes=classes,
        name=name,
        paths=[where for where, _, _ in kept],
        skipped=skipped,
        notes={"replaced_bytes": len(replaced)},
    )


# --------------------------------------------------------------------------- unlabelled pools

def load_text_pool(path: Path, *, strict: bool = False, text_column: str | None = None) -> TextData:
    """Unlabelled texts: a .txt file (one text per line), a CSV/JSONL file (its text column;
    a label column, if any, is not read) or a folder of .txt files at any depth."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and _is_text_file(p, path))
        examples = [(str(f), *_decode(f.read_bytes())) for f in files]
    elif path.suffix.lower() == ".txt":
        text, bad = _decode(path.read_bytes())
        examples = [(f"{path}:line {i}", line, bad) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
    else:
        raw = path.read_bytes().decode("utf-8-sig", errors="replace")
        columns, rows = _jsonl_rows(path, raw) if path.suffix.lower() == ".jsonl" else _csv_rows(path, raw)
        column = _choose_column(columns, text_column, TEXT_COLUMNS, "text", path)
        examples = [(where, cells.get(column, ""), "\ufffd" in cells.get(column, "")) for where, cells in rows]
    if not examples:
        raise HeadstartError(f"no texts found in {path}", "pass a .txt file (one text per line), a CSV/JSONL "
                                                          "with a text column, or a folder of .txt files")
    replaced = [where for where, _, bad in examples if bad]
    data = _to_text_data([(where, text, "?") for where, text, _ in examples], replaced, path.stem or path.name, strict)
    return data.unlabelled()
