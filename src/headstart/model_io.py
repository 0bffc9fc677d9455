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


def save_model(run_dir: Path, classifier: ImageClassifier, classes: list[str], strategy: str) -> None:
    from safetensors.torch import save_model as st_save

    run_dir = Path(run_dir)
    tmp = run_dir / ".model.safetensors.tmp"
    st_save(classifier, str(tmp))  # handles tied/shared tensors, unlike save_file
    os.replace(tmp, run_dir / "model.safetensors")
    write_json(run_dir / "model.json", {
        "format": "headstart-image-classifier/1",
        "backbone": classifier.backbone.describe(),
        "classes": list(classes),
        "num_classes": len(classes),
        "strategy": strategy,
        "input": "uint8 RGB or grey, (B, C, H, W) at preprocessing.input_size; normalised inside the model",
        "versions": versions(),
    })


def load_model(run_dir: Path) -> tuple[ImageClassifier, dict]:
    from safetensors.torch import load_model as st_load

    from .zoo import get_backbone
    from .zoo.backbone import Preprocessing

    run_dir = Path(run_dir)
    meta_path, weights_path = run_dir / "model.json", run_dir / "model.safetensors"
    if not meta_path.exists() or not weights_path.exists():
        raise HeadstartError(f"{run_dir} holds no finished model (model.json and model.safetensors)",
                             hint="pass the --out folder of a completed `headstart fit` run")
    meta = read_json(meta_path)
    described = meta["backbone"]
    pre = Preprocessing.from_dict(described["preprocessing"])
    backbone = get_backbone(described["architecture"], pretrained=False, image_size=pre.input_size)
    backbone.preprocessing = pre
    classifier = ImageClassifier(backbone, meta["num_classes"])
    st_load(classifier, str(weights_path))
    classifier.eval()
    return classifier, meta
