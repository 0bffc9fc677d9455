"""What `headstart serve` runs a model with. The server (serve.py) owns HTTP, limits and
batching; an engine owns one model and answers in two steps, so decoding runs in parallel
in the request handlers while the model runs one stacked batch at a time:

    prepare(values)      one request's inputs (image bytes or texts) -> Prepared  (any thread)
    probabilities(parts) several requests' Prepared payloads -> one array each     (one thread)

    OnnxEngine   the default: an exported model through deploy/onnx_predict.py (no PyTorch)
    TorchEngine  the run's own PyTorch model (--engine torch), and the explanations of either

An engine says what it `reads` in the modality's own word ("image" or "text"): the server
picks the request reader by that word, never by comparing a modality's name.
"""
from __future__ import annotations

import hashlib
import io
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from headstart.deploy.onnx_predict import KINDS, OnnxClassifier, model_file, softmax
from headstart.errors import HeadstartError
from headstart.files import read_json
from headstart.manifest import verify
from headstart.registry import Registry
from headstart.run import CONFIG, MODEL_INFO, WEIGHTS, Run

# What a prediction's name is, in onnx_predict's Kind.shown -> what the model reads.
_READS_BY_SHOWN = {"path": "image", "text": "text"}
_HASH_CHUNK = 1 << 20


@dataclass
class Prepared:
    """One request's inputs as the engine eats them: the payload of the usable ones (None when
    none is), which of the given values they are, and why the others could not be used."""

    payload: object | None
    usable: list[int]
    errors: dict[int, str] = field(default_factory=dict)


def model_version(*files: Path) -> str:
    """The identity of what answers: the first 16 hex digits of the SHA-256 of the files that
    make the model (the ONNX file holds its own metadata; a text model adds its tokenizer)."""
    digest = hashlib.sha256()
    for file in files:
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(_HASH_CHUNK), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def run_directory_of(model_path: Path) -> Path | None:
    """The finished run a model came from, when it is at hand: the folder served, or the
    folder an .onnx file sits in when that folder is a finished run with its model (read
    through Run, which imports no torch)."""
    folder = model_path if model_path.is_dir() else model_path.parent
    try:
        Run.open(folder).require_finished().model_info  # noqa: B018  (refuses a run without its model files)
    except HeadstartError:
        return None
    return folder


# --------------------------------------------------------------------------- ONNX Runtime

class OnnxEngine:
    """An exported model.onnx, read and run exactly as `predict --engine onnxruntime` does."""

    name = "onnxruntime"

    def __init__(self, model_path: str | Path, *, threads: int | None = None, max_batch: int = 32):
        self.file = model_file(model_path)
        self.model = OnnxClassifier(self.file, threads)
        self.max_batch = max_batch
        self.reads = _READS_BY_SHOWN[KINDS[self.model.kind].shown]
        self.classes = list(self.model.classes)
        tokenizer = [self.file.parent / self.model.tokens["tokenizer"]] if self.model.tokens else []
        self.version = model_version(self.file, *[t for t in tokenizer if t.is_file()])
        self.exported = _export_record(self.file)  # read now: a damaged one is refused before serving

    def prepare(self, values: list) -> Prepared:
        return _ONNX_READERS[self.reads].prepare(self.model, values)

    def probabilities(self, payloads: list) -> list[np.ndarray]:
        batch = _ONNX_READERS[self.reads].stack(self.model, payloads)
        probabilities = softmax(self.model.logits(batch, batch_size=self.max_batch))
        return _split(probabilities, [len(p) for p in payloads])

    def describe(self) -> dict:
        exported = self.exported
        meta = self.model.session.get_modelmeta().custom_metadata_map
        return {"engine": self.name, "model_file": self.file.name, "kind": self.model.kind,
                "precision": self.model.precision, "preprocessing": self.model.preprocessing,
                "tokens": self.model.tokens, "source_run": meta.get("source_run"),
                "export": None if exported is None else {k: exported.get(k) for k in
                                                          ("checks", "timings", "file_mb", "input")}}


def _export_record(file: Path) -> dict | None:
    """FILE.json, the export's record of its checks (/health shows it). `headstart export`
    writes it beside every model it exports into a run, so there it is verified and parsed
    whole, or refused by name; beside a user's own .onnx file it is optional."""
    record = file.with_name(file.name + ".json")
    in_run = (file.parent / MODEL_INFO).is_file() or (file.parent / CONFIG).is_file()  # a run's, not a user's own
    hint = f"export the model again: `headstart export {file.parent}`"
    if in_run:
        verify(file.parent, record.name, hint=hint)
    if not record.is_file():
        if in_run:
            raise HeadstartError(f"{record} is missing (the export's record of {file.name}, written beside it)",
                                 hint=hint)
        return None
    try:
        found = read_json(record)
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise HeadstartError(f"{record} is damaged (it is not JSON: {e})", hint=hint) from e
    if not isinstance(found, dict):
        raise HeadstartError(f"{record} is damaged (it is not the record headstart export writes)", hint=hint)
    return found


@dataclass(frozen=True)
class _Reader:
    prepare: Callable[[OnnxClassifier, list], Prepared]  # one request's values -> Prepared
    stack: Callable[[OnnxClassifier, list], object]      # several requests' payloads -> the model's batch


def _prepare_images(model: OnnxClassifier, blobs: list[bytes]) -> Prepared:
    # PIL reads a stream as it reads a file: the very decoding `predict` uses, errors included
    batch, usable, errors = model.images([io.BytesIO(blob) for blob in blobs])
    return Prepared(batch, usable, errors)


def _prepare_texts(model: OnnxClassifier, texts: list[str]) -> Prepared:
    usable = [i for i, text in enumerate(texts) if text.strip()]
    errors = {i: "empty text" for i, text in enumerate(texts) if not text.strip()}  # as predict says it
    return Prepared([texts[i] for i in usable] or None, usable, errors)


def _stack_texts(model: OnnxClassifier, payloads: list[list[str]]):
    # tokenised together, so the batch is padded once to its longest text, as predict pads it
    texts = [text for payload in payloads for text in payload]
    return KINDS[model.kind].read(model, texts, None)[1]


_ONNX_READERS = {
    "image": _Reader(_prepare_images, lambda model, payloads: np.concatenate(payloads)),
    "text": _Reader(_prepare_texts, _stack_texts),
}


def _split(rows: np.ndarray, lengths: list[int]) -> list[np.ndarray]:
    ends = np.cumsum(lengths)
    return [rows[end - n:end] for n, end in zip(lengths, ends)]


# --------------------------------------------------------------------------- PyTorch

class TorchEngine:
    """The run's own PyTorch model, loaded once. PyTorch is imported here and only here: the
    default engine's process never loads it. One lock serialises the model's use, since an
    explanation hooks into the very module that predictions run through."""

    name = "torch"

    def __init__(self, run_dir: str | Path):
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise HeadstartError(f"{run_dir} is not a run directory", hint="--engine torch serves a run folder; an "
                                 "exported .onnx file is served by --engine onnxruntime")
        run = Run.open(run_dir).require_finished()
        try:
            import torch  # noqa: F401  (said plainly here, rather than as an import error deep below)
        except ImportError as e:
            raise HeadstartError("PyTorch is not installed here, so the run's own model cannot be loaded",
                                 hint="serve the exported model with --engine onnxruntime, or install "
                                      "headstart's training dependencies") from e
        import headstart.modalities  # noqa: F401  (registers the model formats load_model reads)
        import headstart.zoo  # noqa: F401
        from headstart.modalities import modality_of

        self.run_dir = run_dir
        self.meta = run.model_info
        self.model = run.model()
        self.model.eval()
        self.modality = modality_of(self.meta)
        self.reads = self.modality.words["example"]
        self.classes = list(self.meta["classes"])
        self.version = model_version(run_dir / WEIGHTS, run_dir / MODEL_INFO)
        self._lock = threading.Lock()

    def prepare(self, values: list) -> Prepared:
        """The modality reads the inputs as `predict` does; image bytes go through a private
        temporary folder, since the modality reads image files (its names never leave here)."""
        with _as_inputs(values) as inputs:
            read = self.modality.read_inputs(inputs, None, self.meta)
        return Prepared(read.data, list(read.usable), dict(read.errors))

    def probabilities(self, payloads: list) -> list[np.ndarray]:
        # each request's data runs as its own batch: stacking data forms is the modality's business
        import torch

        with self._lock, torch.inference_mode():
            logits = [self.model.logits(self.model.prepare(data)) for data in payloads]
            return [torch.softmax(rows, 1).float().cpu().numpy() for rows in logits]

    def describe(self) -> dict:
        return {"engine": self.name, "model_file": WEIGHTS, "kind": self.meta.get("format"),
                "precision": "fp32", "preprocessing": self.meta.get("backbone", {}).get("preprocessing"),
                "tokens": None, "source_run": str(self.run_dir.absolute()), "export": None}

    def explain(self, values: list, names: list[str]) -> dict:
        """Why the model labels each value as it does, as `headstart explain` shows it: an image's
        heat-map as PNG bytes, a text's words with their scores."""
        from headstart.explain import Item, explain_items
        from headstart.metrics import confident_predictions

        with _as_inputs(values) as inputs:
            read = self.modality.read_inputs(inputs, None, self.meta)
        if read.data is None:
            raise HeadstartError("none of the inputs could be read: " + "; ".join(read.errors.values()))
        with self._lock, tempfile.TemporaryDirectory(prefix="headstart-serve-") as folder:
            prepared = self.model.prepare(read.data)
            predicted, confidence = confident_predictions(self.model.logits(prepared))
            items = [Item(index=j, name=names[i], predicted=int(predicted[j]), probability=float(confidence[j]))
                     for j, i in enumerate(read.usable)]
            out = Path(folder) / "explained"
            result = explain_items(self.model, prepared, items, self.classes, out)
            for record in result["items"]:
                for entry in record.get("explanations", []):
                    if "image" in entry:
                        entry["png"] = (out / entry.pop("image")).read_bytes()
        result["unreadable"] = [{"name": names[i], "error": error} for i, error in read.errors.items()]
        return result


@contextmanager
def _as_inputs(values: list):
    """What a modality's read_inputs takes: the texts themselves, or image bytes written to a
    private temporary folder under names the server makes (nothing a client sends names a file)."""
    if not values or not isinstance(values[0], bytes):
        yield list(values)
        return
    with tempfile.TemporaryDirectory(prefix="headstart-serve-") as folder:
        paths = [Path(folder) / f"{i:05d}" for i in range(len(values))]
        for path, blob in zip(paths, values):
            path.write_bytes(blob)
        yield [str(path) for path in paths]


# --------------------------------------------------------------------------- choosing one

@dataclass(frozen=True)
class ServingEngine:
    name: str
    summary: str                                            # one line for --help
    open: Callable[[Path, int | None, int], object]         # (run or .onnx file, threads, max batch) -> engine


ENGINES: Registry[ServingEngine] = Registry("serving engine")
ENGINES.add("onnxruntime", ServingEngine(
    "onnxruntime", "the exported model.onnx through ONNX Runtime, without PyTorch",
    lambda path, threads, max_batch: OnnxEngine(path, threads=threads, max_batch=max_batch)))
ENGINES.add("torch", ServingEngine(
    "torch", "the run's own PyTorch model (a run directory)", lambda path, threads, max_batch: TorchEngine(path)))


def open_engine(model_path: str | Path, engine: str = "onnxruntime", *, threads: int | None = None,
                max_batch: int = 32):
    """The engine named `engine` over a run directory or an .onnx file."""
    return ENGINES.get(engine).open(Path(model_path), threads, max_batch)
