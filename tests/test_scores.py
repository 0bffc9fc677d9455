"""The transferability scores: hand-computed cases for each, a slow dense LogME to check the
fast one against, and the properties every registered score must have."""
from __future__ import annotations

import math

import numpy as np
import pytest

from headstart.choose.scores import combine_terms
from headstart.choose.scores import SCORES, ScoreNotApplicable, get_score, h_score, knn_predictions, run_scores
from headstart.errors import HeadstartError


def _task(seed: int = 0, n_per_class: int = 30, classes: int = 3, dims: int = 12, separated: bool = True):
    """Features with class-specific means (or pure noise), source logits that follow the classes
    through a fixed source-class mapping (or pure noise), and the labels."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n_per_class)
    rng.shuffle(labels)
    features = rng.normal(size=(len(labels), dims))
    logits = rng.normal(size=(len(labels), classes + 4))
    if separated:
        features += 3.0 * rng.normal(size=(classes, dims))[labels]
        source_of = rng.permutation(classes + 4)[:classes]  # target class -> the source class it looks like
        logits[np.arange(len(labels)), source_of[labels]] += 4.0
    return features, labels, logits


# -- hand-computed cases ------------------------------------------------------------------

def test_nce_is_zero_when_the_source_label_determines_the_target():
    labels = np.array([0, 0, 1, 1, 2, 2])
    logits = np.eye(5)[[3, 3, 0, 0, 1, 4]]  # class 2 split over two source classes: still determined
    assert get_score("nce").fn(np.zeros((6, 2)) + 1, labels, logits) == pytest.approx(0.0, abs=1e-12)


def test_nce_is_minus_the_label_entropy_when_the_source_label_is_independent():
    # each source class sees labels 0,0,1,2: P(y) = (1/2, 1/4, 1/4), H(Y|Z) = H(Y) = 1.5 ln 2
    labels = np.array([0, 0, 1, 2, 0, 0, 1, 2])
    logits = np.eye(2)[[0, 0, 0, 0, 1, 1, 1, 1]]
    value = get_score("nce").fn(np.ones((8, 3)), labels, logits)
    assert value == pytest.approx(-1.5 * math.log(2))


def test_leep_is_zero_for_confident_source_predictions_that_map_perfectly():
    labels = np.array([0, 1, 2, 0, 1, 2])
    logits = 60.0 * np.eye(4)[[2, 0, 3, 2, 0, 3]]  # softmax is one-hot to within e^-60
    assert get_score("leep").fn(np.ones((6, 2)), labels, logits) == pytest.approx(0.0, abs=1e-12)


def test_leep_on_a_two_example_case_computed_by_hand():
    # theta = (3/4, 1/4) for y=0 and (1/4, 3/4) for y=1: P(y|z) = 3/4 on the diagonal, so each
    # example's expected empirical prediction is 3/4*3/4 + 1/4*1/4 = 5/8
    theta = np.array([[0.75, 0.25], [0.25, 0.75]])
    value = get_score("leep").fn(np.ones((2, 2)), np.array([0, 1]), np.log(theta))
    assert value == pytest.approx(math.log(5 / 8))


def test_hscore_on_one_dimension_by_hand():
    # var = (9+1+1+9)/4 = 5; class means 1 and 5 around 3: between-class variance 4; H = 4/5.
    # In one dimension Ledoit-Wolf's target (mean variance x I) is the variance itself, so
    # shrinkage changes nothing.
    features, labels = np.array([[0.0], [2.0], [4.0], [6.0]]), np.array([0, 0, 1, 1])
    assert h_score(features, labels, shrinkage=False) == pytest.approx(0.8)
    assert get_score("hscore").fn(features, labels) == pytest.approx(0.8)


def test_hscore_on_two_dimensions_by_hand_with_and_without_shrinkage():
    from sklearn.covariance import ledoit_wolf_shrinkage

    # dimension 1 carries the classes (variance 5, between 4); dimension 2 is uncorrelated noise
    # with equal class means (variance 1): cov = diag(5, 1), between = diag(4, 0)
    features = np.array([[0.0, 1.0], [2.0, -1.0], [4.0, -1.0], [6.0, 1.0]])
    labels = np.array([0, 0, 1, 1])
    assert h_score(features, labels, shrinkage=False) == pytest.approx(4 / 5)
    # shrunk: (1-a) diag(5, 1) + a * 3 I, between scaled by (1-a)
    a = ledoit_wolf_shrinkage(features - features.mean(axis=0), assume_centered=True)
    assert 0 < a < 1
    assert h_score(features, labels) == pytest.approx((1 - a) * 4 / ((1 - a) * 5 + a * 3))


def test_knn_on_points_whose_neighbours_are_known():
    # two tight arcs far apart, and one point labelled 1 sitting inside the arc of class 0:
    # every point but that one has a 5-neighbour majority of its own class
    angles = np.radians([0, 5, 10, 15, 20, 25, 90, 95, 100, 105, 110, 115, 12])
    labels = np.array([0] * 6 + [1] * 6 + [1])
    radius = np.linspace(1, 3, len(angles))  # cosine similarity ignores the lengths
    features = radius[:, None] * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    predicted = knn_predictions(features, labels)
    assert (predicted[:-1] == labels[:-1]).all() and predicted[-1] == 0
    assert get_score("knn").fn(features, labels) == pytest.approx(12 / 13)


def test_knn_chunks_agree_with_a_brute_force_vote():
    features, labels, _ = _task(seed=3, separated=False)
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    expected = []
    for row in similarity:
        nearest = np.argsort(-row)[:5]
        votes = np.bincount(labels[nearest], minlength=3) + np.bincount(labels[nearest], weights=row[nearest], minlength=3) / 10
        expected.append(votes.argmax())
    assert (knn_predictions(features, labels, chunk=7) == np.array(expected)).all()


# -- LogME against a slow, dense implementation of the same evidence ------------------------

def _dense_evidence(features, target, alpha, beta):
    """log p(target | F, alpha, beta) from the formula, with A and m formed explicitly."""
    n, d = features.shape
    a = alpha * np.eye(d) + beta * features.T @ features
    m = beta * np.linalg.solve(a, features.T @ target)
    return (n / 2 * np.log(beta) + d / 2 * np.log(alpha) - n / 2 * np.log(2 * np.pi)
            - beta / 2 * np.sum((features @ m - target) ** 2) - alpha / 2 * m @ m - np.linalg.slogdet(a)[1] / 2)


def _dense_logme(features, labels, steps=200):
    """You et al.'s fixed point, with A and m formed explicitly (no eigenbasis)."""
    n, d = features.shape
    eigen = np.linalg.eigvalsh(features.T @ features)
    total = 0.0
    for target in np.eye(labels.max() + 1)[labels].T:
        alpha, beta = 1.0, 1.0
        for _ in range(steps):
            m = beta * np.linalg.solve(alpha * np.eye(d) + beta * features.T @ features, features.T @ target)
            gamma = np.sum(beta * eigen / (alpha + beta * eigen))
            alpha, beta = gamma / (m @ m), (n - gamma) / np.sum((features @ m - target) ** 2)
        total += _dense_evidence(features, target, alpha, beta)
    return total / (labels.max() + 1) / n


def _dense_profile_max(features, labels):
    """max over (alpha, beta) by brute force: for lambda = alpha / beta on a wide log grid the best
    beta is N / (|F m - y|^2 + lambda |m|^2) in closed form, so a 1-D grid covers the plane."""
    n, d = features.shape
    best = []
    for target in np.eye(labels.max() + 1)[labels].T:
        values = []
        for lam in np.logspace(-8, 8, 641):
            m = np.linalg.solve(lam * np.eye(d) + features.T @ features, features.T @ target)
            beta = n / (np.sum((features @ m - target) ** 2) + lam * m @ m)
            values.append(_dense_evidence(features, target, lam * beta, beta))
        best.append(max(values))
    return np.mean(best) / n


def _signal(n, d, strength, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    return rng.normal(size=(n, d)) + strength * np.eye(3, d)[labels], labels


@pytest.mark.parametrize("n, d", [(60, 5), (12, 20)])  # the F^T F branch and the F F^T branch
def test_logme_agrees_with_the_dense_fixed_point(n, d):
    features, labels = _signal(n, d, strength=3.0)
    assert get_score("logme").fn(features, labels) == pytest.approx(_dense_logme(features, labels), rel=1e-7)


@pytest.mark.parametrize("n, d, strength", [(40, 6, 1.0), (40, 6, 0.0), (7, 12, 1.0), (12, 20, 3.0)])
def test_logme_is_the_maximised_evidence(n, d, strength):
    # includes classes whose bare updates run off to a limit: alpha -> inf (no linear signal)
    # and beta -> inf (N < D: the class can be interpolated)
    features, labels = _signal(n, d, strength, seed=n)
    value, best = get_score("logme").fn(features, labels), _dense_profile_max(features, labels)
    assert value == pytest.approx(best, abs=1e-5)
    assert value >= best - 1e-7


def test_logme_without_linear_signal_is_the_noise_only_evidence():
    # features that sum to zero within every class: F^T y = 0, the best weights are none, and
    # the evidence is that of y ~ N(0, I / beta) at beta = N / n_k: N/2 (log(N / n_k) - 1 - log 2 pi)
    rng = np.random.default_rng(2)
    labels = np.array([0] * 6 + [1] * 9 + [2] * 15)
    features = rng.normal(size=(30, 4))
    for k in range(3):
        features[labels == k] -= features[labels == k].mean(axis=0)
    expected = np.mean([(np.log(30 / c) - 1 - np.log(2 * np.pi)) / 2 for c in (6, 9, 15)])
    assert get_score("logme").fn(features, labels) == pytest.approx(expected, rel=1e-6)
    # exactly zero F^T y, where the bare update alpha = gamma / |m|^2 divides by zero
    exact = np.array([[1.0, 2.0], [-1.0, -2.0], [3.0, 0.0], [-3.0, 0.0]])
    expected = (np.log(4 / 2) - 1 - np.log(2 * np.pi)) / 2
    assert get_score("logme").fn(exact, np.array([0, 0, 1, 1])) == pytest.approx(expected, rel=1e-6)


# -- properties of every registered score ---------------------------------------------------

MODEL = {"parameters": 4_000_000}  # what the model-size prior reads (it reads no feature)
FEATURE_SCORES = [name for name in SCORES if not SCORES[name].needs_model]


def _values(name: str, tasks: list[tuple]) -> list[float]:
    """The score of each task as a ranking sees it: a relative score (NCTI) has values only
    across candidates, so the tasks are its candidates, combined as rank combines them."""
    score = get_score(name)
    if score.relative is None:
        return [score.fn(*task, model_info=MODEL) for task in tasks]
    return list(combine_terms([score.fn(*task) for task in tasks], score.relative))


def _raw(name: str, features, labels, logits):
    """The undecorated maths (no re-encoding of the labels)."""
    extra = {"model_info": MODEL} if SCORES[name].needs_model else {}
    return SCORES[name].fn.__wrapped__(features, labels, logits, **extra)


@pytest.mark.parametrize("name", FEATURE_SCORES)
def test_separating_features_outscore_random_ones(name):
    for seed in range(2):
        good, noise = _values(name, [_task(seed=seed, separated=True), _task(seed=seed, separated=False)])
        assert good > noise, (name, seed, good, noise)


@pytest.mark.parametrize("name", list(SCORES))
def test_renaming_the_classes_changes_no_score(name):
    features, labels, logits = _task(seed=5)
    renamed = np.array([7, -2, 3])[labels]  # any ids, not only 0..K-1
    score = get_score(name)
    assert score.fn(features, renamed, logits, model_info=MODEL) == pytest.approx(
        score.fn(features, labels, logits, model_info=MODEL))
    if name != "linear":  # the maths itself, before the order-preserving re-encoding (fold splits aside)
        permuted = np.array([2, 0, 1])[labels]
        assert _raw(name, features, permuted, logits) == pytest.approx(_raw(name, features, labels, logits), rel=1e-9)


@pytest.mark.parametrize("name", list(SCORES))
def test_every_score_says_where_it_comes_from(name):
    score = SCORES[name]
    assert score.name == name and score.summary and "\n" not in score.summary
    assert any(str(year) in score.paper for year in range(1950, 2100))


def test_run_scores_skips_the_source_scores_without_logits_and_times_every_score():
    features, labels, logits = _task(seed=2)
    results = run_scores(features, labels)
    assert list(results) == list(SCORES)
    for name, result in results.items():
        assert result["seconds"] >= 0.0
        if SCORES[name].needs_source:
            assert result["value"] is None and result["skipped"].startswith("no source head")
        elif SCORES[name].needs_model:
            assert result["value"] is None and result["skipped"].startswith("no model description")
        else:
            assert result["skipped"] is None and np.isfinite(result["value"])
    with_logits = run_scores(features, labels, logits, names=["leep", "nce"])
    assert list(with_logits) == ["leep", "nce"] and all(r["skipped"] is None for r in with_logits.values())


def test_a_class_with_one_example_skips_cross_validation_only():
    features, labels, _ = _task(seed=4)
    labels[0] = 9  # a fourth class of one example
    results = run_scores(features, labels)
    assert results["linear"]["value"] is None and "1 example" in results["linear"]["skipped"]
    assert all(results[n]["value"] is not None for n in ("logme", "hscore", "knn"))
    with pytest.raises(ScoreNotApplicable):  # called directly, it says why it cannot run
        get_score("linear").fn(features, labels)


def test_the_linear_probe_is_seeded():
    features, labels, _ = _task(seed=6, separated=False)
    score = get_score("linear").fn
    assert score(features, labels, seed=1) == score(features, labels, seed=1)
    values = {run_scores(features, labels, names=["linear"], seed=s)["linear"]["value"] for s in range(4)}
    assert len(values) > 1  # the seed reaches the fold split


@pytest.mark.parametrize("bad, words", [
    (lambda f, y, s: (np.where(np.arange(f.size).reshape(f.shape) == 5, np.nan, f), y, s), "NaN"),
    (lambda f, y, s: (f, np.zeros_like(y), s), "single class"),
    (lambda f, y, s: (f, y[:-1], s), "labels"),
    (lambda f, y, s: (f[:, 0], y, s), "(N, D)"),
    (lambda f, y, s: (f, y, s[:-2]), "source logits"),
    (lambda f, y, s: (f, y, np.full_like(s, np.inf)), "source logits"),
])
def test_bad_input_is_a_clear_error(bad, words):
    features, labels, logits = _task(seed=0)
    features, labels, logits = bad(features, labels, logits)
    with pytest.raises(HeadstartError, match=words.replace("(", r"\(").replace(")", r"\)")) as raised:
        run_scores(features, labels, logits)
    assert raised.value.hint
    with pytest.raises(HeadstartError, match="NaN" if words == "NaN" else None):
        get_score("leep").fn(features, labels, logits)


def test_unknown_score_names_the_choices():
    with pytest.raises(HeadstartError) as raised:
        get_score("fisher")
    assert all(name in str(raised.value) for name in SCORES)
