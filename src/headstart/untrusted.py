"""A run folder, a zoo entry or an exported model copied from elsewhere is untrusted input.

Nothing in one may name a file outside its own folder (an absolute path, `..`, a name that
resolves to a folder elsewhere), and nothing in one may make headstart import code: a
Hugging Face config or tokenizer that asks for its own classes (`auto_map`,
`trust_remote_code`) is refused before transformers sees it, and every loader passes
`trust_remote_code=False` itself. Weights are safetensors or `torch.load(weights_only=True)`,
never a pickle. The readers call these checks; each refusal is a HeadstartError that names
the file and what in it was refused.
"""
from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from .errors import HeadstartError

# what asks transformers to import a folder's own Python classes
REMOTE_CODE_KEYS = ("auto_map", "trust_remote_code")
# the JSON files of a Hugging Face model or tokenizer folder that transformers reads
_HF_CONFIGS = ("config.json", "tokenizer_config.json", "special_tokens_map.json", "processor_config.json",
               "preprocessor_config.json", "sentence_bert_config.json", "modules.json")
_HINT = "use only run folders, zoo entries and models you made or trust; re-create this one with headstart"


def _refuse(source: Path | str, what: str) -> HeadstartError:
    return HeadstartError(f"{source} is refused: {what}", hint=_HINT)


def escapes(name: str) -> bool:
    """Whether `name`, read as a path relative to some folder, leaves that folder: absolute (on
    any system), starting at the home folder, or walking up with `..`."""
    text = str(name)
    if not text or "\x00" in text:
        return True
    if text.startswith("~") or PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute() \
            or PureWindowsPath(text).drive:
        return True
    return ".." in PurePosixPath(text.replace("\\", "/")).parts


def inside(folder: Path, name: str, *, source: Path | str, what: str) -> Path:
    """folder/name, refused unless it stays inside `folder` (symbolic links followed)."""
    if not isinstance(name, str) or escapes(name):
        raise _refuse(source, f"its {what} '{name}' names a path outside {folder}")
    path = Path(folder) / name
    root = Path(folder).resolve()
    if not path.resolve().is_relative_to(root):  # a link inside that points outside
        raise _refuse(source, f"its {what} '{name}' leads outside {folder}")
    return path


def check_recorded_model(described: dict, source: Path | str) -> None:
    """A model description read from a run's model.json ("backbone") or a zoo entry's spec.json:
    the names that rebuild it are names, never folders, and its Hugging Face config asks for no
    code. (A recorded text model is rebuilt from its "model_config"; the architecture is then
    only a label, and may be the folder the run was trained from.)"""
    if not isinstance(described, dict):
        return  # the reader's own schema check says what is wrong
    config = described.get("model_config")
    if isinstance(config, dict):
        _refuse_remote_code(config, source, "its model_config")
        own = config.get("headstart_model")
        if own is not None:
            _check_name(own, source, "model_config.headstart_model")
    elif "architecture" in described:
        _check_name(described["architecture"], source, "architecture")


def _check_name(name, source: Path | str, what: str) -> None:
    """A backbone name recorded in a file: resolving it must not read a folder or file
    (resolve_backbone reads a folder path as a Hugging Face model)."""
    if not isinstance(name, str) or escapes(name) or "\\" in name or Path(name).expanduser().exists():
        raise _refuse(source, f"its {what} '{name}' names a path, not a backbone")


def _refuse_remote_code(config: dict, source: Path | str, where: str) -> None:
    asked = [k for k in REMOTE_CODE_KEYS if config.get(k)]
    if asked:
        raise _refuse(source, f"{where} asks to run code from the folder ({', '.join(asked)})")


def check_hf_folder(folder: Path) -> None:
    """A Hugging Face model or tokenizer folder (a run's tokenizer/, a zoo entry's, a packaged
    or local model): no config asks for remote code, and no file it names lies outside it."""
    folder = Path(folder)
    for name in _HF_CONFIGS:
        path = folder / name
        if not path.is_file():
            continue
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise HeadstartError(f"{path} is damaged: it is not readable JSON ({e})",
                                 hint="re-create the run or entry it belongs to") from None
        for record in content if isinstance(content, list) else [content]:
            if not isinstance(record, dict):
                continue
            _refuse_remote_code(record, path, "it")
            for key, value in record.items():  # vocab_file, merges_file, tokenizer_file, modules' "path"
                if (key.endswith("_file") or key == "path") and isinstance(value, str) and value:
                    inside(folder, value, source=path, what=key)


def check_onnx_external_data(path: Path) -> None:
    """An ONNX file whose tensors live in other files: every one of them inside its folder
    (onnxruntime would otherwise read whatever file the model names).

    Each tensor kept elsewhere names its file in a "location" entry, stored as those plain bytes:
    a file without them can name no other file and is not parsed here (importing onnx is ~0.9 s,
    most of `headstart predict --engine onnxruntime`'s start); onnxruntime then refuses it if damaged."""
    if not _may_name_external_files(Path(path)):
        return
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and OS errors alike
        raise HeadstartError(f"{path} is not a readable ONNX model ({type(e).__name__}: {e})",
                             hint="export the run again with `headstart export RUN --format onnx`") from None
    for tensor in _tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = next((e.value for e in tensor.external_data if e.key == "location"), "")
            inside(Path(path).parent, location, source=path, what=f"tensor {tensor.name!r}'s external data")


def _may_name_external_files(path: Path) -> bool:
    """Whether the file holds the bytes b"location", searched in a read-only memory map (a text
    model's ONNX is ~90 MB: not copied into memory at every predict's start)."""
    import mmap

    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return mapped.find(b"location") != -1
    except (OSError, ValueError):  # unreadable, or empty (nothing to map): the parse below says which
        return True


def _tensors(graph):
    """Every tensor of a graph and of the graphs inside its nodes (If, Loop, Scan)."""
    yield from graph.initializer
    yield from (s.values for s in graph.sparse_initializer)
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            for sub in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                yield from _tensors(sub)


def safe_extract(archive: Path, target: Path) -> None:
    """Unzip `archive` into `target`, refusing any entry that would land outside it (zip-slip:
    an absolute name or `..`) or that is a symbolic link, before anything is written."""
    import stat
    import zipfile

    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            if escapes(info.filename):
                raise _refuse(archive, f"its entry '{info.filename}' would be written outside {target}")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise _refuse(archive, f"its entry '{info.filename}' is a symbolic link")
        os.makedirs(target, exist_ok=True)
        zf.extractall(target)
