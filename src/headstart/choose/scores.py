"""Transferability scores: how well a frozen backbone's features will transfer to labelled
target data, measured from the embeddings alone (no training of the backbone).

Each score is registered by name and has one calling convention, so `rank`, `--backbone auto`
and the tests treat every score alike:

    @register_score("logme", summary="...", paper="...")
    def logme(features, labels, source_logits=None, *, seed=0) -> float:   # higher is better

`features` is (N, D) float, `labels` (N,) int in 0..K-1, `source_logits` (N, S) the source
model's own head on the target data (only the scores registered with needs_source=True read
it). The registered callable (`SCORES[name].fn`) checks its input and re-encodes the labels
first, so it is safe to call directly; the undecorated maths is kept as `fn.__wrapped__`.

A score that cannot run on the data it is given (cross-validation with a one-example class)
raises `ScoreNotApplicable`; `run_scores` reports it as skipped with that reason.
"""
from __future__ import annotations

import functools
import inspect
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.special import log_softmax, logsumexp

from .covariance import shrunk_h_score_low_rank, solve_symmetric
from ..errors import HeadstartError
from ..registry import Registry

SCORES: Registry["Score"] = Registry("transferability score")

# LogME's fixed point usually settles in under 20 steps; a class heading for a limit (no linear
# signal, or exact interpolation when N < D) creeps there geometrically, hence the generous cap.
_LOGME_MAX_STEPS = 200
_LOGME_TOLERANCE = 1e-11  # change of the evidence per example (nats) that counts as settled
# k of the k-NN score: a small k smooths single mislabelled neighbours away (k=1 does not)
# yet stays local enough for classes of ten-odd examples; one fixed k keeps the values of
# different backbones on the same data comparable.
_KNN_K = 5
_KNN_CHUNK = 1024  # rows of the similarity matrix held at once: 1024 x 5000 floats = 20 MB
# The linear probe: C=0.1 on standardised features is a moderate L2 penalty that keeps a
# probe with D ~ 1000-2000 features and a few hundred examples from memorising the folds,
# and makes lbfgs converge in well under the iteration cap, so the score is fast and stable.
_LINEAR_C = 0.1
_LINEAR_MAX_ITER = 100
_LINEAR_MAX_FOLDS = 5


@dataclass(frozen=True)
class Score:
    name: str
    summary: str            # one line for --help and the report
    paper: str              # the citation (authors, title, venue, year)
    needs_source: bool      # needs the source model's logits on the target data (LEEP, NCE)
    fn: Callable[[np.ndarray, np.ndarray, np.ndarray | None], float]  # higher is better


class ScoreNotApplicable(HeadstartError):
    """This score cannot run on this data (the reason is the message); other scores still can."""


def register_score(name: str, *, summary: str, paper: str, needs_source: bool = False):
    def decorate(fn):
        SCORES.add(name, Score(name, summary, paper, needs_source, _checked(fn, needs_source)))
        return fn
    return decorate


def score_names() -> list[str]:
    return list(SCORES)


def get_score(name: str) -> Score:
    return SCORES.get(name)


def run_scores(features, labels, source_logits=None, names=None, seed: int = 0) -> dict[str, dict]:
    """Every score (or the named ones, in that order) on the same data:
    {name: {"value": float | None, "seconds": float, "skipped": str | None}}."""
    chosen = [get_score(n) for n in (names if names is not None else SCORES)]
    # Bad input is the caller's to fix, so it raises here rather than skipping every score.
    features, labels, source_logits = _validated(features, labels, source_logits)
    results = {}
    for score in chosen:
        start = time.perf_counter()
        value, skipped = None, None
        if score.needs_source and source_logits is None:
            skipped = ("no source head: this score reads the source model's own predictions, and this "
                       "backbone has no classifier (or none was given)")
        else:
            try:
                value = float(score.fn(features, labels, source_logits, seed=seed))
            except ScoreNotApplicable as reason:
                skipped = reason.message
            if value is not None and not np.isfinite(value):
                value, skipped = None, "the score was not finite on this data"
        results[score.name] = {"value": value, "seconds": time.perf_counter() - start, "skipped": skipped}
    return results


# -- input checks ------------------------------------------------------------------------

def _checked(fn, needs_source: bool):
    """fn with its input checked and the labels re-encoded, as every score expects."""
    takes_seed = "seed" in inspect.signature(fn).parameters

    @functools.wraps(fn)
    def checked(features, labels, source_logits=None, *, seed: int = 0) -> float:
        features, labels, source_logits = _validated(features, labels, source_logits)
        if needs_source and source_logits is None:
            raise HeadstartError(f"the score '{fn.__name__}' needs the source model's logits",
                                 hint="pass source_logits (N, S): the source classifier's outputs on the target data")
        extra = {"seed": seed} if takes_seed else {}
        return float(fn(features, labels, source_logits, **extra))
    return checked


def _validated(features, labels, source_logits):
    """Float64 features, labels as 0..K-1 and float64 logits, or a HeadstartError that says why."""
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    if features.ndim != 2 or features.shape[0] == 0 or features.shape[1] == 0:
        raise HeadstartError(f"features must be a non-empty (N, D) matrix, not shape {features.shape}",
                             hint="pass one embedding row per labelled example")
    if labels.ndim != 1 or len(labels) != len(features):
        raise HeadstartError(f"{len(features)} feature rows but labels of shape {labels.shape}",
                             hint="pass one label per feature row")
    if not np.isfinite(features).all():
        raise HeadstartError("the features contain NaN or infinite values",
                             hint="check the backbone's output (half precision overflow?) or the input data")
    labels = _encode_labels(labels)
    if labels.max() < 1:
        raise HeadstartError("the labels hold a single class: there is nothing to tell apart",
                             hint="rank on data with at least two classes")
    if source_logits is not None:
        source_logits = np.asarray(source_logits, dtype=np.float64)
        if source_logits.ndim != 2 or len(source_logits) != len(features) or source_logits.shape[1] == 0:
            raise HeadstartError(f"source logits of shape {source_logits.shape} do not match {len(features)} examples",
                                 hint="pass (N, S): the source classifier's outputs for each example")
        if not np.isfinite(source_logits).all():
            raise HeadstartError("the source logits contain NaN or infinite values",
                                 hint="check the source model's output")
    return features, labels, source_logits


def _encode_labels(labels: np.ndarray) -> np.ndarray:
    """0..K-1 in order of first appearance: renaming the classes then leaves the encoded labels
    (and so every score, fold split and tie-break) exactly as they were."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # sorted-unique index -> rank of first appearance
    return order[inverse.ravel()].astype(np.int64)


def _one_hot(labels: np.ndarray) -> np.ndarray:
    return np.eye(labels.max() + 1)[labels]


# -- the scores ----------------------------------------------------------------------------

@register_score(
    "logme",
    summary="log marginal evidence of a Bayesian linear model on the features (per class, per example)",
    paper="You, Liu, Wang, Long. LogME: Practical Assessment of Pre-trained Models for Transfer Learning. ICML 2021",
)
def logme(features, labels, source_logits=None) -> float:
    """Mean over classes of the maximised log evidence p(y_k | F, alpha, beta), divided by N.

    Everything runs in the eigenbasis of the smaller Gram matrix (F^T F or F F^T), where the
    posterior mean, its norm, the residual and log|A| are sums over eigenvalues, so each
    fixed-point step costs O(min(N, D) K) after one O(N D min(N, D)) decomposition."""
    n = len(features)
    targets = _one_hot(labels)                               # (N, K): one Bayesian regression per class
    sigma, z2 = _logme_spectrum(features, targets)
    # |y|^2 (= class size, one-hot) minus the part of y inside F's column space: no weights reach it
    outside = np.maximum(targets.sum(axis=0) - z2.sum(axis=0), 0.0)
    if len(sigma) == 0:  # all-zero features: only the noise model is left, at its best beta
        return float(np.mean(n / 2 * (np.log(n / outside) - 1 - np.log(2 * np.pi))) / n)
    # lambda = alpha / beta kept within 1e8 of the eigenvalue range: past it the evidence is at its
    # limit (no fit, or interpolation when N < D) to ~1e-8, where the bare updates run off to inf
    lowest, highest = sigma.min() * 1e-8, sigma.max() * 1e8
    alpha, beta = np.ones(targets.shape[1]), np.ones(targets.shape[1])
    evidence = _logme_evidence(sigma, z2, outside, n, alpha, beta)
    for _ in range(_LOGME_MAX_STEPS):
        alpha, beta = _logme_step(sigma, z2, outside, n, alpha, beta)
        beta = np.minimum(beta, alpha / lowest)
        alpha = np.minimum(alpha, beta * highest)
        previous, evidence = evidence, _logme_evidence(sigma, z2, outside, n, alpha, beta)
        if np.all(np.abs(evidence - previous) < _LOGME_TOLERANCE * n):
            break
    return float(evidence.mean() / n)


def _logme_spectrum(features, targets):
    """The non-negligible eigenvalues sigma (r, 1) of F^T F and the squared coordinates z^2 (r, K)
    of each target on the matching left singular vectors (F = U S V^T, z = U^T y)."""
    n, d = features.shape
    if n >= d:
        sigma, vectors = np.linalg.eigh(features.T @ features)
        projected2 = (vectors.T @ (features.T @ targets)) ** 2   # (s_i z_i)^2
    else:
        sigma, vectors = np.linalg.eigh(features @ features.T)
        projected2 = None
    # directions with a vanishing eigenvalue carry no weight: numerically part of the null space
    keep = sigma > max(sigma.max(), 0.0) * 1e-10
    if projected2 is None:
        z2 = (vectors[:, keep].T @ targets) ** 2
    else:
        z2 = projected2[keep] / sigma[keep, None]
    return sigma[keep, None], z2


def _logme_step(sigma, z2, outside, n, alpha, beta):
    """One fixed-point update (You et al., Algorithm 1): alpha = gamma / |m|^2,
    beta = (N - gamma) / |F m - y|^2, with m = beta A^-1 F^T y, A = alpha I + beta F^T F.
    Every sum below has positive terms only, so no cancellation creeps in near the limits."""
    shrink = alpha + beta * sigma                            # (r, K), eigenvalues of A
    gamma = (beta * sigma / shrink).sum(axis=0)              # effective number of weights
    n_minus_gamma = (n - len(sigma)) + (alpha / shrink).sum(axis=0)
    m2 = (beta ** 2 * sigma * z2 / shrink ** 2).sum(axis=0)
    residual = outside + (z2 * alpha ** 2 / shrink ** 2).sum(axis=0)
    with np.errstate(divide="ignore"):                       # m = 0: alpha -> inf, clamped by the caller
        return gamma / m2, n_minus_gamma / residual


def _logme_evidence(sigma, z2, outside, n, alpha, beta):
    """log p(y | F, alpha, beta) per class: N/2 log beta + D/2 log alpha - N/2 log 2 pi
    - beta/2 |F m - y|^2 - alpha/2 |m|^2 - 1/2 log|A|, where the D/2 log alpha and the
    (D - r) null-space eigenvalues of A cancel to -1/2 sum_i log(1 + beta sigma_i / alpha)."""
    shrink = alpha + beta * sigma
    m2 = (beta ** 2 * sigma * z2 / shrink ** 2).sum(axis=0)
    residual = outside + (z2 * alpha ** 2 / shrink ** 2).sum(axis=0)
    return (n / 2 * np.log(beta) - n / 2 * np.log(2 * np.pi) - beta / 2 * residual - alpha / 2 * m2
            - np.log1p(beta * sigma / alpha).sum(axis=0) / 2)


@register_score(
    "hscore",
    summary="H-score: between-class over total feature covariance, Ledoit-Wolf shrunk",
    paper="Bao et al. An Information-theoretic Approach to Transferability in Task Transfer Learning. ICIP 2019; "
          "shrinkage: Ibrahim, Ponomareva, Mazumder. Newer is not always better: Rethinking transferability "
          "metrics, their peculiarities, stability and performance. ECML-PKDD 2022",
)
def hscore(features, labels, source_logits=None) -> float:
    return h_score(features, labels, shrinkage=True)


def h_score(features: np.ndarray, labels: np.ndarray, shrinkage: bool = True) -> float:
    """tr(cov(f)^-1 cov(E[f|y])), labels in 0..K-1.

    With shrinkage (Ibrahim et al.), cov(f) is the Ledoit-Wolf estimate (1-a) S + a mu I and the
    between-class covariance is scaled by the same (1-a); without it, the plain H-score with a
    pseudo-inverse (Bao et al.), which is unstable once D nears N. Both covariances use 1/N."""
    centred = features - features.mean(axis=0)
    counts = np.bincount(labels)
    means = _one_hot(labels).T @ centred / counts[:, None]  # (K, D) centred class means
    weighted = means * np.sqrt(counts / len(features))[:, None]  # between = weighted^T weighted
    if shrinkage and len(features) < features.shape[1]:
        return shrunk_h_score_low_rank(centred, weighted)
    if shrinkage:
        from sklearn.covariance import LedoitWolf

        # store_precision=False: sklearn would otherwise pseudo-invert the D x D matrix, the
        # slowest step by far, only for us to solve against it again below
        estimate = LedoitWolf(store_precision=False, assume_centered=True).fit(centred)
        # tr(C^-1 W^T W) = tr(W C^-1 W^T): solve for K right-hand sides instead of inverting C
        solved, keep = solve_symmetric(estimate.covariance_, weighted.T), 1.0 - estimate.shrinkage_
    else:
        # the sample covariance is singular once D >= N: Bao et al.'s pseudo-inverse
        solved, keep = np.linalg.pinv(centred.T @ centred / len(features), hermitian=True) @ weighted.T, 1.0
    return float(keep * np.sum(weighted.T * solved))


@register_score(
    "nce",
    summary="negative conditional entropy of the target label given the source model's predicted label",
    paper="Tran, Nguyen, Hassner. Transferability and Hardness of Supervised Classification Tasks. ICCV 2019",
    needs_source=True,
)
def nce(features, labels, source_logits) -> float:
    """-H(Y | Z) in nats, Z = argmax of the source logits; 0 when Z determines Y."""
    predicted = source_logits.argmax(axis=1)
    _, z = np.unique(predicted, return_inverse=True)
    joint = np.zeros((z.max() + 1, labels.max() + 1))
    np.add.at(joint, (z.ravel(), labels), 1.0)
    joint /= len(labels)
    given_z = joint / joint.sum(axis=1, keepdims=True)      # P(y | z); every row has mass
    seen = joint > 0
    return float(np.sum(joint[seen] * np.log(given_z[seen])))


@register_score(
    "leep",
    summary="log expected empirical prediction: the source head's soft labels mapped to the target classes",
    paper="Nguyen, Hassner, Seeger, Archambeau. LEEP: A New Measure to Evaluate Transferability of "
          "Learned Representations. ICML 2020",
    needs_source=True,
)
def leep(features, labels, source_logits) -> float:
    """(1/N) sum_i log sum_z P(y_i | z) theta_z(x_i), theta = softmax of the source logits and
    P(y | z) the empirical conditional from the joint (1/N) sum_{i: y_i = y} theta_z(x_i)."""
    log_theta = log_softmax(source_logits, axis=1)           # (N, S)
    theta = np.exp(log_theta)
    joint = _one_hot(labels).T @ theta / len(labels)         # (K, S)
    marginal = joint.sum(axis=0)                             # P(z)
    with np.errstate(divide="ignore"):
        # log P(y | z); a source class no example predicts (P(z) = 0 after underflow) adds nothing
        log_given_z = np.where(joint > 0, np.log(joint) - np.log(np.where(marginal > 0, marginal, 1.0)), -np.inf)
    per_example = logsumexp(log_given_z[labels] + log_theta, axis=1)
    return float(per_example.mean())


@register_score(
    "knn",
    summary=f"leave-one-out {_KNN_K}-nearest-neighbour accuracy on cosine similarity",
    paper="Cover, Hart. Nearest Neighbor Pattern Classification. IEEE Trans. Information Theory 1967 "
          "(as a transferability baseline: Kornblith, Shlens, Le. Do Better ImageNet Models Transfer Better? CVPR 2019)",
)
def knn(features, labels, source_logits=None) -> float:
    return float(np.mean(knn_predictions(features, labels) == labels))


def knn_predictions(features: np.ndarray, labels: np.ndarray, k: int = _KNN_K, chunk: int = _KNN_CHUNK) -> np.ndarray:
    """Each example's class by a vote of its k most cosine-similar *other* examples.

    A tied vote goes to the class whose voters are more similar in sum: similarities add at
    most 1/2 to a count (|sum| <= count <= k, divided by 2k), so they never outweigh a vote."""
    k = min(k, len(features) - 1)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    unit = (features / np.maximum(norms, 1e-12)).astype(np.float32)  # float32: twice the matmul speed
    n_classes = labels.max() + 1
    predicted = np.empty(len(features), dtype=np.int64)
    for start in range(0, len(unit), chunk):
        rows = np.arange(start, min(start + chunk, len(unit)))
        similarity = unit[rows] @ unit.T                     # (chunk, N)
        similarity[np.arange(len(rows)), rows] = -np.inf     # leave the example itself out
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        near_sim = np.take_along_axis(similarity, nearest, axis=1).astype(np.float64)
        votes = np.zeros((len(rows), n_classes))
        row_index = np.repeat(np.arange(len(rows)), k)
        np.add.at(votes, (row_index, labels[nearest].ravel()), 1.0 + near_sim.ravel() / (2 * k))
        predicted[rows] = votes.argmax(axis=1)
    return predicted


@register_score(
    "linear",
    summary="cross-validated accuracy of a logistic-regression probe on standardised features",
    paper="Kornblith, Shlens, Le. Do Better ImageNet Models Transfer Better? CVPR 2019 (the linear-probe protocol)",
)
def linear(features, labels, source_logits=None, *, seed: int = 0) -> float:
    """Pooled out-of-fold accuracy of multinomial logistic regression (lbfgs), StratifiedKFold
    with up to 5 folds; the scaler is fitted inside each fold so no fold sees its test rows."""
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

    smallest = int(np.bincount(labels).min())
    if smallest < 2:
        raise ScoreNotApplicable("a class has only 1 example: cross-validation needs at least 2 per class",
                                 hint="label at least two examples of every class")
    folds = StratifiedKFold(n_splits=min(_LINEAR_MAX_FOLDS, smallest), shuffle=True, random_state=seed)
    # One BLAS thread: lbfgs multiplies skinny matrices a few dozen times per fold, and two
    # threads that spin-wait on a busy 2-core machine made it 20-40x slower (measured).
    with threadpool_limits(limits=1, user_api="blas"):
        correct = sum(_probe_fold(features, labels, train, test) for train, test in folds.split(features, labels))
    return correct / len(labels)


def _probe_fold(features, labels, train, test) -> int:
    """How many of the fold's test rows a probe fitted on its train rows gets right."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(features[train])
    probe = LogisticRegression(C=_LINEAR_C, max_iter=_LINEAR_MAX_ITER)
    with warnings.catch_warnings():
        # a probe stopped at the cap is still a fair estimate, and the cap is what keeps it fast
        warnings.simplefilter("ignore", ConvergenceWarning)
        probe.fit(scaler.transform(features[train]), labels[train])
    return int(np.sum(probe.predict(scaler.transform(features[test])) == labels[test]))
