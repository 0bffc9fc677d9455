"""--synthesize: synthetic minority samples.

On cached features (the probe, and the head stage of lp-ft / finetune / lora), SMOTE
(Chawla et al. 2002, imbalanced-learn's implementation) puts each new sample on the segment
between a real minority sample a and one of its k nearest same-class neighbours b:
s = a + lam (b - a), lam in [0, 1). Images and texts alike: it works in embedding space. Only
the training features are touched; validation and test never see a synthetic sample.

Every synthetic sample's provenance is recovered from geometry alone (imbalanced-learn does
not return it): the pair of real same-class samples whose segment passes through it, and
lam. The residual (distance from s to that segment) is recorded, so the claim is checked.

Strategies that train the backbone on images mix images instead (mixup / cutmix, timm's
Mixup, in train/loop.py); this module only decides how often.
"""
from __future__ import annotations

import numpy as np

from ..config import parse_synthesize
from ..log import say

MAX_NEIGHBOURS = 5       # SMOTE's k; fewer for a class too small to have five neighbours
CANDIDATES = 10          # real samples nearest to s tried as the segment's end a
EXAMPLES_SHOWN = 8       # synthetic examples named in the summary and the report


def targets(requested: str, labels: np.ndarray, num_classes: int) -> dict[int, int]:
    """Synthetic samples to make per class: K for each class smaller than the largest
    ('auto': as many as bring it up to the largest). A class with a single training sample
    has no neighbour to interpolate with and gets none."""
    counts = np.bincount(labels, minlength=num_classes)
    largest = counts.max()
    per_class = {}
    for k, n in enumerate(counts):
        if 2 <= n < largest:
            per_class[k] = int(largest - n) if requested == "auto" else int(requested)
    return per_class


def smote(x: np.ndarray, labels: np.ndarray, requested: str | None, num_classes: int, seed: int):
    """(synthetic features, their labels): SMOTE run per minority class with k adapted to its size."""
    from imblearn.over_sampling import SMOTE

    requested = parse_synthesize(requested)
    labels = np.asarray(labels, dtype=np.int64)
    made_x, made_y = [np.empty((0, x.shape[1]), dtype=np.float32)], [np.empty(0, dtype=np.int64)]
    if requested is None:
        return made_x[0], made_y[0]
    counts = np.bincount(labels, minlength=num_classes)
    for k, extra in targets(requested, labels, num_classes).items():
        neighbours = min(MAX_NEIGHBOURS, int(counts[k]) - 1)
        sampler = SMOTE(sampling_strategy={k: int(counts[k]) + extra}, k_neighbors=neighbours, random_state=seed + k)
        x_res, y_res = sampler.fit_resample(x.astype(np.float64), labels)
        made_x.append(x_res[len(x):].astype(np.float32))  # imbalanced-learn appends the new rows
        made_y.append(y_res[len(x):].astype(np.int64))
    return np.concatenate(made_x), np.concatenate(made_y)


def provenance(synthetic: np.ndarray, synthetic_labels: np.ndarray, x: np.ndarray, labels: np.ndarray):
    """For each synthetic sample s of class c: (a, b, lam, residual) with a, b indices of real
    class-c rows of x, s ~ x[a] + lam (x[b] - x[a]), and residual = |s - that point| / |x[b] - x[a]|.

    a is tried among the CANDIDATES real same-class samples nearest to s (SMOTE's a is near
    s: s lies between a and one of a's nearest neighbours), b among all of them; the pair
    whose segment passes closest to s wins. Worked in float64 from Gram matrices, so a class
    of n costs n^2 + per sample CANDIDATES * n.
    """
    x = np.asarray(x, dtype=np.float64)
    s_all = np.asarray(synthetic, dtype=np.float64)
    out_a = np.zeros(len(s_all), dtype=np.int64)
    out_b = np.zeros(len(s_all), dtype=np.int64)
    out_lam = np.zeros(len(s_all))
    out_res = np.full(len(s_all), np.inf)
    for c in np.unique(synthetic_labels):
        rows = np.flatnonzero(labels == c)
        which = np.flatnonzero(synthetic_labels == c)
        xc, s = x[rows], s_all[which]
        gram = xc @ xc.T
        norms = np.diag(gram)
        xs = s @ xc.T                                    # (m, n): x_j . s
        ss = np.einsum("ij,ij->i", s, s)
        dist2 = ss[:, None] - 2 * xs + norms[None, :]    # |s - x_j|^2
        near = np.argsort(dist2, axis=1)[:, :CANDIDATES]
        for i in range(len(s)):
            best = (np.inf, 0, 0, 0.0)
            for a in near[i]:
                # segment a -> b for every b: t = (s-a).(b-a) / |b-a|^2, clipped to [0, 1]
                dot = xs[i] - gram[a] - xs[i, a] + norms[a]
                length2 = norms - 2 * gram[a] + norms[a]
                t = np.clip(np.divide(dot, length2, out=np.zeros_like(dot), where=length2 > 0), 0.0, 1.0)
                res2 = dist2[i, a] - 2 * t * dot + t * t * length2
                res2[a] = np.inf
                b = int(np.argmin(res2))
                scale = np.sqrt(max(length2[b], 1e-30))
                residual = np.sqrt(max(res2[b], 0.0)) / scale
                if residual < best[0]:
                    best = (residual, a, b, float(t[b]))
            out_res[which[i]], a, b, out_lam[which[i]] = best
            out_a[which[i]], out_b[which[i]] = rows[a], rows[b]
    return out_a, out_b, out_lam, out_res


def synthesize_features(x: np.ndarray, labels: np.ndarray, requested: str | None, classes: list[str],
                        seed: int, names) -> tuple[np.ndarray, np.ndarray, dict | None]:
    """SMOTE on training features: (x with the synthetic rows appended, labels likewise, the
    summary's "synthetic" entry or None when nothing was asked). names(i) names real row i
    (a file path or a text snippet) for the examples."""
    if parse_synthesize(requested) is None:
        return x, labels, None
    made, made_y = smote(x, labels, requested, len(classes), seed)
    per_class = {classes[k]: int(n) for k, n in zip(*np.unique(made_y, return_counts=True))}
    record = {"method": "smote", "space": "embeddings", "requested": str(requested),
              "per_class": per_class, "total": int(len(made)), "examples": []}
    if len(made):
        a, b, lam, residual = provenance(made, made_y, x, labels)
        shown = np.random.default_rng(seed).permutation(len(made))[:EXAMPLES_SHOWN]
        record["examples"] = [{"class": classes[int(made_y[i])], "from": [names(int(a[i])), names(int(b[i]))],
                               "lambda": round(float(lam[i]), 4), "residual": float(f"{residual[i]:.2e}")}
                              for i in sorted(shown, key=lambda i: (int(made_y[i]), int(i)))]
        record["provenance_max_residual"] = float(f"{residual.max():.2e}")
        say(f"synthesized {len(made)} training sample(s) with SMOTE in embedding space "
            f"({', '.join(f'{c}: {n}' for c, n in per_class.items())}); validation and test untouched")
    else:
        say("--synthesize: no class is smaller than the largest (or has two samples to interpolate); "
            "nothing synthesized")
    return np.concatenate([x, made.astype(x.dtype)]), np.concatenate([labels, made_y]), record


def mixup_probability(requested: str | None, labels: np.ndarray, num_classes: int) -> float:
    """The share of training batches mixed (mixup or cutmix): as many mixed samples per epoch
    as SMOTE would make (K per minority class, or up to the largest class), as a share of
    the epoch, at most every batch."""
    requested = parse_synthesize(requested)
    if requested is None:
        return 0.0
    labels = np.asarray(labels, dtype=np.int64)
    wanted = sum(targets(requested, labels, num_classes).values())
    return float(min(1.0, wanted / max(1, len(labels))))


def not_synthesized(requested: str | None, reason: str) -> dict:
    """The summary's "synthetic" entry for a run that was asked to synthesize and could not,
    said aloud. (A refusal would end a whole `compare` at one arm.)"""
    if parse_synthesize(requested) is None:
        return {}
    say(f"--synthesize {requested}: nothing synthesized: {reason}")
    return {"synthetic": {"method": "none", "requested": str(requested), "per_class": {}, "total": 0,
                          "examples": [], "note": reason}}


def item_namer(data, order: np.ndarray):
    """names(i) for feature row i, whose training item is order[i]: its path, a text snippet,
    or its position."""
    from ..metrics import snippet

    paths, texts = getattr(data, "paths", None), getattr(data, "texts", None)

    def names(i: int) -> str:
        j = int(order[i])
        if paths is not None:
            return str(paths[j])
        if texts is not None:
            return snippet(texts[j], 120)
        return f"training item #{j}"
    return names
