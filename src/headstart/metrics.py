"""Classification figures for summaries and reports.

The per-class figures are read off one confusion matrix (np.bincount) with scikit-learn's
definitions and its zero_division=0 (tests/test_metrics.py checks them against scikit-learn's
own functions): importing sklearn.metrics costs ~1.5 s of every command's start (scipy.stats,
pandas), and a fit needs nothing else from it.
"""
from __future__ import annotations

import numpy as np
import torch


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """counts[true, predicted] over classes 0..num_classes-1."""
    pairs = np.asarray(labels, dtype=np.int64) * num_classes + np.asarray(predictions, dtype=np.int64)
    return np.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    return np.divide(numerator, denominator, out=np.zeros(len(numerator)), where=denominator > 0)


def classification_summary(labels: np.ndarray, predictions: np.ndarray, classes: list[str]) -> dict:
    counts = confusion_matrix(labels, predictions, len(classes))
    hits, support, predicted = np.diag(counts), counts.sum(axis=1), counts.sum(axis=0)
    precision, recall = _ratio(hits, predicted), _ratio(hits, support)
    f1 = _ratio(2.0 * hits, support + predicted)  # = 2PR / (P + R), 0 for a class never seen nor predicted
    return {
        "accuracy": float((labels == predictions).mean()) if len(labels) else 0.0,
        "macro_f1": float(np.mean(f1)),
        "balanced_accuracy": float(np.mean(recall)),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(support[i])}
            for i, name in enumerate(classes)
        },
        "confusion_matrix": counts.tolist(),
    }


def imbalance(labels: np.ndarray, classes: list[str]) -> dict:
    counts = np.bincount(labels, minlength=len(classes))
    nonzero = counts[counts > 0]
    return {
        "class_counts": {c: int(n) for c, n in zip(classes, counts)},
        "imbalance_ratio": float(nonzero.max() / nonzero.min()) if len(nonzero) else 0.0,
    }


MISCLASSIFIED_SHOWN = 20  # per run: enough to see a pattern, few enough to read
SNIPPET_CHARS = 300


def confident_predictions(logits: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class, its probability) per row of logits."""
    confidence, predicted = torch.softmax(logits.float(), 1).max(1)
    return predicted.numpy(), confidence.numpy()


def most_confident_mistakes(labels: np.ndarray, logits: torch.Tensor, k: int) -> list[int]:
    """Indices of the k wrong predictions made with the highest confidence, most confident first."""
    predicted, confidence = confident_predictions(logits)
    wrong = [i for i in range(len(labels)) if int(predicted[i]) != int(labels[i])]
    return sorted(wrong, key=lambda i: -float(confidence[i]))[:k]


def snippet(text: str, chars: int = SNIPPET_CHARS) -> str:
    """A text on one line, cut at `chars` with an ellipsis."""
    flat = " ".join(text.split())
    return flat[:chars] + ("…" if len(flat) > chars else "")


def misclassified_examples(test, logits: torch.Tensor, classes: list[str]) -> list[dict]:
    """The most confidently wrong test examples: text (or file path), true and predicted label."""
    predicted, confidence = confident_predictions(logits)
    shown = []
    for i in most_confident_mistakes(test.labels, logits, MISCLASSIFIED_SHOWN):
        item = {"true": classes[int(test.labels[i])], "predicted": classes[int(predicted[i])],
                "probability": round(float(confidence[i]), 4)}
        if getattr(test, "texts", None) is not None:
            item["text"] = snippet(test.texts[i])
        if test.paths is not None:
            item["source"] = test.paths[i]
        shown.append(item)
    return shown
