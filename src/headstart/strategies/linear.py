"""Fitting a multinomial logistic head on cached features (shared by probe, lp-ft, finetune)."""
from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from ..features import extract_features
from ..train.evaluate import score

# Inverse regularisation strengths tried on the validation split; features are
# standardised first, so one grid suits every backbone.
C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)


def fit_logistic_head(classifier, ctx, c_grid=C_GRID, log_split="val") -> dict:
    """Extract (cached) features, pick C on validation, write the head into classifier.head.

    The clock counts train-feature extraction and every head fit; validation features are
    evaluation and run with the clock paused.
    """
    rec = ctx.recorder
    rec.resume()
    train_x, train_cached = extract_features(classifier, ctx.train, use_cache=ctx.use_feature_cache,
                                             description="features (train)")
    rec.pause()
    val_x, _ = extract_features(classifier, ctx.val, use_cache=ctx.use_feature_cache,
                                description="features (val)")
    rec.resume()
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    z_train, z_val = (train_x - mean) / std, (val_x - mean) / std

    best = None
    for c in c_grid:
        rec.resume()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = LogisticRegression(C=c, max_iter=300, tol=1e-3)
            model.fit(z_train, ctx.train.labels)
        weight, bias = _as_full_linear(model, ctx.train.num_classes, mean, std)
        rec.pause()
        logits = torch.from_numpy(val_x @ weight.T + bias)
        accuracy, loss = score(logits, ctx.val.labels)
        rec.log(log_split, accuracy, loss, phase="probe", C=c)
        if best is None or accuracy > best[0] + 1e-9:
            best = (accuracy, c, weight, bias)
    accuracy, c, weight, bias = best
    with torch.no_grad():
        classifier.head.fc.weight.copy_(torch.from_numpy(weight))
        classifier.head.fc.bias.copy_(torch.from_numpy(bias))
    return {"probe_C": c, "probe_val_accuracy": accuracy, "features_cached": train_cached}


def _as_full_linear(model: LogisticRegression, num_classes: int, mean, std):
    """Fold the standardisation into the weights so the head works on raw features, and
    place classes absent from train (possible with tiny subsets) at a very low logit."""
    coef = model.coef_ / std  # (K', D)
    intercept = model.intercept_ - coef @ mean
    if coef.shape[0] == 1:  # sklearn's binary form: one score for class 1 vs 0
        coef = np.vstack([-coef / 2, coef / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    weight = np.zeros((num_classes, coef.shape[1]), dtype=np.float32)
    bias = np.full(num_classes, -1e4, dtype=np.float32)
    weight[model.classes_] = coef
    bias[model.classes_] = intercept
    return weight, bias
