"""What `headstart audit` writes: RUN/audit.csv (one row per flagged item, for people and for
`fit --exclude`), RUN/audit.json (everything, for the report and for scripts), thumbnails of
the flagged images under RUN/thumbs/, and RUN/report.html.

Rows name items as `select` and `fit --add-labels` do (the file path, NAME#index for built-in
data, the text itself) plus `index`, the item's position in the data as loaded, which
`fit --exclude` checks against the name so a file made for other data is refused.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ..files import atomic_write_bytes, atomic_write_text, write_json

# CSV order: a wrong label costs most, then a leak (an evaluation that cannot be trusted).
KINDS = ("label_error", "leak", "duplicate", "outlier")
# What each kind's `score` means (the report and audit.json say it too).
SCORE_MEANING = {
    "label_error": "held-out probability that the given label is wrong (1 - self-confidence)",
    "leak": "cosine similarity to an item in another split",
    "duplicate": "cosine similarity to another item of the same split",
    "outlier": "robust z-score of the mean distance to the nearest items",
}
THUMBNAIL_PX = 96
SNIPPET_CHARS = 240


def write_audit(run_dir: Path, findings: dict, subject, *, gallery: int = 60) -> dict:
    """Write the audit of `subject` (label.audit.AuditSubject) into run_dir; return audit.json."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = audit_rows(findings, subject)
    column = subject.data.item_column
    counts = {kind: sum(r["kind"] == kind for r in rows) for kind in KINDS}
    shown = _gallery(rows, subject.data, run_dir, gallery)
    result = {**findings, "rows": rows, "counts": counts, "gallery": shown, "item_column": column,
              "score_meaning": SCORE_MEANING}
    atomic_write_text(run_dir / "audit.csv", rows_csv(rows, column))
    write_json(run_dir / "audit.json", result)
    from ..report.audit import build_audit_report
    result["report"] = str(build_audit_report(run_dir))
    result["csv"] = str(run_dir / "audit.csv")
    result["run_dir"] = str(run_dir)
    return result


def audit_rows(findings: dict, subject) -> list[dict]:
    """One row per flagged item, KINDS in order, each kind ranked by its score."""
    data, index, splits = subject.data, subject.index, subject.splits
    names, labels, classes = data.item_names(), data.labels, data.classes

    def row(kind, rank, position, score, suggested=None, detail="", other=None):
        i = int(index[position])
        entry = {"kind": kind, "rank": rank, "item": names[i], "index": i, "split": str(splits[position]),
                 "given": classes[labels[i]], "suggested": "" if suggested is None else classes[suggested],
                 "score": round(float(score), 4), "detail": detail, "other": "", "other_index": "",
                 "other_split": ""}
        if other is not None:
            j = int(index[other])
            entry.update(other=names[j], other_index=j, other_split=str(splits[other]))
        return entry

    rows = [row("label_error", r, e["position"], 1.0 - e["self_confidence"], e["suggested"],
                f"p(suggested) {e['suggested_probability']:.2f}")
            for r, e in enumerate(findings["label_errors"], 1)]
    for kind in ("leak", "duplicate"):
        pairs = [p for p in findings["pairs"] if p["kind"] == kind]
        for r, p in enumerate(pairs, 1):
            first, second = p["first"], p["second"]
            if kind == "leak" and splits[second] == "train":  # the row names the evaluation copy
                first, second = second, first
            other_label = labels[int(index[first])]
            rows.append(row(kind, r, second, p["similarity"], suggested=other_label,
                            detail="exact" if p["exact"] else "near", other=first))
    rows += [row("outlier", r, o["position"], o["z"], detail=f"distance {o['distance']:.3f}")
             for r, o in enumerate(findings["outliers"], 1)]
    return rows


def rows_csv(rows: list[dict], column: str) -> str:
    """audit.csv: the item column is named as the data names it (path or text), and an empty
    `exclude` column waits for the user's marks."""
    fields = ["kind", "rank", column, "index", "split", "given", "suggested", "score", "detail", "other",
              "other_index", "other_split", "exclude"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({**r, column: r["item"], "exclude": ""})
    return buffer.getvalue()


def _gallery(rows: list[dict], data, run_dir: Path, per_kind: int) -> list[dict]:
    """The first `per_kind` rows of each kind with what shows the item (and the item it
    repeats): a thumbnail file under thumbs/ for images, a snippet for texts."""
    preview = _PREVIEWS[data.item_column]
    shown = []
    for kind in KINDS:
        for r in [r for r in rows if r["kind"] == kind][:per_kind]:
            entry = {**r, "view": preview(data, r["index"], run_dir)}
            if r["other"] != "":
                entry["other_view"] = preview(data, r["other_index"], run_dir)
            shown.append(entry)
    return shown


def _thumbnail(data, i: int, run_dir: Path) -> dict:
    from PIL import Image

    name = f"thumbs/{i}.png"
    path = run_dir / name
    if not path.exists():
        pixels = data.images[i]
        image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
        image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        atomic_write_bytes(path, buffer.getvalue())
    return {"image": name}


def _snippet(data, i: int, run_dir: Path) -> dict:
    text = " ".join(data.texts[i].split())
    return {"text": text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS - 1] + "…"}


# how each kind of data names its items -> how the report shows one
_PREVIEWS = {"path": _thumbnail, "text": _snippet}


def positions_of(rows: list[dict], kind: str) -> np.ndarray:
    """The data indices of one kind's rows, in rank order (what the benchmark scores)."""
    return np.array([r["index"] for r in rows if r["kind"] == kind], dtype=np.int64)
