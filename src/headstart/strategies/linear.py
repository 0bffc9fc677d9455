"""Fitting a multinomial logistic head on cached features (shared by probe, lp-ft, finetune).

Train features are extracted in stratified chunks (a budget can stop the pass early and the
head is fitted on the stratified prefix done). When a curve is asked for (more than one
validation pass per epoch: `compare` asks for four), the head is also an "anytime" fit: after
each of the first chunks a provisional head is fitted and scored, so the curve shows a useful
accuracy after an eighth of the inference pass. A plain fit skips those: they cost seconds
that buy nothing when only the final head is kept. With a warm cache all features are there
at once and only the final sweep runs: heads.sweep_head, the one head sweep.
"""
from __future__ import annotations

import numpy as np
import torch

from ..engines.extract import make_engine
from ..data.split import stratified_order
from ..embed import agree_any, compute_features, embed, feature_cache_path
from ..feature_store import FeatureStore
from ..heads import PROBE_C_GRID, HeadSweep, budget_rule, head_logits, head_solver, score, sweep_head
from ..imbalance.balance import balance_full_batch
from ..imbalance.synthesize import item_namer, synthesize_features
from ..log import is_main_process, progress_bar
from .refit import refit_figures

# Fractions of the training set after which a provisional head is fitted and scored.
ANYTIME_FRACTIONS = (0.125, 0.25, 0.5)
ANYTIME_C = 0.1
ANYTIME_FIT_RESERVE = 2.0  # seconds kept for the final head fits when a budget is set


def fit_logistic_head(classifier, ctx, c_grid=PROBE_C_GRID, *, refit: bool = False, hold: bool = False) -> dict:
    """Extract (cached) features, pick C on validation, write the head into classifier.head.
    refit: the head written is then solved once more at the chosen C on the training and
    validation features together (strategies/refit.py); the figures returned stay the sweep's.
    hold: the refit head is solved but not written: it is returned as result["held_refit"],
    (head, the refit's summary figures), for a caller that decides later (auto's race).

    The clock counts train-feature extraction and every head fit; validation features are
    evaluation and run with the clock paused.
    """
    rec = ctx.recorder
    # the engine that runs the frozen backbone (--extract-engine). When features must be
    # computed it is made on one training example with the clock running, so a first use's
    # export (cached after) counts as training; a warm feature cache never starts it.
    engine = make_engine(ctx.config.extract_engine, classifier, calibration=ctx.train.inputs)
    if not (ctx.use_feature_cache and feature_cache_path(classifier.backbone, ctx.train, engine).exists()):
        engine.features(ctx.train.inputs[:1])
    rec.pause()
    val_x = embed(classifier, ctx.val, cache=ctx.use_feature_cache, description="features (val)", engine=engine)
    rec.resume()
    train_x, train_cached, order = _train_features_anytime(classifier, ctx, val_x, engine)
    real_y = ctx.train.labels[order]
    # --synthesize, then --balance: on the training features only (timed: part of training)
    synth_x, synth_y, synthetic = synthesize_features(train_x, real_y, ctx.config.synthesize, ctx.train.classes,
                                                      ctx.config.seed, item_namer(ctx.train, order))
    fit_x, fit_y, head_weights, balance = _balance(synth_x, synth_y, real_y, ctx)
    extra = {**({"synthetic": synthetic} if synthetic else {}), **balance}

    sweep_started = rec.wall_seconds
    head = sweep_head(fit_x, fit_y, val_x, ctx.val.labels, c_grid, rec, num_classes=ctx.train.num_classes,
                      phase="probe", sample_weight=head_weights,
                      out_of_time=budget_rule(rec, ctx.config.budget_seconds), n_train=len(fit_x))
    solve_seconds = (rec.wall_seconds - sweep_started) / max(len(head.scores), 1)
    # a budget that cut the feature pass short has no time for another solve either
    refitted = refit and len(order) == len(ctx.train) and not _out_of_time(ctx, rec, solve_seconds)
    if refitted:  # validation chose C; now its rows teach too (the synthetic rows stay the training part's)
        rec.resume()
        all_x, all_y, all_weights, _ = _balance(np.concatenate([synth_x, val_x]),
                                                np.concatenate([synth_y, ctx.val.labels]),
                                                np.concatenate([real_y, ctx.val.labels]), ctx)
        weight, bias = head_solver(all_x, all_y, ctx.train.num_classes, all_weights).solve(head.c)
        rec.pause()
        refitted_head = HeadSweep(head.c, head.val_accuracy, weight, bias, head.scores)
        if hold:
            head.write_into(classifier.head.fc)
            extra["held_refit"] = (refitted_head, refit_figures(len(order), len(ctx.val), head.val_accuracy))
            refitted = False
        else:
            refitted_head.write_into(classifier.head.fc)
    else:
        head.write_into(classifier.head.fc)
    return {"probe_C": head.c, "probe_val_accuracy": head.val_accuracy, "features_cached": train_cached,
            "extract_engine": engine.name, "engine_prepare_seconds": round(engine.prepare_seconds, 3),
            "probe_train_used": int(len(order)), "stop_reason": "budget" if len(order) < len(ctx.train) else "completed",
            **(refit_figures(len(order), len(ctx.val), head.val_accuracy) if refitted else {}), **extra}


def _balance(x: np.ndarray, y: np.ndarray, real_y: np.ndarray, ctx):
    """--balance on the rows the head fits (decided on the real labels, real_y). Returns (x, y,
    sample weights or None, summary figures); timed by the caller."""
    config = ctx.config
    return balance_full_batch(config.balance, real_y, x, y, ctx.train.classes, config.seed)


def _out_of_time(ctx, rec, solve_seconds: float) -> bool:
    """Under --budget, a refit that could end past it is skipped: it is a cold solve on more rows,
    counted as twice a sweep's warm-started one."""
    rule = budget_rule(rec, ctx.config.budget_seconds)
    return rule is not None and rule(2 * solve_seconds)


CHUNK = 64  # images per extraction step: the granularity of the budget check


def _train_features_anytime(classifier, ctx, val_x, engine) -> tuple[np.ndarray, bool, np.ndarray]:
    """(features, from_cache, order): features[i] belongs to train image order[i]. Each chunk is
    written to the feature store as it is computed, so a pass cut short (a budget, a kill) is
    continued by the next fit rather than redone. Under a budget, extraction stops early and the
    head is fitted on the rows done: a stratified prefix (plus any an earlier pass left)."""
    rec, train = ctx.recorder, ctx.train
    store = FeatureStore.open(classifier.backbone, train, engine, cache=ctx.use_feature_cache,
                              writable=is_main_process())
    if store.complete:
        return store.read(), True, np.arange(len(train))
    order = stratified_order(train.labels, seed=ctx.config.seed)
    todo = store.missing_rows(order)  # in the stratified order, skipping what an earlier pass did
    n, have = len(todo), len(train) - len(todo)
    wants_curve = ctx.config.evals_per_epoch > 1  # provisional heads only when a curve is asked for
    marks = {int(len(train) * f) - have for f in ANYTIME_FRACTIONS
             if int(len(train) * f) >= 2 * train.num_classes} if wants_curve else set()
    marks = {m for m in marks if 0 < m < n}
    bounds = sorted(marks | set(range(CHUNK, n, CHUNK)) | {n})
    budget = ctx.config.budget_seconds
    done, rate = 0, 0.0
    with progress_bar("features (train)", total=n) as advance:
        for end in bounds:
            # the pace of the latest chunk, not the average: the first one pays one-off
            # warm-up (seconds on a GPU) that would make every later chunk look unaffordable
            if budget is not None and have + done >= 2 * train.num_classes:
                closing = ANYTIME_FIT_RESERVE + rate * ctx.test_size  # head fits, then the test pass
                if agree_any(rec.wall_seconds + rate * (end - done) + closing > budget):
                    break
            chunk_started = rec.wall_seconds
            rows = todo[done:end]
            store.fill(rows, compute_features(classifier, train.inputs[rows], engine=engine))
            rate = (rec.wall_seconds - chunk_started) / (end - done)
            advance(end - done)
            done = end
            if end in marks:  # a provisional head on the features so far
                so_far = store.done_rows()
                weight, bias = _fit(store.read(so_far), train.labels[so_far], train.num_classes, ANYTIME_C)
                rec.pause()
                accuracy, loss = _score_head(weight, bias, val_x, ctx.val.labels)
                rec.log("val", accuracy, loss, phase="probe-anytime", C=ANYTIME_C, n_train=int(have + end))
                rec.resume()
    store.flush()  # a pass cut short keeps its chunks for the next fit
    if store.complete:  # in the data's own order (a memory map when cached): any later fit reads it
        return store.read(), False, np.arange(len(train))
    done_mask = np.zeros(len(train), dtype=bool)
    done_mask[store.done_rows()] = True
    used = order[done_mask[order]]
    return store.read(used), False, used


def _fit(x: np.ndarray, y: np.ndarray, num_classes: int, c: float, sample_weight: np.ndarray | None = None):
    """One cold head fit (the provisional heads): (weight, bias) on raw features."""
    return head_solver(x, y, num_classes, sample_weight).solve(c)


def _score_head(weight, bias, x, labels):
    return score(torch.from_numpy(head_logits(x, weight, bias)), labels)
