"""tfidf: fit the zoo's TF-IDF + logistic regression model (scikit-learn); the n-grams and C
chosen on validation.

The candidates (--tfidf-analyzer): word 1-2-grams, character 2-5-grams within word boundaries
(char_wb), or both side by side, each over the full texts (no length limit) with sublinear
term frequency. auto tries all three, each with its C sweep, and keeps the best on validation
(a tie keeps the earlier, cheaper one): on short, symbol-heavy or non-English text word
n-grams see almost nothing, and a character model is what a practitioner would try first.
Each analyzer vectorises the texts once; "both" reuses the two blocks. Each candidate's C is
chosen by the one head sweep (heads.sweep_head), with scikit-learn's solver on the sparse
rows. The model itself (zoo/tfidf.py) speaks the classifier protocol like any other; this
strategy only fits it.
"""
from __future__ import annotations

import numpy as np

from ..errors import HeadstartError
from ..heads import sweep_head
from ..imbalance.balance import balance_full_batch
from ..imbalance.synthesize import not_synthesized
from ..zoo.tfidf import ANALYZERS, CANDIDATES, TfidfPart
from .base import FitContext, Strategy, register_strategy
from .refit import refit_figures, wants_refit

# C of a logistic head on TF-IDF rows: unit-length sparse n-gram vectors, not standardised
# embeddings, want a far weaker penalty than heads.PROBE_C_GRID.
TFIDF_C_GRID = (1.0, 3.0, 10.0, 30.0, 100.0)
BUDGET_SHARE = 0.8  # past this share of --budget, no new candidate or C starts: the best so far wins


@register_strategy
class Tfidf(Strategy):
    name = "tfidf"
    pretrained = False
    architecture = "tfidf"  # always the zoo's TF-IDF model, whatever --backbone says
    description = ("TF-IDF word 1-2-grams, char 2-5-grams or both + logistic regression (scikit-learn), "
                   "analyzer and C tuned on validation, then refit on train+val (--refit); text only")

    def fit(self, model, ctx: FitContext) -> dict:
        choice = ctx.config.tfidf_analyzer
        names = list(CANDIDATES) if choice == "auto" else [choice]
        blocks = _Blocks(ctx)
        best, candidates, skipped = None, {}, {}
        for name in names:
            if best is not None and _budget_used(ctx):
                skipped[name] = "budget"
                continue
            try:
                parts = [blocks.get(analyzer) for analyzer in CANDIDATES[name]]
            except HeadstartError as e:
                if len(names) == 1:
                    raise
                skipped[name] = e.message  # e.g. no word of two letters: the char candidate still runs
                continue
            if best is not None and _budget_used(ctx):  # vectorising it used up the budget
                skipped[name] = "budget"
                continue
            found = _sweep(ctx, name, parts, blocks.fit_rows)
            candidates[name] = {"val_accuracy": found.val_accuracy, "C": found.c}
            if best is None or found.val_accuracy > best[0].val_accuracy + 1e-9:
                best = (found, name, parts)
        if best is None:
            raise HeadstartError(f"TF-IDF found no n-grams in the training texts ({'; '.join(skipped.values())})",
                                 hint="the texts are empty or unusable; use a neural strategy")
        head, name, parts = best
        refit = wants_refit(ctx.config, cheap=True) and not _budget_used(ctx)
        if refit:  # validation chose the n-grams and C; now its texts teach too
            fitted, weight, bias = _refit(ctx, [p.analyzer for p in parts], head.c)
        else:
            fitted = [TfidfPart.from_fitted(p.analyzer, p.vectorizer, p.settings) for p in parts]
            weight, bias = head.weight, head.bias
        # float32, as saved: the reloaded model then predicts exactly what this one does
        model.set_fitted(fitted, weight.astype(np.float32), bias.astype(np.float32))
        return {"best_val_accuracy": head.val_accuracy, "tfidf_C": head.c, "tfidf_analyzer": name,
                "tfidf_candidates": candidates, **({"tfidf_skipped": skipped} if skipped else {}),
                "tfidf_vocabulary": len(model.vocabulary), "stop_reason": "completed", "epochs_run": 1.0,
                **(refit_figures(len(ctx.train), len(ctx.val), head.val_accuracy) if refit else {}),
                **blocks.extra}


class _Fitted:
    """One analyzer's fitted vectorizer and its training and validation blocks."""

    def __init__(self, analyzer, vectorizer, settings, x_fit, x_val):
        self.analyzer, self.vectorizer, self.settings, self.x_fit, self.x_val = (analyzer, vectorizer, settings,
                                                                                  x_fit, x_val)


class _Blocks:
    """Each analyzer vectorises the texts once (training time); candidates share the blocks."""

    def __init__(self, ctx: FitContext):
        self.ctx, self._done = ctx, {}
        # --balance decides once which training rows the heads fit (and their weights); every
        # block is then indexed by the same rows
        self.rows, y_fit, weights, self.extra = _balance(ctx.train, ctx)
        self.fit_rows = (y_fit, weights)

    def get(self, analyzer: str) -> _Fitted:
        if analyzer not in self._done:
            try:
                self._done[analyzer] = self._fit(analyzer)
            except HeadstartError as e:  # "both" needs the word part too: fail it without refitting
                self._done[analyzer] = e
        if isinstance(self._done[analyzer], HeadstartError):
            raise self._done[analyzer]
        return self._done[analyzer]

    def _fit(self, analyzer: str) -> _Fitted:
        rec, train, val = self.ctx.recorder, self.ctx.train, self.ctx.val
        rec.resume()
        try:
            vectorizer, settings, x_train = _vectorize(analyzer, train.texts)
        except ValueError as e:  # "empty vocabulary": only stop words or symbols
            rec.pause()
            what = "words of two or more letters" if analyzer == "word" else "characters"
            raise HeadstartError(f"TF-IDF found no {what} in the training texts ({e})",
                                 hint="try --tfidf-analyzer char, or a neural strategy") from e
        rec.pause()
        x_val = vectorizer.transform(val.texts)  # evaluation: clock paused
        return _Fitted(analyzer, vectorizer, settings, x_train[self.rows], x_val)


def _vectorize(analyzer: str, texts: list[str]):
    """(fitted vectorizer, its settings, the texts' rows). min_df=2 drops n-grams seen once, but a
    handful of texts may have none seen twice: then keep them all rather than fail."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    settings = dict(ANALYZERS[analyzer], min_df=2 if len(texts) >= 20 else 1)
    vectorizer = TfidfVectorizer(**settings)
    return vectorizer, settings, vectorizer.fit_transform(texts)


def _refit(ctx: FitContext, analyzers: list[str], c: float):
    """The chosen candidate fitted again on train + validation texts (vocabulary, idf and the
    logistic head at the chosen C), on the clock. Returns (parts, weight, bias)."""
    import scipy.sparse as sp

    rec, train, val = ctx.recorder, ctx.train, ctx.val
    texts, labels = list(train.texts) + list(val.texts), np.concatenate([train.labels, val.labels])
    rec.resume()
    fitted, blocks = [], []
    for analyzer in analyzers:
        vectorizer, settings, x = _vectorize(analyzer, texts)
        fitted.append(TfidfPart.from_fitted(analyzer, vectorizer, settings))
        blocks.append(x)
    x = blocks[0] if len(blocks) == 1 else sp.hstack(blocks).tocsr()
    rows = np.arange(len(texts))[:, None]
    rows, y_fit, weights, _ = balance_full_batch(ctx.config.balance, labels, rows, labels, train.classes,
                                                 ctx.config.seed)
    weight, bias = _SparseLogistic(x[rows[:, 0]], y_fit, train.num_classes, weights).solve(c)
    rec.pause()
    return fitted, weight, bias


def _sweep(ctx: FitContext, name: str, parts: list[_Fitted], fit_rows):
    """The C sweep of one candidate (the one head sweep, scikit-learn's solver on its blocks)."""
    import scipy.sparse as sp

    y_fit, sample_weight = fit_rows
    x_fit = parts[0].x_fit if len(parts) == 1 else sp.hstack([p.x_fit for p in parts]).tocsr()
    x_val = parts[0].x_val if len(parts) == 1 else sp.hstack([p.x_val for p in parts]).tocsr()
    return sweep_head(x_fit, y_fit, x_val, ctx.val.labels, TFIDF_C_GRID, ctx.recorder,
                      num_classes=ctx.train.num_classes, phase="tfidf", sample_weight=sample_weight,
                      solver=_SparseLogistic, out_of_time=lambda _: _budget_used(ctx), analyzer=name,
                      n_train=len(ctx.train))


class _SparseLogistic:
    """The sweep's solver on TF-IDF rows: scikit-learn's LogisticRegression (L-BFGS, sparse
    input), warm-started from the previous C."""

    def __init__(self, x, y: np.ndarray, num_classes: int, sample_weight: np.ndarray | None = None):
        from sklearn.linear_model import LogisticRegression

        self.x, self.y, self.sample_weight = x, y, sample_weight
        self.clf = LogisticRegression(max_iter=2000, warm_start=True)

    def solve(self, c: float) -> tuple[np.ndarray, np.ndarray]:
        from threadpoolctl import threadpool_limits

        # one BLAS thread: L-BFGS-B's updates are small vector operations that threads only slow
        # down (a 5x slower fit measured on BBC News with two threads)
        with threadpool_limits(limits=1, user_api="blas"):
            self.clf.set_params(C=c).fit(self.x, self.y, sample_weight=self.sample_weight)
        coef, intercept = self.clf.coef_.copy(), self.clf.intercept_.copy()
        if coef.shape[0] == 1:  # binary: sklearn keeps one row; two rows make logits for both classes
            coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
        return coef, intercept


def _budget_used(ctx: FitContext) -> bool:
    budget = ctx.config.budget_seconds
    return budget is not None and ctx.recorder.wall_seconds > budget * BUDGET_SHARE


def _balance(train, ctx: FitContext):
    """--balance as for the probe's head (sample weights, or oversampling for "sampler"), as the
    training rows to fit; --synthesize is recorded as not done: TF-IDF vectors are no embedding
    space to interpolate in."""
    extra = not_synthesized(ctx.config.synthesize, "TF-IDF vectors are sparse n-gram counts, not an embedding "
                                                   "space; --strategy probe synthesizes with SMOTE on embeddings")
    rows = np.arange(len(train))[:, None]
    rows, y_fit, weights, balance = balance_full_batch(ctx.config.balance, train.labels, rows, train.labels,
                                                       train.classes, ctx.config.seed)
    return rows[:, 0], y_fit, weights, {**extra, **balance}
