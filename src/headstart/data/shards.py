"""WebDataset tar shards as data: a `.tar` file, a folder of `*.tar` shards, or a brace pattern
(`shards/train-{000..009}.tar`).

A shard is a plain tar whose members are grouped into samples by key: `a/0001.jpg`, `a/0001.cls`
and `a/0001.json` are one sample, key `a/0001` (the name up to the first dot of its last part),
and consecutive members share a key. An image sample's picture is its jpg/jpeg/png/webp member and
its label its `cls`, else `txt`, else a field of its `json` (--label-column names the field, or an
extension); a text sample has no picture, its text is its `txt` member (or the extension
--text-column names) and its label its `cls` or `json`.

Read with the standard library's tarfile, shard after shard, one member at a time: the format
needs no more (webdataset's own reader adds a dependency and a pipeline of stages for what is
here a loop; see bench/shard_read.py for the two read side by side).
"""
from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path

from headstart.data.cells import decode_cells, to_image_data
from headstart.data.dataset import ImageData, TextData
from headstart.data.sources import LABEL_COLUMNS, natural_key
from headstart.data.text_rows import TextCollector
from headstart.errors import HeadstartError

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
LABEL_EXTENSIONS = ("cls", "txt", "json")
_BRACES = re.compile(r"\{([^{}]*)\}")
_KEY = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")  # key, extension (webdataset's own split)
# samples looked at to tell image shards from text shards
_PEEK = 16


def is_shard_spec(path: Path) -> bool:
    """A tar file, a brace pattern of them, or a folder whose files include tar shards."""
    if _BRACES.search(path.name):
        return path.name.lower().endswith(".tar")
    if path.is_file():
        return path.suffix.lower() == ".tar"
    return path.is_dir() and any(p.suffix.lower() == ".tar" for p in path.iterdir() if p.is_file())


def shard_files(path: Path) -> list[Path]:
    """The shards `path` names, in order; a clear error for a pattern that names a missing one."""
    if _BRACES.search(path.name):
        files = [path.parent / name for name in expand_braces(path.name)]
        if missing := [str(f) for f in files if not f.is_file()]:
            raise HeadstartError(f"{len(missing)} of the {len(files)} shards {path} names do not exist, "
                                 f"e.g. {', '.join(missing[:3])}", "fix the pattern or copy the missing shards")
        return files
    if path.is_file():
        return [path]
    return sorted((p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".tar"),
                  key=lambda p: natural_key(p.name))


def expand_braces(pattern: str) -> list[str]:
    """`a-{000..002}.tar` -> a-000.tar, a-001.tar, a-002.tar (widths kept); `{x,y}` lists; nested
    patterns expand left to right."""
    match = _BRACES.search(pattern)
    if match is None:
        return [pattern]
    body, head, tail = match.group(1), pattern[:match.start()], pattern[match.end():]
    numeric = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if numeric:
        first, last = numeric.groups()
        width = len(first) if first.startswith("0") else 0
        parts = [str(n).zfill(width) for n in range(int(first), int(last) + 1)]
    else:
        parts = body.split(",")
    if not parts or parts == [""]:
        raise HeadstartError(f"cannot expand the shard pattern {pattern}", "write e.g. shard-{000..009}.tar")
    return [name for part in parts for name in expand_braces(head + part + tail)]


def _samples(files: list[Path]) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(where, {extension: bytes}) per sample, shard after shard; a sample's members are read together."""
    for shard in files:
        key, members = None, {}
        try:
            with tarfile.open(shard, mode="r|") as tar:  # stream: one pass, no index of members
                for member in tar:
                    match = _KEY.match(member.name) if member.isfile() else None
                    if match is None or any(p.startswith(".") for p in member.name.split("/")):
                        continue
                    if match.group(1) != key and members:
                        yield f"{shard}:{key}", members
                        members = {}
                    key = match.group(1)
                    members[match.group(2).lower()] = tar.extractfile(member).read()
        except (tarfile.TarError, OSError, EOFError) as e:
            raise HeadstartError(f"cannot read the shard {shard}: {e}", "check that the tar file is complete") from e
        if members:
            yield f"{shard}:{key}", members


def shard_role(path: Path) -> str:
    """"image" or "text", from the first samples' members; neither is an error naming what they hold."""
    files = shard_files(path)
    seen: set[str] = set()
    for n, (_, members) in enumerate(_samples(files[:1])):
        seen.update(members)
        if seen & set(IMAGE_EXTENSIONS):
            return "image"
        if n + 1 >= _PEEK:
            break
    if "txt" in seen:
        return "text"
    found = ", ".join(sorted(seen)) or "no samples"
    raise HeadstartError(f"the shards {path} hold neither images nor texts (their members: {found})",
                         f"give each sample an image ({', '.join(IMAGE_EXTENSIONS)}) or a txt member")


def _count(files: list[Path]) -> int:
    """Samples with a picture: tar headers only (a seek past each member's data), so the decoded
    array is sized once."""
    keys = 0
    for shard in files:
        try:
            with tarfile.open(shard, mode="r:") as tar:
                matches = (_KEY.match(m.name) for m in tar.getmembers() if m.isfile())
                keys += len({m.group(1) for m in matches if m and m.group(2).lower() in IMAGE_EXTENSIONS})
        except (tarfile.TarError, OSError, EOFError) as e:
            raise HeadstartError(f"cannot read the shard {shard}: {e}", "check that the tar file is complete") from e
    if keys == 0:
        raise HeadstartError(f"the shards {', '.join(map(str, files[:3]))} hold no images",
                             f"write samples with an image member ({', '.join(IMAGE_EXTENSIONS)})")
    return keys


def _label(where: str, members: dict[str, bytes], field: str | None, skip: tuple[str, ...] = ()) -> str | None:
    if field is not None and field.lower() in members:
        return members[field.lower()].decode("utf-8", "replace").strip()
    for extension in LABEL_EXTENSIONS:
        if extension in skip or extension not in members:
            continue
        raw = members[extension].decode("utf-8", "replace")
        if extension != "json":
            return raw.strip()
        try:
            obj = json.loads(raw)
        except ValueError as e:
            raise HeadstartError(f"{where}.json is not valid JSON: {e}", "write one JSON object per sample") from e
        names = (field,) if field is not None else LABEL_COLUMNS
        if not isinstance(obj, dict):
            return str(obj).strip() if field is None else None
        by_name = {k.strip().lower(): v for k, v in obj.items()}
        value = next((by_name[n.lower()] for n in names if n.lower() in by_name), None)
        if value is None:
            raise HeadstartError(f"{where}.json has no {' or '.join(map(repr, names))}; its fields are: "
                                 f"{', '.join(map(repr, obj)) or 'none'}", "pass --label-column FIELD")
        return str(value).strip()
    return None


def load_image_shards(path: Path, size: int, strict: bool, *, label: str | None = None,
                      labelled: bool = True) -> ImageData:
    files = shard_files(path)
    expected = _count(files)

    def cells():
        for where, members in _samples(files):
            picture = next((members[e] for e in IMAGE_EXTENSIONS if e in members), None)
            value = _label(where, members, label) if labelled else None
            if labelled and value is None and picture is not None:
                raise HeadstartError(f"{where} has an image but no label (cls, txt or json)",
                                     "give every sample a label member")
            yield where, picture, value

    decoded = decode_cells(cells(), size, strict, expected=expected)
    data = to_image_data(decoded, _name(path), column=label or "cls", labelled=labelled)
    return data if labelled else data.unlabelled()


def load_text_shards(path: Path, strict: bool, *, text: str | None = None, label: str | None = None,
                     labelled: bool = True) -> TextData:
    files = shard_files(path)
    collector = TextCollector()
    text_extension = (text or "txt").lower()
    for where, members in _samples(files):
        raw = members.get(text_extension, b"")
        try:
            value, bad = raw.decode("utf-8"), False
        except UnicodeDecodeError:
            value, bad = raw.decode("utf-8", "replace"), True
        cell = _label(where, members, label, skip=(text_extension,)) if labelled else None
        if labelled and cell is None and value.strip():
            raise HeadstartError(f"{where} has a text but no label (cls or json)", "give every sample a label member")
        collector.add(value, cell, where=where, bad=bad)
    if not collector.count:
        raise HeadstartError(f"the shards {path} hold no samples", "write samples into them")
    data = collector.finish(_name(path), strict, labelled=labelled)
    if labelled and data.num_classes < 2:
        raise HeadstartError(f"{path}: the samples' labels hold one class ({data.classes[0]!r})",
                             "a classifier needs at least two classes")
    return data if labelled else data.unlabelled()


def _name(path: Path) -> str:
    return _BRACES.sub("", path.stem).rstrip("-_") or path.name
