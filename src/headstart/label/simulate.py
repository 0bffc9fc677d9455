"""`headstart simulate-al DATA`: the active-learning loop on a labelled dataset with its labels
hidden, every query method beside random on the same start sets and seeds.

The backbone embeds the pool and the test split once (cached); each round refits the probe's
logistic head on the labels "bought" so far, scores it on test, and asks the method for the
next k. Only the head is refitted, so a whole study costs one inference pass plus seconds.

Published evidence says uncertainty sampling often fails to beat random on deep features, so
the verdict is measured, per method: its mean gain over random across rounds, its gain at the
last round, and how many labels it needed to reach random's final accuracy.
"""
from __future__ import annotations

import time

import numpy as np

from ..errors import HeadstartError
from ..log import progress_bar
from .al_classifier import fit_classifier, standardiser
from .queries import QUERIES, QueryInput, get_query, run_query

BEAT_MARGIN = 0.005  # a mean gain below half a point is not called beating random


def start_set(labels: np.ndarray, size: int, num_classes: int, seed: int) -> np.ndarray:
    """The labels every method starts from: one random item of each class (so the first head
    knows every class, as a user seeding a labelling job would), the rest drawn at random."""
    rng = np.random.default_rng(seed)
    chosen = []
    if size >= num_classes:
        chosen = [int(rng.choice(np.flatnonzero(labels == c))) for c in range(num_classes) if (labels == c).any()]
    rest = np.setdiff1d(np.arange(len(labels)), chosen)
    chosen += list(rng.choice(rest, size=size - len(chosen), replace=False))
    return np.array(chosen, dtype=np.int64)


def check_plan(pool_size: int, start: int, k: int, rounds: int) -> None:
    if start < 1 or k < 1 or rounds < 1:
        raise HeadstartError(f"--start, --k and --rounds must be at least 1 (got {start}, {k}, {rounds})")
    needed = start + k * rounds
    if needed > pool_size:
        raise HeadstartError(f"{rounds} rounds of {k} after a start of {start} need {needed} items, but the pool "
                             f"holds {pool_size}", hint="lower --rounds or --k, or raise --pool-size")


def simulate(pool_x: np.ndarray, pool_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, num_classes: int, *,
             methods: list[str], start: int, k: int, rounds: int, seeds: int) -> dict:
    """Curves of test accuracy against labels used, per method and seed, on features."""
    for name in methods:
        get_query(name)
    check_plan(len(pool_x), start, k, rounds)
    mean, std = standardiser(pool_x)
    pool_z, test_z = (pool_x - mean) / std, (test_x - mean) / std
    curves = {name: {"accuracy": [], "query_seconds": [], "fit_seconds": []} for name in methods}
    with progress_bar("active-learning rounds", total=len(methods) * seeds * (rounds + 1)) as advance:
        for seed in range(seeds):
            first = start_set(pool_y, start, num_classes, seed)
            for name in methods:
                accuracy, query_s, fit_s = _loop(name, pool_z, pool_y, test_z, test_y, num_classes, first, k, rounds,
                                                 seed, advance)
                curves[name]["accuracy"].append(accuracy)
                curves[name]["query_seconds"].append(query_s)
                curves[name]["fit_seconds"].append(fit_s)
    labels_used = [start + r * k for r in range(rounds + 1)]
    result = {"labels": labels_used, "methods": {}}
    for name, c in curves.items():
        acc = np.array(c["accuracy"])  # (seeds, rounds + 1)
        result["methods"][name] = {
            "summary": QUERIES[name].summary,
            "median": np.median(acc, 0).round(4).tolist(), "low": acc.min(0).round(4).tolist(),
            "high": acc.max(0).round(4).tolist(), "per_seed": acc.round(4).tolist(),
            "query_seconds_per_round": round(float(np.sum(c["query_seconds"])) / (seeds * rounds), 4),
            "fit_seconds_per_round": round(float(np.sum(c["fit_seconds"])) / (seeds * (rounds + 1)), 4),
        }
    result["verdicts"] = judge_against_random(result)
    result["sentence"] = verdict_sentence(result)
    return result


def _loop(name, pool_z, pool_y, test_z, test_y, num_classes, first, k, rounds, seed, advance):
    labelled = np.zeros(len(pool_z), dtype=bool)
    labelled[first] = True
    accuracy, query_s, fit_s = [], 0.0, 0.0
    for r in range(rounds + 1):
        t0 = time.perf_counter()
        y = np.where(labelled, pool_y, np.nan)
        classifier = fit_classifier(pool_z, y, num_classes, seed)
        fit_s += time.perf_counter() - t0
        accuracy.append(float((classifier.predict(test_z) == test_y).mean()))
        advance(1)
        if r == rounds:
            break
        t0 = time.perf_counter()
        unlabelled = np.flatnonzero(~labelled)
        given = QueryInput(pool_z[labelled], pool_y[labelled], pool_z[unlabelled], classifier, seed * 1000 + r)
        chosen, _ = run_query(name, given, k)
        query_s += time.perf_counter() - t0
        labelled[unlabelled[chosen]] = True
    return accuracy, query_s, fit_s


def labels_to_reach(labels: list[int], curve: list[float], target: float) -> int | None:
    """The fewest labels at which a (median) curve first reaches `target`; None if never."""
    for n, a in zip(labels, curve):
        if a >= target - 1e-9:
            return n
    return None


def judge_against_random(result: dict) -> dict:
    """Per method: mean and final gain over random at equal labels, and labels needed to reach
    random's final accuracy (and their share of random's)."""
    if "random" not in result["methods"]:
        return {}
    labels = result["labels"]
    base = np.array(result["methods"]["random"]["median"])
    target = float(base[-1])
    verdicts = {}
    for name, m in result["methods"].items():
        if name == "random":
            continue
        curve = np.array(m["median"])
        needed = labels_to_reach(labels, m["median"], target)
        mean_gain = float(np.mean(curve[1:] - base[1:]))  # round 0 is the shared start set
        verdicts[name] = {
            "mean_gain": round(mean_gain, 4),
            "final_gain": round(float(curve[-1] - base[-1]), 4),
            "labels_to_random_final": needed,
            "share_of_random_labels": None if needed is None else round(needed / labels[-1], 3),
            "beats_random": bool(mean_gain > BEAT_MARGIN and needed is not None and needed < labels[-1]),
        }
    return verdicts


def verdict_sentence(result: dict) -> str:
    """One plain paragraph: which methods beat random here, by how much; or that none did."""
    verdicts = result.get("verdicts") or {}
    if not verdicts:
        return "Random was not run, so no method is judged against it."
    labels = result["labels"]
    target = result["methods"]["random"]["median"][-1]
    winners = sorted((n for n, v in verdicts.items() if v["beats_random"]),
                     key=lambda n: -verdicts[n]["mean_gain"])
    reach = f"random's final {target:.3f} test accuracy at {labels[-1]} labels"
    if not winners:
        best = max(verdicts, key=lambda n: verdicts[n]["mean_gain"])
        v = verdicts[best]
        return (f"No method beat random here: the best, {best}, was {100 * v['mean_gain']:+.1f} points against "
                f"random on average over the rounds ({100 * v['final_gain']:+.1f} at the last); label at random.")
    parts = []
    for name in winners:
        v = verdicts[name]
        parts.append(f"{name} {100 * v['mean_gain']:+.1f} points on average ({100 * v['final_gain']:+.1f} at the "
                     f"last round) and reached {reach} with {v['labels_to_random_final']} labels "
                     f"({100 * v['share_of_random_labels']:.0f}% of random's)")
    losers = [n for n in verdicts if n not in winners]
    tail = f" {', '.join(losers)} did not beat random." if losers else ""
    return "Beat random: " + "; ".join(parts) + "." + tail
