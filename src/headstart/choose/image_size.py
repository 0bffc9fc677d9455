"""`--image-size auto`: the pretrained backbone's input size, chosen by measurement on a sample.

Before the run's real work, a stratified sample of the training split (300 images split evenly
across the classes, at least 2 a class) is embedded at each candidate size (96, 128, 160,
224 px, none above the backbone's own input, where a larger size adds nothing it was trained for, nor above 1.5x the
data's native shorter side, where it only enlarges blur; the two smallest are always measured,
so a small native side is a measurement too). Each size is scored by the out-of-fold accuracy
of a logistic-regression probe on the sample's features (the probe's own model, so the score
estimates what the probe will reach), and costs the seconds its extraction took. The choice is
the smallest size whose score is within one binomial standard error of the best's: a larger
size must earn its extraction cost by more than the sample can resolve.

The sample's features go through the feature cache (embed), so choosing again on the same
split, as compare's seeds and arms or a second fit do, costs nothing. The whole choice counts
against --budget (it runs after the command's clock started) and stops measuring larger sizes
once it has used a tenth of it.

Above the pipeline (which never imports choose/): `headstart fit` (api.fit) and `compare`
settle the size before the fit begins and hand it down as an ordinary --image-size; the record
of the choice travels in the data's notes, which the fit's summary writes (image_size_choice).
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import replace

import numpy as np

from ..config import FitConfig
from ..errors import HeadstartError
from ..log import say

CANDIDATE_SIZES = (96, 128, 160, 224)
MAX_SAMPLE = 300
NATIVE_FACTOR = 1.5   # past this multiple of the native side, a larger input is upsampled blur
BUDGET_SHARE = 0.10   # the most of --budget the choice spends before it stops measuring larger sizes
FOLDS = 5


def candidate_sizes(native: int | None, model_input: int | None, sizes=CANDIDATE_SIZES) -> list[int]:
    """The sizes worth measuring: none above the backbone's input or 1.5x the native side,
    but always the two smallest (so the choice is measured, never assumed)."""
    ordered = sorted(sizes)
    cap = min(c for c in (model_input, native and native * NATIVE_FACTOR) if c) if (model_input or native) else None
    kept = [s for s in ordered if cap is None or s <= cap]
    return kept if len(kept) >= 2 else ordered[:2]


def stratified_sample(labels: np.ndarray, seed: int, most: int = MAX_SAMPLE) -> np.ndarray:
    """Indices of an equal share of each class (`most` in all, at least 2 a class), drawn with
    `seed`, in ascending order. Not a fixed 20 a class: 40 images of a binary task score a size
    within +-7 points, too coarse to tell 128 from 160 px."""
    classes = np.unique(labels)
    take = max(2, most // max(1, len(classes)))
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.flatnonzero(labels == c))[:take] for c in classes]
    return np.sort(np.concatenate(picked))


def probe_score(features: np.ndarray, labels: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """(out-of-fold accuracy of a logistic-regression probe on standardised features, its
    binomial standard error). The folds are stratified; a class with a single item is scored
    in whichever fold holds it."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    counts = np.bincount(labels)
    folds = int(max(2, min(FOLDS, counts[counts > 0].min())))
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=500))
    with warnings.catch_warnings():  # a tiny class or a slow convergence is the sample's, not the user's
        warnings.simplefilter("ignore")
        predicted = cross_val_predict(model, features, labels,
                                      cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    accuracy = float(np.mean(predicted == labels))
    return accuracy, math.sqrt(max(accuracy * (1 - accuracy), 1e-4) / len(labels))


def choose_size(measured: list[dict]) -> tuple[dict, str]:
    """The smallest measured size within one standard error of the best's score, and why."""
    best = max(measured, key=lambda m: (m["accuracy"], -m["size"]))
    chosen = min((m for m in measured if m["accuracy"] >= best["accuracy"] - best["noise"]), key=lambda m: m["size"])
    if chosen is best:
        return chosen, f"the best probe accuracy on the sample ({best['accuracy']:.3f})"
    return chosen, (f"within noise of the best ({chosen['accuracy']:.3f} against {best['accuracy']:.3f} at "
                    f"{best['size']} px, standard error {best['noise']:.3f}) at {chosen['seconds']:.1f} s of "
                    f"extraction against {best['seconds']:.1f} s")


def measure_sizes(sample, build_backbone, sizes: list[int], *, seed: int = 0,
                  time_left: float | None = None) -> list[dict]:
    """Embed `sample` at each size (smallest first; through the feature cache) and score it.
    build_backbone(size) -> a Backbone at that input size. With `time_left` seconds, larger sizes
    are skipped once the next would not fit at the pace so far (the smallest is always measured)."""
    from ..embed import embed

    measured: list[dict] = []
    started = time.perf_counter()
    for size in sizes:
        spent = time.perf_counter() - started
        if time_left is not None and measured and spent + _next_cost(measured, size) > time_left:
            break
        backbone = build_backbone(size)
        clock = time.perf_counter()  # the extraction alone: building the backbone is paid once by the fit too
        features = embed(backbone, sample, description=None)
        seconds = time.perf_counter() - clock
        accuracy, noise = probe_score(features, sample.labels, seed)
        measured.append({"size": size, "accuracy": round(accuracy, 4), "noise": round(noise, 4),
                         "seconds": round(seconds, 2), "ms_per_image": round(1000 * seconds / len(sample), 2)})
    return measured


def _next_cost(measured: list[dict], size: int) -> float:
    """The last size's seconds scaled by pixels: extraction grows with the area."""
    last = measured[-1]
    return last["seconds"] * (size / last["size"]) ** 2


def settle_image_size(config: FitConfig, data, splits=None) -> FitConfig:
    """`config` with --image-size auto replaced by the chosen size; any other config as it is.
    `data`: the loaded labelled data, whose notes take the record of the choice (the fit's
    summary writes it as image_size_choice); `splits`: its split (default: config's seed's)."""
    if config.image_size != "auto":
        return config
    from ..modalities import modality_of
    from ..strategies import get_strategy
    from ..zoo import resolve_backbone

    modality = modality_of(data)
    if not getattr(modality, "chooses_input_size", False):
        say(f"--image-size auto: {modality.name} data has no image size; ignored")
        return replace(config, image_size=None)
    if config.strategy != "auto" and not get_strategy(config.strategy).pretrained:
        say("--image-size auto chooses a pretrained backbone's input; a model trained from scratch keeps its own")
        return replace(config, image_size=None)
    backbone = config.backbone if config.backbone not in (None, "auto") else modality.default_backbone
    spec = resolve_backbone(backbone)
    if splits is None:
        from ..pipeline import split
        splits = split(config, data)
    train = splits.train
    sample = train.subset(stratified_sample(train.labels, config.seed))
    native = data.notes.get("native_size") or int(min(train.images.shape[1:3]))
    sizes = candidate_sizes(native, spec.input_size)
    time_left = config.budget_seconds * BUDGET_SHARE if config.budget_seconds else None
    started = time.perf_counter()
    measured = measure_sizes(
        sample, lambda size: spec.build(pretrained=config.pretrained, weights=config.weights, image_size=size),
        sizes, seed=config.seed, time_left=time_left)
    if not measured:
        raise HeadstartError("--image-size auto measured no size", hint="give --image-size N")
    chosen, reason = choose_size(measured)
    seconds = time.perf_counter() - started
    record = {"size": chosen["size"], "backbone": spec.name, "candidates": measured, "reason": reason,
              "sample": len(sample), "native": int(native), "model_input": spec.input_size,
              "seconds": round(seconds, 2)}
    say(f"image size auto: {chosen['size']} px for {spec.name}, {reason} (" +
        ", ".join(f"{m['size']}: {m['accuracy']:.3f}" for m in measured) +
        f"; {len(sample)} images, {seconds:.1f} s)")
    data.notes["image_size_choice"] = record  # the fit's summary records it with the data's other notes
    return replace(config, image_size=chosen["size"])


def load_with_chosen_size(config: FitConfig):
    """(config with its size settled, the data it loaded, or None when nothing was chosen):
    what `headstart fit` does before the fit begins, so the fit reuses the loaded data."""
    if config.image_size != "auto":
        return config, None
    from ..pipeline import load

    data = load(config, decode_size=_largest_decode)
    return settle_image_size(config, data), data


def _largest_decode(config: FitConfig, modality) -> int | None:
    """Decode once at the largest size any candidate eats (the backbone's input); each
    candidate, and the fit at the chosen size, resizes down from it."""
    from ..zoo import resolve_backbone

    backbone = config.backbone if config.backbone not in (None, "auto") else modality.default_backbone
    return modality.decode_size(config.image_size, resolve_backbone(backbone))
