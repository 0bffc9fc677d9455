"""Label Studio, both ways: the items `select` ranked as tasks Label Studio imports (with the
model's guess as a pre-annotation), and Label Studio's exports read back for `fit --add-labels`.

Tasks (Label Studio's import format) carry the item in `data` (`image`: a URL Label Studio can
serve; `text`: the text), the name headstart knows it by (`headstart_item`, so reading back
never depends on URLs), the ranking, and one `predictions` entry: a `choices` result with the
model's guess, its probability as `score`, and `model_version`. `labelling_config` is the
`<View>` (Image or Text, and Choices named `label`) the project needs.

Exports read back: JSON (tasks with `annotations`), JSON_MIN (flat records, the choice under
`label`) and CSV (the same flat records as columns). A task's latest annotation that was not
cancelled counts; predictions never do (they are the model's guess, not a person's label);
tasks without an annotation are counted as waiting.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlparse
from xml.sax.saxutils import quoteattr

from ..errors import HeadstartError
from ..files import atomic_write_text, write_json

CONTROL = "label"            # the Choices tag's name: the annotation's from_name, the export's column
ITEM_FIELD = "headstart_item"  # the item's own name, as select's CSV and the data name it
# Label Studio's local-files route: started with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and
# LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=<files_root>, it serves <files_root>/<d>.
LOCAL_FILES = "/data/local-files/?d="
HINT = "export the project from Label Studio as JSON, JSON_MIN or CSV, or pass the CSV `headstart select` wrote"


class _Kind:
    """How one kind of item sits in a task: its data key, the object tag that shows it, and
    whether the task holds a URL to a file (images) rather than the item itself (texts)."""

    def __init__(self, key: str, tag: str, extra: str = "", *, served: bool = False):
        self.key, self.tag, self.extra, self.served = key, tag, extra, served


# the data's item column (select's CSV column) -> how Label Studio shows it
KINDS = {"path": _Kind("image", "Image", ' zoom="true"', served=True), "text": _Kind("text", "Text")}


def _kind(kind: str) -> _Kind:
    if kind not in KINDS:
        raise HeadstartError(f"Label Studio tasks are made for items named by {', '.join(KINDS)}, not {kind!r}")
    return KINDS[kind]


def labelling_config(kind: str, classes: list[str]) -> str:
    """The labelling interface for single-label classification of `kind` items into `classes`."""
    shown = _kind(kind)
    choices = "\n".join(f"    <Choice value={quoteattr(c)}/>" for c in classes)
    return (f'<View>\n  <{shown.tag} name="{shown.key}" value="${shown.key}"{shown.extra}/>\n'
            f'  <Choices name="{CONTROL}" toName="{shown.key}" choice="single" showInline="true">\n'
            f"{choices}\n  </Choices>\n</View>\n")


def write_tasks(rows: list[dict], out: str | Path, *, kind: str, classes: list[str], model_version: str,
                files_root: str | Path = "/", url_prefix: str = LOCAL_FILES) -> dict:
    """Write `rows` (select's rows: the item under `kind`, rank, score, guess, guess_probability)
    as Label Studio tasks to `out` (JSON) and the labelling config beside it (`out` with
    .xml); return both paths. Image URLs are url_prefix + the file's path below files_root."""
    shown = _kind(kind)
    out = Path(out)
    tasks = []
    for row in rows:
        item = str(row[kind])
        value = _file_url(item, Path(files_root), url_prefix) if shown.served else item
        data = {shown.key: value, ITEM_FIELD: item, "headstart_rank": row.get("rank"),
                "headstart_score": row.get("score")}
        task = {"data": data}
        if row.get("guess") in classes:
            task["predictions"] = [{
                "model_version": model_version, "score": float(row.get("guess_probability") or 0.0),
                "result": [{"from_name": CONTROL, "to_name": shown.key, "type": "choices",
                            "value": {"choices": [row["guess"]]}}]}]
        tasks.append(task)
    write_json(out, tasks)
    config = out.with_suffix(".xml")
    atomic_write_text(config, labelling_config(kind, classes))
    return {"tasks": str(out), "config": str(config), "count": len(tasks)}


def _file_url(item: str, root: Path, prefix: str) -> str:
    if "#" in item and not Path(item).exists():
        raise HeadstartError(f"{item} is an item of a built-in dataset: there is no image file for Label Studio to show",
                             hint="select from a folder of image files")
    path = Path(item).resolve()
    try:
        relative = path.relative_to(root.resolve())
    except ValueError:
        raise HeadstartError(f"{path} is not under {root}, the folder Label Studio serves files from",
                             hint="pass a files root that holds the pool (LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT)") \
            from None
    return prefix + quote(relative.as_posix(), safe="/")


# -- reading exports back ----------------------------------------------------------------------

def read_export(path: str | Path) -> tuple[list[tuple[str, str]], int]:
    """((item, label) rows, waiting) from a Label Studio export: JSON, JSON_MIN or CSV."""
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as e:
            raise HeadstartError(f"cannot read {path} as JSON: {e}", hint=HINT) from e
        records = [records] if isinstance(records, dict) else records
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise HeadstartError(f"{path} is not a list of Label Studio tasks", hint=HINT)
        labelled = [_from_task(r, path) if "data" in r else _from_flat(r, path) for r in records]
    else:
        labelled = [_from_flat(r, path) for r in csv.DictReader(io.StringIO(text))]
    rows = [(item, label) for item, label in labelled if label]
    return rows, sum(1 for _, label in labelled if not label)


def is_label_studio_csv(header: list[str]) -> bool:
    """Whether a CSV's columns are a Label Studio export's (its item field and choice column)."""
    return CONTROL in header and (ITEM_FIELD in header or any(k.key in header for k in KINDS.values()))


def _from_task(task: dict, path: Path) -> tuple[str, str | None]:
    """A JSON export's task: its latest annotation that was not cancelled or skipped."""
    item = _item(task["data"], path)
    kept = [a for a in task.get("annotations") or task.get("completions") or []
            if not (a.get("was_cancelled") or a.get("skipped"))]
    if not kept:
        return item, None
    latest = max(kept, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a.get("id") or 0))
    chosen = [c for r in latest.get("result") or [] if r.get("type") == "choices"
              for c in (r.get("value") or {}).get("choices") or []]
    return item, _single(chosen, item, path)


def _from_flat(record: dict, path: Path) -> tuple[str, str | None]:
    """A JSON_MIN record or a CSV row: the task's data fields beside the choice column."""
    item = _item(record, path)
    value = record.get(CONTROL)
    if value in (None, ""):
        return item, None
    if isinstance(value, str) and value.startswith("{"):  # CSV: several choices, as JSON
        value = json.loads(value)
    if isinstance(value, dict):
        value = value.get("choices") or []
    return item, _single(value if isinstance(value, list) else [value], item, path)


def _single(choices: list, item: str, path: Path) -> str | None:
    if len(choices) > 1:
        raise HeadstartError(f"{path}: {item[:60]!r} has {len(choices)} labels ({', '.join(map(str, choices))}); "
                             f"a classifier takes one", hint="keep one choice per task (choice=\"single\")")
    return str(choices[0]).strip() if choices else None


def _item(data: dict, path: Path) -> str:
    """The item a task is about: headstart's own name for it, else its text, else the file
    its image URL names (a local-files URL's path below the document root, read like select's
    CSV relative to the export's folder; a plain path; uploads cannot be traced back)."""
    if data.get(ITEM_FIELD):
        return str(data[ITEM_FIELD])
    for kind in KINDS.values():
        if data.get(kind.key):
            return _path_of(str(data[kind.key]), path) if kind.served else str(data[kind.key])
    raise HeadstartError(f"{path} holds a task with no {ITEM_FIELD}, image or text field: {str(data)[:80]}", hint=HINT)


def _path_of(url: str, path: Path) -> str:
    parsed = urlparse(url)
    if parsed.path.startswith("/data/local-files"):
        return unquote(parse_qs(parsed.query).get("d", [""])[0])
    if parsed.scheme in ("", "file"):
        return unquote(parsed.path)
    raise HeadstartError(f"{path}: the image {url[:80]} cannot be traced back to a file",
                         hint=f"import tasks written by `headstart select --format label-studio` (they carry "
                              f"{ITEM_FIELD}), or images served from local files")

