"""Learning curves with their uncertainty: where an arm of `--strategy auto`'s race would end.

An arm's validation points (accuracy against its own cost: seconds of training, or training
examples for a probe cut short) are fitted with an inverse power law,

    accuracy(x) = a - b * x ** -c      (a <= 1, b >= 0, c in CURVE_EXPONENTS)

the shape learning curves take over data and over training time alike (Hestness et al. 2017,
"Deep learning scaling is predictable"; Domhan et al. 2015 extrapolate curves to stop bad runs).
For each exponent on a grid, a and b are a weighted linear least-squares fit; the exponent with
the least error wins. The uncertainty is the validation set's own noise: each point is a
binomial proportion over n_val examples, so the points are redrawn from it (a parametric
bootstrap), refitted and projected again; the band is the 10th to 90th percentile of those
projections, never narrower than one binomial standard error of the projected value. A curve
of fewer than MIN_POINTS points, or one still at its start, says little: its optimistic end is
1.0 (an arm is never dropped on no evidence) and its pessimistic end its best point less the noise.
A finished arm (a probe that saw all its data, TF-IDF, a loop that stopped) gains nothing more:
its projection is its best point, its band that point's noise. An unfinished arm keeps its best
state, so its projection never falls below its best point, nor its band below that point's (a fit
through noisy points once put a scratch arm's optimistic end at 0.806 after it had read 0.82).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CURVE_EXPONENTS = np.geomspace(0.1, 2.0, 16)
MIN_POINTS = 3
BOOTSTRAP = 200
BAND = (10, 90)  # percentiles of the bootstrap's projections


@dataclass(frozen=True)
class Projection:
    """An arm's validation accuracy at the end of the budget: its central value and its band."""

    mid: float
    low: float
    high: float
    basis: str  # how it was made: "curve", "too few points", "finished"

    def to_dict(self) -> dict:
        return {"mid": round(self.mid, 4), "low": round(self.low, 4), "high": round(self.high, 4),
                "basis": self.basis}


def binomial_sd(accuracy: float, n_val: int) -> float:
    """The standard error of an accuracy read on n_val examples."""
    p = min(max(accuracy, 0.0), 1.0)
    return math.sqrt(max(p * (1 - p), 0.25 / max(n_val, 1)) / max(n_val, 1))


def fit_power_law(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, float, float]:
    """(a, b, c) of accuracy = a - b * x**-c fitting the points best (x > 0)."""
    a, b, c = fit_power_laws(x, np.asarray(y, dtype=float)[None, :], weights)
    return float(a[0]), float(b[0]), float(c[0])


def fit_power_laws(x: np.ndarray, ys: np.ndarray, weights: np.ndarray | None = None):
    """The fit for every row of ys (curves over the same x) at once: arrays a, b, c. For each
    exponent a and b are a weighted linear regression of y on -x**-c; a falling fit (b < 0)
    reads as flat (an arm keeps its best state), a <= 1."""
    w = np.ones(ys.shape[1]) if weights is None else np.asarray(weights, dtype=float)
    w = w / w.sum()
    z = -(x[None, :] ** -CURVE_EXPONENTS[:, None])                  # (C, n)
    z_mean, y_mean = z @ w, ys @ w                                   # (C,), (B,)
    zc = z - z_mean[:, None]
    slope = ((ys - y_mean[:, None]) * w) @ zc.T / np.maximum((zc ** 2) @ w, 1e-12)   # (B, C)
    b = np.maximum(slope, 0.0)
    a = np.minimum(y_mean[:, None] - b * z_mean[None, :], 1.0)
    residual = ys[:, None, :] - (a[:, :, None] + b[:, :, None] * z[None, :, :])  # (B, C, n)
    best = np.argmin((residual ** 2) @ w, axis=1)
    rows = np.arange(ys.shape[0])
    return a[rows, best], b[rows, best], CURVE_EXPONENTS[best]


def _value(params: tuple[float, float, float], x: float) -> float:
    a, b, c = params
    return a - b * x ** -c


def project(points: list[tuple[float, float]], x_end: float, n_val: int, *, finished: bool = False,
            seed: int = 0) -> Projection:
    """The accuracy at cost `x_end` from `points` [(cost, accuracy)] read on n_val examples."""
    points = [(float(x), float(a)) for x, a in points if x is not None and a is not None]
    if not points:
        return Projection(0.0, 0.0, 1.0, "no points")
    best = max(a for _, a in points)
    sd = binomial_sd(best, n_val)
    if finished:
        return Projection(best, max(best - 1.64 * sd, 0.0), min(best + 1.64 * sd, 1.0), "finished")
    usable = [(x, a) for x, a in points if x > 0]
    if len(usable) < MIN_POINTS:
        return Projection(best, max(best - 1.64 * sd, 0.0), 1.0, "too few points")
    x = np.array([p[0] for p in usable])
    y = np.array([p[1] for p in usable])
    x_end = max(float(x_end), float(x.max()))
    # later points weigh more: they are closer to where the projection lands
    weights = np.linspace(0.5, 1.0, len(x))
    fitted = fit_power_law(x, y, weights)
    mid = max(_value(fitted, x_end), _value(fitted, float(x.max())))
    rng = np.random.default_rng(seed)
    means = np.clip([_value(fitted, float(v)) for v in x], 1e-3, 1 - 1e-3)
    redrawn = rng.binomial(n_val, means, size=(BOOTSTRAP, len(x))) / n_val
    a, b, c = fit_power_laws(x, redrawn, weights)
    draws = np.maximum(a - b * x_end ** -c, a - b * float(x.max()) ** -c)
    low, high = np.percentile(draws, BAND)
    floor = binomial_sd(mid, n_val)
    low, high = min(float(low), mid - floor), max(float(high), mid + floor)
    # what the arm already holds: its best point, less and plus that point's noise
    mid, low, high = max(mid, best), max(low, best - 1.64 * sd), max(high, best + 1.64 * sd)
    return Projection(float(np.clip(mid, 0, 1)), float(np.clip(low, 0, 1)), float(np.clip(high, 0, 1)), "curve")
