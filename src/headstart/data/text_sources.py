"""Turn text data (a CSV or JSONL file of text,label rows, or class folders of .txt files) into TextData.

Bad input is never silently lost: empty texts are listed in `skipped`, and bytes that are not
UTF-8 are replaced with U+FFFD and counted in `notes["replaced_bytes"]`; strict=True refuses both.
"""
from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from headstart.data.dataset import TextData
from headstart.data.sources import IMAGE_EXTENSIONS, LABEL_COLUMNS, PATH_COLUMNS, is_image_file
from headstart.data.text_rows import TextCollector
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
    collector = TextCollector()
    for class_dir in class_dirs:
        files = sorted(p for p in class_dir.rglob("*") if p.is_file() and _is_text_file(p, class_dir))
        for file in files:
            text, bad = _decode(file.read_bytes())
            collector.add(text, class_dir.name, where=str(file), bad=bad)
    if not collector.count:
        raise HeadstartError(f"no .txt files found in the sub-folders of {root}", "add one .txt file per example")
    return collector.finish(name or root.name, strict)


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
    path: Path, *, strict: bool = False, text_column: str | None = None, label_column: str | None = None,
    labelled: bool = True,
) -> TextData:
    """Texts and labels from the rows of a CSV (header row) or a JSONL file (one object per line).

    Columns are guessed from TEXT_COLUMNS and TEXTLABEL_COLUMNS (case-insensitive) unless named.
    The file is streamed: only the chosen cells of each row are kept (labelled=False: the text).
    """
    jsonl = path.suffix.lower() == ".jsonl"
    collector = TextCollector(str(path), "line" if jsonl else "row")
    rows = _jsonl_rows(path) if jsonl else _csv_rows(path)
    _, columns = next(rows)
    text_col = _choose_column(columns, text_column, TEXT_COLUMNS, "text", path)
    label_col = _choose_column(columns, label_column, TEXTLABEL_COLUMNS, "label", path) if labelled else None
    for number, cells in rows:
        if not any(v is not None and str(v).strip() for v in cells.values()):
            continue  # a blank row carries nothing to lose
        where = collector.name(number)
        text = _cell(cells.get(text_col), text_col, where)
        label = _cell(cells.get(label_col), label_col, where).strip() if label_col else None
        bad = bool(_BAD_BYTE.search(text) or (label and _BAD_BYTE.search(label)))
        if bad:
            text, label = _replace_bad_bytes(text), label and _replace_bad_bytes(label)
        if label_col and text.strip() and not label:
            raise HeadstartError(f"{where} has an empty {label_col!r}", "give every row a class label")
        collector.add(text, label, number=number, bad=bad)
    if not collector.count:
        raise HeadstartError(f"{path} has no rows", f"add one row per example with a {text_col!r}"
                             + (f" and a {label_col!r}" if label_col else ""))
    data = collector.finish(path.stem, strict, labelled=labelled)
    return data if labelled else data.unlabelled()


def _csv_rows(path: Path) -> Iterator[tuple[int, object]]:
    """(0, the header), then (row number, {column: cell}) per row, one row in memory at a time.
    A row is numbered by the line it starts on (a quoted cell may span lines; header = row 1)."""
    with _large_csv_fields(), open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
        reader = csv.reader(f)
        try:
            header = next(reader, [])
            yield 0, header
            end = reader.line_num
            for cells in reader:
                number, end = end + 1, reader.line_num
                yield number, dict(zip(header, cells))  # short rows lack cells: read as ""
        except csv.Error as e:
            raise HeadstartError(f"cannot read {path} as CSV near line {reader.line_num}: {e}", "fix that line") from e


def _jsonl_rows(path: Path) -> Iterator[tuple[int, object]]:
    """As _csv_rows for one JSON object per line. The columns are every key any line has, so the
    file is read twice (parsed twice, never held whole)."""
    columns: dict[str, None] = {}  # every key seen, in first-seen order: a dict is an ordered set
    for _, obj in _jsonl_objects(path):
        columns.update(dict.fromkeys(obj))
    yield 0, list(columns)
    yield from _jsonl_objects(path)


def _jsonl_objects(path: Path) -> Iterator[tuple[int, dict]]:
    # Lines end at "\n" only: JSON strings may hold U+2028 and the like, which str.splitlines splits on.
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            line = raw.decode("utf-8", errors="surrogateescape")
            if number == 1:
                line = line.removeprefix("\ufeff")  # a BOM is no part of the data
            if not line.strip():
                continue
            where = f"{path}:line {number}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise HeadstartError(f"{where} is not valid JSON: {e.msg}", "write one JSON object per line") from e
            if not isinstance(obj, dict):
                raise HeadstartError(f"{where} is a JSON {type(obj).__name__}, not an object",
                                     'write e.g. {"text": "...", "label": "..."}')
            yield number, obj


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


# --------------------------------------------------------------------------- unlabelled pools

def load_text_pool(path: Path, *, strict: bool = False, text_column: str | None = None) -> TextData:
    """Unlabelled texts: a .txt file (one text per line), a CSV/JSONL file (its text column;
    a label column, if any, is not read) or a folder of .txt files at any depth. Files are
    streamed: a file of a million lines is held once, as its lines' strings."""
    if path.is_dir():
        collector = TextCollector()
        for f in sorted(p for p in path.rglob("*") if p.is_file() and _is_text_file(p, path)):
            text, bad = _decode(f.read_bytes())
            collector.add(text, where=str(f), bad=bad)
    elif path.suffix.lower() == ".txt":
        collector = _text_lines(path)
    else:
        return load_text_table(path, strict=strict, text_column=text_column, labelled=False)
    if not collector.count:
        raise HeadstartError(f"no texts found in {path}", "pass a .txt file (one text per line), a CSV/JSONL "
                                                          "with a text column, or a folder of .txt files")
    return collector.finish(path.stem or path.name, strict, labelled=False).unlabelled()


def _text_lines(path: Path) -> TextCollector:
    # Lines end at "\n" (a trailing "\r" goes too); blank lines are no texts, and not counted.
    collector = TextCollector(str(path), "line")
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            line, bad = _decode(raw)
            line = line.rstrip("\r\n")
            if line.strip():
                collector.add(line, number=number, bad=bad)
    return collector
