"""The explain stage: why a model chose a class, for images (heat-maps) and texts (highlighted
words), written as a folder the reports read: explanations.json plus one PNG per image map.

`explain_items` is the core; `explain_for_report` picks what a fit report explains (the most
confident test mistakes, one correct example per class) and `explain_inputs` is the
`headstart explain` command. Methods live in image.py and text.py, registered per modality.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from headstart.explain import image as _image  # noqa: F401  (registers the image methods)
from headstart.explain import text as _text  # noqa: F401  (registers the text methods)
from headstart.explain.image import feature_source, overlay_png
from headstart.explain.registry import choose_method, method_names, methods_for
from headstart.explain.text import top_words
from headstart.files import atomic_dir, write_json
from headstart.metrics import confident_predictions, most_confident_mistakes, snippet
from headstart.modalities import modality_of

__all__ = ["Item", "explain_items", "explain_for_report", "explain_inputs", "feature_source", "method_names",
           "EXPLANATIONS", "REPORT_MISTAKES"]

EXPLANATIONS = "explanations.json"
REPORT_MISTAKES = 4  # the default number of test mistakes a fit report explains
NAME_CHARS = 120  # a text is named by its first characters


@dataclass
class Item:
    """One example to explain: its row in the prepared data, and what is known about it."""

    index: int
    name: str
    predicted: int
    probability: float
    true: int | None = None
    kind: str = "input"  # "mistake", "correct" or "input"

    def targets(self) -> list[tuple[str, int]]:
        """(role, class) pairs: the prediction, and the true class when it differs."""
        roles = [("predicted", self.predicted)]
        if self.true is not None and self.true != self.predicted:
            roles.append(("true", self.true))
        return roles


def explain_items(model, prepared, items: list[Item], classes: list[str], folder: Path, *,
                  method: str | None = "auto", header: dict | None = None) -> dict:
    """Explain each item's prediction (and true class) with `method`; write `folder` whole
    (explanations.json and image maps) and return what was written."""
    chosen = choose_method(model, modality_of(model.describe()).name, method)
    started = time.perf_counter()
    requests = [(item.index, cls) for item in items for _, cls in item.targets()]
    attributions = iter(chosen.explain(model, prepared, requests)) if requests else iter(())
    records = []
    with atomic_dir(folder) as tmp:
        for n, item in enumerate(items):
            record = {"kind": item.kind, "name": item.name, "predicted": classes[item.predicted],
                      "probability": round(float(item.probability), 4),
                      "true": None if item.true is None else classes[item.true]}
            for role, cls in item.targets():
                attribution = next(attributions)
                entry = {"role": role, "class": classes[cls]}
                if isinstance(attribution, np.ndarray):  # an image heat-map
                    entry["image"] = f"{n}-{role}.png"
                    overlay_png(np.asarray(prepared.inputs[item.index]), attribution, tmp / entry["image"])
                else:  # text segments
                    entry["segments"] = [[piece, score] for piece, score in attribution]
                    entry["top_words"] = top_words(attribution)
                record.setdefault("explanations", []).append(entry)
            records.append(record)
        result = {"method": chosen.name, "method_summary": chosen.summary, **(header or {}),
                  "seconds": round(time.perf_counter() - started, 3), "items": records}
        write_json(tmp / EXPLANATIONS, result)
    return result


def explain_for_report(model, test, test_logits: torch.Tensor, classes: list[str], folder: Path, *,
                       mistakes: int = REPORT_MISTAKES, method: str | None = "auto") -> dict | None:
    """What a fit report explains: the `mistakes` most confident wrong test predictions and
    the most confident correct one of each class. None for a modality no method explains (a
    new modality's report simply has no such section)."""
    if not methods_for(modality_of(model.describe()).name):
        return None
    predicted, confidence = confident_predictions(test_logits)
    labels = np.asarray(test.labels)
    chosen = [(i, "mistake") for i in most_confident_mistakes(labels, test_logits, mistakes)]
    for k in range(len(classes)):
        right = np.flatnonzero((labels == k) & (predicted == k))
        if len(right):
            chosen.append((int(right[np.argmax(confidence[right])]), "correct"))
    items = [Item(index=i, name=_name(test, i), predicted=int(predicted[i]), probability=float(confidence[i]),
                  true=int(labels[i]), kind=kind) for i, kind in chosen]
    header = {"features_from": _features_from(model)}
    return explain_items(model, test, items, classes, folder, method=method, header=header)


def _name(data, i: int) -> str:
    texts = getattr(data, "texts", None)
    if texts is not None:
        return snippet(texts[i], NAME_CHARS)
    return data.paths[i] if data.paths is not None else f"test example {i}"


def _features_from(model) -> str | None:
    """Which layer's features the head reads: the backbone says so itself when it knows (text
    encoders), else the last feature map is found by running the model (CNNs)."""
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        return None
    try:
        return backbone.feature_source() or feature_source(model)
    except Exception:  # a description is not worth failing a report for
        return None


def explain_inputs(run_dir: str | Path, inputs: list[str], *, text_file: str | None = None,
                   method: str | None = "auto", out: str | Path | None = None,
                   true: list[str] | None = None) -> tuple[Path, dict]:
    """`headstart explain`: read inputs as the run's modality reads them, predict, explain each
    prediction (and the true class when given), write OUT (explanations.json, maps, report.html)."""
    from headstart.errors import HeadstartError
    from headstart.report import build_explain_report
    from headstart.run import Run

    run = Run.open(run_dir).require_finished()
    run_dir, meta = run.path, run.model_info
    read = modality_of(meta).read_inputs(list(inputs), text_file, meta)
    classes = meta["classes"]
    truths = _truths(true, len(read.names), classes)
    if read.data is None:
        raise HeadstartError("none of the inputs could be read: " + "; ".join(read.errors.values()))
    model = run.model()
    prepared = model.prepare(read.data)
    predicted, confidence = confident_predictions(model.logits(prepared))
    items = [Item(index=j, name=read.names[i], predicted=int(predicted[j]), probability=float(confidence[j]),
                  true=truths[i]) for j, i in enumerate(read.usable)]
    out = Path(out) if out else run_dir / f"explain-{time.strftime('%Y%m%d-%H%M%S')}"
    header = {"run": str(run_dir), "kind_of_input": read.kind,
              "unreadable": [{"name": read.names[i], "error": e} for i, e in read.errors.items()]}
    result = explain_items(model, prepared, items, classes, out, method=method, header=header)
    build_explain_report(out)
    return out, result


def _truths(true: list[str] | None, n: int, classes: list[str]) -> list[int | None]:
    from headstart.errors import HeadstartError

    if not true:
        return [None] * n
    if len(true) not in (1, n):
        raise HeadstartError(f"--true names {len(true)} classes for {n} inputs",
                             hint="give one class for all inputs, or one per input, in order")
    unknown = sorted(set(true) - set(classes))
    if unknown:
        raise HeadstartError(f"--true names classes the run does not know: {', '.join(unknown)}",
                             hint=f"the run's classes: {', '.join(classes)}")
    return [classes.index(t) for t in (true * n if len(true) == 1 else true)]
