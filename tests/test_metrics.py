"""headstart.metrics computes its per-class figures with numpy (importing sklearn.metrics costs every
command ~1.5 s of start-up): they must be scikit-learn's, to the last digit, on any labels,
including classes never seen or never predicted (zero_division=0)."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from headstart.metrics import classification_summary


@st.composite
def labelled_predictions(draw):
    k = draw(st.integers(min_value=1, max_value=6))
    n = draw(st.integers(min_value=1, max_value=40))
    labels = draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    predictions = draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    return np.array(labels), np.array(predictions), [f"c{i}" for i in range(k)]


@settings(max_examples=200, deadline=None)
@given(labelled_predictions())
def test_the_figures_are_scikit_learns(case):
    labels, predictions, classes = case
    idx = list(range(len(classes)))
    summary = classification_summary(labels, predictions, classes)
    precision, recall, f1, support = precision_recall_fscore_support(labels, predictions, labels=idx, zero_division=0)
    assert summary["confusion_matrix"] == confusion_matrix(labels, predictions, labels=idx).tolist()
    assert np.isclose(summary["macro_f1"], f1_score(labels, predictions, labels=idx, average="macro", zero_division=0))
    assert np.isclose(summary["balanced_accuracy"], np.mean(recall))
    assert np.isclose(summary["accuracy"], np.mean(labels == predictions))
    for i, name in enumerate(classes):
        row = summary["per_class"][name]
        assert np.isclose(row["precision"], precision[i]) and np.isclose(row["recall"], recall[i])
        assert np.isclose(row["f1"], f1[i]) and row["support"] == support[i]


def test_balanced_accuracy_matches_scikit_learn_where_every_class_is_present():
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 2])
    predictions = np.array([0, 0, 1, 2, 1, 0, 2, 2, 2, 2, 1, 0])
    summary = classification_summary(labels, predictions, ["a", "b", "c"])
    assert np.isclose(summary["balanced_accuracy"], balanced_accuracy_score(labels, predictions))
    assert np.isclose(summary["balanced_accuracy"], (2 / 4 + 1 / 2 + 4 / 6) / 3)  # by hand
