"""The Python API: functions that mirror the CLI verbs, and a scikit-learn-style estimator."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .config import FitConfig, parse_duration
from .data.dataset import ImageData


def fit(data: str, *, out: str | None = None, budget: str | float | None = None, **settings):
    """`headstart fit` from Python: returns a FitResult (run_dir, classifier, classes, summary)."""
    from .pipeline import fit as _fit

    return _fit(FitConfig(data=data, out=out, budget_seconds=parse_duration(budget), **settings))


def predict(run_dir: str | Path, inputs: list[str]):
    """`headstart predict` from Python: a list of Prediction(path, label, probability, error)."""
    from .predict import predict_paths

    return predict_paths(run_dir, list(inputs))


class HeadstartClassifier:
    """A scikit-learn-style estimator over the same pipeline.

    `__init__` only stores settings. `fit(X, y)` takes a data spec (folder, CSV or built-in
    name) with y=None, or a uint8 image array (N, H, W[, C]) with labels y, and returns self.
    Learned state ends in `_`: classes_, model_, run_dir_, summary_, history_.
    """

    def __init__(self, backbone: str = "tf_efficientnet_lite0", strategy: str = "probe",
                 out: str | None = None, budget: str | float | None = None, **settings):
        self.backbone = backbone
        self.strategy = strategy
        self.out = out
        self.budget = budget
        self.settings = settings

    def get_params(self, deep: bool = True) -> dict:
        return {"backbone": self.backbone, "strategy": self.strategy, "out": self.out,
                "budget": self.budget, **self.settings}

    def fit(self, X, y=None) -> "HeadstartClassifier":
        from .pipeline import fit as _fit
        from .records import read_metrics

        config = FitConfig(data=X if isinstance(X, str) else "array", backbone=self.backbone,
                           strategy=self.strategy, out=self.out,
                           budget_seconds=parse_duration(self.budget), **self.settings)
        data = None if isinstance(X, str) else _as_image_data(X, y)
        result = _fit(config, data=data)
        self.model_ = result.classifier.eval()
        # keep the caller's own label values (ints stay ints) for predict and score
        self.classes_ = np.array(result.classes) if isinstance(X, str) else np.unique(np.asarray(y))
        self.run_dir_ = result.run_dir
        self.summary_ = result.summary
        self.history_ = read_metrics(result.run_dir)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        import torch

        from .data import resize_data
        from .train.evaluate import predict_logits

        pre = self.model_.backbone.preprocessing
        images = resize_data(_as_image_data(X, np.zeros(len(X), dtype=np.int64), ["_"]),
                             pre.input_size, pre.interpolation).images
        return torch.softmax(predict_logits(self.model_, images), 1).numpy()

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(1)]

    def score(self, X: np.ndarray, y) -> float:
        return float((self.predict(X) == np.asarray(y)).mean())


def _as_image_data(X, y, classes: list[str] | None = None) -> ImageData:
    images = np.asarray(X)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.dtype != np.uint8:
        from .errors import HeadstartError
        raise HeadstartError(f"expected uint8 images shaped (N, H, W[, C]), got {images.dtype} {images.shape}",
                             hint="pass pixel arrays in 0..255 as uint8, or a folder/CSV path")
    y = np.asarray(y)
    names = classes or [str(c) for c in np.unique(y)]
    index = {name: i for i, name in enumerate(names)}
    labels = np.array([index.get(str(v), 0) for v in y], dtype=np.int64)
    return ImageData(images=images, labels=labels, classes=names, name="array")
