"""CORAL (Sun, Feng & Saenko, "Return of Frustratingly Easy Domain Adaptation", AAAI 2016) on
cached features.

The source features are whitened with their own covariance and re-coloured with the
target's (each regularised: + eps * mean variance * I, the paper's "+ I" on standardised
features), and shifted to the target's mean; a logistic head fitted on those aligned source
features then reads raw target features as they come. The backbone never trains, so the whole
method costs one inference pass over source and target plus two head fits: the run also fits
the head on raw source features (no adaptation) and reports both.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..engines.extract import make_engine
from ..embed import embed
from ..heads import PROBE_C_GRID, budget_rule, sweep_head
from .domain_methods import AdaptJob, accuracy_of, register_adaptation

# The regularisation of each covariance, in units of its mean variance: 1.0 is the paper's
# "+ I" on standardised features. Without it a target smaller than the feature width
# (1,797 digits vs 1,280 features) has a singular covariance that cannot be inverted.
CORAL_EPS = 1.0
FIGURE = "adaptation_features.png"


def coral_transform(source: np.ndarray, target: np.ndarray, eps: float = CORAL_EPS) -> tuple[np.ndarray, np.ndarray]:
    """(matrix, shift) with aligned = source @ matrix + shift: source covariance -> target
    covariance, source mean -> target mean. Equal domains give the identity."""
    cs, ct = _regularised_cov(source, eps), _regularised_cov(target, eps)
    matrix = _matrix_power(cs, -0.5) @ _matrix_power(ct, 0.5)
    shift = target.mean(0) - source.mean(0) @ matrix
    return matrix.astype(np.float32), shift.astype(np.float32)


def _regularised_cov(x: np.ndarray, eps: float) -> np.ndarray:
    x = x.astype(np.float64)
    cov = np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])
    scale = max(float(np.trace(cov)) / len(cov), 1e-12)
    return cov + eps * scale * np.eye(len(cov))


def _matrix_power(symmetric: np.ndarray, power: float) -> np.ndarray:
    """symmetric^power through its eigendecomposition (it is positive definite once regularised)."""
    values, vectors = np.linalg.eigh(symmetric)
    values = np.clip(values, 1e-12, None)
    return (vectors * values ** power) @ vectors.T


@register_adaptation("coral")
def fit_coral(job: AdaptJob) -> tuple[dict, dict]:
    config, rec, model = job.plan.config, job.recorder, job.model
    train, val, test = job.parts
    model.backbone.set_trainable(False)
    engine = make_engine(config.extract_engine, model, calibration=train.inputs)

    def features(data, what: str) -> np.ndarray:
        return embed(model, data, cache=job.use_feature_cache, description=f"features ({what})", engine=engine)

    rec.resume()  # training: the source's features, and the target's (CORAL needs its statistics)
    train_x, target_x = features(train, "source train"), features(job.target.data, "target")
    rec.pause()
    val_x, test_x = features(val, "source val"), features(test, "source test")

    def sweep(train_features, val_features, phase: str):
        return sweep_head(train_features, train.labels, val_features, val.labels, PROBE_C_GRID, rec,
                          num_classes=train.num_classes, phase=phase,
                          out_of_time=budget_rule(rec, config.budget_seconds))

    none = sweep(train_x, val_x, "none")
    rec.resume()
    matrix, shift = coral_transform(train_x, target_x)
    rec.pause()
    aligned = (train_x @ matrix + shift, val_x @ matrix + shift)
    coral = sweep(*aligned, "coral")
    coral.write_into(model.head.fc)  # the deployed head reads raw target features: they are what it was aligned to
    rec.epoch = 1.0

    labels = job.target.labels
    arms = {name: {"source_accuracy": accuracy_of(arm.logits(test_x), test.labels),
                   "target_accuracy": accuracy_of(arm.logits(target_x), labels),
                   "val_accuracy": float(arm.val_accuracy), "C": arm.c}
            for name, arm in (("none", none), ("coral", coral))}
    figure = _feature_figure(Path(job.run_dir), train_x, aligned[0], target_x)
    adaptation = {
        "arms": arms,
        "none_is": "the logistic head on raw source features (the plain probe), fitted in this run",
        "eps": CORAL_EPS, "feature_dim": int(train_x.shape[1]),
        "covariance_gap": {"before": _cov_gap(train_x, target_x), "after": _cov_gap(aligned[0], target_x)},
        "source_accuracy_means": "the saved model (the CORAL head on raw features) on the source test split",
        **({"figure": figure} if figure else {}),
    }
    outcome = {"best_val_accuracy": float(coral.val_accuracy), "probe_C": coral.c,
               "probe_val_accuracy": float(coral.val_accuracy), "extract_engine": engine.name}
    return outcome, adaptation


def _cov_gap(a: np.ndarray, b: np.ndarray) -> float:
    """CORAL's loss in relative form: |C_a - C_b|_F / |C_b|_F (0 when the covariances match)."""
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return round(float(np.linalg.norm(ca - cb) / max(np.linalg.norm(cb), 1e-12)), 4)


def _feature_figure(run_dir: Path, source: np.ndarray, aligned: np.ndarray, target: np.ndarray) -> str | None:
    """Source, aligned source and target on the target's first two principal axes."""
    if source.shape[1] < 2 or not run_dir.exists():
        return None
    from ..report.plots import PALETTE, _save, plt

    rng = np.random.default_rng(0)
    mean = target.mean(0)
    _, _, vt = np.linalg.svd(target - mean, full_matrices=False)
    axes = vt[:2].T
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for i, (name, x, shape) in enumerate((("source (raw)", source, "o"), ("source (aligned)", aligned, "s"),
                                          ("target", target, "^"))):
        pick = rng.choice(len(x), size=min(len(x), 400), replace=False)
        xy = (x[pick] - mean) @ axes
        ax.scatter(xy[:, 0], xy[:, 1], s=8, alpha=0.5, marker=shape, color=PALETTE[i], label=name)
    ax.set_xlabel("target principal axis 1")
    ax.set_ylabel("target principal axis 2")
    ax.set_title("features before and after CORAL")
    ax.legend()
    _save(fig, run_dir / FIGURE)  # written aside, then renamed into place
    return FIGURE
