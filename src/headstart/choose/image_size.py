"""`--image-size auto`: the pretrained backbone's input size, kept unless measurement shows better.

What was measured (BENCHMARKS 14.6, issue 24): the probe's test accuracy differs between 96, 128,
160 and 224 px by a few points, and a sample of a few hundred images cannot rank sizes that
close. On elpv (100/class) even the probe's own validation split (334 images, C swept) put
128 px first, while the test split put it 4.8 points behind 160 px; picking the best-scoring
size on a sample therefore picks by noise. So the rule starts from the backbone's own input
(the size it was trained at, and every fit's default) and moves only on evidence:

1. a size whose paired advantage over the reference is shown at one-sided 95% confidence
   (`Z_BETTER`, corrected for three rivals) becomes the reference (the best-scoring of those);
2. the choice is then the smallest size shown, at the same confidence, to lose less than
   `TOLERANCE` (one point) to the reference: a cheaper size must prove it costs nothing.

The evidence: a stratified sample of the training and validation splits (the choice is a
setting chosen on held-out data, as the probe's C is; the test split is never read), embedded
at every candidate size (no native-side cap: fashion-mnist's 28 px images do best at 224), and
scored by the leave-one-out accuracy of a ridge probe on standardised features with its
regularisation swept (closed form from one eigendecomposition per size: the probe's C sweep
with nothing refitted, using every item but one to train). Sizes are compared item by item on
the same items: the paired difference's standard error is a fraction of each score's own.

Cost: the sample grows in rounds (doubling) while the evidence is unresolved and the next round
fits the allowance: a tenth of --budget; with no budget, a quarter of what the probe's own
feature pass at the reference size is expected to take (measured on the first round), so the
choice stays a small fraction of the fit it serves. Features go through the feature cache
(embed), so choosing again on the same split costs nothing.

Above the pipeline (which never imports choose/): `headstart fit` (api.fit) and `compare` settle
the size before the fit begins and hand it down as an ordinary --image-size; the record of the
choice travels in the data's notes, which the fit's summary writes (image_size_choice).
"""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from ..config import FitConfig
from ..log import say

CANDIDATE_SIZES = (96, 128, 160, 224)
TOLERANCE = 0.01      # a smaller size may lose at most this much accuracy (the one point)
Z = 1.645             # one-sided 95%: how sure the paired evidence must be that a smaller size loses < TOLERANCE
Z_BETTER = 2.13       # one-sided 95% over three rivals of the reference (Bonferroni): a noisy sample's best
                      # of three beats the reference by chance far more often than one comparison does
MIN_EVIDENCE = 128    # below this many images no evidence moves the size (on elpv, 96 moved it wrongly 2 in 10, 192 never)
BUDGET_SHARE = 0.10   # the most of --budget the choice spends
UNBUDGETED_SHARE = 0.25  # with no budget: this share of the probe's own expected feature pass
FIRST_ROUND = 48      # images in the first round (at least 2 a class); each later round doubles the sample
MAX_SAMPLE = 1200     # past this, rounds stop: the paired error is ~1 point and the pool is rarely larger
RIDGE_PENALTIES = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)  # x the mean kernel diagonal: the probe's sweep


def candidate_sizes(model_input: int | None, sizes=CANDIDATE_SIZES) -> list[int]:
    """The sizes measured: none above the backbone's input (it adds nothing it was trained for),
    and the input itself, the reference every other size is compared with."""
    kept = sorted(s for s in sizes if model_input is None or s <= model_input)
    return sorted(set(kept) | ({model_input} if model_input else set()))


def stratified_sample(labels: np.ndarray, seed: int, most: int) -> np.ndarray:
    """Indices of an equal share of each class (`most` in all, at least 2 a class), drawn with
    `seed`, in the order drawn: a prefix of the order is itself a stratified sample, so rounds
    grow the sample without redrawing it."""
    classes = np.unique(labels)
    rng = np.random.default_rng(seed)
    shuffled = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    order = [group[i] for i in range(max(len(g) for g in shuffled)) for group in shuffled if i < len(group)]
    return np.array(order[:max(most, 2 * len(classes))], dtype=np.int64)


def ridge_loo_correct(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
    """(per-item leave-one-out correctness of a one-hot ridge probe at its best penalty, that
    penalty). Standardised features, as the probe's head sees them; the hat matrix of kernel
    ridge gives every item's held-out prediction without refitting: (y - f) / (1 - h)."""
    z = (features - features.mean(0)) / (features.std(0) + 1e-6)
    z = np.hstack([z, np.ones((len(z), 1))])  # an intercept, penalised with the rest: harmless at this scale
    kernel = z @ z.T
    eigenvalues, vectors = np.linalg.eigh(kernel)
    eigenvalues = np.clip(eigenvalues, 0.0, None)
    classes = int(labels.max()) + 1
    targets = np.eye(classes)[labels] - 1.0 / classes
    projected = vectors.T @ targets
    scale = float(np.trace(kernel)) / len(kernel)
    best = None
    for penalty in RIDGE_PENALTIES:
        shrink = eigenvalues / (eigenvalues + penalty * scale)
        fitted = vectors @ (shrink[:, None] * projected)
        leverage = np.clip((vectors ** 2) @ shrink, 0.0, 1.0 - 1e-6)
        held_out = targets - (targets - fitted) / (1.0 - leverage)[:, None]
        correct = held_out.argmax(1) == labels
        if best is None or correct.mean() > best[0].mean() + 1e-12:
            best = (correct, penalty)
    return best


def paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(mean of a - b, its standard error), item by item on the same items."""
    d = a.astype(float) - b.astype(float)
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("inf")


def _lower_bound(difference: float, error: float, z: float = Z) -> float:
    return difference - z * error


def choose_size(correct: dict[int, np.ndarray], reference: int) -> tuple[int, str, dict]:
    """The size to use from per-item correctness at each size (same items, same order), and why,
    and the paired comparisons {size: (difference to the reference, its standard error)}.
    The reference stands unless a size beats it at confidence Z; then the smallest size shown
    at confidence Z to lose less than TOLERANCE to it is taken."""
    base = reference
    if len(correct[base]) < MIN_EVIDENCE:
        return base, (f"the backbone's own input: {len(correct[base])} images measured, fewer than the "
                      f"{MIN_EVIDENCE} that may move it"), {s: paired(correct[s], correct[base]) for s in correct}
    better = [s for s in correct if s != base and _lower_bound(*paired(correct[s], correct[base]), Z_BETTER) > 0]
    if better:
        base = max(better, key=lambda s: (correct[s].mean(), -s))
    comparisons = {s: paired(correct[s], correct[base]) for s in correct}
    safe = [s for s in correct if s == base or _lower_bound(*comparisons[s]) > -TOLERANCE]
    chosen = min(safe)
    n = len(correct[base])
    if chosen == base == reference:
        return chosen, (f"the backbone's own input: no other size shown better, or within "
                        f"{100 * TOLERANCE:.0f} point of it, on {n} images (95% confidence)"), comparisons
    lead = (f"{base} px beats the backbone's {reference} px by {100 * paired(correct[base], correct[reference])[0]:+.1f} "
            f"points (paired, {n} images)" if base != reference else "the backbone's own input is the reference")
    if chosen == base:
        return chosen, lead, comparisons
    m, e = comparisons[chosen]
    return chosen, (f"{lead}; {chosen} px is within {100 * TOLERANCE:.0f} point of it at 95% confidence "
                    f"({100 * m:+.1f} +- {100 * e:.1f} points paired) and cheaper"), comparisons


def measure_sizes(pool, build_backbone, sizes: list[int], *, seed: int = 0, allowance: float | None = None,
                  expected_fit_items: int = 0, reference: int | None = None) -> dict:
    """Embed growing stratified samples of `pool` at every size (smallest first, through the
    feature cache) and score them, until the evidence resolves every size, the sample reaches
    the pool or MAX_SAMPLE, or the next round would pass `allowance` seconds (None: a quarter of
    the expected feature pass over `expected_fit_items` at the reference size, as measured).
    build_backbone(size) -> a Backbone at that input size. Returns {"correct": {size: per-item
    correctness}, "sizes": [records], "sample": n, "rounds": k, "seconds": s} ("correct" empty
    when not even the first round fitted)."""
    reference = reference or max(sizes)
    order = stratified_sample(pool.labels, seed, min(len(pool), MAX_SAMPLE))
    backbones = {s: build_backbone(s) for s in sizes}  # built once; building is not extraction
    features = {s: [] for s in sizes}
    rate = {}  # seconds per image per size, as last measured
    started, done, target = time.perf_counter(), 0, min(len(order), max(FIRST_ROUND, 2 * len(np.unique(pool.labels))))
    correct, record = {}, []
    while done < target:
        batch = pool.subset(order[done:target])
        chunks = _embed_round(batch, sizes, backbones, rate, lambda: _left(started, allowance, rate, reference,
                                                                            expected_fit_items))
        if chunks is None:
            break
        for size in sizes:
            features[size].append(chunks[size])
        done = target
        labels = pool.labels[order[:done]]
        scored = {s: ridge_loo_correct(np.concatenate(features[s]), labels) for s in sizes}
        correct = {s: c for s, (c, _) in scored.items()}
        record = [{"size": s, "accuracy": round(float(c.mean()), 4), "penalty": p,
                   "ms_per_image": round(1000 * rate[s], 2)} for s, (c, p) in scored.items()]
        if done >= MIN_EVIDENCE and _resolved(correct, reference):
            break
        target = min(len(order), 2 * done)
    return {"correct": correct, "sizes": record, "sample": done if correct else 0,
            "seconds": round(time.perf_counter() - started, 2)}


def _embed_round(batch, sizes, backbones, rate: dict, seconds_left) -> dict | None:
    """{size: features of `batch`}, smallest size first, or None when the rest of the round is
    expected to pass seconds_left() (its cost: the rates measured, an unmeasured size's scaled
    from the nearest by area: extraction grows with the pixels), or, in the first round, once
    seconds_left() has run out."""
    from ..embed import embed

    chunks, first = {}, len(rate) < len(sizes)
    for i, size in enumerate(sizes):
        # the first round's first extraction pays one-off start-up (seconds), which scaled by area
        # would forbid every size: within it only the time already spent can stop the round
        expected = 0.0 if first else len(batch) * sum(_rate(rate, s) for s in sizes[i:])
        if (not first and expected >= seconds_left()) or (first and i and seconds_left() < 0):
            return None
        clock = time.perf_counter()
        chunks[size] = embed(backbones[size], batch, description=None)
        rate[size] = (time.perf_counter() - clock) / len(batch)
    return chunks


def _rate(rate: dict, size: int) -> float:
    if size in rate:
        return rate[size]
    nearest = min(rate, key=lambda s: abs(s - size))
    return rate[nearest] * (size / nearest) ** 2


def _left(started: float, allowance: float | None, rate: dict, reference: int, expected_fit_items: int) -> float:
    """Seconds the choice may still spend: its allowance, or with none a share of the probe's own
    expected pass at the reference size."""
    if allowance is None:
        allowance = UNBUDGETED_SHARE * expected_fit_items * _rate(rate, reference)
    return allowance - (time.perf_counter() - started)


def _resolved(correct: dict, reference: int) -> bool:
    """Whether more images could not change the choice: every size already shown better than the
    reference, within the tolerance of it, or worse by more than it (each at confidence Z)."""
    for size, hits in correct.items():
        m, e = paired(hits, correct[reference])
        if size != reference and not (_lower_bound(m, e) > -TOLERANCE or m + Z * e < -TOLERANCE
                                      or _lower_bound(m, e, Z_BETTER) > 0):
            return False
    return True


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
    pool = data.subset(np.asarray(list(splits.indices["train"]) + list(splits.indices["val"]), dtype=np.int64))
    sizes = candidate_sizes(spec.input_size)
    reference = spec.input_size or max(sizes)
    allowance = config.budget_seconds * BUDGET_SHARE if config.budget_seconds else None
    expected_items = len(splits.train) + len(splits.val) + len(splits.test)
    if len(sizes) == 1:  # a backbone whose input is below every candidate: nothing to measure
        measured = {"correct": {}, "sizes": [], "sample": 0, "seconds": 0.0}
    else:
        measured = measure_sizes(
            pool, lambda size: spec.build(pretrained=config.pretrained, weights=config.weights, image_size=size),
            sizes, seed=config.seed, allowance=allowance, expected_fit_items=expected_items, reference=reference)
    if measured["correct"]:
        chosen, reason, comparisons = choose_size(measured["correct"], reference)
    else:
        chosen, reason, comparisons = reference, ("the backbone's own input: no other candidate" if len(sizes) == 1
                                                  else "the backbone's own input: no time to measure another"), {}
    record = {"size": chosen, "backbone": spec.name, "reference": reference, "candidates": measured["sizes"],
              "paired": {str(s): {"difference": round(m, 4), "standard_error": round(e, 4)}
                         for s, (m, e) in comparisons.items()},
              "reason": reason, "sample": measured["sample"], "evidence": "ridge probe, leave-one-out, paired",
              "native": int(data.notes.get("native_size") or min(splits.train.images.shape[1:3])),
              "model_input": spec.input_size, "seconds": measured["seconds"]}
    say(f"image size auto: {chosen} px for {spec.name}, {reason} (" +
        ", ".join(f"{m['size']}: {m['accuracy']:.3f}" for m in measured["sizes"]) +
        f"; {measured['sample']} images, {measured['seconds']:.1f} s)")
    data.notes["image_size_choice"] = record  # the fit's summary records it with the data's other notes
    return replace(config, image_size=chosen)


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
