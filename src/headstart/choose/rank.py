"""`headstart rank`: which pretrained backbone (or layer of one) to use on this data, by evidence.

Each candidate embeds the labelled training split once -- through the same cached embed
stage, engine and preprocessing the probe uses, so a later `fit --strategy probe` with that
backbone, size and split reads the features from disk -- and every transferability score
runs on those features (choose/scores.py). RECOMMENDED_SCORE orders the candidates; the
pipeline asks `recommend` for `--backbone auto`.

This module sits below strategies and the pipeline (it only embeds), so the pipeline can rank.
"""
from __future__ import annotations

import gc
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from ..config import FitConfig
from ..data import make_splits
from ..engines.extract import make_engine
from ..embed import embed, feature_cache_path
from ..errors import HeadstartError
from ..log import say
from ..modalities import load_data, modality_of
from ..records import new_run_dir, write_json
from ..zoo import WeightsUnavailable, resolve_backbone
from .candidates import Candidate, default_candidates, parse_candidates

# The score that orders the candidates and picks the recommendation. Set from
# bench/rank_quality.py: the score whose order best matches (weighted Kendall tau) the test
# accuracy fixed-budget lp-ft fits reach with each candidate. k-NN led on all three datasets
# (median tau 0.65 against 0.39 for the cross-validated probe, BENCHMARKS §11.2), and is the
# cheaper of the two; both picked within 0-3.3 points of the best candidate.
RECOMMENDED_SCORE = "knn"
# Second opinions named in the recommendation's reason: the fast evidence-based scores.
SECOND_OPINIONS = ("logme", "hscore")
# Examples timed through each candidate's extraction engine for its inference cost (the
# tie-breaker): enough for a stable per-example figure, cheap at any size.
COST_BATCH = 32
COST_REPEATS = 3  # the fastest of three: another process's burst only ever slows a timing down
# Ties on scores that are not accuracies: values closer than this share of the candidates'
# spread read as equal.
RELATIVE_TIE = 0.02
# SPLIT_SETTINGS (the fit settings that decide the split) and RANK_SETTINGS live with rank's config.
# How the reason sentence names a score (the score's own name otherwise).
SCORE_WORDS = {
    "linear": "cross-validated probe accuracy",
    "knn": "cross-validated k-NN accuracy",
    "logme": "LogME evidence",
    "hscore": "H-score",
    "nce": "NCE",
    "leep": "LEEP",
    "sfda": "SFDA (self-challenged Fisher posterior)",
    "ncti": "NCTI (relative to the candidates ranked)",
    "size": "model size (log10 parameters)",
}
SCORE_NAMES = {"logme": "LogME", "hscore": "H-score", "nce": "NCE", "leep": "LEEP", "knn": "k-NN", "linear": "probe",
               "sfda": "SFDA", "ncti": "NCTI", "size": "size prior"}


def _binomial_noise(values: list[float], n: int) -> float:
    """An accuracy on n examples is uncertain by its binomial standard error."""
    p = max(values)
    return math.sqrt(max(p * (1 - p), 1e-4) / max(n, 1))


def _spread_noise(values: list[float], n: int) -> float:
    return RELATIVE_TIE * (max(values) - min(values))


# score name -> how far apart two candidates' values must be to differ (else: the cheaper wins)
TIE_NOISE = {"linear": _binomial_noise, "knn": _binomial_noise}


# -- ranking the candidates of one training split ---------------------------------------------

def rank_candidates(train, candidates, *, scores=None, seed: int = 0, extract_engine: str = "auto",
                    on_progress=None, deadline: float | None = None) -> dict:
    """Embed `train` (a labelled data form, e.g. splits.train) with every candidate and run
    every score. A candidate that cannot be built here is skipped with its reason; none left
    is an error. on_progress(done, total, entry) follows each candidate. deadline (a
    time.perf_counter() value): candidates not started by then are skipped, the first always runs."""
    from .scores import SCORES, combine_relative, get_score

    candidates = _as_candidates(candidates)
    names = list(scores) if scores else None
    for name in names or []:
        get_score(name)  # an unknown score fails before any model is built
    ranked, skipped = [], []
    for i, candidate in enumerate(candidates):
        if deadline is not None and i > 0 and time.perf_counter() > deadline:
            skipped.append({"candidate": candidate.name, "reason": "not ranked: the ranking's share of the budget "
                                                                   "was spent"})
            continue
        try:
            entry = _rank_one(train, candidate, names, seed, extract_engine)
        except (HeadstartError, WeightsUnavailable) as e:
            reason = str(e).splitlines()[0]
            say(f"skipped candidate {candidate.name}: {reason}")
            skipped.append({"candidate": candidate.name, "reason": reason})
            entry = None
        else:
            ranked.append(entry)
        finally:
            _free()  # the candidate's model (and its engine) went out of scope with _rank_one
        if on_progress is not None:
            on_progress(i + 1, len(candidates), entry)
    if not ranked:
        listing = "; ".join(f"{s['candidate']}: {s['reason']}" for s in skipped)
        raise HeadstartError(f"no candidate could be ranked ({listing})",
                             hint="pass --candidates that load here, e.g. tf_efficientnet_lite0 (`headstart zoo` "
                                  "lists what loads offline)")
    score_names = list(dict.fromkeys(s for e in ranked for s in e["scores"]))
    combine_relative([e["scores"] for e in ranked])  # NCTI's value exists only across the candidates
    _add_ranks(ranked, score_names)
    result = {"scores": score_names, "recommended_score": RECOMMENDED_SCORE, "train_size": len(train),
              "classes": list(train.classes), "candidates": ranked, "skipped": skipped,
              "score_info": {s: {"summary": SCORES[s].summary, "paper": SCORES[s].paper} for s in score_names}}
    result["candidates"] = _ordered(result)
    score = _ranking_score(result)
    for position, entry in enumerate(result["candidates"], 1):  # the ranking's own order and value
        entry.update(rank=position, value=_value(entry, score))
    result["recommendation"] = recommend(result)
    return result


def _as_candidates(items) -> list[Candidate]:
    """'a,b:160', names, or Candidates -> Candidates."""
    if not isinstance(items, str) and all(isinstance(c, Candidate) for c in items):
        return list(items)
    return parse_candidates(items)


def _rank_one(train, candidate: Candidate, names, seed: int, extract_engine: str) -> dict:
    from .scores import run_scores

    modality = modality_of(train)
    spec = resolve_backbone(candidate.backbone)
    if not modality.owns(spec):
        raise HeadstartError(f"{spec.name} is a {spec.modality} backbone and the data is {modality.name}")
    if spec.standalone:
        raise HeadstartError(f"{spec.name} is a whole model of its own, with no features to score")
    say(f"candidate {candidate.name}")
    config = FitConfig(data=train.name, backbone=candidate.backbone, image_size=candidate.image_size)
    backbone = spec.build(pretrained=True, **modality.backbone_options(config, spec, pretrained=True, data=train))
    classifier = modality.build_classifier(backbone, train.num_classes)
    if torch.cuda.is_available():
        classifier.cuda()
    classifier.eval()
    started = time.perf_counter()
    prepared = classifier.prepare(train)  # resized or tokenised, as the probe prepares it
    engine = make_engine(extract_engine, classifier, calibration=prepared.inputs)
    cached = feature_cache_path(classifier.backbone, prepared, engine).exists()
    features = embed(classifier, prepared, engine=engine, description=f"features ({candidate.name})")
    embed_seconds = time.perf_counter() - started
    # eval again: eager embedding wraps the model in a fresh FeatureModel, and restoring that
    # wrapper's (training) mode leaves batch-norm in training mode behind it
    classifier.eval()
    cost = _ms_per_example(engine, prepared.inputs)
    logits = _source_logits(classifier.backbone, features)
    # what the model-size prior reads: the parameters that compute these features (a layer
    # candidate's model stops at its layer)
    model_info = {"parameters": int(sum(p.numel() for p in classifier.backbone.parameters()))}
    measured = run_scores(features, train.labels, source_logits=logits, names=names, seed=seed,
                          model_info=model_info)
    described = classifier.describe()
    pre = described["preprocessing"]
    score_seconds = sum(s.get("seconds") or 0.0 for s in measured.values())
    return {
        "candidate": candidate.name, "backbone": candidate.backbone, "image_size": candidate.image_size,
        "input_size": pre.get("input_size", pre.get("max_length")), "unit": modality.words.get("input_unit", ""),
        "weights": described.get("weights"), "feature_dim": int(features.shape[1]),
        "features_cached": bool(cached), "engine": engine.name,
        "engine_prepare_seconds": round(engine.prepare_seconds, 3),
        "embed_seconds": round(embed_seconds, 3), "ms_per_example": round(cost, 3),
        "source_head": logits is not None, "parameters": model_info["parameters"], "scores": _plain(measured), "score_seconds": round(score_seconds, 3),
        "seconds": round(embed_seconds + score_seconds, 3),
    }


def _ms_per_example(engine, inputs: np.ndarray) -> float:
    """Warm inference cost through the engine: what the recommended model costs to run, and the
    tie-breaker (embedding seconds are no measure when the features came from the cache)."""
    batch = inputs[:COST_BATCH]
    engine.features(batch)  # warm-up at this very shape: allocation and kernel selection are per shape
    timings = []
    for _ in range(COST_REPEATS):
        started = time.perf_counter()
        engine.features(batch)
        timings.append(time.perf_counter() - started)
    return 1000 * min(timings) / len(batch)


def _source_logits(backbone, features: np.ndarray) -> np.ndarray | None:
    """The backbone's own ImageNet classifier on the features (for LEEP and NCE); None when it
    has none, or when the features are an intermediate layer's that head cannot read."""
    try:
        from ..zoo.source_head import source_head
    except ImportError:  # pragma: no cover  (the zoo provides it; LEEP and NCE are then skipped)
        return None
    head = source_head(backbone)
    if head is None:
        return None
    weight, bias = (np.asarray(a, dtype=np.float32) for a in head)
    if weight.shape[1] != features.shape[1]:
        return None
    return features @ weight.T + bias


def _free() -> None:
    """One candidate's model must be gone before the next is built (several hundred MB each)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _plain(measured: dict) -> dict:
    """Scores as JSON keeps them: floats rounded, NaN as None (skipped, with its reason)."""
    out = {}
    for name, m in measured.items():
        value = m.get("value")
        ok = value is not None and np.isfinite(value)
        out[name] = {"value": float(value) if ok else None, "seconds": round(float(m.get("seconds") or 0.0), 4),
                     "skipped": m.get("skipped") or (None if ok else "no finite value")}
        if ok and m.get("terms") is not None:  # a relative score's raw terms, combined across candidates
            out[name]["terms"] = [float(x) for x in m["terms"]]
    return out


def _add_ranks(entries: list[dict], score_names: list[str]) -> None:
    """entry["ranks"][score]: 1 for the best candidate by that score; None where it was skipped."""
    for entry in entries:
        entry["ranks"] = {}
    for name in score_names:
        values = [_value(e, name) for e in entries if _value(e, name) is not None]
        for entry in entries:  # equal values share a rank (1, 1, 3)
            mine = _value(entry, name)
            entry["ranks"][name] = None if mine is None else 1 + sum(v > mine for v in values)


def _value(entry: dict, score: str) -> float | None:
    return (entry["scores"].get(score) or {}).get("value")


# -- the recommendation -----------------------------------------------------------------------

def _ordered(result: dict) -> list[dict]:
    """The candidates best first by the recommended score (falling back to the first score every
    candidate has): within noise of the best, the cheaper candidate goes first."""
    score = _ranking_score(result)
    entries = result["candidates"]
    valued = [e for e in entries if _value(e, score) is not None]
    rest = [e for e in entries if _value(e, score) is None]
    if not valued:
        return sorted(entries, key=lambda e: e["ms_per_example"])
    values = [_value(e, score) for e in valued]
    noise = TIE_NOISE.get(score, _spread_noise)(values, result["train_size"])
    best = max(values)
    tied = sorted((e for e in valued if best - _value(e, score) <= noise), key=lambda e: e["ms_per_example"])
    others = sorted((e for e in valued if best - _value(e, score) > noise), key=lambda e: -_value(e, score))
    return tied + others + rest


def _ranking_score(result: dict) -> str:
    if any(_value(e, RECOMMENDED_SCORE) is not None for e in result["candidates"]):
        return RECOMMENDED_SCORE
    return next((s for s in result["scores"] if any(_value(e, s) is not None for e in result["candidates"])),
                RECOMMENDED_SCORE)


def recommend(result: dict) -> dict:
    """The candidate to use and why, in one sentence: {candidate, backbone, image_size, score,
    value, reason}. `result` is what rank_candidates (or run_rank) returned."""
    score = _ranking_score(result)
    ordered = _ordered(result)
    chosen = ordered[0]
    value = _value(chosen, score)
    return {"candidate": chosen["candidate"], "backbone": chosen["backbone"], "image_size": chosen["image_size"],
            "input_size": chosen["input_size"], "score": score, "value": value,
            "reason": _reason(chosen, ordered, score, result)}


def _reason(chosen: dict, ordered: list[dict], score: str, result: dict) -> str:
    words = SCORE_WORDS.get(score, score)
    where = f"{chosen['backbone']} at {chosen['input_size']} {chosen['unit']}".rstrip()
    value = _value(chosen, score)
    if value is None:
        return f"{where}: no score could be computed; it is the cheapest to run ({chosen['ms_per_example']:.2f} ms " \
               f"per example)."
    rivals = [e for e in ordered if e is not chosen and _value(e, score) is not None]
    if not rivals:
        return f"{where}: the only candidate ranked ({words} {value:.3f})."
    top = max(rivals, key=lambda e: _value(e, score))
    if _value(top, score) >= value:  # a tie (within noise), broken by cost
        level = "level with" if _value(top, score) == value else "within noise of"
        sentence = (f"{where}: {words} {value:.3f}, {level} {top['candidate']} ({_value(top, score):.3f}), "
                    f"and cheaper to run ({chosen['ms_per_example']:.2f} vs {top['ms_per_example']:.2f} ms per "
                    f"example)")
    else:
        sentence = f"{where}: the highest {words} ({value:.3f} vs {_value(top, score):.3f} for {top['candidate']})"
    opinions = [_opinion(other, chosen, result["candidates"]) for other in SECOND_OPINIONS if other != score]
    opinions = [o for o in opinions if o]
    return sentence + (", " + "; ".join(opinions) if opinions else "") + "."


def _opinion(score: str, chosen: dict, entries: list[dict]) -> str | None:
    """'LogME agrees' when the score ranks `chosen` first too, else which candidate it prefers."""
    valued = [e for e in entries if _value(e, score) is not None]
    if len(valued) < 2 or _value(chosen, score) is None:
        return None
    best = max(valued, key=lambda e: _value(e, score))
    name = SCORE_NAMES.get(score, score)
    return f"{name} agrees" if best is chosen else f"{name} prefers {best['candidate']}"


# -- `headstart rank`: load, split as fit does, rank, write RUN ---------------------------------

def run_rank(data, *, candidates=None, scores=None, out=None, seed: int = 0, train_per_class=None,
             train_size=None, val_fraction: float = 0.15, test_fraction: float = 0.15, max_eval: int = 1000,
             extract_engine: str = "auto", **load_options) -> dict:
    """Rank candidates on `data`'s training split (drawn exactly as `fit` draws it with the same
    settings) and write RUN/rank.json and RUN/report.html. Returns rank.json's content, with
    the report's path and the run folder."""
    started = time.perf_counter()
    chosen = _as_candidates(candidates) if candidates else None
    run_dir = new_run_dir(out, prefix="rank")
    if (run_dir / "rank.json").exists():
        raise HeadstartError(f"{run_dir} already holds a ranking", hint="choose a new --out")
    labelled = load_data(data, size=lambda modality: _decode_size(modality, chosen), **load_options)
    modality = modality_of(labelled)
    chosen = chosen or default_candidates(modality.name)
    split = {"seed": seed, "train_per_class": train_per_class, "train_size": train_size,
             "val_fraction": val_fraction, "test_fraction": test_fraction, "max_eval": max_eval}
    splits = make_splits(labelled, **split)
    say(f"ranking {len(chosen)} candidate(s) on {len(splits.train)} training {labelled.noun} of {labelled.name}, "
        f"{labelled.num_classes} classes")
    result = rank_candidates(splits.train, chosen, scores=scores, seed=seed, extract_engine=extract_engine)
    result.update({
        "data": str(data), "data_name": labelled.name, "modality": modality.name,
        "decoded_size": getattr(labelled, "decoded_size", None),
        "settings": {**split, "extract_engine": extract_engine, "candidates": [c.name for c in chosen],
                     "scores": list(scores) if scores else None, **load_options},
        "wall_seconds": round(time.perf_counter() - started, 3), "machine": _machine(),
    })
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "rank.json", result)
    from ..report.rank import build_rank_report
    result["report"] = str(build_rank_report(run_dir))
    result["run_dir"] = str(run_dir)
    return result


def _decode_size(modality, candidates: list[Candidate] | None) -> int | None:
    """Files are decoded once, at the largest size a candidate that loads here reads (each
    resizes down). A candidate whose weights cannot load (skipped later) must not set it: the
    largest candidate's features are reusable by a later fit only when the files were decoded
    at its own size, as that fit decodes them."""
    sizes, loadable = [], []
    for c in candidates or default_candidates(modality.name):
        try:
            spec = resolve_backbone(c.backbone)
        except HeadstartError:
            continue  # an unknown name is skipped with its reason when the candidates are ranked
        size = modality.decode_size(c.image_size, spec)
        sizes.append(size)
        if spec.pretrained_offline:
            loadable.append(size)
    sizes = [s for s in loadable or sizes if s]
    return max(sizes) if sizes else None


def _machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "platform": platform.platform()}
