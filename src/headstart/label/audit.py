"""`headstart audit DATA|RUN`: which labels are likely wrong, which items repeat (within a split,
and across splits: a test item that is also a training item leaks), and which are outliers.

The frozen backbone embeds the items once, split by split, through the cached `embed` stage
(so a probe fitted later on the same split reads the features from disk, and a second audit
costs seconds); everything else works on those features (audit_find.py). Nothing trains a
backbone. For DATA the items are the train, validation and test splits `fit` would draw with
the same settings, embedded by the modality's default backbone (or --backbone); for a RUN they
are the run's own splits, with the labels it added, embedded by the run's own backbone.

RUN/audit.csv lists every flagged item (label errors first, most likely wrong first), with an
empty `exclude` column: mark the rows to drop and pass the file to `fit --exclude`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..embed import embed
from ..errors import HeadstartError
from ..log import say
from ..records import new_run_dir
from ..run import FIT_KINDS, Run
from .audit_find import (NEAR_DUPLICATE_SIMILARITY, OUTLIER_Z, duplicate_pairs, folds_for, label_issues,
                         nearest_neighbours, out_of_fold_probabilities, outlier_scores)

SPLITS = ("train", "val", "test")


@dataclass
class AuditSubject:
    """What is audited: the labelled `data` as loaded, the indices of it in play (`index`,
    split by split), each one's split, and the feature model that embeds them."""
    data: object
    index: np.ndarray
    splits: np.ndarray
    feature_model: object
    source: str
    backbone: dict

    def parts(self):
        """(split name, positions into index) for each non-empty split, in SPLITS order."""
        for name in SPLITS:
            positions = np.flatnonzero(self.splits == name)
            if len(positions):
                yield name, positions


def audit(source: str, *, backbone: str | None = None, image_size: int | None = None, folds: int = 5,
          k_neighbours: int = 10, duplicate_similarity: float = NEAR_DUPLICATE_SIMILARITY, out: str | None = None,
          seed: int = 0, train_per_class: int | None = None, train_size: int | None = None, max_eval: int = 1000,
          gallery: int = 60, **load_options) -> dict:
    """Audit DATA (a dataset spec) or RUN (a finished run's folder): write RUN/audit.csv,
    RUN/audit.json and RUN/report.html; return audit.json's content with "csv", "report" and
    "run_dir". load_options: modality, strict, text_column, label_column (as `fit` reads DATA)."""
    _check_settings(folds, k_neighbours, duplicate_similarity)
    run_dir = new_run_dir(out, prefix="audit")
    if (run_dir / "audit.json").exists():
        raise HeadstartError(f"{run_dir} already holds an audit", hint="choose a new --out")
    if _is_run(source):
        if backbone or image_size or train_per_class or train_size:
            raise HeadstartError("an audit of a run uses the run's own backbone, size and splits",
                                 hint="drop --backbone, --image-size, --train-per-class and --train-size, or "
                                      "audit the DATA instead")
        subject = subject_of_run(source)
    else:
        subject = subject_of_data(source, backbone=backbone, image_size=image_size, seed=seed,
                                  train_per_class=train_per_class, train_size=train_size, max_eval=max_eval,
                                  **load_options)
    settings = {"source": str(source), "backbone": backbone, "image_size": image_size, "folds": folds,
                "k_neighbours": k_neighbours, "duplicate_similarity": duplicate_similarity, "seed": seed,
                "train_per_class": train_per_class, "train_size": train_size, "max_eval": max_eval, **load_options}
    return audit_subject(subject, run_dir, folds=folds, k_neighbours=k_neighbours,
                         duplicate_similarity=duplicate_similarity, seed=seed, gallery=gallery, settings=settings)


def audit_subject(subject: AuditSubject, run_dir: Path, *, folds: int = 5, k_neighbours: int = 10,
                  duplicate_similarity: float = NEAR_DUPLICATE_SIMILARITY, seed: int = 0, gallery: int = 60,
                  settings: dict | None = None) -> dict:
    """Embed the subject split by split, find the problems, write the audit into run_dir."""
    from .audit_write import write_audit

    started = time.perf_counter()
    data = subject.data
    say(f"auditing {len(subject.index)} {data.noun} of {data.name} ({data.num_classes} classes): "
        + ", ".join(f"{name} {len(p)}" for name, p in subject.parts()))
    features = np.empty((len(subject.index), 0), dtype=np.float32)
    for name, positions in subject.parts():
        part = embed(subject.feature_model, data.subset(subject.index[positions]), description=f"features ({name})")
        if features.shape[1] == 0:
            features = np.zeros((len(subject.index), part.shape[1]), dtype=np.float32)
        features[positions] = part
    embed_seconds = time.perf_counter() - started
    hashes = np.array(data.item_hashes())[subject.index]
    findings = find_problems(features, data.labels[subject.index], data.num_classes, subject.splits, hashes=hashes,
                             folds=folds, k_neighbours=k_neighbours, duplicate_similarity=duplicate_similarity,
                             seed=seed)
    findings.update({"data": data.name, "source": subject.source, "classes": list(data.classes),
                     "backbone": subject.backbone, "items": len(subject.index),
                     "split_sizes": {name: len(p) for name, p in subject.parts()},
                     "embed_seconds": round(embed_seconds, 2), "settings": settings or {}})
    result = write_audit(run_dir, findings, subject, gallery=gallery)
    result["wall_seconds"] = round(time.perf_counter() - started, 2)
    say(f"{result['counts']['label_error']} likely label error(s), {result['counts']['leak']} leak(s) across splits, "
        f"{result['counts']['duplicate']} duplicate(s), {result['counts']['outlier']} outlier(s): {result['csv']}")
    return result


def find_problems(features: np.ndarray, labels: np.ndarray, num_classes: int, splits: np.ndarray, *,
                  hashes: np.ndarray | None = None, folds: int = 5, k_neighbours: int = 10,
                  duplicate_similarity: float = NEAR_DUPLICATE_SIMILARITY, seed: int = 0) -> dict:
    """Everything the audit finds on features, as positions into `features`: label errors
    (most likely wrong first, with the suggested class), duplicate and leak pairs, outliers."""
    started = time.perf_counter()
    probabilities, c = out_of_fold_probabilities(features, labels, num_classes, folds=folds, seed=seed)
    flagged, confidence = label_issues(probabilities, labels)
    probe_seconds = time.perf_counter() - started
    neighbours = nearest_neighbours(features, k_neighbours)
    pairs = duplicate_pairs(neighbours, np.asarray(splits), threshold=duplicate_similarity, same_content=hashes)
    distance, z = outlier_scores(neighbours)
    outliers = [int(i) for i in np.argsort(-z) if z[i] > OUTLIER_Z]
    suggested = probabilities.argmax(1)
    return {
        "label_errors": [{"position": int(i), "given": int(labels[i]), "suggested": int(suggested[i]),
                          "self_confidence": round(float(confidence[i]), 4),
                          "suggested_probability": round(float(probabilities[i, suggested[i]]), 4)} for i in flagged],
        "pairs": pairs,
        "outliers": [{"position": i, "distance": round(float(distance[i]), 4), "z": round(float(z[i]), 2)}
                     for i in outliers],
        "probe": {"folds": folds_for(labels, folds), "C": c,
                  "out_of_fold_accuracy": round(float((suggested == labels).mean()), 4),
                  "seconds": round(probe_seconds, 2),
                  "head": "the probe's logistic head on standardised frozen features (heads.HeadProblem), C by "
                          "out-of-fold log-loss"},
        "rules": {"label_error": "cleanlab find_label_issues (prune_by_noise_rate) on out-of-fold probabilities, "
                                 "ranked by self-confidence",
                  "duplicate": f"cosine similarity of centred features >= {duplicate_similarity}; exact: same content",
                  "outlier": f"mean cosine distance to the {k_neighbours} nearest items more than {OUTLIER_Z} robust "
                             f"standard deviations above the median"},
    }


def subject_of_data(source: str, *, backbone: str | None = None, image_size: int | None = None, seed: int = 0,
                    train_per_class: int | None = None, train_size: int | None = None, max_eval: int = 1000,
                    **load_options) -> AuditSubject:
    """DATA's splits as `fit` draws them with these settings, and a pretrained backbone."""
    from ..config import FitConfig
    from ..data import make_splits
    from ..modalities import load_data, modality_of
    from ..zoo import resolve_backbone

    def spec_for(modality):
        return resolve_backbone(backbone or modality.default_backbone)

    labelled = load_data(source, size=lambda m: m.decode_size(image_size, spec_for(m)), **load_options)
    if not labelled.is_labelled:
        raise HeadstartError(f"{source} holds no labels to audit", hint="give labelled data (class folders, a CSV "
                                                                        "with a label column)")
    modality = modality_of(labelled)
    spec = spec_for(modality)
    if not modality.owns(spec) or spec.standalone:
        raise HeadstartError(f"{spec.name} cannot embed {modality.name} data",
                             hint=f"use a {modality.name} backbone, e.g. {modality.default_backbone}")
    split = make_splits(labelled, seed=seed, train_per_class=train_per_class, train_size=train_size, max_eval=max_eval)
    index = np.concatenate([np.asarray(split.indices[name], dtype=np.int64) for name in SPLITS])
    splits = np.concatenate([[name] * len(split.indices[name]) for name in SPLITS])
    config = FitConfig(data=str(source), backbone=spec.name, image_size=image_size)
    model = spec.build(pretrained=True, **modality.backbone_options(config, spec, pretrained=True, data=split.train))
    return AuditSubject(labelled, index, splits, model, str(source), _describe(model))


def subject_of_run(run_dir: str | Path) -> AuditSubject:
    """A finished run's own data and splits, with the labels it added (appended to the data, in
    its training split), embedded by the run's own backbone. The caller imports the pipeline,
    which registers how Run.reload_data reloads a run's data."""

    run = Run.open(run_dir).require_finished()
    reloaded = run.reload_data("audit reads the run's data")
    data, indices = reloaded.data, reloaded.splits.indices
    train = np.asarray(indices["train"], dtype=np.int64)
    added = reloaded.splits.train.subset(np.arange(len(train), len(reloaded.splits.train)))
    if len(added):
        train = np.concatenate([train, len(data) + np.arange(len(added))])
        data = data.concat(added)
    parts = {"train": train, **{name: np.asarray(indices[name], dtype=np.int64) for name in SPLITS[1:]}}
    index = np.concatenate([parts[name] for name in SPLITS])
    splits = np.concatenate([[name] * len(parts[name]) for name in SPLITS])
    model = run.model()
    return AuditSubject(data, index, splits, model, str(run_dir), _describe(model))


def _describe(model) -> dict:
    described = model.describe() if hasattr(model, "describe") else {}
    return {"name": described.get("name"), "weights": described.get("weights")}


def _is_run(source) -> bool:
    path = Path(str(source)).expanduser()
    if not path.is_dir():
        return False
    try:  # a data folder is not a run: Run.open refuses it
        return Run.open(path).kind in FIT_KINDS
    except HeadstartError:
        return False


def _check_settings(folds: int, k_neighbours: int, duplicate_similarity: float) -> None:
    if folds < 2:
        raise HeadstartError(f"--folds must be at least 2 (got {folds})", hint="5 is the usual choice")
    if k_neighbours < 1:
        raise HeadstartError(f"--k-neighbours must be at least 1 (got {k_neighbours})")
    if not 0 < duplicate_similarity <= 1:
        raise HeadstartError(f"--duplicate-similarity is a cosine similarity in (0, 1] (got {duplicate_similarity})")
