"""tfidf: TF-IDF + logistic regression as a model of the zoo, the baseline a text user tries first.

It needs no pretrained model and no tokenizer of ours: word n-grams over the full texts (no
length limit). It is a standalone model (the spec builds the whole classifier: there is no
backbone to put a head on) that speaks the classifier protocol of heads.py, and it saves
as safetensors + a JSON vocabulary, never a pickle. The tfidf strategy fits it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from headstart.files import atomic_path, atomic_write_text
from headstart.zoo.registry import BackboneSpec

FORMAT = "headstart-tfidf-logistic/1"
VECTORIZER = {"ngram_range": (1, 2), "sublinear_tf": True, "min_df": 2, "max_features": 200_000,
              "strip_accents": "unicode", "lowercase": True}


class TfidfLogistic:
    """A fitted TF-IDF vocabulary + linear classifier: texts in, logits out."""

    format = FORMAT

    def __init__(self, vocabulary: list[str] | None = None, idf: np.ndarray | None = None,
                 coef: np.ndarray | None = None, intercept: np.ndarray | None = None,
                 settings: dict | None = None):
        self.vocabulary, self.idf, self.coef, self.intercept = vocabulary, idf, coef, intercept
        self.settings = settings or {}
        self._vectorizer = None

    def set_fitted(self, vectorizer, coef: np.ndarray, intercept: np.ndarray, settings: dict) -> None:
        """Take the state of a fitted TfidfVectorizer and linear classifier (what training made)."""
        vocabulary = [None] * len(vectorizer.vocabulary_)
        for term, index in vectorizer.vocabulary_.items():
            vocabulary[index] = term
        self.vocabulary, self.idf, self.coef, self.intercept = vocabulary, vectorizer.idf_, coef, intercept
        self.settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items()}
        self._vectorizer = vectorizer

    @property
    def vectorizer(self):
        if self._vectorizer is None:
            from sklearn.feature_extraction.text import TfidfVectorizer
            settings = {**self.settings, "ngram_range": tuple(self.settings["ngram_range"])}
            settings.pop("min_df", None), settings.pop("max_features", None)  # the vocabulary is fixed
            vectorizer = TfidfVectorizer(vocabulary={t: i for i, t in enumerate(self.vocabulary)}, **settings)
            vectorizer.idf_ = self.idf
            self._vectorizer = vectorizer
        return self._vectorizer

    # -- the classifier protocol (heads.py) ------------------------------------------------
    def prepare(self, data):
        return data  # it reads the raw texts

    def logits(self, data, **_options) -> torch.Tensor:
        x = self.vectorizer.transform(list(data.texts))
        return torch.from_numpy(np.asarray(x @ self.coef.T) + self.intercept).float()

    def warm_up(self, data) -> None:
        pass  # nothing starts up: scikit-learn is already loaded

    def describe(self) -> dict:
        return {"name": "tfidf", "architecture": "tfidf-logistic", "weights": "none (fitted on the training texts)",
                "feature_dim": len(self.vocabulary or []), "modality": "text",
                "preprocessing": {"kind": "tfidf", **self.settings}}


def save_tfidf(model: TfidfLogistic, run_dir: Path) -> None:
    from safetensors.numpy import save_file

    # C order: sklearn's coef_ can be Fortran-ordered, and safetensors writes the raw buffer
    arrays = {"idf": model.idf.astype(np.float64), "coef": model.coef.astype(np.float32),
              "intercept": model.intercept.astype(np.float32)}
    with atomic_path(Path(run_dir) / "model.safetensors") as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))
    atomic_write_text(Path(run_dir) / "vocabulary.json", json.dumps(model.vocabulary))


def load_tfidf(run_dir: Path, meta: dict) -> TfidfLogistic:
    from safetensors.numpy import load_file

    tensors = load_file(str(Path(run_dir) / "model.safetensors"))
    vocabulary = json.loads((Path(run_dir) / "vocabulary.json").read_text())
    settings = {k: v for k, v in meta["backbone"]["preprocessing"].items() if k != "kind"}
    return TfidfLogistic(vocabulary, tensors["idf"], tensors["coef"], tensors["intercept"], settings)


def _unfitted(*, pretrained: bool = False, weights: str | None = None, **_text_options) -> TfidfLogistic:
    return TfidfLogistic()


SPECS = [BackboneSpec(name="tfidf", modality="text", factory=_unfitted, standalone=True,
                      description="TF-IDF word 1-2-grams + logistic regression (scikit-learn): "
                                  "the text baseline (--strategy tfidf)")]
