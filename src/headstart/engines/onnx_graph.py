"""ONNX plumbing that knows no run: torch -> ONNX, onnxruntime sessions, int8 and fp16 copies.

Generic on purpose (any module, any inputs): the exporter writes whole classifiers with it,
and the embed stage runs a frozen backbone with it. torch is imported only by the function
that needs it, so the onnxruntime predictor can use `ort_session` without PyTorch.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np

from headstart.errors import HeadstartError
from headstart.files import atomic_path


def torch_to_onnx(module, example_inputs: tuple, path, *, input_names: list[str], output_names: list[str],
                  dynamic_axes: dict[str, dict[int, str]]) -> None:
    """Write `module` (in eval mode) as a self-contained ONNX file at `path`, atomically, and
    check it with onnx.checker. dynamic_axes: {input or output name: {axis: symbolic name}};
    axes that share a name share a size (e.g. "batch" across every input).

    The exporter is torch.export's (dynamo=True). Measured here (torch 2.14, 2 cores): both
    exporters give graphs within 2e-6 of eager for EfficientNet-Lite0 and MiniLM-L6, and the
    old TorchScript tracer is 3-8x faster (2.8 vs 6.7 s and 0.9 vs 6.9 s, mostly onnxscript's
    start-up and optimiser). We
    still take torch.export: the tracer is deprecated, and it turns every Python-level
    branch on a tensor into a constant of the example (it warned so on transformers' masking
    code) -- exactly how a sequence length gets frozen into a text graph -- while torch.export
    keeps the axes symbolic or refuses. Its graph is also already constant-folded, which makes
    quantization's pre-processing ~10x quicker. A module torch.export cannot capture falls back
    to the tracer with a warning; the exporter's own output check catches a frozen shape."""
    import torch

    module = module.eval()
    path = Path(path)
    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporters' advice on their own internals is noise to a user
        try:
            _export_dynamo(module, example_inputs, tmp, input_names, output_names, dynamic_axes)
        except Exception as e:  # noqa: BLE001  (torch.export raises many types; the tracer is the fallback)
            from headstart.log import say

            say(f"torch.export could not capture {type(module).__name__} ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:200] if str(e) else ''}); exporting with the TorchScript tracer")
            torch.onnx.export(module, example_inputs, str(tmp), input_names=input_names, output_names=output_names,
                              dynamic_axes=dynamic_axes, dynamo=False, opset_version=18)
        check_onnx(tmp)


def _export_dynamo(module, example_inputs: tuple, tmp: Path, input_names, output_names, dynamic_axes) -> None:
    import torch

    # One Dim per axis name, shared across inputs: torch.export then knows that the batch of
    # input_ids and attention_mask is one size, and names the graph's axes after them.
    dims: dict[str, object] = {}
    shapes = tuple({axis: dims.setdefault(name, torch.export.Dim(name)) for axis, name in
                    dynamic_axes.get(input_name, {}).items()} or None for input_name in input_names)
    program = torch.onnx.export(module, example_inputs, input_names=input_names, output_names=output_names,
                                dynamic_shapes=shapes, dynamo=True, external_data=False, verbose=False,
                                optimize=True)
    # One file, no .onnx.data beside it: a model to ship is one file (2 GB is protobuf's limit,
    # far above any backbone the zoo packages).
    program.save(str(tmp), external_data=False)


def check_onnx(path) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:  # noqa: BLE001
        raise HeadstartError(f"the exported ONNX graph does not pass onnx.checker: {e}",
                             hint="this is a bug in the export; please report it with the run's model.json") from e


def ort_session(path, threads: int | None = None):
    """An onnxruntime session over `path` with every graph optimisation on: on the GPU when
    onnxruntime has CUDA, else the CPU with one intra-op thread per core (by default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.log_severity_level = 3  # errors only: its warnings about unused initializers are noise
    # Idle worker threads sleep rather than spin: on this shared 2-core machine (load ~3) spinning
    # doubled latency (MiniLM-L6 at 128 tokens, batch 1: 69 -> 37 ms; EfficientNet-Lite0 at
    # 128 px, batch 32: 188 -> 130 ms), as spinning threads take the cores the work needs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    available = ort.get_available_providers()
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    return ort.InferenceSession(str(path), sess_options=options, providers=providers)


class _Feeds:
    """onnxruntime's CalibrationDataReader protocol over any iterable of feeds."""

    def __init__(self, feeds: Iterable[dict[str, np.ndarray]]):
        self._feeds = iter(feeds)

    def get_next(self):
        return next(self._feeds, None)

    def __iter__(self):  # some onnxruntime versions iterate the reader instead of calling get_next
        return iter(self.get_next, None)


def quantize_int8(fp32_path, out_path, calibration: Iterable[dict[str, np.ndarray]], *,
                  keep_head_float: bool = True) -> None:
    """Static int8 quantization by onnxruntime's own tools: pre-processing (shape inference and
    graph optimisation), then QDQ with unsigned 8-bit weights (per channel) and activations
    (U8U8), calibrated (min/max) on `calibration`, a few hundred feeds of real training inputs.

    U8U8, not onnxruntime's default S8S8, because the file must be right on every x86 CPU.
    Without VNNI (AVX2, AVX-512 before Cascade Lake), onnxruntime multiplies signed weights
    with VPMADDUBSW, whose 16-bit pair sums saturate ("Quantize ONNX Models", onnxruntime's
    docs: U8U8 "doesn't have saturation issues"). Measured on this AVX2 CPU: S8S8 moved a
    feature extractor's features to cosine 0.14 of fp32's, and an elpv probe (60 per class,
    128 px) lost 30 points, though the same file lost 2.5 where the arithmetic is exact (a VNNI
    CPU, or graph optimisations off). The docs' other remedy, 7-bit weights (reduce_range),
    lost 6.4 points there; U8U8 lost none (-0.25), and +0.0 computed exactly.

    keep_head_float leaves the graph's last matrix product (a classifier's linear head) in
    float: a probe's head has large weights (up to ~90 on standardised features), which
    multiply the features' int8 rounding into the logits. Measured on a probe over
    EfficientNet-Lite0 (blobs, 64 px): 0.40 accuracy with the head quantized, 0.98 (fp32's
    own) without, for a negligible share of the compute. A feature extractor has no such
    product at its end and is quantized whole."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out_path = Path(out_path).absolute()  # the work below runs in another directory (chdir)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=f".{out_path.name}.") as work, \
            atomic_path(out_path) as tmp:
        pre = Path(work) / "preprocessed.onnx"  # a step, not a product: it goes with the folder
        source = str(Path(fp32_path).absolute())
        # in the work folder: a failed symbolic shape inference saves its partial model (and its
        # weights as a .data file) into the current directory
        with contextlib.chdir(work):
            try:
                quant_pre_process(source, str(pre))
            except Exception:  # noqa: BLE001
                # symbolic shape inference gives up on some transformer graphs ("Incomplete symbolic
                # shape inference" on MiniLM's min(512, sequence)); ONNX's own inference suffices there
                quant_pre_process(source, str(pre), skip_symbolic_shape=True)
        excluded = _head_products(onnx.load(str(pre))) if keep_head_float else []
        with _quiet_root_logger():  # "Axis 1 is out-of-range for weight ...LayerNorm": per-channel on 1-D, skipped
            quantize_static(str(pre), str(tmp), _Feeds(calibration), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8, per_channel=True,
                            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=excluded)
        check_onnx(tmp)


@contextlib.contextmanager
def _quiet_root_logger():
    import logging

    logging.disable(logging.WARNING)  # onnxruntime.quantization warns through the root logger
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


# ops a head's output may pass through on its way to a graph output (bias, reshapes, casts)
_PASS_THROUGH = {"Add", "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Cast"}


def _head_products(model) -> list[str]:
    """Names of the Gemm/MatMul nodes whose result reaches a graph output through nothing
    but pass-through ops: a classifier's head."""
    producer = {out: node for node in model.graph.node for out in node.output}
    found, stack, seen = [], [o.name for o in model.graph.output], set()
    while stack:
        node = producer.get(stack.pop())
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if node.op_type in ("Gemm", "MatMul"):
            found.append(node.name)
        elif node.op_type in _PASS_THROUGH:
            stack.extend(node.input)
    return found


# ops onnxruntime runs in float32 only (the text ops of a TF-IDF graph), beside the converter's own list
_FLOAT32_ONLY = ("TfIdfVectorizer", "Tokenizer", "StringNormalizer", "RegexFullMatch")


def convert_fp16(fp32_path, out_path) -> None:
    """A float16 copy whose inputs and outputs keep their types (keep_io_types): callers feed
    and read the same arrays as the fp32 model."""
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    with atomic_path(out_path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "values truncated to fp16 range": the accuracy check judges that
        model = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True,
                                         op_block_list=DEFAULT_OP_BLOCK_LIST + list(_FLOAT32_ONLY))
        _sort_nodes(model.graph)
        onnx.save(model, str(tmp))
        check_onnx(tmp)


def _sort_nodes(graph) -> None:
    """Put the nodes in an order where each comes after what it reads: the fp16 converter
    appends its Casts at the end when it keeps an op it cannot convert (TF-IDF's string ops) in
    fp32, and onnx.checker rightly refuses that order."""
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        runnable = [n for n in pending if all(i in ready for i in n.input)]
        if not runnable:  # a cycle or a dangling input: leave it to onnx.checker to name
            ordered += pending
            break
        for node in runnable:
            ready.update(node.output)
        ordered += runnable
        pending = [n for n in pending if not any(n is r for r in runnable)]
    copies = [type(n)() for n in ordered]
    for copy, node in zip(copies, ordered):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)
