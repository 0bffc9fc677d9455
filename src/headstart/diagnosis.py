"""Why transfer did not pay: evidence a user can act on when compare's verdict is "negative
transfer" or "inconclusive", and a one-line suggestion.

Every measurement is cheap or already at hand. On the arms' own split (train searched,
validation queried; both capped): k-NN accuracy and class separability (silhouette, cosine)
of the frozen backbone's features against the raw inputs (the modality's `raw_features`:
pixels, a bag of words); the data's own size against the size the backbone reads it at (the
modality's `size_gap`); and the baseline arm's cost per epoch, from its summary. RULES, a
table of (condition, sentence), picks the suggestion: the first rule that holds wins; the
others that hold are kept as further hints. `diagnose` never raises: a failure is recorded.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .errors import HeadstartError
from .log import say
from .modalities import modality_of
from .run import Run

K = 5                       # neighbours of the k-NN classifier
MAX_REFERENCE = 2000        # training examples k-NN searches (a random sample beyond this)
MAX_QUERY = 1000            # validation examples it classifies and the silhouette scores
CHEAP_EPOCH_SECONDS = 60.0  # a baseline epoch at most this long is cheap to train
SMALL_NATIVE = 4            # a resolution gap: the backbone reads the data >= 4x larger
CLEAR_MARGIN = 0.02         # k-NN accuracies closer than this are not called different
TRUNCATED_SHARE = 0.25      # texts: this share cut at the length limit loses real content
FROZEN = ("probe",)         # transfer strategies that never change the backbone

KNN = f"k-NN accuracy (k={K}, cosine, validation)"
SILHOUETTE = "silhouette (cosine, validation; -1 to 1, higher = classes further apart)"


@dataclass(frozen=True)
class Rule:
    name: str
    holds: Callable[[dict], bool]  # on the evidence (a flat dict; None where unmeasured)
    sentence: str                  # str.format'ed with the evidence
    fallback: bool = False         # said only when no other rule holds (never a hint)


def _known(e: dict, *keys: str) -> bool:
    return all(e.get(k) is not None for k in keys)


def _features_weaker(e: dict) -> bool:
    return _known(e, "knn_features", "knn_raw") and e["knn_features"] < e["knn_raw"] - CLEAR_MARGIN


RULES: list[Rule] = [
    Rule("no-gain-over-raw",
         lambda e: _known(e, "knn_raw", "knn_features", "baseline_seconds_per_epoch")
         and e["knn_raw"] >= e["knn_features"] and e["baseline_seconds_per_epoch"] <= CHEAP_EPOCH_SECONDS,
         "Train the baseline ({baseline_arm}, {baseline_model}): pretrained features add nothing here - the raw "
         "inputs separate the classes at least as well (k-NN {knn_raw:.0%} vs {knn_features:.0%} for the "
         "features), and an epoch of {baseline_arm} costs only {baseline_seconds_per_epoch:.1f} s."),
    Rule("resolution-gap",
         lambda e: bool(e.get("upsampled")) and _known(e, "native", "model")
         and e["native"] * SMALL_NATIVE <= e["model"],
         "Fine-tune at a lower resolution ({option} {suggested_size}): the images are {native} px but the "
         "backbone reads them at {model} px, spending {compute_factor:.0f}x the compute of {suggested_size} px "
         "per image on upsampled blur."),
    Rule("texts-truncated",
         lambda e: (e.get("truncated_share") or 0) >= TRUNCATED_SHARE,
         "Raise {option} (up to the model's limit): {truncated_share:.0%} of the texts were cut at {model} "
         "tokens, so the backbone never read their ends."),
    Rule("frozen-features-weak",
         lambda e: _features_weaker(e) and not e.get("fine_tuned"),
         "Add lp-ft or finetune to --arms: the frozen features separate these classes worse than the raw inputs "
         "(k-NN {knn_features:.0%} vs {knn_raw:.0%}), so the backbone has to adapt to this data."),
    Rule("backbone-far-from-data",
         lambda e: _features_weaker(e) and bool(e.get("fine_tuned")),
         "Try a backbone pretrained on data closer to yours (--backbone): this one's features separate the "
         "classes worse than the raw inputs (k-NN {knn_features:.0%} vs {knn_raw:.0%}), and fine-tuning within "
         "the budget did not make up for it."),
    Rule("transfer-cut-short",
         lambda e: bool(e.get("cut_short")),
         "Give each arm a longer --budget: {cut_short_names} ran out of time before reaching the target."),
    Rule("no-single-cause", lambda e: True,
         "Repeat with more seeds (--seeds 3) or a longer --budget: the measurements point to no single cause, "
         "and the arms may differ by chance.", fallback=True),
]


def suggest(evidence: dict, rules: list[Rule] = RULES) -> dict:
    """The first rule that holds, as the suggestion; the others that hold (but a fallback), as hints."""
    e = {**evidence, **_derived(evidence)}
    held = [r for r in rules if r.holds(e)]
    return {"rule": held[0].name, "suggestion": held[0].sentence.format(**e),
            "also": [{"rule": r.name, "sentence": r.sentence.format(**e)} for r in held[1:] if not r.fallback]}


def _derived(e: dict) -> dict:
    out = {"cut_short_names": ", ".join(e.get("cut_short") or [])}
    if _known(e, "native", "model") and e["native"] > 0:
        # twice the native side, in steps of 32 px, at least 32 and below the backbone's own
        size = min(e["model"], max(32, -(-2 * e["native"] // 32) * 32))
        out.update(suggested_size=size, compute_factor=(e["model"] / size) ** 2)
    return out


# -- the measurements --------------------------------------------------------------------------

def diagnose(config, data, runs: dict[str, list[dict]], comparison: dict, feature_model) -> dict:
    """comparison["diagnosis"]: measurements, evidence, the suggestion, and how long it took.
    `config` is the resolved CompareConfig, `data` what the arms trained on, `runs` their
    records (run_compare's), `feature_model()` builds the pretrained transfer classifier whose
    frozen features are measured (compare builds it as its arms do). Never raises: what fails
    is recorded as a reason."""
    started = time.perf_counter()
    try:
        out = _diagnose(config, data, runs, comparison, feature_model)
        say(f"why transfer did not pay: {out['suggestion']}")
    except Exception as e:  # noqa: BLE001  (a diagnosis must never cost the comparison)
        out = {"error": _reason(e)}
        say(f"no diagnosis: {out['error']}")
    out["seconds"] = round(time.perf_counter() - started, 3)
    return out


def _diagnose(config, data, runs, comparison, feature_model) -> dict:
    modality = modality_of(data)
    train, val = _parts(data, runs)
    failed: dict[str, str] = {}
    features = raw = size = None
    backbone = None
    try:
        classifier = feature_model()
        backbone = classifier.backbone
        from .embed import embed
        features = measure(*(embed(classifier, p, description="features (diagnosis)") for p in (train, val)),
                           train.labels, val.labels)
    except Exception as e:  # noqa: BLE001
        failed["features"] = _reason(e)
    try:
        made = modality.raw_features(train, val)
        raw = measure(*made, train.labels, val.labels) if made is not None else None
    except Exception as e:  # noqa: BLE001
        failed["raw"] = _reason(e)
    try:
        size = modality.size_gap(data, backbone) if backbone is not None else None
    except Exception as e:  # noqa: BLE001
        failed["size"] = _reason(e)
    cost = baseline_cost(comparison, runs)
    evidence = gather(features, raw, size, cost, comparison)
    return {
        "backbone": getattr(backbone, "name", config.backbone),
        "raw_name": modality.raw_name or None,
        "sample": {"train": len(train), "val": len(val)},
        "measures": [{"measure": KNN, "kind": "accuracy", "features": evidence["knn_features"], "raw": evidence["knn_raw"]},
                     {"measure": SILHOUETTE, "kind": "score", "features": evidence["silhouette_features"],
                      "raw": evidence["silhouette_raw"]}],
        "size": size,
        "baseline_cost": cost,
        "evidence": evidence,
        **suggest(evidence),
        "failed": failed,
    }


def _parts(data, runs):
    """The arms' own train and validation parts (from the first arm's splits.json), sampled
    down to MAX_REFERENCE and MAX_QUERY examples."""
    first = next(iter(runs.values()))[0]
    indices = Run(first["dir"]).splits
    rng = np.random.default_rng(0)

    def part(name: str, cap: int):
        index = np.asarray(indices[name], dtype=np.int64)
        if len(index) > cap:
            index = np.sort(rng.choice(index, cap, replace=False))
        return data.subset(index)

    return part("train", MAX_REFERENCE), part("val", MAX_QUERY)


def measure(train_x, val_x, train_y, val_y) -> dict:
    """k-NN accuracy on validation (cosine, k=K, searching train) and the validation
    silhouette (cosine) of any representation: dense arrays or sparse matrices."""
    from sklearn.neighbors import KNeighborsClassifier

    k = min(K, train_x.shape[0])
    knn = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute").fit(train_x, train_y)
    accuracy = float(np.mean(knn.predict(val_x) == np.asarray(val_y)))
    return {"knn_accuracy": round(accuracy, 4), "silhouette": silhouette(val_x, val_y)}


def silhouette(x, y) -> float | None:
    """Mean silhouette (cosine) of the labelled points; None when it is undefined (one class,
    or as many classes as points)."""
    from sklearn.metrics import silhouette_score

    y = np.asarray(y)
    if not 2 <= len(np.unique(y)) < len(y):
        return None
    return round(float(silhouette_score(x, y, metric="cosine")), 4)


def baseline_cost(comparison: dict, runs: dict) -> dict | None:
    """The judged baseline arm's training cost: seconds per epoch (its first seed)."""
    name = comparison.get("baseline_arm")
    if not runs.get(name):
        return None
    summary = runs[name][0]["summary"]
    seconds, epochs = summary.get("train_seconds"), summary.get("epochs_run")
    if not epochs:  # older records: the last evaluation's epoch
        epochs = max((r.get("epoch") or 0 for r in runs[name][0]["rows"] if r.get("split") == "val"), default=0)
    per_epoch = round(float(seconds) / float(epochs), 3) if seconds is not None and epochs else None
    return {"arm": name, "model": summary.get("backbone"), "train_seconds": seconds,
            "epochs": round(float(epochs), 2) if epochs else None, "seconds_per_epoch": per_epoch}


def gather(features: dict | None, raw: dict | None, size: dict | None, cost: dict | None, comparison: dict) -> dict:
    """The flat evidence the rules read (None where something was not measured)."""
    features, raw, size, cost = features or {}, raw or {}, size or {}, cost or {}
    arms = comparison.get("arms") or []
    transfer = [a for a in arms if not a.get("baseline")]
    return {
        "knn_features": features.get("knn_accuracy"), "knn_raw": raw.get("knn_accuracy"),
        "silhouette_features": features.get("silhouette"), "silhouette_raw": raw.get("silhouette"),
        "native": size.get("native"), "model": size.get("model"), "option": size.get("option"),
        "upsampled": size.get("upsampled"), "truncated_share": size.get("truncated_share"),
        "baseline_arm": cost.get("arm"), "baseline_model": cost.get("model"),
        "baseline_seconds_per_epoch": cost.get("seconds_per_epoch"),
        "fine_tuned": any(a.get("strategy") not in FROZEN for a in transfer),
        "cut_short": [a["name"] for a in transfer
                      if a.get("stop_reason") == "budget" and a.get("time_to_target_seconds") is None],
    }


def _reason(e: Exception) -> str:
    return str(e) if isinstance(e, HeadstartError) else f"{type(e).__name__}: {e}"
