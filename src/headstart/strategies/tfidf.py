"""tfidf: fit the zoo's TF-IDF + logistic regression model (scikit-learn), C chosen on validation.

Word uni- and bigrams over the full texts (no length limit), sublinear term frequency. The
model itself (zoo/tfidf.py) speaks the classifier protocol like any other; this strategy only
fits it.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import HeadstartError
from ..label.balance import balance_full_batch
from ..label.synthesize import not_synthesized
from ..train.evaluate import score
from ..zoo.tfidf import VECTORIZER
from .base import FitContext, Strategy, register_strategy

C_GRID = (1.0, 3.0, 10.0, 30.0, 100.0)


@register_strategy
class Tfidf(Strategy):
    name = "tfidf"
    pretrained = False
    architecture = "tfidf"  # always the zoo's TF-IDF model, whatever --backbone says
    description = "TF-IDF word 1-2-grams + logistic regression (scikit-learn), C tuned on validation; text only"

    def fit(self, model, ctx: FitContext) -> dict:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

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
        x_fit, y_fit, sample_weight, extra = _balance(x_train, train, ctx)
        rec.pause()
        x_val = vectorizer.transform(val.texts)  # evaluation: clock paused
        best = None
        for c in C_GRID:
            if best is not None and ctx.config.budget_seconds is not None \
                    and rec.wall_seconds > ctx.config.budget_seconds * 0.8:
                break
            rec.resume()
            clf = LogisticRegression(C=c, max_iter=2000).fit(x_fit, y_fit, sample_weight=sample_weight)
            rec.pause()
            accuracy, loss = score(_logits(clf, x_val), val.labels)
            rec.log("val", accuracy, loss, phase="tfidf", C=c, n_train=len(train))
            if best is None or accuracy > best[0] + 1e-9:
                best = (accuracy, c, clf)
        accuracy, c, clf = best
        coef, intercept = clf.coef_, clf.intercept_
        if coef.shape[0] == 1:  # binary: sklearn keeps one row; two rows make logits for both classes
            coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
        model.set_fitted(vectorizer, coef, intercept, settings)
        return {"best_val_accuracy": accuracy, "tfidf_C": c, "tfidf_vocabulary": len(model.vocabulary),
                "stop_reason": "completed", "epochs_run": 1.0, **extra}


def _balance(x, train, ctx: FitContext):
    """--balance as for the probe's head (sample weights, or oversampling for "sampler");
    --synthesize is recorded as not done: TF-IDF vectors are no embedding space to interpolate in."""
    extra = not_synthesized(ctx.config.synthesize, "TF-IDF vectors are sparse word counts, not an embedding "
                                                   "space; --strategy probe synthesizes with SMOTE on embeddings")
    x_fit, y_fit, weights, balance = balance_full_batch(ctx.config.balance, train.labels, x, train.labels,
                                                        train.classes, ctx.config.seed)
    return x_fit, y_fit, weights, {**extra, **balance}


def _logits(clf, x) -> torch.Tensor:
    d = clf.decision_function(x)
    if d.ndim == 1:  # binary: one margin; as two logits it softmaxes to the same probabilities
        d = np.stack([-d / 2, d / 2], 1)
    return torch.from_numpy(d).float()
