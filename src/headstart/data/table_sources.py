"""Parquet files and Hugging Face `datasets` folders (Arrow, written by `save_to_disk`) as data.

A table is a `.parquet` file, a folder of them, a `.arrow` file, or a folder `save_to_disk`
wrote (`state.json` beside its Arrow shards; a `DatasetDict`'s `dataset_dict.json` names its
splits and its train split is read). Rows are read with pyarrow one batch at a time, only the
columns a run needs: a table of any size never sits in memory whole.

Columns: an image column holds encoded bytes, a `{"bytes", "path"}` struct (how `datasets`' Image
feature stores an image) or a path string; a text column holds strings; a label column holds
strings, or integers named by the table's ClassLabel where it has one (the `huggingface` schema
metadata, or `dataset_info.json`). Each is named by --image-column/--text-column/--label-column
or guessed from the usual names.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from headstart.data.cells import decode_cells, to_image_data
from headstart.data.dataset import ImageData, TextData
from headstart.data.sources import LABEL_COLUMNS, PATH_COLUMNS, natural_key
from headstart.data.text_rows import TextCollector
from headstart.data.text_sources import TEXT_COLUMNS, TEXTLABEL_COLUMNS
from headstart.errors import HeadstartError
from headstart.log import say

TABLE_SUFFIXES = (".parquet", ".arrow")
# names an image column goes by (beside the path columns, which hold file names)
IMAGE_COLUMNS = ("image", "img", "picture", "photo", "jpg", "jpeg", "png", "webp")
# rows per batch: a batch of encoded images is a few MB; texts are small, so more per batch
_IMAGE_BATCH, _TEXT_BATCH = 256, 8192


def is_table(path: Path) -> bool:
    """Whether `path` is a Parquet/Arrow file, a folder of Parquet files or a `datasets` folder."""
    if path.is_file():
        return path.suffix.lower() in TABLE_SUFFIXES
    if not path.is_dir():
        return False
    if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
        return True
    return any(p.suffix.lower() == ".parquet" for p in path.iterdir() if p.is_file())


@dataclass
class Table:
    """One table's files, its schema and its `datasets` feature descriptions ({} where none)."""

    path: Path                   # what the user passed
    files: list[Path]
    kind: str                    # "parquet" or "arrow" (an Arrow IPC stream, as save_to_disk writes)
    schema: object               # pyarrow.Schema
    features: dict = field(default_factory=dict)
    note: str | None = None      # what a user should hear about what was read (a DatasetDict's split)

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)

    @property
    def name(self) -> str:
        """A short name for the data: the file's stem, or a DatasetDict's folder for its split."""
        return (self.path.parent.name if self.note else self.path.stem) or self.path.name

    @property
    def base(self) -> Path:
        """The folder relative image paths are read from."""
        return self.path if self.path.is_dir() else self.path.parent

    def num_rows(self) -> int:
        if self.kind == "parquet":
            import pyarrow.parquet as pq

            return sum(pq.ParquetFile(f).metadata.num_rows for f in self.files)
        return sum(batch.num_rows for batch in self.batches([]))  # headers only: the file is mapped

    def batches(self, columns: list[str], batch_size: int = _TEXT_BATCH) -> Iterator:
        """pyarrow RecordBatches of `columns`, file after file, in row order."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            for file in self.files:
                if self.kind == "parquet":
                    yield from pq.ParquetFile(file).iter_batches(batch_size=batch_size, columns=columns)
                    continue
                with pa.memory_map(str(file)) as source:  # zero-copy: batches are views of the file
                    for batch in pa.ipc.open_stream(source):
                        yield batch.select(columns)
        except (pa.ArrowException, OSError) as e:
            raise HeadstartError(f"cannot read {self.path}: {e}", "check that the file is complete") from e

    def feature_type(self, column: str) -> str | None:
        return (self.features.get(column) or {}).get("_type")

    def class_names(self, column: str) -> list[str] | None:
        feature = self.features.get(column) or {}
        return list(feature["names"]) if feature.get("_type") == "ClassLabel" and "names" in feature else None


def open_table(path: Path) -> Table:
    """The table at `path` (its schema, not its rows); a clear error when it cannot be read."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:  # pragma: no cover - pyarrow comes with the install
        raise HeadstartError("reading Parquet or Arrow data needs pyarrow", "pip install pyarrow") from e
    path, note = _chosen_split(path)
    files, kind = _table_files(path)
    try:
        if kind == "parquet":
            schema = pq.read_schema(files[0])
        else:
            with pa.memory_map(str(files[0])) as source:
                schema = pa.ipc.open_stream(source).schema
    except (pa.ArrowException, OSError) as e:
        what = "Parquet" if kind == "parquet" else "Arrow"
        raise HeadstartError(f"cannot read {files[0]} as {what}: {e}",
                             "an empty or truncated file: write it again") from e
    return Table(path, files, kind, schema, _features(schema, path), note)


def _chosen_split(path: Path) -> tuple[Path, str | None]:
    # A DatasetDict is a folder of splits; a fit reads the train split (and splits it itself).
    listing = path / "dataset_dict.json" if path.is_dir() else None
    if listing is None or not listing.is_file():
        return path, None
    try:
        splits = list(json.loads(listing.read_text())["splits"])
    except (ValueError, KeyError, TypeError) as e:
        raise HeadstartError(f"cannot read {listing}: {e}", "save the DatasetDict again") from e
    if not splits:
        raise HeadstartError(f"the DatasetDict at {path} has no splits", "save one with a train split")
    split = "train" if "train" in splits else splits[0]
    return path / split, f"{path} is a DatasetDict with splits {', '.join(splits)}: reading its '{split}' split"


def _table_files(path: Path) -> tuple[list[Path], str]:
    if path.is_file():
        return [path], ("parquet" if path.suffix.lower() == ".parquet" else "arrow")
    state = path / "state.json"
    if state.is_file():
        try:
            names = [entry["filename"] for entry in json.loads(state.read_text())["_data_files"]]
        except (ValueError, KeyError, TypeError) as e:
            raise HeadstartError(f"cannot read {state}: {e}", "save the dataset again (save_to_disk)") from e
        files = [path / n for n in names]
        if missing := [str(f) for f in files if not f.is_file()]:
            raise HeadstartError(f"{state} names Arrow files that are missing: {', '.join(missing[:3])}",
                                 "copy the whole folder save_to_disk wrote")
        if not files:
            raise HeadstartError(f"{path} holds no Arrow files", "save the dataset again (save_to_disk)")
        return files, "arrow"
    files = sorted((p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".parquet"),
                   key=lambda p: natural_key(p.name))
    return files, "parquet"


def _features(schema, path: Path) -> dict:
    # `datasets` records its features in the schema's metadata, and beside Arrow shards in
    # dataset_info.json; a plain Parquet file has neither.
    raw = (schema.metadata or {}).get(b"huggingface")
    try:
        if raw:
            return dict(json.loads(raw)["info"]["features"])
        info = path / "dataset_info.json" if path.is_dir() else None
        if info is not None and info.is_file():
            return dict(json.loads(info.read_text()).get("features") or {})
    except (ValueError, KeyError, TypeError):
        pass  # unreadable descriptions: read the columns as they are
    return {}


# --------------------------------------------------------------------------- columns

def _is_image_type(arrow_type) -> bool:
    import pyarrow as pa

    if pa.types.is_struct(arrow_type):
        return arrow_type.get_field_index("bytes") >= 0
    return pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type)


def _is_string_type(arrow_type) -> bool:
    import pyarrow as pa

    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)


def image_column(table: Table, named: str | None) -> str | None:
    """The column holding images: the one named, an Image feature, an image-named column of
    bytes, or a path-named column of strings; None when there is none."""
    if named is not None:
        return _named(table, named, "image")
    for column in table.columns:
        if table.feature_type(column) == "Image":
            return column
    by_name = {c.strip().lower(): c for c in table.columns}
    for name in IMAGE_COLUMNS + PATH_COLUMNS:
        column = by_name.get(name)
        if column is None:
            continue
        arrow_type = table.schema.field(column).type
        if _is_image_type(arrow_type) or (name in PATH_COLUMNS and _is_string_type(arrow_type)):
            return column
    return None


def text_column(table: Table, named: str | None) -> str | None:
    if named is not None:
        return _named(table, named, "text")
    by_name = {c.strip().lower(): c for c in table.columns}
    return next((by_name[n] for n in TEXT_COLUMNS if n in by_name
                 and _is_string_type(table.schema.field(by_name[n]).type)), None)


def label_column(table: Table, named: str | None, accepted: tuple[str, ...]) -> str:
    if named is not None:
        return _named(table, named, "label")
    for column in table.columns:
        if table.feature_type(column) == "ClassLabel":
            return column
    by_name = {c.strip().lower(): c for c in table.columns}
    found = next((by_name[n] for n in accepted if n in by_name), None)
    if found is None:
        raise HeadstartError(f"{table.path} has no label column; its columns are: {_listing(table)}",
                             f"pass --label-column NAME with one of those columns, or name the column one of "
                             f"{', '.join(accepted)}")
    return found


def _named(table: Table, named: str, role: str) -> str:
    by_name = {c.strip().lower(): c for c in table.columns}
    if named.strip().lower() not in by_name:
        raise HeadstartError(f"{table.path} has no column {named!r}; its columns are: {_listing(table)}",
                             f"pass --{role}-column NAME with one of those columns")
    return by_name[named.strip().lower()]


def _listing(table: Table) -> str:
    return ", ".join(map(repr, table.columns)) or "none"


def table_role(path: Path, options) -> str:
    """"image" or "text": what a table holds, from its columns (a named column decides). Neither
    found is an error that lists the columns (so a user sees what to name)."""
    if getattr(options, "image_column", None) is not None:
        return "image"
    if options.text_column is not None:
        return "text"
    table = open_table(path)
    if image_column(table, None) is not None:
        return "image"
    if text_column(table, None) is not None:
        return "text"
    raise HeadstartError(f"{table.path} has neither an image column nor a text column; its columns are: "
                         f"{_listing(table)}", "pass --image-column NAME or --text-column NAME")


# --------------------------------------------------------------------------- reading

def load_image_table(path: Path, size: int, strict: bool, *, image: str | None = None,
                     label: str | None = None, labelled: bool = True) -> ImageData:
    table = open_table(path)
    image_col = image_column(table, image)
    if image_col is None:
        raise HeadstartError(f"{table.path} has no image column; its columns are: {_listing(table)}",
                             "pass --image-column NAME (a column of image bytes or file paths)")
    label_col = label_column(table, label, LABEL_COLUMNS) if labelled else None
    rows = _count(table)

    def cells():
        columns = [image_col] + ([label_col] if label_col else [])
        row = 0
        for batch in table.batches(columns, _IMAGE_BATCH):
            images = batch.column(0).to_pylist()
            labels = batch.column(1).to_pylist() if label_col else [None] * len(images)
            for cell, value in zip(images, labels):
                yield f"{table.path}:row {row}", _raw_image(cell, table.base), value
                row += 1

    decoded = decode_cells(cells(), size, strict, expected=rows)
    data = to_image_data(decoded, table.name, names=table.class_names(label_col or ""),
                         column=label_col or "label", labelled=labelled)
    return data if labelled else data.unlabelled()


def _raw_image(cell, base: Path) -> bytes | Path | None:
    if isinstance(cell, dict):  # datasets' Image feature: the bytes, else the file they came from
        if cell.get("bytes"):
            return cell["bytes"]
        cell = cell.get("path")
    if isinstance(cell, str):
        return base / cell.strip() if cell.strip() else None
    return cell


def load_text_table_file(path: Path, strict: bool, *, text: str | None = None, label: str | None = None,
                         labelled: bool = True) -> TextData:
    """Texts (and labels) from a table, a batch at a time: only the texts are kept as strings."""
    table = open_table(path)
    text_col = text_column(table, text)
    if text_col is None:
        raise HeadstartError(f"{table.path} has no text column; its columns are: {_listing(table)}",
                             f"pass --text-column NAME, or name the column one of {', '.join(TEXT_COLUMNS)}")
    label_col = label_column(table, label, TEXTLABEL_COLUMNS) if labelled else None
    _count(table)
    names = table.class_names(label_col) if label_col else None
    collector = TextCollector(f"{table.path}", "row", first=0)
    for batch in table.batches([text_col] + ([label_col] if label_col else []), _TEXT_BATCH):
        texts = batch.column(0).to_pylist()
        labels = batch.column(1).to_pylist() if label_col else [None] * len(texts)
        for value, cell in zip(texts, labels):
            if label_col and cell is None and value:
                raise HeadstartError(f"{table.path}:row {collector.seen} has an empty {label_col!r}",
                                     "give every row a class label")
            if names is not None and cell is not None:
                cell = names[cell] if 0 <= cell < len(names) else cell
            collector.add("" if value is None else str(value), None if cell is None else str(cell))
    data = collector.finish(table.name, strict, labelled=labelled)
    if labelled and data.num_classes < 2:
        raise HeadstartError(f"{table.path}: the label column {label_col!r} holds one class ({data.classes[0]!r})",
                             "a classifier needs at least two classes; pass --label-column NAME to read another "
                             "column")
    return data


def _count(table: Table) -> int:
    if table.note:
        say(table.note)
    rows = table.num_rows()
    if rows == 0:
        raise HeadstartError(f"{table.path} has no rows", "write the table with one row per example")
    return rows
