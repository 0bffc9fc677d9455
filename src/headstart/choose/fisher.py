"""The algebra of the Fisher-space scores SFDA and NCTI (registered in choose/scores.py), both a
shrunk linear discriminant on the target features (the within-class scatter regularised
towards its mean eigenvalue).

Both are written from their papers and checked against the authors' released code, whose
choices we follow where the paper leaves room (each is named below). All the algebra runs in
centred coordinates inside the span of the data: class means and every point differ from
the global mean by a vector in that span, the within-class scatter has its range there, and a
discriminant's softmax over classes does not move with the global mean, so the posteriors are
exactly those in the full D dimensions at O(N^2 D) instead of O(D^3) when N < D.
"""
from __future__ import annotations

import numpy as np
from scipy.linalg import cho_factor, cho_solve, eigh
from scipy.sparse.linalg import eigsh
from scipy.special import softmax

# SFDA's shrinkage exp(-a * largest within-class eigenvalue) with a = 5, floored at 1e-10
# (Shao et al., Sec. 3.2; the released code's constants).
_SFDA_SHRINK_RATE = 5.0
_SHRINK_FLOOR = 1e-10
# NCTI reduces the features to 64 principal components and sets its shrinkage from the
# variance of the first 32 (the released code; the paper states PCA without the numbers).
_NCTI_COMPONENTS = 64
_NCTI_SHRINK_COMPONENTS = 32
_RANK_TOLERANCE = 1e-10  # singular values below this share of the largest span no direction


def sfda_score(features: np.ndarray, labels: np.ndarray) -> float:
    """Shao et al.: (1) project onto the Fisher space of the regularised scatters, S_W + lambda
    shrunk towards its mean eigenvalue with lambda = exp(-5 sigma_max(S_W)), and classify there
    by a Bayes rule with Gaussian classes; (2) self-challenge: ConfMix moves each example
    towards the mean of the *other* classes' means in proportion to how unsure (1) was of its
    class, x~ = p x + (1 - p) mu_{-y}; (3) the score is the mean posterior of the true class in
    the Fisher space of the mixed features (same lambda).

    As the released code: p is the posterior softened once more by a softmax (so the mixing
    stays gentle even for confident examples), the Fisher space keeps every component (the
    leading K-1 carry the between-class part; the rest break ties of the shrunk estimate),
    and the score is the mean probability rather than its log ("in case of instability")."""
    points, _ = _principal_coordinates(features)     # the data's span: exact, and r <= min(N, D)
    dims = features.shape[1]
    counts = np.bincount(labels)
    shrinkage = max(float(np.exp(-_SFDA_SHRINK_RATE * _largest_eigenvalue(_within_scatter(points, labels, counts)))),
                    _SHRINK_FLOOR)
    posteriors = _posteriors(points, labels, shrinkage, dims)
    confidence = softmax(posteriors, axis=1)[np.arange(len(labels)), labels][:, None]
    means = _class_means(points, labels, counts)
    others = (means.sum(axis=0) - means) / (len(means) - 1)  # each class's mean of the other means
    mixed = confidence * points + (1.0 - confidence) * others[labels]
    posteriors = _posteriors(mixed - mixed.mean(axis=0), labels, shrinkage, dims)
    return float(posteriors[np.arange(len(labels)), labels].mean())


def ncti_terms(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Wang et al.'s three terms, returned raw: [S_seli, S_ncc, S_vc]. NCTI is their sum after
    each is min-max normalised across the candidate models, S_seli + S_ncc - S_vc
    (scores.combine_relative), so one model's value depends on which others are ranked.

    On the first 64 principal components, a shrunk LDA (lambda = exp(-sum of the first 32
    components' variances), floored at 1e-10, as the scikit-learn eigen solver the authors call):
    - S_seli, closeness to the simplex-ETF/SELI geometry: the nuclear norm of the centred
      features projected onto the K-1 discriminant directions (a fuller rank is closer);
    - S_ncc, the nearest-class-centre classifier: the mean posterior of the true class;
    - S_vc, within-class variability: log sum_c ||Z_c||_*, Z_c the posteriors of class c's
      examples (the paper's class-wise logits); collapsed classes have rank-one Z_c, so lower
      is better, hence its weight -1."""
    points, variances = _principal_coordinates(features)
    points = points[:, :_NCTI_COMPONENTS]
    shrinkage = max(float(np.exp(-variances[:_NCTI_SHRINK_COMPONENTS].sum())), _SHRINK_FLOOR)
    posteriors = _posteriors(points, labels, shrinkage, points.shape[1])
    discriminant = _discriminant_projection(points, labels, shrinkage, points.shape[1])
    discriminant = discriminant - discriminant.mean(axis=0)
    seli = float(np.linalg.svd(discriminant, compute_uv=False).sum())
    ncc = float(posteriors[np.arange(len(labels)), labels].mean())
    spread = sum(np.linalg.svd(posteriors[labels == c], compute_uv=False).sum() for c in range(labels.max() + 1))
    return np.array([seli, ncc, np.log(spread)])


# -- the shared algebra ------------------------------------------------------------------------

def _posteriors(points, labels, shrinkage: float, dims: int) -> np.ndarray:
    """The Bayes posteriors (N, K) of a shrunk LDA on centred `points`: every class a Gaussian
    with the shared covariance S_W, shrunk as (1 - l) S_W + l tr(S_W)/dims I, `dims` the original
    feature count (the trace is the same in the data's span; the identity's share is per original
    dimension), as SFDA's code and scikit-learn's eigen-solver LDA shrink it.

    In the Fisher space of every component (directions V with S_B v = e S_W v, V^T S_W V = I)
    each class is a unit Gaussian, and the posterior is a softmax of z.m_k - |m_k|^2/2 + log
    prior_k; since V V^T = S_W^-1 that is x^T S_W^-1 mu_k - mu_k^T S_W^-1 mu_k / 2 + log prior_k,
    which a Cholesky solve gives at a sixth of the generalised eigenproblem's cost."""
    counts = np.bincount(labels)
    within = _shrunk(_within_scatter(points, labels, counts), shrinkage, dims)
    means = _class_means(points, labels, counts)
    solved = cho_solve(cho_factor(within), means.T)                    # S_W^-1 mu_k, (r, K)
    logits = points @ solved - 0.5 * np.sum(means.T * solved, axis=0) + np.log(counts / len(points))
    return softmax(logits, axis=1)


def _discriminant_projection(points, labels, shrinkage: float, dims: int) -> np.ndarray:
    """`points` projected onto the K-1 leading Fisher directions (S_B v = e S_W v with S_B =
    S_T - S_W, both shrunk as in _posteriors; V^T S_W V = I), most discriminative first."""
    counts = np.bincount(labels)
    within = _shrunk(_within_scatter(points, labels, counts), shrinkage, dims)
    total = _shrunk(points.T @ points / len(points), shrinkage, dims)  # points are centred
    keep = min(len(counts) - 1, points.shape[1])
    values, vectors = eigh(total - within, within, subset_by_index=[points.shape[1] - keep, points.shape[1] - 1])
    return points @ vectors[:, np.argsort(values)[::-1]]


def _largest_eigenvalue(symmetric: np.ndarray) -> float:
    """Lanczos for the one eigenvalue SFDA's shrinkage needs (a full decomposition is O(r^3))."""
    if len(symmetric) < 3:
        return float(np.linalg.eigvalsh(symmetric)[-1])
    return float(eigsh(symmetric, k=1, which="LA", return_eigenvectors=False)[0])


def _shrunk(scatter: np.ndarray, shrinkage: float, dims: int) -> np.ndarray:
    shrunk = (1.0 - shrinkage) * scatter
    trace = np.trace(scatter)
    shrunk[np.diag_indices_from(shrunk)] += shrinkage * trace / dims
    # classes collapsed to points (S_W = 0) or all-equal features: a ridge far below any real
    # scatter keeps the matrix invertible and changes nothing else
    shrunk[np.diag_indices_from(shrunk)] += _RANK_TOLERANCE ** 2 * trace / dims if trace > 0 else 1.0
    return shrunk


def _within_scatter(points, labels, counts) -> np.ndarray:
    """sum_k prior_k cov_k (each covariance over its class, divided by its size) = (1/N) sum of
    the outer products of each example's offset from its class mean."""
    offsets = points - _class_means(points, labels, counts)[labels]
    return offsets.T @ offsets / len(points)


def _class_means(points, labels, counts) -> np.ndarray:
    sums = np.zeros((len(counts), points.shape[1]))
    np.add.at(sums, labels, points)
    return sums / counts[:, None]


def _principal_coordinates(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The centred features in their principal axes (N, r), largest variance first, r the
    data's rank (<= min(N - 1, D)), and each axis's variance (ddof 1, as scikit-learn's
    PCA.explained_variance_). From the smaller of the D x D and N x N Gram matrices."""
    centred = features - features.mean(axis=0)
    n, d = centred.shape
    if n > d:
        values, vectors = np.linalg.eigh(centred.T @ centred)
    else:
        values, vectors = np.linalg.eigh(centred @ centred.T)
    order = np.argsort(values)[::-1]
    values, vectors = np.maximum(values[order], 0.0), vectors[:, order]
    keep = values > values.max(initial=0.0) * _RANK_TOLERANCE ** 2
    if not keep.any():  # identical features: one flat axis, where no class differs
        return np.zeros((n, 1)), np.zeros(1)
    values, vectors = values[keep], vectors[:, keep]
    scores = centred @ vectors if n > d else vectors * np.sqrt(values)
    return scores, values / max(n - 1, 1)
