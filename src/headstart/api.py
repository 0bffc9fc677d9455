"""The Python API: functions that mirror the CLI verbs, and a scikit-learn-style estimator."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .config import FitConfig, parse_duration
from .data.dataset import ImageData, TextData


def fit(data: str, *, out: str | None = None, budget: str | float | None = None, **settings):
    """`headstart fit` from Python: returns a FitResult (run_dir, classifier, classes, summary)."""
    from .pipeline import fit as _fit

    return _fit(FitConfig(data=data, out=out, budget_seconds=parse_duration(budget), **settings))


def predict(run_dir: str | Path, inputs: list[str]):
    """`headstart predict` from Python: a list of Prediction(path, label, probability, error).
    Inputs are image paths for an image run, the texts themselves for a text run."""
    from .predict import predict_inputs

    return predict_inputs(run_dir, list(inputs))


class HeadstartClassifier:
    """A scikit-learn-style estimator over the same pipeline.

    `__init__` only stores settings. `fit(X, y)` takes a data spec (folder, CSV or built-in
    name) with y=None, a uint8 image array (N, H, W[, C]) with labels y, or a list of texts
    with labels y, and returns self. backbone=None picks the default for the data's modality.
    Learned state ends in `_`: classes_, model_, run_dir_, summary_, history_.
    """

    def __init__(self, backbone: str | None = None, strategy: str = "probe",
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
        data = None if isinstance(X, str) else _as_text_data(X, y) if _is_texts(X) else _as_image_data(X, y)
        result = _fit(config, data=data)
        self.model_ = result.classifier.eval() if hasattr(result.classifier, "eval") else result.classifier
        # keep the caller's own label values (ints stay ints) for predict and score
        self.classes_ = np.array(result.classes) if isinstance(X, str) else np.unique(np.asarray(y))
        self.run_dir_ = result.run_dir
        self.summary_ = result.summary
        self.history_ = read_metrics(result.run_dir)
        return self

    def predict_proba(self, X) -> np.ndarray:
        import torch

        from .data import resize_data
        from .train.evaluate import predict_logits

        if _is_texts(X):
            if hasattr(self.model_, "logits_for_texts"):  # TF-IDF + logistic regression
                return torch.softmax(self.model_.logits_for_texts(list(X)), 1).numpy()
            tokens, _ = self.model_.backbone.tokenize(list(X))
            return torch.softmax(predict_logits(self.model_, tokens), 1).numpy()
        pre = self.model_.backbone.preprocessing
        images = resize_data(_as_image_data(X, np.zeros(len(X), dtype=np.int64), ["_"]),
                             pre.input_size, pre.interpolation).images
        return torch.softmax(predict_logits(self.model_, images), 1).numpy()

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(1)]

    def score(self, X: np.ndarray, y) -> float:
        return float((self.predict(X) == np.asarray(y)).mean())


def _is_texts(X) -> bool:
    return isinstance(X, (list, tuple)) and len(X) > 0 and all(isinstance(x, str) for x in X)


def _as_text_data(X, y) -> TextData:
    y = np.asarray(y)
    if len(y) != len(X):
        from .errors import HeadstartError
        raise HeadstartError(f"{len(X)} texts but {len(y)} labels", hint="pass one label per text")
    names = [str(c) for c in np.unique(y)]
    index = {name: i for i, name in enumerate(names)}
    keep = [i for i, text in enumerate(X) if text.strip()]  # empty texts: counted, not trained on
    labels = np.array([index[str(y[i])] for i in keep], dtype=np.int64)
    skipped = [(f"X[{i}]", "empty text") for i in range(len(X)) if not X[i].strip()]
    return TextData(texts=[X[i] for i in keep], labels=labels, classes=names, name="texts", skipped=skipped)


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
