"""Classification figures for summaries and reports (scikit-learn does the arithmetic)."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support


def classification_summary(labels: np.ndarray, predictions: np.ndarray, classes: list[str]) -> dict:
    k = len(classes)
    idx = list(range(k))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=idx, zero_division=0)
    return {
        "accuracy": float((labels == predictions).mean()) if len(labels) else 0.0,
        "macro_f1": float(f1_score(labels, predictions, labels=idx, average="macro", zero_division=0)),
        "balanced_accuracy": float(np.mean(recall)),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(support[i])}
            for i, name in enumerate(classes)
        },
        "confusion_matrix": confusion_matrix(labels, predictions, labels=idx).tolist(),
    }


def imbalance(labels: np.ndarray, classes: list[str]) -> dict:
    counts = np.bincount(labels, minlength=len(classes))
    nonzero = counts[counts > 0]
    return {
        "class_counts": {c: int(n) for c, n in zip(classes, counts)},
        "imbalance_ratio": float(nonzero.max() / nonzero.min()) if len(nonzero) else 0.0,
    }
