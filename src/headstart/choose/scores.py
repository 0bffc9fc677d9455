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
The longer algebra lives beside this module (logme.py, covariance.py, fisher.py).

Two kinds of score do not fit "one candidate's features in, a number out", and say so when
they register:
- needs_model=True: the score reads the candidate model itself (its size), passed as
  `model_info` ({"parameters": int}); without it the score is skipped with that reason.
- relative=WEIGHTS: the score is only defined across a set of candidates (NCTI min-max
  normalises its terms over the candidates ranked together). Its function returns the raw
  terms; `combine_relative` turns every candidate's terms into values, sum_t WEIGHTS[t] *
  (term_t - min) / (max - min). A candidate scored alone, or a term all candidates share,
  contributes 0: the value only means something next to the others'.

A score that cannot run on the data it is given (cross-validation with a one-example class)
raises `ScoreNotApplicable`; `run_scores` reports it as skipped with that reason.
"""
from __future__ import annotations

import functools
import inspect
import math
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.special import log_softmax, logsumexp

from .covariance import shrunk_h_score_low_rank, solve_symmetric
from .fisher import ncti_terms, sfda_score
from .logme import log_evidence
from .score_inputs import validated as _validated
from ..errors import HeadstartError
from ..registry import Registry

SCORES: Registry["Score"] = Registry("transferability score")

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
    fn: Callable[..., float | np.ndarray]  # higher is better; a relative score's returns its terms
    needs_model: bool = False               # reads model_info (the candidate's size), not only features
    relative: tuple[float, ...] | None = None  # the weight of each term across candidates (NCTI)


class ScoreNotApplicable(HeadstartError):
    """This score cannot run on this data (the reason is the message); other scores still can."""


def register_score(name: str, *, summary: str, paper: str, needs_source: bool = False, needs_model: bool = False,
                   relative: tuple[float, ...] | None = None):
    def decorate(fn):
        checked = _checked(fn, needs_source, relative is not None)
        SCORES.add(name, Score(name, summary, paper, needs_source, checked, needs_model, relative))
        return fn
    return decorate


def score_names() -> list[str]:
    return list(SCORES)


def get_score(name: str) -> Score:
    return SCORES.get(name)


def run_scores(features, labels, source_logits=None, names=None, seed: int = 0,
               model_info: dict | None = None) -> dict[str, dict]:
    """Every score (or the named ones, in that order) on the same data:
    {name: {"value": float | None, "seconds": float, "skipped": str | None}}, and "terms" (a
    list) for a relative score, whose value is 0 until `combine_relative` sets it."""
    chosen = [get_score(n) for n in (names if names is not None else SCORES)]
    # Bad input is the caller's to fix, so it raises here rather than skipping every score.
    features, labels, source_logits = _validated(features, labels, source_logits)
    results = {}
    for score in chosen:
        start = time.perf_counter()
        value, terms, skipped = None, None, None
        if score.needs_source and source_logits is None:
            skipped = ("no source head: this score reads the source model's own predictions, and this "
                       "backbone has no classifier (or none was given)")
        elif score.needs_model and model_info is None:
            skipped = "no model description: this score reads the candidate model's size, not its features"
        else:
            try:
                raw = score.fn(features, labels, source_logits, seed=seed, model_info=model_info)
            except ScoreNotApplicable as reason:
                skipped = reason.message
            else:
                if score.relative is not None:
                    terms = [float(t) for t in raw]
                    value = float(combine_terms([terms], score.relative)[0]) if np.all(np.isfinite(terms)) else np.nan
                else:
                    value = float(raw)
            if value is not None and not np.isfinite(value):
                value, terms, skipped = None, None, "the score was not finite on this data"
        results[score.name] = {"value": value, "seconds": time.perf_counter() - start, "skipped": skipped}
        if terms is not None:
            results[score.name]["terms"] = terms
    return results


def combine_terms(terms: list[list[float]], weights: tuple[float, ...]) -> np.ndarray:
    """A relative score's values over candidates: each term min-max normalised across the
    candidates (0 where they all share it), weighted and summed."""
    table = np.asarray(terms, dtype=np.float64).reshape(len(terms), len(weights))
    spread = table.max(axis=0) - table.min(axis=0)
    normalised = np.where(spread > 0, (table - table.min(axis=0)) / np.where(spread > 0, spread, 1.0), 0.0)
    return normalised @ np.asarray(weights, dtype=np.float64)


def combine_relative(candidate_scores: list[dict]) -> None:
    """Set, in place, the value of every relative score from the terms of all the candidates
    given: `candidate_scores` is one {score name: run_scores result} per candidate."""
    for name in dict.fromkeys(n for scores in candidate_scores for n in scores):
        score = SCORES.get(name, None)
        if score is None or score.relative is None:
            continue
        holders = [s[name] for s in candidate_scores if name in s and s[name].get("terms") is not None]
        if holders:
            for result, value in zip(holders, combine_terms([h["terms"] for h in holders], score.relative)):
                result["value"] = float(value)


# -- input checks ------------------------------------------------------------------------

def _checked(fn, needs_source: bool, relative: bool):
    """fn with its input checked and the labels re-encoded, as every score expects."""
    parameters = inspect.signature(fn).parameters
    extras = [p for p in ("seed", "model_info") if p in parameters]

    @functools.wraps(fn)
    def checked(features, labels, source_logits=None, *, seed: int = 0, model_info: dict | None = None):
        features, labels, source_logits = _validated(features, labels, source_logits)
        if needs_source and source_logits is None:
            raise HeadstartError(f"the score '{fn.__name__}' needs the source model's logits",
                                 hint="pass source_logits (N, S): the source classifier's outputs on the target data")
        given = {"seed": seed, "model_info": model_info}
        raw = fn(features, labels, source_logits, **{p: given[p] for p in extras})
        return np.asarray(raw, dtype=np.float64) if relative else float(raw)
    return checked


def _one_hot(labels: np.ndarray) -> np.ndarray:
    return np.eye(labels.max() + 1)[labels]


# -- the scores ----------------------------------------------------------------------------

@register_score(
    "logme",
    summary="log marginal evidence of a Bayesian linear model on the features (per class, per example)",
    paper="You, Liu, Wang, Long. LogME: Practical Assessment of Pre-trained Models for Transfer Learning. ICML 2021",
)
def logme(features, labels, source_logits=None) -> float:
    """Mean over classes of the maximised log evidence p(y_k | F, alpha, beta), divided by N
    (choose/logme.py: one Bayesian regression per one-hot class column)."""
    return log_evidence(features, _one_hot(labels))


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


@register_score(
    "sfda",
    summary="self-challenging Fisher discriminant: a shrunk LDA's mean posterior of the true class after ConfMix",
    paper="Shao, Zhao, Ge, Zhang, Yang, Wang, Shan, Luo. Not All Models Are Equal: Predicting Model "
          "Transferability in a Self-challenging Fisher Space. ECCV 2022",
)
def sfda(features, labels, source_logits=None) -> float:
    return sfda_score(features, labels)  # choose/fisher.py


@register_score(
    "ncti",
    summary="neural-collapse index: Fisher-space rank, nearest-centre posterior, within-class collapse "
            "(relative: min-max over the candidates ranked together)",
    paper="Wang, Luo, Zheng, Huang, Baktashmotlagh. How Far Pre-trained Models Are from Neural Collapse on the "
          "Target Dataset Informs their Transferability. ICCV 2023",
    relative=(1.0, 1.0, -1.0),  # S_seli + S_ncc - S_vc
)
def ncti(features, labels, source_logits=None) -> np.ndarray:
    return ncti_terms(features, labels)  # choose/fisher.py


@register_score(
    "size",
    summary="model-size prior: log10 of the candidate's parameter count (reads no feature)",
    paper="Singh, Hess, Vanschoren. How NOT to benchmark your SITE metric: Beyond Static Leaderboards and Towards "
          "Realistic Evaluation. ICLR 2026; Kornblith, Shlens, Le. Do Better ImageNet Models Transfer Better? CVPR 2019",
    needs_model=True,
)
def size_prior(features, labels, source_logits=None, *, model_info=None) -> float:
    """"The bigger model wins": a baseline any score must beat to be worth its seconds (a static
    list by size beat LogME on the standard zoo, 0.91 vs 0.57 weighted tau, Singh et al.). It
    counts the parameters that compute the features: a layer candidate's model stops at its layer."""
    parameters = (model_info or {}).get("parameters")
    if not parameters or parameters <= 0:
        raise ScoreNotApplicable("the candidate's parameter count is unknown", hint="pass model_info={'parameters': N}")
    return math.log10(parameters)
