"""Benchmark: does `headstart rank` order backbones as fine-tuning them would, and for how much less?

For every dataset and seed: `run_rank` scores every candidate on the training split fit would
draw (train_per_class examples per class); then each candidate is actually trained -- a
fixed-budget `lp-ft` fit on the same split, feature cache off so it pays its own inference --
and its test accuracy is the ground truth. Per score: Kendall's weighted tau (scipy's
weightedtau, which weighs agreement at the top most: the top is what a ranking is for) between
the score and that accuracy, and the regret of trusting it (best accuracy minus the accuracy of
the score's pick); medians over seeds per dataset. Cost: the ranking's seconds (embedding +
scores) against the brute force's (the lp-ft fits' wall seconds). RECOMMENDED_SCORE in
src/headstart/choose/rank.py is set from the score with the best median tau.

Ground truth that separates the candidates (issue 23): --test-size sets the test split (10,000
is Fashion-MNIST's whole official test set: one binomial standard error of 0.4 points, not
the 2.3 of 300 images), --train-per-class several hundred, and --pool-seeds averages each
candidate's truth and scores over the seeds (repeated splits) before one tau, for small sets.
--truth probe replaces the lp-ft fits by a logistic-regression probe on the frozen features
(train features from the ranking's cache, the test split embedded once): a cheap, low-noise
truth for a loaded machine, but a biased one -- it is what the `linear` score estimates.

    python bench/rank_quality.py                                   # the full run (hours on 2 cores)
    python bench/rank_quality.py --datasets digits --candidates tf_efficientnet_lite0:64,tf_efficientnet_lite0:32 \
        --seeds 1 --budget 5s --train-per-class 10                 # a smoke run
    python bench/rank_quality.py --datasets fashion-mnist --train-per-class 300 --test-size 10000 \
        --budget 120s --extra-candidates mnist-resnet9             # issue 23's benchmark, lp-ft truth

Writes bench/results/rank_quality.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

DEFAULT_DATASETS = "elpv,fashion-mnist,digits,mnist-5k"
_PROBE_C = 1.0  # the truth probe's L2 penalty on standardised features (several hundred labels a class)
OUT = Path(__file__).resolve().parent / "results" / "rank_quality.json"


def default_candidates(extra: list[str]) -> list[str]:
    """EfficientNet-Lite0/1/2 at their own and a lower size, Lite0's default layers, and any
    extra candidates (e.g. local zoo backbones) given on the command line."""
    from headstart.choose.candidates import lower_size
    from headstart.zoo import resolve_backbone

    names = []
    for arch in ("tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"):
        native = resolve_backbone(arch).input_size
        names += [arch, f"{arch}:{lower_size(native)}"]
    try:
        from headstart.zoo.layers import layer_candidates
        names += layer_candidates("image")
    except ImportError:
        pass
    return list(dict.fromkeys(names + extra))


def ground_truth(dataset: str, candidate, seed: int, args, scratch: Path) -> dict:
    """One fixed-budget lp-ft fit of the candidate: its test accuracy and what it cost."""
    from headstart.config import FitConfig
    from headstart.errors import HeadstartError
    from headstart.pipeline import fit

    config = FitConfig(data=dataset, strategy="lp-ft", budget_seconds=args.budget, backbone=candidate.backbone,
                       image_size=candidate.image_size, seed=seed, train_per_class=args.train_per_class,
                       max_eval=args.test_size or args.max_eval, explain_examples=0,
                       out=str(scratch / f"{dataset}-{candidate.name.replace(':', '-').replace('@', '-')}-s{seed}"))
    done = scratch / f"truth-{dataset}-{candidate.name}-s{seed}.json"
    if done.exists():  # --work of an interrupted run: this fit is done already
        return json.loads(done.read_text())
    try:
        summary = fit(config, use_feature_cache=False).summary  # the brute force pays its own features
    except HeadstartError as e:
        return {"error": str(e).splitlines()[0]}
    truth = {"test_accuracy": summary["test_accuracy"], "wall_seconds": summary["wall_seconds"],
             "train_seconds": summary["train_seconds"]}
    done.write_text(json.dumps(truth))
    return truth


def probe_truth(dataset: str, candidate, seed: int, args, scratch: Path) -> dict:
    """A logistic-regression probe on the candidate's frozen features, trained on the ranking's
    training split (its features come from the cache the ranking filled) and scored on the
    test split, embedded through the same engine: no fine-tuning, so cheap and low-noise."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from headstart.choose.rank import _decode_size
    from headstart.config import FitConfig
    from headstart.data import make_splits
    from headstart.embed import embed
    from headstart.engines.extract import make_engine
    from headstart.errors import HeadstartError
    from headstart.modalities import load_data, modality_of
    from headstart.zoo import resolve_backbone

    done = scratch / f"probe-truth-{dataset}-{candidate.name}-s{seed}.json"
    if done.exists():
        return json.loads(done.read_text())
    started = time.perf_counter()
    try:
        labelled = load_data(dataset, size=lambda modality: _decode_size(modality, args.candidate_list))
        splits = make_splits(labelled, seed=seed, train_per_class=args.train_per_class,
                             max_eval=args.test_size or args.max_eval)
        modality, spec = modality_of(labelled), resolve_backbone(candidate.backbone)
        config = FitConfig(data=labelled.name, backbone=candidate.backbone, image_size=candidate.image_size)
        backbone = spec.build(pretrained=True, **modality.backbone_options(config, spec, pretrained=True,
                                                                            data=splits.train))
        classifier = modality.build_classifier(backbone, labelled.num_classes).eval()
        prepared = classifier.prepare(splits.train)
        engine = make_engine("auto", classifier, calibration=prepared.inputs)
        train = embed(classifier, prepared, engine=engine, description=None)
        test = embed(classifier, classifier.prepare(splits.test), engine=engine, description=None)
    except HeadstartError as e:
        return {"error": str(e).splitlines()[0]}
    scaler = StandardScaler().fit(train)
    probe = LogisticRegression(C=_PROBE_C, max_iter=1000).fit(scaler.transform(train), splits.train.labels)
    accuracy = float(np.mean(probe.predict(scaler.transform(test)) == splits.test.labels))
    truth = {"test_accuracy": accuracy, "test_size": len(test), "wall_seconds": round(time.perf_counter() - started, 2)}
    done.write_text(json.dumps(truth))
    return truth


def pooled_agreement(seeds: list[dict]) -> dict[str, dict]:
    """One tau per score over the seeds' averages: each candidate's test accuracy and score value
    averaged over the repeated splits (the candidates every seed ranked and trained)."""
    names = set.intersection(*(set(s["truth"]) for s in seeds))
    names = [n for n in names if all("test_accuracy" in s["truth"][n] for s in seeds)]
    truth = {n: {"test_accuracy": float(np.mean([s["truth"][n]["test_accuracy"] for s in seeds]))} for n in names}
    scores = list(seeds[0]["agreement"])
    candidates = []
    for n in names:
        values = {}
        for score in scores:
            mine = [s["scores"].get(n, {}).get(score) for s in seeds]
            values[score] = {"value": None if any(v is None for v in mine) else float(np.mean(mine))}
        candidates.append({"candidate": n, "scores": values})
    return agreement({"scores": scores, "candidates": candidates}, truth)


def agreement(ranked: dict, truth: dict[str, dict]) -> dict[str, dict]:
    """Per score: weighted tau against the lp-ft accuracies, and the regret of its pick."""
    from scipy.stats import weightedtau

    out = {}
    for score in ranked["scores"]:
        pairs = [(c["scores"][score]["value"], truth[c["candidate"]]["test_accuracy"]) for c in ranked["candidates"]
                 if c["scores"][score]["value"] is not None and "test_accuracy" in truth.get(c["candidate"], {})]
        if len(pairs) < 2:
            out[score] = {"tau": None, "regret": None, "n": len(pairs)}
            continue
        values, accuracies = zip(*pairs)
        tau = weightedtau(values, accuracies).statistic
        picked = accuracies[max(range(len(values)), key=lambda i: values[i])]
        out[score] = {"tau": None if tau != tau else round(float(tau), 4),  # NaN (constant input) -> None
                      "regret": round(max(accuracies) - picked, 4), "n": len(pairs)}
    return out


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 4) if values else None


def run_dataset(dataset: str, candidates: list, args, scratch: Path) -> dict:
    from headstart.choose.rank import run_rank

    seeds = []
    for seed in range(args.seeds):
        started = time.perf_counter()
        previous = scratch / f"rank-{dataset}-s{seed}" / "rank.json"
        if previous.exists():  # --work of an interrupted run
            ranked = json.loads(previous.read_text())
        else:
            ranked = run_rank(dataset, candidates=candidates, seed=seed, train_per_class=args.train_per_class,
                              max_eval=args.test_size or args.max_eval, out=str(previous.parent))
        rank_wall = time.perf_counter() - started
        truth = {}
        for c in candidates:
            if any(c.name == r["candidate"] for r in ranked["candidates"]):
                measure = probe_truth if args.truth == "probe" else ground_truth
                truth[c.name] = measure(dataset, c, seed, args, scratch)
                print(f"  {dataset} seed {seed} {c.name}: {truth[c.name]}", flush=True)
        seeds.append({
            "seed": seed, "agreement": agreement(ranked, truth), "truth": truth,
            "recommendation": ranked["recommendation"], "skipped": ranked["skipped"],
            "scores": {c["candidate"]: {s: v["value"] for s, v in c["scores"].items()} for c in ranked["candidates"]},
            "cost": {c["candidate"]: {"embed_seconds": c["embed_seconds"], "ms_per_example": c["ms_per_example"],
                                      "score_seconds": {s: v["seconds"] for s, v in c["scores"].items()}}
                     for c in ranked["candidates"]},
            "rank_seconds": round(sum(c["seconds"] for c in ranked["candidates"]), 2),
            "rank_wall_seconds": round(rank_wall, 2),
            "brute_force_seconds": round(sum(t.get("wall_seconds", 0.0) for t in truth.values()), 2),
        })
    scores = seeds[0]["agreement"].keys()
    pooled = pooled_agreement(seeds) if args.pool_seeds else None
    return {
        "seeds": seeds,
        "pooled": pooled,
        "tau_median": {s: pooled[s]["tau"] if pooled else _median(x["agreement"][s]["tau"] for x in seeds)
                       for s in scores},
        "regret_median": {s: pooled[s]["regret"] if pooled else _median(x["agreement"][s]["regret"] for x in seeds)
                          for s in scores},
        "truth_spread": _median(float(np.std([t["test_accuracy"] for t in x["truth"].values() if "test_accuracy" in t]))
                                for x in seeds),
        "rank_seconds_median": _median(x["rank_seconds"] for x in seeds),
        "brute_force_seconds_median": _median(x["brute_force_seconds"] for x in seeds),
    }


class _kept:
    def __init__(self, folder: str):
        Path(folder).mkdir(parents=True, exist_ok=True)
        self.folder = folder

    def __enter__(self) -> str:
        return self.folder

    def __exit__(self, *exc) -> None:
        return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default=DEFAULT_DATASETS, help=f"comma-separated (default: {DEFAULT_DATASETS})")
    p.add_argument("--candidates", help="BACKBONE[:SIZE],... replacing the default set")
    p.add_argument("--extra-candidates", default="", help="added to the default set, e.g. local zoo backbones")
    p.add_argument("--train-per-class", type=int, default=50)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--budget", default="60s", help="each lp-ft fit's time budget (the ground truth)")
    p.add_argument("--max-eval", type=int, default=500, help="cap on the val and test splits")
    p.add_argument("--test-size", type=int, help="the test split's size (the cap on val and test; default --max-eval)")
    p.add_argument("--truth", choices=("lp-ft", "probe"), default="lp-ft",
                   help="ground truth: fixed-budget lp-ft fits (the issue's), or a probe on the frozen features")
    p.add_argument("--pool-seeds", action="store_true",
                   help="one tau over the seeds' average truth and scores (repeated splits of a small set)")
    p.add_argument("--cache", help="HEADSTART_CACHE for the run (default: a fresh temporary folder, so the "
                   "ranking's first seed pays its engine exports and features cold)")
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--work", help="folder for the runs and partial results (default: a temporary one); an "
                   "interrupted run given the same --work continues where it stopped")
    args = p.parse_args()
    os.environ.setdefault("HEADSTART_QUIET", "1")
    cache = tempfile.TemporaryDirectory(prefix="rank-quality-cache-") if not args.cache else None
    os.environ["HEADSTART_CACHE"] = args.cache or cache.name

    from headstart.choose.candidates import parse_candidates
    from headstart.choose.rank import RECOMMENDED_SCORE
    from headstart.compare import machine_info
    from headstart.config import parse_duration
    from headstart.files import atomic_write_text

    args.budget = parse_duration(args.budget)
    extra = [c for c in args.extra_candidates.split(",") if c.strip()]
    candidates = parse_candidates(args.candidates or default_candidates(extra))
    args.candidate_list = candidates
    started = time.perf_counter()
    results = {}
    with (tempfile.TemporaryDirectory(prefix="rank-quality-") if not args.work else _kept(args.work)) as scratch:
        for dataset in [d.strip() for d in args.datasets.split(",") if d.strip()]:
            print(f"{dataset}: {len(candidates)} candidates x {args.seeds} seed(s)", flush=True)
            results[dataset] = run_dataset(dataset, candidates, args, Path(scratch))
    scores = list(next(iter(results.values()))["tau_median"])
    overall = {s: _median(r["tau_median"][s] for r in results.values()) for s in scores}
    ranked_scores = sorted((s for s in scores if overall[s] is not None), key=lambda s: -overall[s])
    record = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": " ".join(sys.argv),
        "machine": machine_info(),
        "settings": {"datasets": list(results), "candidates": [c.name for c in candidates], "seeds": args.seeds,
                     "train_per_class": args.train_per_class, "budget_seconds": args.budget,
                     "max_eval": args.max_eval, "test_size": args.test_size, "pool_seeds": args.pool_seeds,
                     "ground_truth": ("lp-ft test accuracy at a fixed budget" if args.truth == "lp-ft" else
                                      f"test accuracy of a logistic probe (C={_PROBE_C}) on the frozen features")},
        "recommended_score_now": RECOMMENDED_SCORE,
        "tau_median_over_datasets": overall,
        "best_score": ranked_scores[0] if ranked_scores else None,
        "datasets": results,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    out = Path(args.out)
    atomic_write_text(out, json.dumps(record, indent=2))
    print(f"{'score':10} " + " ".join(f"{d:>14}" for d in results) + f" {'median':>8}")
    for s in scores:
        cells = " ".join(f"{'—' if results[d]['tau_median'][s] is None else format(results[d]['tau_median'][s], '.3f'):>14}"
                         for d in results)
        print(f"{s:10} {cells} {'—' if overall[s] is None else format(overall[s], '.3f'):>8}")
    for s in scores:
        cells = " ".join(f"{'—' if results[d]['regret_median'][s] is None else format(100 * results[d]['regret_median'][s], '.1f'):>14}"
                         for d in results)
        print(f"{'regret ' + s:10} {cells}")
    for d, r in results.items():
        print(f"{d}: ranking {r['rank_seconds_median']} s vs brute force {r['brute_force_seconds_median']} s (median); "
              f"truth spread across candidates (std) {r['truth_spread']}")
    print(f"best score by median weighted tau: {record['best_score']} (RECOMMENDED_SCORE is {RECOMMENDED_SCORE}); "
          f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
