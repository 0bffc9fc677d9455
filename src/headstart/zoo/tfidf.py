"""tfidf: TF-IDF + logistic regression as a model of the zoo, the baseline a text user tries first.

It needs no pretrained model and no tokenizer of ours: n-grams over the full texts (no length
limit), in one or two parts side by side: word 1-2-grams, character 2-5-grams within word
boundaries (char_wb: what sees something in short, symbol-heavy or non-space-separated text),
or both (each part L2-normalised on its own). The tfidf strategy chooses the parts on
validation (--tfidf-analyzer). It is a standalone model (the spec builds the whole classifier:
there is no backbone to put a head on) that speaks the classifier protocol of heads.py, and it
saves as safetensors + a JSON vocabulary, never a pickle. deploy/tfidf_onnx.py exports it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from headstart.files import atomic_path, atomic_write_text
from headstart.zoo.registry import BackboneSpec

FORMAT = "headstart-tfidf-logistic/2"
# The settings of each part. No strip_accents: ONNX's string operators cannot remove accents,
# so an exported model could not agree with the saved one; on BBC News dropping it changed
# nothing (0.9848 word, 0.9807 char validation accuracy, with and without). char n-grams
# explode (every 2-5 letter window of every word): max_features keeps the most frequent.
ANALYZERS = {
    "word": {"analyzer": "word", "ngram_range": (1, 2), "sublinear_tf": True, "min_df": 2,
             "max_features": 200_000, "lowercase": True},
    "char": {"analyzer": "char_wb", "ngram_range": (2, 5), "sublinear_tf": True, "min_df": 2,
             "max_features": 100_000, "lowercase": True},
}
# --tfidf-analyzer choices -> the parts, in column order; auto tries them in this order and a
# tie keeps the earlier (cheaper) one
CANDIDATES = {"word": ("word",), "char": ("char",), "both": ("word", "char")}
VECTORIZER = ANALYZERS["word"]  # the word part: what modalities/text.py's raw features use


@dataclass
class TfidfPart:
    """One fitted vectorizer: its terms in column order, their idf, and the settings it ran with."""

    analyzer: str                      # a key of ANALYZERS ("word", "char")
    vocabulary: list[str]
    idf: np.ndarray
    settings: dict
    _vectorizer: object = field(default=None, repr=False, compare=False)

    @classmethod
    def from_fitted(cls, analyzer: str, vectorizer, settings: dict) -> TfidfPart:
        vocabulary = [None] * len(vectorizer.vocabulary_)
        for term, index in vectorizer.vocabulary_.items():
            vocabulary[index] = term
        settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items()}
        return cls(analyzer, vocabulary, vectorizer.idf_, settings, vectorizer)

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


class _SideBySide:
    """Several fitted vectorizers as one: their feature blocks side by side. It answers the
    word-level questions (preprocessor, token pattern) from its first part, as explain asks them."""

    def __init__(self, vectorizers: list):
        self.parts = vectorizers

    def transform(self, texts):
        import scipy.sparse as sp
        return sp.hstack([v.transform(texts) for v in self.parts]).tocsr()

    def build_preprocessor(self):
        return self.parts[0].build_preprocessor()

    @property
    def token_pattern(self):
        return self.parts[0].token_pattern


class TfidfLogistic:
    """A fitted TF-IDF vocabulary (one or two parts) + linear classifier: texts in, logits out."""

    format = FORMAT

    def __init__(self, parts: list[TfidfPart] | None = None, coef: np.ndarray | None = None,
                 intercept: np.ndarray | None = None):
        self.parts, self.coef, self.intercept = list(parts or []), coef, intercept
        self._vocabulary = None

    def set_fitted(self, parts: list[TfidfPart], coef: np.ndarray, intercept: np.ndarray) -> None:
        """Take the fitted parts and linear classifier (what training made); coef's columns
        follow the parts in order."""
        self.parts, self.coef, self.intercept = list(parts), coef, intercept
        self._vocabulary = None

    @property
    def analyzer(self) -> str:
        """The --tfidf-analyzer name of these parts ("word", "char" or "both")."""
        names = tuple(p.analyzer for p in self.parts)
        return next((k for k, v in CANDIDATES.items() if v == names), "+".join(names))

    @property
    def vocabulary(self) -> list[str]:
        """Every column's term, the parts one after another (built once: explain indexes it per term)."""
        if self._vocabulary is None:
            self._vocabulary = [term for part in self.parts for term in part.vocabulary]
        return self._vocabulary

    @property
    def vectorizer(self):
        """Texts -> the feature matrix whose columns coef weighs (one vectorizer, or the parts side by side)."""
        return self.parts[0].vectorizer if len(self.parts) == 1 else _SideBySide([p.vectorizer for p in self.parts])

    # -- the classifier protocol (heads.py) ------------------------------------------------
    def prepare(self, data):
        return data  # it reads the raw texts

    def logits(self, data, **_options) -> torch.Tensor:
        x = self.vectorizer.transform(list(data.texts))
        return torch.from_numpy(np.asarray(x @ self.coef.T) + self.intercept).float()

    def word_scores(self, text: str, cls: int) -> tuple[list[tuple[int, int]], np.ndarray]:
        """Exact attribution of class `cls`'s logit (less its bias) to the text's words: the
        (start, end) spans of its whitespace-separated words and each one's share. A linear model
        sums term value x weight; a word n-gram's share goes to its word (a bigram's half to each),
        a char_wb n-gram lies within one word and goes to it (a term seen k times, 1/k per place)."""
        import re
        from collections import Counter

        spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
        scores = np.zeros(len(spans))
        starts = np.array([s for s, _ in spans], dtype=np.int64)

        def owner(position: int) -> int:  # the whitespace word holding this character
            return int(np.searchsorted(starts, position, side="right")) - 1

        column = 0
        for part in self.parts:
            vectorizer = part.vectorizer
            x = vectorizer.transform([text]).tocoo()
            weights = {part.vocabulary[j]: float(v * self.coef[cls, column + j]) for j, v in zip(x.col, x.data)}
            column += len(part.vocabulary)
            if part.analyzer == "word":
                preprocess = vectorizer.build_preprocessor()
                pattern = re.compile(vectorizer.token_pattern)
                words = [(owner(m.start()), preprocess(m.group())) for m in pattern.finditer(text)]
                grams = [([i], w) for i, w in words]
                grams += [([i, j], f"{w} {v}") for (i, w), (j, v) in zip(words, words[1:])]
                seen = Counter(g for _, g in grams)
                for owners, g in grams:  # a bigram's share: half to each of its words
                    for i in owners:
                        scores[i] += weights.get(g, 0.0) / seen[g] / len(owners)
            else:
                analyse = vectorizer.build_analyzer()
                grams = [analyse(text[s:e]) for s, e in spans]
                seen = Counter(g for word_grams in grams for g in word_grams)
                for i, word_grams in enumerate(grams):
                    scores[i] += sum(weights.get(g, 0.0) / seen[g] for g in word_grams)
        return spans, scores

    def warm_up(self, data) -> None:
        pass  # nothing starts up: scikit-learn is already loaded

    def describe(self) -> dict:
        return {"name": "tfidf", "architecture": "tfidf-logistic", "weights": "none (fitted on the training texts)",
                "feature_dim": len(self.vocabulary), "modality": "text",
                "preprocessing": {"kind": "tfidf", "analyzer": self.analyzer,
                                  "parts": [{"name": p.analyzer, **p.settings} for p in self.parts]}}


def save_tfidf(model: TfidfLogistic, run_dir: Path) -> None:
    from safetensors.numpy import save_file

    # C order: sklearn's coef_ can be Fortran-ordered, and safetensors writes the raw buffer
    arrays = {"coef": model.coef.astype(np.float32), "intercept": model.intercept.astype(np.float32),
              **{f"idf.{p.analyzer}": p.idf.astype(np.float64) for p in model.parts}}
    with atomic_path(Path(run_dir) / "model.safetensors") as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))
    atomic_write_text(Path(run_dir) / "vocabulary.json", json.dumps({p.analyzer: p.vocabulary for p in model.parts}))


def load_tfidf(run_dir: Path, meta: dict) -> TfidfLogistic:
    from safetensors.numpy import load_file

    tensors = load_file(str(Path(run_dir) / "model.safetensors"))
    vocabulary = json.loads((Path(run_dir) / "vocabulary.json").read_text())
    preprocessing = meta["backbone"]["preprocessing"]
    if "parts" not in preprocessing:  # format 1: one word part, its settings at the top
        settings = {k: v for k, v in preprocessing.items() if k != "kind"}
        parts = [TfidfPart("word", vocabulary, tensors["idf"], settings)]
    else:
        parts = [TfidfPart(p["name"], vocabulary[p["name"]], tensors[f"idf.{p['name']}"],
                           {k: v for k, v in p.items() if k != "name"}) for p in preprocessing["parts"]]
    return TfidfLogistic(parts, tensors["coef"], tensors["intercept"])


def _unfitted(*, pretrained: bool = False, weights: str | None = None, **_text_options) -> TfidfLogistic:
    return TfidfLogistic()


SPECS = [BackboneSpec(name="tfidf", modality="text", factory=_unfitted, standalone=True,
                      description="TF-IDF n-grams + logistic regression (scikit-learn): word 1-2-grams, "
                                  "character 2-5-grams (char_wb) or both, chosen on validation; the text "
                                  "baseline (--strategy tfidf)")]
