"""model.safetensors + model.json: everything predict needs, and nothing that can run code."""
from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from .errors import HeadstartError
from .heads import ImageClassifier
from .records import read_json, write_json


def versions() -> dict:
    import accelerate
    import sklearn
    import timm
    import torchvision

    from . import __version__
    return {"headstart": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "timm": timm.__version__, "accelerate": accelerate.__version__,
            "scikit-learn": sklearn.__version__, "python": platform.python_version()}


INPUT_DESCRIPTIONS = {
    "image": "uint8 RGB or grey, (B, C, H, W) at preprocessing.input_size; normalised inside the model",
    "text": "int token ids (B, L) from the tokenizer in ./tokenizer, padded with -1 (the attention mask)",
}


def save_model(run_dir: Path, classifier, classes: list[str], strategy: str) -> None:
    from safetensors.torch import save_model as st_save

    run_dir = Path(run_dir)
    if hasattr(classifier, "save_to"):  # a standalone strategy's model knows its own files
        classifier.save_to(run_dir, classes, strategy, versions())
        return
    modality = classifier.backbone.modality
    if modality == "text":  # the tokenizer travels with the run: predict must work offline
        classifier.backbone.tokenizer.save_pretrained(str(run_dir / "tokenizer"))
    tmp = run_dir / ".model.safetensors.tmp"
    st_save(classifier, str(tmp))  # handles tied/shared tensors, unlike save_file
    os.replace(tmp, run_dir / "model.safetensors")
    write_json(run_dir / "model.json", {
        "format": f"headstart-{modality}-classifier/1",
        "backbone": classifier.backbone.describe(),
        "classes": list(classes),
        "num_classes": len(classes),
        "strategy": strategy,
        "input": INPUT_DESCRIPTIONS[modality],
        "versions": versions(),
    })


def load_model(run_dir: Path):
    """(classifier, model.json) of a finished run; weights from safetensors, never a pickle."""
    from safetensors.torch import load_model as st_load

    run_dir = Path(run_dir)
    meta_path, weights_path = run_dir / "model.json", run_dir / "model.safetensors"
    if not meta_path.exists() or not weights_path.exists():
        raise HeadstartError(f"{run_dir} holds no finished model (model.json and model.safetensors)",
                             hint="pass the --out folder of a completed `headstart fit` run")
    meta = read_json(meta_path)
    kind = meta.get("format", "headstart-image-classifier/1").split("/")[0]
    if kind not in _LOADERS:
        raise HeadstartError(f"{run_dir} holds a model of an unknown format '{meta.get('format')}'",
                             hint="it was written by a newer headstart; upgrade to predict with it")
    classifier = _LOADERS[kind](run_dir, meta)
    if isinstance(classifier, torch.nn.Module):
        st_load(classifier, str(weights_path))
        classifier.eval()
    return classifier, meta


def _image_classifier(run_dir: Path, meta: dict):
    from .zoo import get_backbone
    from .zoo.backbone import Preprocessing

    described = meta["backbone"]
    pre = Preprocessing.from_dict(described["preprocessing"])
    backbone = get_backbone(described["architecture"], pretrained=False, image_size=pre.input_size)
    backbone.preprocessing = pre
    return ImageClassifier(backbone, meta["num_classes"])


def _text_classifier(run_dir: Path, meta: dict):
    from .heads import TextClassifier
    from .zoo.text_backbones import rebuild_text_backbone

    return TextClassifier(rebuild_text_backbone(meta["backbone"], run_dir / "tokenizer"), meta["num_classes"])


def _tfidf_model(run_dir: Path, meta: dict):
    from .strategies.tfidf import TfidfLogistic

    return TfidfLogistic.load(run_dir, meta)


# model.json "format" (without version) -> how to rebuild the model before loading weights
_LOADERS = {
    "headstart-image-classifier": _image_classifier,
    "headstart-text-classifier": _text_classifier,
    "headstart-tfidf-logistic": _tfidf_model,
}
