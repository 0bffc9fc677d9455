"""`headstart predict RUN_OR_MODEL.onnx INPUTS... --engine onnxruntime`: an exported model,
onnxruntime, PIL and the tokenizers library -- and no PyTorch.

Everything the model needs to read its inputs is in the file's metadata (classes, the run's
preprocessing, the tokenizer's settings; see onnx_export.py). Inputs are read exactly as the
PyTorch path reads them: file lists and text lines through headstart.inputs (as the PyTorch
path does); decoding and tokenising are repeated here because the modules that hold them
import torch (headstart.data does, on import), and tests/test_export.py checks that both give
the same pixels and the same token ids.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from headstart.engines.onnx_graph import ort_session
from headstart.errors import HeadstartError
from headstart.inputs import Prediction, expand_image_paths, read_text_lines
from headstart.manifest import verify
from headstart.run import CONFIG, MODEL_INFO, Run
from headstart.registry import Registry
from headstart.untrusted import check_onnx_external_data, inside

ONNX_FORMAT = "headstart-onnx/1"  # what onnx_export.py writes (not imported: it pulls in more than this needs)
BATCH = 32


def model_file(run_or_file: str | Path) -> Path:
    """RUN -> RUN/model.onnx; a .onnx file -> itself."""
    path = Path(run_or_file)
    if path.is_dir():
        found = path / "model.onnx"
        if not found.is_file():
            Run.open(path)  # a folder that is no run at all is refused as such, before "export it first"
            others = sorted(p.name for p in path.glob("model.*.onnx"))
            raise HeadstartError(f"{path} has no exported model (model.onnx)",
                                 hint=f"run `headstart export {path} --format onnx` first"
                                      + (f", or pass {path / others[0]}" if others else ""))
        return found
    if path.suffix.lower() == ".onnx" and path.is_file():
        return path
    raise HeadstartError(f"{path} is neither a run directory nor an .onnx file",
                         hint="pass a run exported with `headstart export RUN --format onnx`, or its .onnx file")


_REEXPORT = "export the model again: `headstart export {run} --format onnx`"


def _in_a_run(path: Path) -> bool:
    """Whether an .onnx file lies in a run folder (whose manifest recorded it), not a user's own."""
    return (path.parent / MODEL_INFO).is_file() or (path.parent / CONFIG).is_file()


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0][:300]


class OnnxClassifier:
    """An exported headstart model: its session and what its metadata says about its inputs."""

    def __init__(self, path: str | Path, threads: int | None = None):
        self.path = Path(path)
        if _in_a_run(self.path):
            verify(self.path.parent, self.path.name, "tokenizer", hint=_REEXPORT.format(run=self.path.parent))
        check_onnx_external_data(self.path)  # untrusted input: no tensor read from outside its folder
        try:
            self.session = ort_session(self.path, threads)
        except Exception as e:  # noqa: BLE001 - onnxruntime's own errors (InvalidProtobuf, Fail, ...) for a damaged file
            raise HeadstartError(f"{self.path} is damaged or not an ONNX model ({type(e).__name__}: "
                                 f"{_first_line(e)})", hint=_REEXPORT.format(run="RUN")) from e
        props = self.session.get_modelmeta().custom_metadata_map
        if props.get("headstart_format") != ONNX_FORMAT:
            raise HeadstartError(f"{self.path} was not exported by headstart (no {ONNX_FORMAT} metadata)",
                                 hint="predict with the runtime its exporter documents, or re-export the run "
                                      "with `headstart export RUN --format onnx`")
        self.kind = props["kind"]
        if self.kind not in KINDS:
            raise HeadstartError(f"{self.path} holds a '{self.kind}' model, which this headstart cannot run",
                                 hint=f"it reads: {', '.join(KINDS)}; a newer headstart may read it")
        self.classes = json.loads(props["classes"])
        self.preprocessing = json.loads(props.get("preprocessing", "{}"))
        self.precision = props.get("precision", "fp32")
        self.tokens = json.loads(props["tokens"]) if "tokens" in props else None
        if self.tokens:  # the tokenizer it names must lie beside it
            inside(self.path.parent, self.tokens.get("tokenizer"), source=self.path, what="tokenizer")
        self._tokenizer = None

    # -- reading inputs as the run's own loaders do ------------------------------------------
    def images(self, files: list[Path]) -> tuple[np.ndarray | None, list[int], dict[int, str]]:
        size, channels = int(self.preprocessing["input_size"]), int(self.preprocessing.get("channels", 3))
        decoded, usable, errors = [], [], {}  # -> (batch or None, usable indices, errors by index)
        for i, f in enumerate(files):
            try:
                image = decode_image(f, size)
            except Exception as e:  # noqa: BLE001  (one unreadable file must not cost the others their answers)
                errors[i] = f"unreadable image: {e}"
                continue
            decoded.append(image if channels == 3 else _to_channels(image, channels))
            usable.append(i)
        return (np.stack(decoded) if decoded else None), usable, errors

    def token_ids(self, texts: list[str]) -> np.ndarray:
        """int (N, L) ids padded with -1, as headstart.zoo.tokens.tokenize makes them."""
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            file = self.path.parent / self.tokens["tokenizer"]
            if not file.is_file():
                raise HeadstartError(f"{self.path} reads its texts with {file}, which is missing",
                                     hint="keep the tokenizer/ folder that `headstart export` wrote beside the model")
            try:
                tokenizer = Tokenizer.from_file(str(file))
            except Exception as e:  # noqa: BLE001 - the tokenizers library raises a bare Exception on a damaged file
                raise HeadstartError(f"{file} is damaged or not a tokenizer ({_first_line(e)})",
                                     hint="keep the tokenizer/ folder that `headstart export` wrote beside the "
                                          "model, or re-export the run") from e
            tokenizer.no_truncation()  # truncation as the run did it, below
            tokenizer.no_padding()
            self._tokenizer = tokenizer
        max_length, keep_last = int(self.tokens["max_length"]), self.tokens.get("truncation") == "keep_last"
        encoded = [e.ids for e in self._tokenizer.encode_batch(list(texts), add_special_tokens=True)]
        longest = max((min(len(ids), max_length) for ids in encoded), default=1)
        out = np.full((len(encoded), max(1, longest)), -1, dtype=np.int64)
        for i, ids in enumerate(encoded):
            if len(ids) > max_length:
                # keep the closing special token ([SEP] / </s>) the model was trained to see
                ids = ids[:max_length - 1] + ids[-1:] if keep_last else ids[:max_length]
            out[i, :len(ids)] = ids
        return out

    # -- running ------------------------------------------------------------------------------
    def feed(self, batch: np.ndarray) -> dict:
        return KINDS[self.kind].feed(self, batch)

    def logits(self, inputs: np.ndarray, batch_size: int = BATCH) -> np.ndarray:
        out = [self.session.run(None, self.feed(inputs[start:start + batch_size]))[0]
               for start in range(0, len(inputs), batch_size)]
        return np.concatenate(out).astype(np.float32)


@dataclass(frozen=True)
class Kind:
    """What one kind of exported model (the metadata's "kind") reads, and how it is fed."""

    shown: str  # what a prediction's `path` holds: "path" (a file) or "text" (the text itself)
    read: Callable[["OnnxClassifier", list[str], str | None], tuple[list[str], np.ndarray | None, list[int], dict]]
    feed: Callable[["OnnxClassifier", np.ndarray], dict]


def _read_images(model: OnnxClassifier, inputs: list[str], text_file: str | None):
    if text_file:
        raise HeadstartError("--file is for text models", hint="pass image files or folders for an image model")
    if not inputs:
        raise HeadstartError("nothing to predict", hint="pass image files or folders")
    files = expand_image_paths(inputs)
    return ([str(f) for f in files], *model.images(files))


def _read_texts(as_batch: Callable[["OnnxClassifier", list[str]], np.ndarray]):
    def read(model: OnnxClassifier, inputs: list[str], text_file: str | None):
        names = list(inputs) + (read_text_lines(text_file) if text_file else [])
        if not names:
            raise HeadstartError("nothing to predict", hint='pass texts ("some text") or --file lines.txt')
        usable = [i for i, t in enumerate(names) if t.strip()]
        errors = {i: "empty text" for i in range(len(names)) if i not in set(usable)}
        return names, (as_batch(model, [names[i] for i in usable]) if usable else None), usable, errors
    return read


def _token_feed(model: OnnxClassifier, batch: np.ndarray) -> dict:
    mask = batch >= 0  # ids padded with -1, as the run's own token arrays are
    length = max(1, int(mask.sum(1).max()))
    ids = np.where(mask, batch, int(model.tokens["pad_id"]))[:, :length]
    return {"input_ids": ids.astype(np.int64), "attention_mask": mask[:, :length].astype(np.int64)}


# Keyed by the graph's "kind" (onnx_export.py writes it): what the graph reads, which is not a
# modality (tfidf reads raw strings). The table stays here, torch-free, rather than on the
# modalities: their modules import torch, and this path must run without it.
KINDS: Registry[Kind] = Registry("kind of exported model")
KINDS.add("image", Kind("path", _read_images, lambda model, batch: {"pixels": np.ascontiguousarray(batch)}))
KINDS.add("text", Kind("text", _read_texts(lambda model, texts: model.token_ids(texts)), _token_feed))
KINDS.add("tfidf", Kind("text", _read_texts(lambda model, texts: np.asarray(texts, dtype=object)),
                        lambda model, batch: {"text": np.asarray(batch, dtype=object)}))


def predict_inputs(run_or_file: str | Path, inputs: list[str], text_file: str | None = None,
                   batch_size: int = BATCH) -> list[Prediction]:
    """What `predict --engine onnxruntime` calls: image files and folders for an image model,
    the texts themselves (and --file lines) for a text or TF-IDF model."""
    model = OnnxClassifier(model_file(run_or_file))
    kind = KINDS[model.kind].shown
    names, batch, usable, errors = KINDS[model.kind].read(model, list(inputs), text_file)
    results = [Prediction(name, None, None, error=errors.get(i), kind=kind) for i, name in enumerate(names)]
    if batch is not None:
        probabilities = softmax(model.logits(batch, batch_size))
        best = probabilities.argmax(1)
        for j, i in enumerate(usable):
            results[i] = Prediction(names[i], model.classes[int(best[j])], float(probabilities[j, best[j]]), kind=kind)
    return results


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(1, keepdims=True))
    return shifted / shifted.sum(1, keepdims=True)


# --------------------------------------------------------------------------- inputs, as the run reads them

def decode_image(path: str | Path, size: int) -> np.ndarray:
    """headstart.data.sources.decode_image: (size, size, 3) uint8, decoded as training data is
    (JPEG draft, EXIF rotation, RGB, shorter side to `size` and centre crop, bicubic)."""
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        img.draft("RGB", (size, size))  # JPEG decodes at a reduced scale when the file is much larger
        img = ImageOps.exif_transpose(img)
        img = img.convert("RGB")
        img = ImageOps.fit(img, (size, size), method=Image.Resampling.BICUBIC)
        return np.asarray(img, dtype=np.uint8)


def _to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    if channels == 1:
        from PIL import Image
        return np.asarray(Image.fromarray(image).convert("L"), dtype=np.uint8)[..., None]
    return np.repeat(image[..., :1], channels, axis=-1)
