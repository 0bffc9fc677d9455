"""Feature-extraction engines: what runs a frozen backbone when the embed stage extracts features.

The probe's cost is one inference pass, so the engine that runs that pass sets the probe's
floor. PyTorch eager is the reference; torch.compile fuses kernels; ONNX Runtime runs an
exported copy of the frozen feature model (fp32, or int8 with static QDQ quantization
calibrated on the training images). `bench/extract_engines.py` measures them all; `auto`
takes the modality's own choice (`Modality.extraction_engine`: the fastest whose probe accuracy
stayed within half a point of eager's, see BENCHMARKS.md).

An exported engine is a compiled artefact, like downloaded weights: it is cached on disk by
the backbone's architecture, weights, preprocessing and input shape (int8: and the
calibration images), so only the first use of a backbone at a size pays for the export.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from headstart.data.cache import cache_dir
from headstart.embed import FeatureModel, weights_fingerprint
from headstart.errors import HeadstartError
from headstart.heads import as_batch, inference_batch_size
from headstart.log import progress_bar, say
from headstart.modalities import get_modality
from headstart.registry import Registry

CALIBRATION_IMAGES = 64  # int8: training images the activation ranges are calibrated on
ORT_BATCH = 32  # ONNX Runtime batch on CPU (bench/extract_engines.py; eager prefers 16, see heads.py)


@dataclass
class FeatureEngine:
    """Runs a classifier's feature model over batches of its inputs: numpy in, (B, D) float32 out."""

    name: str
    run_batch: Callable[[np.ndarray], np.ndarray] | None
    tag: str = ""                 # what makes its features differ from eager's, for the feature cache key
    batch_size: int | None = None  # its best batch on this machine (None: inference_batch_size())
    prepare_seconds: float = 0.0  # export / quantization time this engine paid (0 when cached)
    notes: dict = field(default_factory=dict)

    def features(self, inputs: np.ndarray, description: str | None = None,
                 batch_size: int | None = None) -> np.ndarray:
        batch_size = batch_size or self.batch_size or inference_batch_size()
        out = []
        with progress_bar(description, total=len(inputs)) as advance:
            for start in range(0, len(inputs), batch_size):
                chunk = inputs[start:start + batch_size]
                out.append(np.asarray(self.run_batch(chunk), dtype=np.float32))
                advance(len(chunk))
        return np.concatenate(out) if out else np.empty((0, 0), np.float32)


@dataclass(frozen=True)
class EngineSpec:
    name: str
    summary: str
    make: Callable[..., FeatureEngine]  # (classifier, calibration inputs or None) -> engine
    # the modalities whose inputs it can take (the ONNX engines feed pixels); None: any modality
    modalities: tuple[str, ...] | None = None

    def takes(self, modality: str) -> bool:
        return self.modalities is None or modality in self.modalities


# "auto": the modality's measured choice (Modality.extraction_engine)
ENGINES: Registry[EngineSpec] = Registry("extraction engine", extra_choices=("auto",))


def register_engine(name: str, *, summary: str, modalities: tuple[str, ...] | None = None):
    def wrap(fn):
        ENGINES.add(name, EngineSpec(name, summary, fn, modalities))
        return fn
    return wrap


def resolve_engine_name(name: str | None, modality: str) -> str:
    """'auto' (or None) -> the modality's measured default; an explicit name is checked."""
    if name in (None, "auto"):
        return get_modality(modality).extraction_engine
    if not ENGINES.get(name).takes(modality):
        raise HeadstartError(f"the {name} extraction engine runs {', '.join(ENGINES[name].modalities)} backbones, "
                             f"not {modality} ones", hint="use --extract-engine torch (or auto)")
    return name


def make_engine(name: str | None, classifier, calibration: np.ndarray | None = None) -> FeatureEngine:
    """The engine `name` (or auto's choice) for this classifier's frozen feature model.
    calibration: training inputs, for engines that calibrate (int8)."""
    modality = classifier.backbone.modality
    chosen = resolve_engine_name(name, modality)
    try:
        return ENGINES[chosen].make(classifier, calibration)
    except HeadstartError:
        raise
    except Exception as e:  # noqa: BLE001  (an engine that cannot take this model: eager always can)
        if name not in (None, "auto"):
            raise HeadstartError(f"the {chosen} extraction engine failed on {classifier.backbone.name}: "
                                 f"{type(e).__name__}: {e}", hint="use --extract-engine torch") from e
        say(f"extraction engine {chosen} could not take {classifier.backbone.name} ({type(e).__name__}: {e}); "
            f"using PyTorch eager")
        return ENGINES["torch"].make(classifier, calibration)


def _device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


@register_engine("torch", summary="PyTorch eager (the reference)")
def _eager(classifier, calibration=None) -> FeatureEngine:
    model = FeatureModel(classifier).eval()
    device = _device(model)

    def run(chunk):
        with torch.inference_mode():
            return model(as_batch(chunk).to(device)).float().cpu().numpy()
    return FeatureEngine("torch", run)


@register_engine("compile", summary="torch.compile (inductor, static shapes); compile time is paid on the first batch")
def _compiled(classifier, calibration=None) -> FeatureEngine:
    # Static shapes: with dynamic=True, inductor spent over 5 minutes in symbolic shape
    # reasoning on EfficientNet-Lite0's SAME padding (2 cores). Every batch is padded to one
    # size instead, so one compile serves the whole pass.
    model = torch.compile(FeatureModel(classifier).eval(), dynamic=False)
    device = _device(classifier)
    size = inference_batch_size()

    def run(chunk):
        n = len(chunk)
        if n < size:  # the last batch: padded to the compiled shape, the padding dropped after
            chunk = np.concatenate([chunk, np.zeros((size - n, *chunk.shape[1:]), chunk.dtype)])
        with torch.inference_mode():
            return model(as_batch(chunk).to(device)).float().cpu().numpy()[:n]
    return FeatureEngine("compile", run, batch_size=size)


@register_engine("onnxruntime", summary="ONNX Runtime fp32 on an exported copy of the frozen backbone",
                 modalities=("image",))
def _onnxruntime(classifier, calibration=None) -> FeatureEngine:
    return _ort_engine("onnxruntime", lambda channels: _exported(classifier, channels), "ort-fp32")


@register_engine("onnxruntime-int8", summary="ONNX Runtime int8 (static QDQ, calibrated on training images)",
                 modalities=("image",))
def _onnxruntime_int8(classifier, calibration=None) -> FeatureEngine:
    if calibration is None or not len(calibration):
        raise HeadstartError("the int8 extraction engine needs training images to calibrate on")
    picked = calibration[np.linspace(0, len(calibration) - 1, min(CALIBRATION_IMAGES, len(calibration))).astype(int)]
    digest = hashlib.sha256(np.ascontiguousarray(picked).tobytes()).hexdigest()[:16]

    def quantized(channels: int) -> Path:
        from headstart.engines.onnx_graph import quantize_int8

        fp32 = _exported(classifier, channels)
        path = fp32.with_name(f"{fp32.stem}-int8-{digest}.onnx")
        if not path.exists():
            feeds = [{"pixels": np.ascontiguousarray(as_batch(picked[i:i + 16]).numpy())}
                     for i in range(0, len(picked), 16)]
            quantize_int8(fp32, path, feeds)
        return path
    return _ort_engine("onnxruntime-int8", quantized, f"ort-int8-{digest}")


def _ort_engine(name: str, model_path: Callable[[int], Path], tag: str) -> FeatureEngine:
    """An engine whose ONNX model is made (or found in the cache) on its first batch: only then
    is the input's channel count known (grey data is expanded to RGB inside the graph)."""
    from headstart.engines.onnx_graph import ort_session

    sessions: dict[int, object] = {}
    engine = FeatureEngine(name, None, tag=tag, batch_size=ORT_BATCH)

    def run(chunk):
        channels = chunk.shape[-1]
        if channels not in sessions:
            started = time.perf_counter()
            path = model_path(channels)
            sessions[channels] = ort_session(path)
            engine.prepare_seconds += time.perf_counter() - started
            engine.notes["model"] = str(path)
        return sessions[channels].run(None, {"pixels": np.ascontiguousarray(as_batch(chunk).numpy())})[0]
    engine.run_batch = run
    return engine


def _exported(classifier, channels: int) -> Path:
    """The frozen feature model as ONNX fp32 (uint8 NCHW pixels in, features out), cached by
    everything that changes its graph or weights."""
    from headstart.engines.onnx_graph import torch_to_onnx

    backbone = classifier.backbone
    pre = backbone.preprocessing
    key = hashlib.sha256(json.dumps({
        "architecture": backbone.architecture, "weights": weights_fingerprint(backbone),
        "preprocessing": pre.to_dict(), "channels": channels, "torch": torch.__version__, "format": 1,
    }, sort_keys=True).encode()).hexdigest()[:24]
    path = cache_dir() / "engines" / f"{key}.onnx"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        model = FeatureModel(classifier).eval().cpu()
        example = torch.zeros(2, channels, pre.input_size, pre.input_size, dtype=torch.uint8)
        torch_to_onnx(model, (example,), path, input_names=["pixels"], output_names=["features"],
                      dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}})
    return path
