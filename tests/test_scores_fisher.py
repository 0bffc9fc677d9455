"""SFDA, NCTI and the model-size prior: hand-computed cases, a slow dense SFDA written the way
the paper's code computes it (full D, uncentred, generalised eigenproblem) to check the fast
one against, and how a relative score's values come out of its terms across candidates."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.linalg import eigh
from scipy.special import softmax

from headstart.choose.scores import combine_relative, combine_terms
from headstart.choose.scores import get_score, run_scores


def _blobs(seed: int, n_per_class: int, classes: int, dims: int, spread: float):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n_per_class)
    features = rng.normal(size=(len(labels), dims)) + spread * rng.normal(size=(classes, dims))[labels] + 2.0
    return features, labels


# -- SFDA --------------------------------------------------------------------------------------

def _dense_posteriors(x, labels, shrinkage):
    """Shrunk LDA in the full feature space, as the SFDA code writes it: S_W and S_T shrunk
    towards their mean eigenvalue, V from S_B v = e S_W v, coefficients means V V^T."""
    n, d = x.shape
    counts = np.bincount(labels)
    means = np.stack([x[labels == k].mean(axis=0) for k in range(len(counts))])
    within = sum(counts[k] / n * np.cov(x[labels == k].T, bias=True) for k in range(len(counts)))
    total = np.cov(x.T, bias=True)
    shrink = lambda s: (1 - shrinkage) * s + shrinkage * np.trace(s) / d * np.eye(d)  # noqa: E731
    values, vectors = eigh(shrink(total) - shrink(within), shrink(within))
    coef = means @ vectors @ vectors.T
    return softmax(x @ coef.T - 0.5 * np.sum(means * coef, axis=1) + np.log(counts / n), axis=1), within


def _dense_sfda(x, labels):
    x = x.copy()
    posteriors, within = _dense_posteriors(x, labels, 0.0)
    shrinkage = max(math.exp(-5 * np.linalg.eigvalsh(within)[-1]), 1e-10)
    posteriors, _ = _dense_posteriors(x, labels, shrinkage)
    soft = softmax(posteriors, axis=1)
    means = np.stack([x[labels == k].mean(axis=0) for k in range(labels.max() + 1)])
    for k in range(labels.max() + 1):
        others = np.delete(means, k, axis=0).mean(axis=0)
        p = soft[labels == k, k][:, None]
        x[labels == k] = p * x[labels == k] + (1 - p) * others
    posteriors, _ = _dense_posteriors(x, labels, shrinkage)
    return posteriors[np.arange(len(labels)), labels].mean()


@pytest.mark.parametrize("n_per_class, dims, spread", [(40, 6, 1.0), (30, 10, 0.3), (60, 4, 0.1)])
def test_sfda_agrees_with_the_dense_computation(n_per_class, dims, spread):
    features, labels = _blobs(1, n_per_class, 3, dims, spread)
    features *= 0.2  # a scale where the shrinkage exp(-5 sigma_max) is far from its floor
    assert get_score("sfda").fn(features, labels) == pytest.approx(_dense_sfda(features, labels), rel=1e-7)


def test_sfda_with_equal_class_means_is_the_sum_of_squared_priors():
    """Class means that coincide leave the Bayes rule nothing but the priors, and ConfMix (which
    pulls each class towards the others' mean, the same point) keeps them coinciding."""
    base = np.random.default_rng(3).normal(size=(8, 3))
    base -= base.mean(axis=0)
    features = np.concatenate([base, base, base, base])  # class 0 holds two copies, 1 and 2 one each
    labels = np.repeat([0, 0, 1, 2], 8)
    assert get_score("sfda").fn(features, labels) == pytest.approx(0.5 ** 2 + 0.25 ** 2 + 0.25 ** 2, rel=1e-9)


def test_sfda_ranks_separated_classes_above_overlapping_ones():
    values = [get_score("sfda").fn(*_blobs(0, 40, 4, 8, spread)) for spread in (3.0, 1.0, 0.3, 0.0)]
    assert values == sorted(values, reverse=True) and values[0] > 0.95 and values[-1] < 0.5, values


# -- NCTI --------------------------------------------------------------------------------------

def test_ncti_terms_on_classes_collapsed_to_points():
    """Every class one point: the nearest-centre posterior is certain (S_ncc = 1) and each class's
    posteriors are one repeated row, so ||Z_c||_* = sqrt(n_c) and S_vc = log sum_c sqrt(n_c)."""
    corners = np.array([[0.0, 0.0, 0.0], [4.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    labels = np.array([0] * 9 + [1] * 4 + [2] * 16)
    features = corners[labels]
    seli, ncc, vc = get_score("ncti").fn(features, labels)
    assert ncc == pytest.approx(1.0, abs=1e-9)
    assert vc == pytest.approx(math.log(3 + 2 + 4), rel=1e-6)
    assert seli > 0


def test_ncti_is_the_normalised_sum_of_its_terms_across_candidates():
    terms = [[10.0, 0.5, 2.0], [30.0, 1.0, 1.0], [20.0, 0.75, 1.5]]
    # seli, ncc min-max to (0, 1, 0.5) each; vc to (1, 0, 0.5), subtracted
    assert combine_terms(terms, (1.0, 1.0, -1.0)) == pytest.approx([-1.0, 2.0, 0.5])
    assert combine_terms([terms[0]], (1.0, 1.0, -1.0)) == pytest.approx([0.0])  # alone: nothing to compare


def test_ncti_prefers_the_better_separated_candidate_and_depends_on_the_others():
    # (not pure noise: its near-uniform posteriors are alike within a class, the lowest S_vc of all)
    candidates = [_blobs(2, 30, 4, 10, spread) for spread in (2.0, 1.2, 0.8)]
    results = [run_scores(f, y, names=["ncti"]) for f, y in candidates]
    assert all(r["ncti"]["value"] == 0.0 and len(r["ncti"]["terms"]) == 3 for r in results)  # alone: 0
    combine_relative(results)
    values = [r["ncti"]["value"] for r in results]
    assert values[0] > values[1] > values[2], values
    pair = [run_scores(f, y, names=["ncti"]) for f, y in candidates[1:]]
    combine_relative(pair)  # without the best candidate, the middle one tops the set
    assert pair[0]["ncti"]["value"] > pair[1]["ncti"]["value"] and pair[0]["ncti"]["value"] != values[1]


# -- the model-size prior ------------------------------------------------------------------------

def test_the_size_prior_reads_the_parameter_count_and_no_feature():
    size = get_score("size").fn
    separated, noise = _blobs(0, 20, 3, 5, 3.0), _blobs(0, 20, 3, 5, 0.0)
    assert size(*separated, model_info={"parameters": 1000}) == pytest.approx(3.0)
    assert size(*noise, model_info={"parameters": 1000}) == size(*separated, model_info={"parameters": 1000})
    assert size(*noise, model_info={"parameters": 5_000_000}) > size(*separated, model_info={"parameters": 4_000_000})
    skipped = run_scores(*separated, names=["size"])["size"]
    assert skipped["value"] is None and "model" in skipped["skipped"]
    unknown = run_scores(*separated, names=["size"], model_info={})["size"]
    assert unknown["value"] is None and "parameter count" in unknown["skipped"]
