"""Classes that collide in name but not in content.

A class of the new data named like an old class is taken as more data of that class. When its
examples look unlike the old class's exemplars, that is more likely a naming accident (another
dataset's "3", a folder named after the wrong label), and training would merge two concepts
under one name: warn. Two tests in the old model's feature space, centred on the exemplars'
mean (so the shared offset of non-negative features does not make every cosine high):
- nearest centroid: the new examples' mean is closer to another old class's exemplar mean;
- same-class similarity: its cosine to its namesake's centroid is below half of what two
  halves of one old class typically show.
"""
from __future__ import annotations

import numpy as np


def _unit(v: np.ndarray) -> np.ndarray:
    return v / (np.linalg.norm(v, axis=-1, keepdims=True) + 1e-12)


def _typical_same_class(x: np.ndarray, y: np.ndarray) -> float | None:
    """Median cosine between the means of two halves of each old class's exemplars."""
    values = []
    for k in np.unique(y):
        rows = x[y == k]
        if len(rows) >= 4:
            values.append(float(_unit(rows[0::2].mean(0)) @ _unit(rows[1::2].mean(0))))
    return float(np.median(values)) if values else None


def name_collisions(exemplar_x: np.ndarray, exemplar_y: np.ndarray, classes: list[str],
                    new_by_class: dict[str, np.ndarray]) -> list[dict]:
    """One finding per same-named class whose new examples look unlike the old ones.
    exemplar_x/_y: the old exemplars' features and labels (indices into classes);
    new_by_class: {old class name: features of its new examples}."""
    centre = exemplar_x.mean(0)
    x = exemplar_x - centre
    present = [k for k in range(len(classes)) if (exemplar_y == k).any()]
    centroids = _unit(np.stack([x[exemplar_y == k].mean(0) for k in present]))
    typical = _typical_same_class(x, exemplar_y)
    findings = []
    for name, feats in new_by_class.items():
        if classes.index(name) not in present or not len(feats):
            continue
        cosines = centroids @ _unit(feats.mean(0) - centre)
        own = float(cosines[present.index(classes.index(name))])
        nearest = classes[present[int(np.argmax(cosines))]]
        unlike = typical is not None and own < 0.5 * typical
        if nearest != name or unlike:
            why = (f"its new examples sit nearer the old '{nearest}' examples" if nearest != name else
                   f"its new examples' similarity to the old ones ({own:.2f}) is far below the usual "
                   f"same-class value ({typical:.2f})")
            findings.append({"class": name, "nearest_old_class": nearest, "cosine_to_namesake": round(own, 3),
                             "typical_same_class": None if typical is None else round(typical, 3),
                             "message": f"class '{name}' collides in name but not in content: {why}; "
                                        f"it is trained as one class with the old '{name}'"})
    return findings
