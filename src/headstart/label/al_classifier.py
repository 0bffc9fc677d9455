"""The classifiers active-learning queries read, over standardised embeddings.

Queries see features standardised with the statistics of everything in play (labelled and
pool together: no label is used), so distances (core-set, TypiClust) weigh every dimension
alike and one regularisation strength suits every backbone, as in the probe.
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

# The probe's provisional-head strength (strategies/linear.py ANYTIME_C): on standardised
# features and tens to hundreds of labels it is close to the best of the probe's C grid.
REFIT_C = 0.1


def standardiser(*arrays: np.ndarray):
    """(mean, std) over the rows of all `arrays`; z = (x - mean) / std."""
    rows = np.concatenate([a for a in arrays if len(a)])
    return rows.mean(0), rows.std(0) + 1e-6


def fit_classifier(features: np.ndarray, labels: np.ndarray, num_classes: int, seed: int = 0, c: float = REFIT_C):
    """A logistic head refitted on the labelled items (what simulate-al does each round), as
    a scikit-activeml classifier that knows every class, also those not labelled yet."""
    from sklearn.linear_model import LogisticRegression
    from skactiveml.classifier import SklearnClassifier

    clf = SklearnClassifier(LogisticRegression(C=c, max_iter=500), classes=np.arange(num_classes),
                            random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter on a handful of labels
        return clf.fit(features, labels.astype(np.float64))


class FixedLinear(ClassifierMixin, BaseEstimator):
    """A linear head that is already trained (a run's): `fit` only records the classes, so
    scikit-activeml's wrapper uses the run's own probabilities."""

    def __init__(self, weight=None, bias=None):
        self.weight = weight
        self.bias = bias

    def fit(self, X, y):
        self.classes_ = np.arange(len(self.bias))
        return self

    def decision_function(self, X):
        return np.asarray(X) @ self.weight.T + self.bias

    def predict_proba(self, X):
        z = self.decision_function(X)
        z = z - z.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)

    def predict(self, X):
        return self.predict_proba(X).argmax(1)


def fixed_classifier(weight: np.ndarray, bias: np.ndarray, labelled: np.ndarray, labels: np.ndarray):
    """The run's head (acting on the same standardised features the queries see), wrapped as a
    fitted scikit-activeml classifier. `labelled` must hold at least one item: without one the
    wrapper answers uniform probabilities."""
    from skactiveml.classifier import SklearnClassifier

    clf = SklearnClassifier(FixedLinear(weight, bias), classes=np.arange(len(bias)))
    return clf.fit(labelled, labels.astype(np.float64))


def head_on_standardised(weight: np.ndarray, bias: np.ndarray, mean: np.ndarray, std: np.ndarray):
    """A head acting on raw features, rewritten to act on (x - mean) / std: same logits."""
    return weight * std, bias + weight @ mean
