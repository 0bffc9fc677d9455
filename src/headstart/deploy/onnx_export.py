"""`headstart export RUN --format onnx`: a finished run as one self-contained ONNX file,
checked against the run's own model before it lands.

    image runs   uint8 pixels (N, H, W, C) in, normalised inside the graph; logits out
    text runs    input_ids + attention_mask (N, L), both axes dynamic; the tokenizer beside it
    TF-IDF runs  the raw texts (a string tensor) in, via deploy/tfidf_onnx.py

Each kind of run is an entry of GRAPHS, keyed by model.json's format (`@graph_for`). Every
export is checked before its file is moved into place: onnxruntime's logits against PyTorch's
on one batch of test examples (fp32; texts of different lengths), and the exported model's
test accuracy against the run's on the same split; a quantized model that loses more than
`tolerance` points is refused, writing nothing. The checks go beside the model as
`<file>.json`, and its size, latency and accuracy into the run's deploy table. No torch at
module level: the CLI's parser lists the exporters, and predict must run without PyTorch.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from headstart.engines.onnx_graph import check_onnx, convert_fp16, ort_session, quantize_int8, torch_to_onnx
from headstart.deploy.registry import register_exporter
from headstart.errors import HeadstartError
from headstart import manifest
from headstart.files import atomic_dir, atomic_path, write_json
from headstart.registry import Registry
from headstart.log import progress_bar, say
from headstart.run import Run

ONNX_FORMAT = "headstart-onnx/1"
QUANTIZATIONS = ("int8", "fp16")
# fp32: max |logit difference| onnxruntime vs PyTorch, per unit of the largest |logit| (>= 1).
# Absolute 1e-4 is below float32's noise for trained heads: on a probe over EfficientNet-Lite0
# (logits up to ~25) PyTorch differed from itself by 1.3e-4 between memory layouts.
FP32_TOLERANCE = 1e-4
SAMPLE_SIZE = 16           # test examples in the fp32 check, fed as one batch
CALIBRATION_SIZE = 256     # int8: training examples the activation ranges are calibrated on
CALIBRATION_SEED = 0
BATCH = 32                 # onnxruntime batch for calibration and the accuracy check
MEASURE_SECONDS = 3.0      # the deploy table's latency measurement, per model
FILE_NAMES = {"fp32": "model.onnx", "int8": "model.int8.onnx", "fp16": "model.fp16.onnx"}


@dataclass
class OnnxGraph:
    """One run's model as an ONNX graph: how to write it and how to feed it.

    `inputs` and `feed` split feeding in two so that every check, the calibration and the
    latency measurement slice the same arrays: inputs(part) is a prepared data part's
    examples as one array (N, ...); feed(batch) is a slice of it as onnxruntime's feeds."""

    kind: str                                   # the metadata's "kind": image | text | tfidf
    input: str                                  # one line: what the graph takes
    write: Callable[[Path, np.ndarray], None]   # (path, example inputs) -> an fp32 ONNX file
    inputs: Callable[[object], np.ndarray]
    feed: Callable[[np.ndarray], dict]
    params: int | None = None
    mflops: float | None = None
    metadata: dict | None = None                # extra metadata_props (the tokenizer's settings)
    beside: Callable[[Path], None] | None = None  # writes what the model needs next to it
    lengths: Callable[[np.ndarray], np.ndarray] | None = None  # of variable-length inputs (tokens per text)


GRAPHS: Registry[Callable[[object, dict, Path], OnnxGraph]] = Registry("model format with an ONNX graph")


def graph_for(model_format: str):
    """Register how runs of one model.json format (without its version) become a graph."""
    return GRAPHS.register(model_format)


# --------------------------------------------------------------------------- the exporter

@register_exporter("onnx", summary="one ONNX file (ONNX Runtime, any language); --quantize int8 or fp16, "
                                   "each checked against the run's own model")
def export_onnx(run, *, quantize: str | None = None, out: str | os.PathLike | None = None,
                tolerance: float = 1.0, force: bool = False) -> dict:
    """Export a finished run; returns what was written and what the checks measured (the
    same dict as `<file>.json`). Refuses, writing nothing, when a check fails (unless force)."""
    import headstart.modalities  # noqa: F401  (registers the model formats Run.model reads)
    import headstart.pipeline  # noqa: F401  (registers how Run.reload_data reloads the run's data)
    import headstart.zoo  # noqa: F401

    started = time.perf_counter()
    if quantize not in (None, *QUANTIZATIONS):
        raise HeadstartError(f"unknown --quantize '{quantize}'", hint=f"choose one of: {', '.join(QUANTIZATIONS)}, "
                             "or leave it out for fp32")
    source = Run.open(run).require_finished()  # "not a run" fails here, before anything heavy is loaded
    run_dir, meta = source.path, source.model_info
    model_format = meta.get("format", "headstart-image-classifier/1").split("/")[0]
    if model_format not in GRAPHS:
        raise HeadstartError(f"{run_dir} holds a {meta.get('format')} model, which has no ONNX export",
                             hint=f"ONNX export covers: {', '.join(GRAPHS)}")
    precision = quantize or "fp32"
    target = Path(out) if out else run_dir / FILE_NAMES[precision]
    if target.is_dir():
        raise HeadstartError(f"--out {target} is a folder",
                             hint=f"pass a file name, e.g. {target / FILE_NAMES[precision]}")

    model = source.model()
    graph = GRAPHS[model_format](model, meta, run_dir)
    train, test = _run_parts(source, model, calibrate=precision == "int8")
    test_inputs = graph.inputs(test)
    timings: dict[str, float] = {}
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as work:
        work = Path(work)
        fp32 = work / "fp32.onnx"
        tick = time.perf_counter()
        # always a fresh fp32 export; two examples, as a batch of one lets torch.export fix the batch at 1
        graph.write(fp32, test_inputs[np.arange(2) % len(test_inputs)])
        timings["export_seconds"] = time.perf_counter() - tick
        checks = {"fp32_sample": _check_sample(graph, model, test, fp32, force)}
        made = fp32
        if quantize:
            tick, made = time.perf_counter(), work / f"{quantize}.onnx"
            _CONVERT[quantize](fp32, made, graph, train)
            timings["quantize_seconds"] = time.perf_counter() - tick
            checks.update({"calibration_examples": len(train)} if train is not None else {})
        tick = time.perf_counter()
        accuracy = _check_accuracy(graph, model, test, test_inputs, made, precision, tolerance, force)
        timings["accuracy_check_seconds"] = time.perf_counter() - tick
        _stamp(made, graph, meta, precision, run_dir)
        # everything is checked: the tokenizer first, so the model never lands without it
        if graph.beside is not None:
            graph.beside(target.parent)
        os.replace(made, target)
    timings["total_seconds"] = time.perf_counter() - started
    record = {"format": ONNX_FORMAT, "file": str(target), "file_mb": round(target.stat().st_size / 1e6, 3),
              "kind": graph.kind, "precision": precision, "source_run": str(run_dir), "input": graph.input,
              "checks": {**checks, **accuracy, "tolerance_points": tolerance, "forced": force},
              "timings": {k: round(v, 3) for k, v in timings.items()}}
    write_json(target.with_name(target.name + ".json"), record)
    if target.parent.resolve() == run_dir.resolve():  # the export's commit point; elsewhere is the user's folder
        manifest.record(run_dir, target.name, target.name + ".json", *(["tokenizer"] if graph.beside else []))
    say(f"wrote {target} ({record['file_mb']:.1f} MB, {precision}): test accuracy {accuracy['onnx_test_accuracy']:.4f} "
        f"(PyTorch {accuracy['torch_test_accuracy']:.4f}), export {timings['total_seconds']:.1f} s")
    _record_deploy_row(run_dir, graph, model, test, test_inputs, target, precision, accuracy)
    return record


_CONVERT = {  # (fp32 file, out file, graph, calibration examples or None)
    "int8": lambda fp32, out, graph, train: quantize_int8(fp32, out, _calibration(graph, train)),
    "fp16": lambda fp32, out, graph, train: convert_fp16(fp32, out),
}


# --------------------------------------------------------------------------- the run's data

def _run_parts(run: Run, model, *, calibrate: bool):
    """(training examples to calibrate on -- None unless asked --, the test split), prepared as
    the model eats them: the run's own data and split, with the labels it added, so int8 is
    calibrated on the training set the model was fitted on."""
    splits = run.reload_data("export checks the model on the run's own test split").splits
    train = None
    if calibrate:
        rng = np.random.default_rng(CALIBRATION_SEED)
        chosen = np.sort(rng.permutation(len(splits.train))[:CALIBRATION_SIZE])
        train = model.prepare(splits.train.subset(chosen))
    return train, model.prepare(splits.test)


def _sample_index(graph: OnnxGraph, inputs: np.ndarray) -> np.ndarray:
    """Up to SAMPLE_SIZE test examples; of variable-length inputs, spread from the shortest to
    the longest, so one batch mixes lengths (padding that leaked into the result would show)."""
    n = min(SAMPLE_SIZE, len(inputs))
    if graph.lengths is None:
        return np.arange(n)
    order = np.argsort(graph.lengths(inputs), kind="stable")
    return np.sort(order[np.unique(np.linspace(0, len(order) - 1, n).round().astype(int))])


def _ort_logits(session, graph: OnnxGraph, inputs: np.ndarray, description: str | None = None) -> np.ndarray:
    out = []
    with progress_bar(description, total=len(inputs)) as advance:
        for start in range(0, len(inputs), BATCH):
            chunk = inputs[start:start + BATCH]
            out.append(session.run(None, graph.feed(chunk))[0])
            advance(len(chunk))
    return np.concatenate(out).astype(np.float32)


# --------------------------------------------------------------------------- the checks

def _check_sample(graph: OnnxGraph, model, test, fp32: Path, force: bool) -> dict:
    """fp32: onnxruntime's logits against PyTorch's on one batch of test examples."""
    index = _sample_index(graph, graph.inputs(test))
    sample = test.subset(index)
    ort_out = ort_session(fp32).run(None, graph.feed(graph.inputs(sample)))[0]
    torch_out = np.asarray(model.logits(sample, batch_size=len(index)), dtype=np.float32)
    diff = float(np.abs(ort_out - torch_out).max())
    scale = max(1.0, float(np.abs(torch_out).max()))
    allowed = FP32_TOLERANCE * scale
    figures = {"examples": int(len(index)), "max_abs_diff": diff, "max_abs_logit": float(np.abs(torch_out).max()),
               "allowed_abs_diff": allowed, "same_class": float((ort_out.argmax(1) == torch_out.argmax(1)).mean())}
    if graph.lengths is not None:
        lengths = graph.lengths(graph.inputs(sample))
        figures["lengths"] = [int(lengths.min()), int(lengths.max())]
    _refuse_unless_forced(diff > allowed, force,
                          f"the ONNX graph's logits differ from PyTorch's by up to {diff:.2e} on {len(index)} test "
                          f"examples (allowed: {allowed:.2e}, {FP32_TOLERANCE:g} of the largest logit)",
                          hint="this is a bug in the export; --force writes the model anyway")
    return figures


def _check_accuracy(graph: OnnxGraph, model, test, test_inputs: np.ndarray, path: Path, precision: str,
                    tolerance: float, force: bool) -> dict:
    """Test accuracy of the exported model and of the run's own, on the same test split."""
    ort_out = _ort_logits(ort_session(path), graph, test_inputs, description=f"test (ONNX Runtime {precision})")
    torch_out = np.asarray(model.logits(test, description="test (PyTorch)"), dtype=np.float32)
    labels = np.asarray(test.labels)
    ort_acc, torch_acc = float((ort_out.argmax(1) == labels).mean()), float((torch_out.argmax(1) == labels).mean())
    lost = round((torch_acc - ort_acc) * 100, 4)  # accuracy points
    figures = {"test_examples": int(len(labels)), "onnx_test_accuracy": ort_acc, "torch_test_accuracy": torch_acc,
               "accuracy_points_lost": lost,
               "test_same_class": float((ort_out.argmax(1) == torch_out.argmax(1)).mean()),
               "test_max_abs_diff": float(np.abs(ort_out - torch_out).max())}
    _refuse_unless_forced(lost > tolerance, force,
                          f"the {precision} model's test accuracy is {ort_acc:.4f} against PyTorch's {torch_acc:.4f} "
                          f"on the same {len(labels)} test examples: it loses {lost:.2f} points, more than the "
                          f"tolerance of {tolerance:g}",
                          hint="--force writes it anyway; or raise --tolerance, or export fp32 (no --quantize)")
    return figures


def _refuse_unless_forced(failed: bool, force: bool, message: str, hint: str) -> None:
    """A failed check refuses the export before anything is moved into place (--force writes it anyway)."""
    if failed and not force:
        raise HeadstartError(f"{message}; nothing was written", hint=hint)


def _calibration(graph: OnnxGraph, train):
    inputs = graph.inputs(train)
    return (graph.feed(inputs[start:start + BATCH]) for start in range(0, len(inputs), BATCH))


def _stamp(path: Path, graph: OnnxGraph, meta: dict, precision: str, run_dir: Path) -> None:
    """What a reader of the file needs (classes, preprocessing, input) in its metadata_props."""
    import onnx

    model = onnx.load(str(path))
    props = {"headstart_format": ONNX_FORMAT, "kind": graph.kind, "classes": json.dumps(meta["classes"]),
             "preprocessing": json.dumps(meta["backbone"].get("preprocessing", {})), "input": graph.input,
             "precision": precision, "source_run": str(run_dir.absolute()), **(graph.metadata or {})}
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(path))
    check_onnx(path)


def _record_deploy_row(run_dir: Path, graph: OnnxGraph, model, test, test_inputs: np.ndarray, target: Path,
                       precision: str, accuracy: dict) -> None:
    """The exported model's row in the run's deploy table (and the report rebuilt with it)."""
    from headstart.engines import measure

    session = ort_session(target)
    inside = target.absolute().is_relative_to(run_dir.absolute())
    file = str(target.absolute().relative_to(run_dir.absolute()) if inside else target.absolute())
    row = {"name": f"ONNX Runtime {precision}", "engine": "onnxruntime", "precision": precision, "file": file,
           "file_mb": measure.file_mb(target), "params": graph.params, "mflops": graph.mflops,
           **measure.time_batches(lambda batch: session.run(None, graph.feed(batch)), test_inputs,
                                  max_seconds=MEASURE_SECONDS),
           "test_accuracy": accuracy["onnx_test_accuracy"]}
    if not any(r.get("own_model") for r in measure.read_deploy(run_dir)["rows"]):
        # the row the others are read against: the run's own model, on this machine, now
        measure.record_deploy_row(run_dir, measure.pytorch_row(model, test, accuracy["torch_test_accuracy"], run_dir,
                                                               max_seconds=MEASURE_SECONDS))
    measure.record_deploy_row(run_dir, row)
    from headstart.report import build_fit_report

    try:
        build_fit_report(run_dir)
    except Exception as e:  # noqa: BLE001  (the export stands; `headstart report RUN` rebuilds the report)
        say(f"the report was not rebuilt ({type(e).__name__}: {e}); `headstart report {run_dir}` retries")


# --------------------------------------------------------------------------- the kinds of run

@graph_for("headstart-image-classifier")
def _image_graph(model, meta: dict, run_dir: Path) -> OnnxGraph:
    import torch
    from torch import nn

    from headstart.engines.measure import count_parameters, mflops

    class PixelsToLogits(nn.Module):
        """Decoded images as they come (channel-last uint8): permute and normalisation in the graph."""

        def __init__(self, classifier):
            super().__init__()
            self.classifier = classifier

        def forward(self, pixels):
            return self.classifier(pixels.permute(0, 3, 1, 2))

    pre = meta["backbone"]["preprocessing"]
    size, channels = int(pre["input_size"]), int(pre.get("channels", 3))
    wrapper = PixelsToLogits(model.cpu()).eval()

    def inputs(part) -> np.ndarray:  # grey data is repeated to the backbone's channels, as the model does
        images = part.inputs
        return np.repeat(images, channels, axis=-1) if images.shape[-1] == 1 < channels else images

    def write(path: Path, example: np.ndarray) -> None:
        torch_to_onnx(wrapper, (torch.from_numpy(np.ascontiguousarray(example)),), path, input_names=["pixels"],
                      output_names=["logits"], dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}})

    one = torch.zeros((1, size, size, channels), dtype=torch.uint8)
    return OnnxGraph(kind="image", input=f"pixels: uint8 (N, {size}, {size}, {channels}), channel-last RGB as "
                                         f"decoded, resized to {size} px; normalised inside the graph",
                     write=write, inputs=inputs, feed=lambda batch: {"pixels": np.ascontiguousarray(batch)},
                     params=count_parameters(model), mflops=mflops(wrapper, one))


@graph_for("headstart-text-classifier")
def _text_graph(model, meta: dict, run_dir: Path) -> OnnxGraph:
    import torch
    from torch import nn

    from headstart.engines.measure import count_parameters, mflops
    from headstart.zoo.text_backbones import pool

    class TokensToLogits(nn.Module):
        """The encoder, pooling and head without TextBackbone's trimming of the batch to its
        longest text: that is a Python int, which export would freeze into the graph."""

        def __init__(self, classifier):
            super().__init__()
            self.backbone, self.head = classifier.backbone, classifier.head

        def forward(self, input_ids, attention_mask):
            hidden = self.backbone.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            pre = self.backbone.preprocessing
            return self.head(pool(hidden, attention_mask.bool(), pre.pooling, pre.normalize))

    backbone = model.backbone
    tokenizer_folder = run_dir / "tokenizer"
    if not (tokenizer_folder / "tokenizer.json").is_file():
        raise HeadstartError(f"{run_dir} has no fast tokenizer (tokenizer/tokenizer.json) to ship with the model",
                             hint="ONNX export of text runs needs a Hugging Face fast tokenizer")
    pad_id, max_length = int(backbone.pad_id), int(backbone.preprocessing.max_length)
    wrapper = TokensToLogits(model.cpu()).eval()

    def feed(batch: np.ndarray) -> dict:
        # the run's token arrays are padded with -1 (its own mask); the graph takes the usual pair
        mask = batch >= 0
        length = max(1, int(mask.sum(1).max()))
        ids = np.where(mask, batch, pad_id)[:, :length]
        return {"input_ids": ids.astype(np.int64), "attention_mask": mask[:, :length].astype(np.int64)}

    def write(path: Path, example: np.ndarray) -> None:
        feeds, axes = feed(example), {0: "batch", 1: "sequence"}
        torch_to_onnx(wrapper, tuple(torch.from_numpy(v) for v in feeds.values()), path, input_names=list(feeds),
                      output_names=["logits"], dynamic_axes={**{k: axes for k in feeds}, "logits": {0: "batch"}})

    def beside(folder: Path) -> None:
        if (folder / "tokenizer").resolve() != tokenizer_folder.resolve():
            with atomic_dir(folder / "tokenizer") as tmp:
                shutil.copytree(tokenizer_folder, tmp, dirs_exist_ok=True)

    # how predict must tokenise, without transformers: the tokenizers library and these settings
    keep_last = getattr(backbone.tokenizer, "sep_token_id", None) is not None
    tokens = {"tokenizer": "tokenizer/tokenizer.json", "max_length": max_length, "pad_id": pad_id,
              "truncation": "keep_last" if keep_last else "head"}
    one = tuple(torch.ones((1, 8), dtype=torch.long) for _ in range(2))
    return OnnxGraph(kind="text", input=f"input_ids, attention_mask: int64 (N, L), L <= {max_length}, from "
                                        f"tokenizer/tokenizer.json; both axes dynamic",
                     write=write, inputs=lambda part: part.inputs, feed=feed, params=count_parameters(model),
                     mflops=mflops(wrapper, one), metadata={"tokens": json.dumps(tokens)}, beside=beside,
                     lengths=lambda ids: (ids >= 0).sum(1))


@graph_for("headstart-tfidf-logistic")
def _tfidf_graph(model, meta: dict, run_dir: Path) -> OnnxGraph:
    import onnx

    from headstart.deploy.tfidf_onnx import tfidf_to_onnx

    def write(path: Path, example: np.ndarray) -> None:
        with atomic_path(path) as tmp:
            onnx.save(tfidf_to_onnx(model), str(tmp))
            check_onnx(tmp)

    coef, intercept = getattr(model, "coef", None), getattr(model, "intercept", None)
    return OnnxGraph(kind="tfidf", input="text: string (N,), the raw texts; TF-IDF and the linear model in the graph",
                     write=write, inputs=lambda part: np.asarray(list(part.texts), dtype=object),
                     feed=lambda batch: {"text": np.asarray(batch, dtype=object)},
                     params=None if coef is None else int(np.size(coef) + np.size(intercept)))
