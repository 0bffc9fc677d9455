"""tfidf: TF-IDF + logistic regression (scikit-learn), the baseline a text user tries first.

It needs no pretrained model and no tokenizer of ours: word uni- and bigrams over the full
texts (no length limit), sublinear term frequency, and a logistic regression whose C is
chosen on validation. It is a standalone strategy: it builds its own model instead of
training a backbone, and that model saves as safetensors + a JSON vocabulary (no pickle).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..errors import HeadstartError
from ..train.evaluate import score
from .base import FitContext, Strategy, register_strategy

C_GRID = (1.0, 3.0, 10.0, 30.0, 100.0)
VECTORIZER = {"ngram_range": (1, 2), "sublinear_tf": True, "min_df": 2, "max_features": 200_000,
              "strip_accents": "unicode", "lowercase": True}


class TfidfLogistic:
    """A fitted TF-IDF vocabulary + linear classifier: texts in, logits out."""

    def __init__(self, vocabulary: list[str], idf: np.ndarray, coef: np.ndarray, intercept: np.ndarray,
                 settings: dict):
        self.vocabulary, self.idf, self.coef, self.intercept = vocabulary, idf, coef, intercept
        self.settings = settings
        self._vectorizer = None

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

    def logits_for_texts(self, texts: list[str]) -> torch.Tensor:
        x = self.vectorizer.transform(list(texts))
        return torch.from_numpy(np.asarray(x @ self.coef.T) + self.intercept).float()

    def describe(self) -> dict:
        return {"name": "tfidf", "architecture": "tfidf-logistic", "weights": "none (fitted on the training texts)",
                "feature_dim": len(self.vocabulary), "modality": "text",
                "preprocessing": {"kind": "tfidf", **self.settings}}

    def save_to(self, run_dir: Path, classes: list[str], strategy: str, versions: dict) -> None:
        from safetensors.numpy import save_file

        from ..records import atomic_write_text, write_json
        # C order: sklearn's coef_ can be Fortran-ordered, and safetensors writes the raw buffer
        arrays = {"idf": self.idf.astype(np.float64), "coef": self.coef.astype(np.float32),
                  "intercept": self.intercept.astype(np.float32)}
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(run_dir / "model.safetensors"))
        atomic_write_text(run_dir / "vocabulary.json", json.dumps(self.vocabulary))
        write_json(run_dir / "model.json", {
            "format": "headstart-tfidf-logistic/1", "backbone": self.describe(), "classes": list(classes),
            "num_classes": len(classes), "strategy": strategy,
            "input": "raw texts; vocabulary.json + idf/coef/intercept in model.safetensors", "versions": versions})

    @classmethod
    def load(cls, run_dir: Path, meta: dict) -> "TfidfLogistic":
        from safetensors.numpy import load_file

        tensors = load_file(str(run_dir / "model.safetensors"))
        vocabulary = json.loads((run_dir / "vocabulary.json").read_text())
        settings = {k: v for k, v in meta["backbone"]["preprocessing"].items() if k != "kind"}
        return cls(vocabulary, tensors["idf"], tensors["coef"], tensors["intercept"], settings)


@register_strategy
class Tfidf(Strategy):
    name = "tfidf"
    pretrained = False
    standalone = True  # builds its own model; the pipeline skips backbone and tokenisation
    modalities = ("text",)
    description = "TF-IDF word 1-2-grams + logistic regression (scikit-learn), C tuned on validation; text only"

    def fit_standalone(self, data, ctx: FitContext) -> tuple[TfidfLogistic, dict]:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        if data.modality != "text":
            raise HeadstartError("tfidf is a text strategy", hint="use probe, lp-ft or finetune for images")
        rec, train, val = ctx.recorder, ctx.train, ctx.val
        rec.resume()
        # min_df=2 drops words seen once, but a handful of training texts may have no word
        # seen twice: then keep every word rather than fail
        settings = dict(VECTORIZER, min_df=2 if len(train) >= 20 else 1)
        vectorizer = TfidfVectorizer(**settings)
        try:
            x_train = vectorizer.fit_transform(train.texts)
        except ValueError as e:  # "empty vocabulary": only stop words or symbols
            raise HeadstartError(f"TF-IDF found no words in the training texts ({e})",
                                 hint="the texts hold no word of two or more letters; use a neural strategy") from e
        rec.pause()
        x_val = vectorizer.transform(val.texts)  # evaluation: clock paused
        best = None
        for c in C_GRID:
            if best is not None and ctx.config.budget_seconds is not None \
                    and rec.wall_seconds > ctx.config.budget_seconds * 0.8:
                break
            rec.resume()
            clf = LogisticRegression(C=c, max_iter=2000).fit(x_train, train.labels)
            rec.pause()
            accuracy, loss = score(_logits(clf, x_val), val.labels)
            rec.log("val", accuracy, loss, phase="tfidf", C=c, n_train=len(train))
            if best is None or accuracy > best[0] + 1e-9:
                best = (accuracy, c, clf)
        accuracy, c, clf = best
        coef, intercept = clf.coef_, clf.intercept_
        if coef.shape[0] == 1:  # binary: sklearn keeps one row; two rows make logits for both classes
            coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
        vocabulary = [None] * len(vectorizer.vocabulary_)
        for term, index in vectorizer.vocabulary_.items():
            vocabulary[index] = term
        saved = {k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items()}
        model = TfidfLogistic(vocabulary, vectorizer.idf_, coef, intercept, saved)
        return model, {"best_val_accuracy": accuracy, "tfidf_C": c, "tfidf_vocabulary": len(vocabulary),
                       "stop_reason": "completed", "epochs_run": 1.0}


def _logits(clf, x) -> torch.Tensor:
    d = clf.decision_function(x)
    if d.ndim == 1:  # binary: one margin; as two logits it softmaxes to the same probabilities
        d = np.stack([-d / 2, d / 2], 1)
    return torch.from_numpy(d).float()
