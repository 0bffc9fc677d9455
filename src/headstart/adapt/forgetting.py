"""Forgetting, measured: each old class's test accuracy before (the old model) and after (the
continued model) on the same test items, and the new classes' accuracy. Per-class accuracy is
class-incremental: the continued model chooses among every class it knows."""
from __future__ import annotations

from pathlib import Path

import numpy as np

# Average forgetting above this (in accuracy, 0..1) earns the report's warning.
LARGE_FORGETTING = 0.05
PLOT_FILE = "continual_forgetting.png"


def per_class_accuracy(predictions: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict[str, float]:
    """{class: accuracy on its test items} for the classes that have test items."""
    return {name: float((predictions[labels == k] == k).mean())
            for k, name in enumerate(classes) if (labels == k).any()}


def forgetting_figures(before: dict[str, float], after: dict[str, float], old: list[str],
                       new: list[str]) -> dict:
    """The per-class table and its averages. Forgetting of a class = before - after (positive:
    forgotten); a same-named class that got more data is an old class."""
    old_rows = [{"class": c, "before": before[c], "after": after[c], "change": after[c] - before[c]}
                for c in old if c in before and c in after]
    new_rows = [{"class": c, "after": after[c]} for c in new if c in after]
    forgetting = [r["before"] - r["after"] for r in old_rows]
    return {
        "old_classes": old_rows,
        "new_classes": new_rows,
        # class-balanced: each class counts once, whatever its test size
        "average_accuracy": float(np.mean(list(after.values()))) if after else None,
        "old_accuracy_before": float(np.mean([r["before"] for r in old_rows])) if old_rows else None,
        "old_accuracy_after": float(np.mean([r["after"] for r in old_rows])) if old_rows else None,
        "new_accuracy": float(np.mean([r["after"] for r in new_rows])) if new_rows else None,
        "average_forgetting": float(np.mean(forgetting)) if forgetting else 0.0,
        "max_forgetting": float(np.max(forgetting)) if forgetting else 0.0,
        "large_forgetting": bool(forgetting and np.mean(forgetting) > LARGE_FORGETTING),
    }


def headline(figures: dict, method: str, added: list[str]) -> str:
    """One line for the CLI: what was added, and what it cost the old classes."""
    parts = [f"{method}: +{len(added)} class(es)" if added else f"{method}: more data"]
    if figures["old_accuracy_before"] is not None:
        parts.append(f"old classes {figures['old_accuracy_before']:.1%} -> {figures['old_accuracy_after']:.1%} "
                     f"(average forgetting {figures['average_forgetting'] * 100:.1f} points)")
    if figures["new_accuracy"] is not None:
        parts.append(f"new classes {figures['new_accuracy']:.1%}")
    parts.append(f"all classes {figures['average_accuracy']:.1%}")
    return "; ".join(parts)


def forgetting_plot(figures: dict, path: Path) -> Path:
    """Bars per class: before (old model) and after (continued model); new classes after only."""
    from ..report.plots import _save, colour, plain, plt

    old, new = figures["old_classes"], figures["new_classes"]
    names = [plain(r["class"], 16) for r in old + new]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(4.5, 0.7 * len(names) + 1.5), 3.4))
    width = 0.4
    ax.bar(x[:len(old)] - width / 2, [r["before"] for r in old], width, color=colour(1), label="before (old run)")
    ax.bar(x[:len(old)] + width / 2, [r["after"] for r in old], width, color=colour(0), label="after (this run)")
    ax.bar(x[len(old):], [r["after"] for r in new], width, color=colour(2), label="new class")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("test accuracy")
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title("Each class's test accuracy, before and after")
    return _save(fig, path)
