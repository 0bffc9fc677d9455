"""Classification figures for summaries and reports (scikit-learn does the arithmetic)."""
from __future__ import annotations

import numpy as np
import torch
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
