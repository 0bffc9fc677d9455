"""Active-learning queries: which unlabelled items to label next, ranked from their embeddings.

Each query is registered by name and takes one `QueryInput`: the labelled items' features
and labels, the pool's features, and a classifier over those features (scikit-activeml's
SklearnClassifier, already fitted). The queries themselves are scikit-activeml's; this module
only gives them one calling convention, so `select`, `simulate-al` and the tests treat every
method alike:

    @register_query("margin", summary="...")
    def margin(given: QueryInput, k: int) -> tuple[np.ndarray, np.ndarray]:  # pool indices, scores

Scores are the method's utility for each chosen item at the step it was chosen (higher is
more worth labelling); indices point into the pool, best first.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import HeadstartError
from ..registry import Registry

QUERIES: Registry["Query"] = Registry("selection method")


@dataclass(frozen=True)
class Query:
    name: str
    run: callable
    summary: str
    uses_model: bool  # needs the classifier's probabilities (uncertainty, BADGE)


@dataclass
class QueryInput:
    labelled: np.ndarray         # (n, D) features of the labelled items (may be empty)
    labels: np.ndarray           # (n,) their class indices
    pool: np.ndarray             # (m, D) features of the unlabelled items
    classifier: object | None    # a fitted scikit-activeml classifier over the same features
    seed: int = 0

    def stacked(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """scikit-activeml's form: X = labelled then pool, y with NaN for unlabelled, and the
        pool's rows as the candidates."""
        x = np.concatenate([self.labelled.reshape(-1, self.pool.shape[1]), self.pool]).astype(np.float64)
        y = np.concatenate([self.labels.astype(np.float64), np.full(len(self.pool), np.nan)])
        return x, y, np.arange(len(self.labelled), len(x))


def register_query(name: str, *, summary: str, uses_model: bool = False):
    def decorate(fn):
        QUERIES.add(name, Query(name, fn, summary, uses_model))
        return fn
    return decorate


def query_names() -> list[str]:
    return list(QUERIES)


def get_query(name: str) -> Query:
    return QUERIES.get(name)


def run_query(name: str, given: QueryInput, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k pool items `name` picks (pool indices, best first) and their scores."""
    query = get_query(name)
    if len(given.pool) == 0:
        raise HeadstartError("the pool is empty: there is nothing to select",
                             hint="pass a folder of images or a file of texts that are not yet labelled")
    if k > len(given.pool):
        raise HeadstartError(f"--k {k} is more than the {len(given.pool)} item(s) in the pool",
                             hint=f"ask for at most --k {len(given.pool)}")
    if k < 1:
        raise HeadstartError(f"--k must be at least 1, got {k}")
    if query.uses_model and given.classifier is None:
        raise HeadstartError(f"{name} needs a classifier's probabilities over the pool")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-activeml warns about NaN labels by design
        chosen, scores = query.run(given, k)
    return np.asarray(chosen, dtype=np.int64), np.asarray(scores, dtype=np.float64)


def _chosen(indices, utilities, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-activeml's batch answer -> (pool indices, each one's utility when it was picked)."""
    indices = np.asarray(indices, dtype=np.int64)
    scores = np.array([utilities[j, i] for j, i in enumerate(indices)], dtype=np.float64)
    return indices - offset, scores


def _uncertainty(method: str):
    def run(given: QueryInput, k: int):
        from skactiveml.pool import UncertaintySampling

        x, y, candidates = given.stacked()
        indices, utilities = UncertaintySampling(method=method, random_state=given.seed).query(
            x, y, given.classifier, fit_clf=False, candidates=candidates, batch_size=k, return_utilities=True)
        return _chosen(indices, utilities, len(given.labelled))
    return run


register_query("margin", uses_model=True,
               summary="smallest gap between the two most probable classes (the most ambiguous items)")(
    _uncertainty("margin_sampling"))
register_query("entropy", uses_model=True,
               summary="highest entropy of the predicted class probabilities")(_uncertainty("entropy"))
register_query("least-confidence", uses_model=True,
               summary="lowest probability of the predicted class")(_uncertainty("least_confident"))


@register_query("coreset", summary="greedy k-centre: the items farthest from everything labelled or chosen, "
                                   "so the picks cover the embedding space")
def coreset(given: QueryInput, k: int):
    from skactiveml.pool import CoreSet

    x, y, candidates = given.stacked()
    indices, utilities = CoreSet(random_state=given.seed).query(x, y, candidates=candidates, batch_size=k,
                                                               return_utilities=True)
    return _chosen(indices, utilities, len(given.labelled))


@register_query("badge", uses_model=True,
                summary="k-means++ seeding over gradient embeddings: uncertain and diverse at once")
def badge(given: QueryInput, k: int):
    from skactiveml.pool import Badge

    x, y, candidates = given.stacked()
    indices, utilities = Badge(random_state=given.seed).query(x, y, given.classifier, fit_clf=False,
                                                             candidates=candidates, batch_size=k,
                                                             return_utilities=True)
    return _chosen(indices, utilities, len(given.labelled))


@register_query("typiclust", summary="the most typical item of each of the largest clusters that hold no "
                                     "labelled item (made for very few labels)")
def typiclust(given: QueryInput, k: int):
    from skactiveml.pool import TypiClust

    x, y, candidates = given.stacked()
    # the clustering is k-means over labelled + chosen: n_init pinned for speed and determinism
    indices, utilities = TypiClust(random_state=given.seed, cluster_algo_dict={"n_init": 1}).query(
        x, y, candidates=candidates, batch_size=k, return_utilities=True)
    return _chosen(indices, utilities, len(given.labelled))


@register_query("random", summary="uniformly at random: the baseline every method must beat")
def random(given: QueryInput, k: int):
    rng = np.random.default_rng(given.seed)
    indices = rng.choice(len(given.pool), size=k, replace=False)
    return indices, np.zeros(k)
