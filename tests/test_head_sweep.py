"""The one head sweep (heads.sweep_head): the probe, lp-ft's and LoRA's head stage, CORAL, the
continual head refits and TF-IDF all choose their C through it. It must choose what the three
sweeps it replaced chose, keep one rule for the clock, and keep a --budget."""
import time

import numpy as np
import pytest

from headstart.heads import PROBE_C_GRID, HeadProblem, budget_rule, sweep_head
from headstart.records import Recorder


def _case(seed=0, n=240, d=24, k=4):
    """Four overlapping classes: the C grid's heads score differently on validation."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 0.6
    y = rng.integers(0, k, size=n)
    x = (centres[y] + rng.normal(size=(n, d)) * 1.5).astype(np.float32)
    return x[:160], y[:160], x[160:], y[160:]


def _recorder() -> Recorder:
    return Recorder(None, "test", write=False)


# What the replaced sweep (adapt/coral.py's _sweep, the same loop as strategies/linear.py's and
# adapt/continual_methods.py's) logged on _case() at commit 778e197: (C, val accuracy, val loss).
BEFORE = [(0.01, 0.675, 1.038135), (0.03, 0.725, 0.863686), (0.1, 0.7125, 0.776256), (0.3, 0.625, 0.809455),
          (1.0, 0.5875, 0.94976)]


def test_the_sweep_chooses_what_the_sweeps_it_replaced_chose():
    train_x, train_y, val_x, val_y = _case()
    rec = _recorder()
    head = sweep_head(train_x, train_y, val_x, val_y, PROBE_C_GRID, rec, num_classes=4, phase="coral")
    assert head.c == 0.03 and head.val_accuracy == pytest.approx(0.725, abs=1e-6)
    assert [r["C"] for r in rec.rows] == [c for c, _, _ in BEFORE]
    assert [r["accuracy"] for r in rec.rows] == pytest.approx([a for _, a, _ in BEFORE], abs=1e-6)
    assert [r["loss"] for r in rec.rows] == pytest.approx([v for _, _, v in BEFORE], abs=1e-3)
    assert head.scores == pytest.approx({c: a for c, a, _ in BEFORE}, abs=1e-6)
    assert {r["phase"] for r in rec.rows} == {"coral"} and {r["split"] for r in rec.rows} == {"val"}
    # the head it returns is the chosen C's, acting on raw features
    predicted = head.logits(val_x).argmax(1)
    assert np.mean(predicted == val_y) == pytest.approx(head.val_accuracy, abs=1e-6)


def test_every_c_is_logged_with_the_callers_keys():
    train_x, train_y, val_x, val_y = _case()
    rec = _recorder()
    sweep_head(train_x, train_y, val_x, val_y, (0.3, 0.01), rec, num_classes=4, phase="probe", n_train=160)
    assert [(r["C"], r["n_train"], r["phase"]) for r in rec.rows] == [(0.01, 160, "probe"), (0.3, 160, "probe")]


class _SlowSolver:
    """A solver whose every solve takes SOLVE seconds and returns a fixed head."""
    SOLVE = 0.05

    def __init__(self, x, y, num_classes, sample_weight=None):
        self.weight = np.eye(num_classes, x.shape[1], dtype=np.float32)
        self.bias = np.zeros(num_classes, np.float32)

    def solve(self, c):
        time.sleep(self.SOLVE)
        return self.weight * c, self.bias


class _SlowFeatures:
    """Validation features whose scoring takes SCORE seconds (it must not count as training)."""
    SCORE = 0.1

    def __init__(self, x):
        self.x = x

    def __matmul__(self, other):
        time.sleep(self.SCORE)
        return self.x @ other


def test_solving_counts_as_training_and_scoring_on_validation_does_not():
    train_x, train_y, val_x, val_y = _case()
    rec = _recorder()
    grid = (0.1, 0.3, 1.0)
    sweep_head(train_x, train_y, _SlowFeatures(val_x), val_y, grid, rec, num_classes=4, phase="p",
               solver=_SlowSolver)
    solving = len(grid) * _SlowSolver.SOLVE
    assert solving <= rec.train_seconds < solving + 0.1  # no scoring in it (that would add 0.3 s)
    assert rec.wall_seconds >= solving + len(grid) * _SlowFeatures.SCORE
    before = rec.train_seconds
    time.sleep(0.05)
    assert rec.train_seconds == before  # the sweep leaves the clock paused


def test_out_of_time_keeps_the_best_so_far_but_always_solves_one_c():
    train_x, train_y, val_x, val_y = _case()
    rec = _recorder()
    asked = []
    head = sweep_head(train_x, train_y, val_x, val_y, PROBE_C_GRID, rec, num_classes=4, phase="p",
                      out_of_time=lambda seconds: asked.append(seconds) or True)
    assert head.c == 0.01 and list(head.scores) == [0.01] and len(rec.rows) == 1
    assert len(asked) == 1 and asked[0] > 0  # asked with the last solve's seconds


def test_the_budget_rule_stops_a_c_whose_solve_would_end_past_the_budget():
    rec = _recorder()
    assert budget_rule(rec, None) is None
    rule = budget_rule(rec, budget_seconds=rec.wall_seconds + 10.0)
    assert not rule(1.0) and rule(11.0)


def test_a_tie_keeps_the_more_regularised_head():
    train_x, train_y, val_x, val_y = _case()
    rec = _recorder()
    # _SlowSolver's heads differ by a positive scale only: the same argmax, the same accuracy
    head = sweep_head(train_x, train_y, val_x, val_y, (1.0, 0.3, 0.1), rec, num_classes=4, phase="p",
                      solver=_SlowSolver)
    assert len(set(head.scores.values())) == 1 and head.c == 0.1


def test_warm_started_solves_match_cold_ones():
    train_x, train_y, val_x, val_y = _case(seed=1)
    warm = HeadProblem(train_x, train_y, 4)
    for c in PROBE_C_GRID:
        warm_w, warm_b = warm.solve(c)
        cold_w, cold_b = HeadProblem(train_x, train_y, 4).solve(c)
        assert np.abs(warm_w - cold_w).max() < 1e-3 and np.abs(warm_b - cold_b).max() < 1e-3


def test_tfidf_sweeps_through_it_with_scikit_learns_solver_and_a_binary_head_has_two_rows():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from headstart.strategies.tfidf import TFIDF_C_GRID, _SparseLogistic

    texts = ["good fine great", "great good", "bad awful", "awful bad poor", "fine good", "poor bad"] * 4
    labels = np.array([1, 1, 0, 0, 1, 0] * 4)
    x = TfidfVectorizer().fit_transform(texts)
    rec = _recorder()
    head = sweep_head(x[:16], labels[:16], x[16:], labels[16:], TFIDF_C_GRID, rec, num_classes=2, phase="tfidf",
                      solver=_SparseLogistic, analyzer="word")
    assert head.weight.shape == (2, x.shape[1]) and head.val_accuracy == 1.0
    assert [r["analyzer"] for r in rec.rows] == ["word"] * len(TFIDF_C_GRID)
    # its two rows give the probabilities scikit-learn's own binary model gives
    sk = LogisticRegression(C=head.c, max_iter=2000).fit(x[:16], labels[:16])
    logits = head.logits(x)
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert probabilities == pytest.approx(sk.predict_proba(x), abs=1e-4)
