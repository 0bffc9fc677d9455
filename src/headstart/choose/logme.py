"""LogME's algebra (You et al., ICML 2021) for the `logme` score in choose/scores.py: the
evidence of a Bayesian linear regression per class, maximised over its two precisions by the
paper's fixed point, all in the eigenbasis of the smaller Gram matrix."""
from __future__ import annotations

import numpy as np

# LogME's fixed point usually settles in under 20 steps; a class heading for a limit (no linear
# signal, or exact interpolation when N < D) creeps there geometrically, hence the generous cap.
_LOGME_MAX_STEPS = 200
_LOGME_TOLERANCE = 1e-11  # change of the evidence per example (nats) that counts as settled


def log_evidence(features: np.ndarray, targets: np.ndarray) -> float:
    """Mean over the target columns (one-hot classes) of the maximised log evidence
    p(y_k | F, alpha, beta), divided by N.

    Everything runs in the eigenbasis of the smaller Gram matrix (F^T F or F F^T), where the
    posterior mean, its norm, the residual and log|A| are sums over eigenvalues, so each
    fixed-point step costs O(min(N, D) K) after one O(N D min(N, D)) decomposition."""
    n = len(features)
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
