"""Label curves: how many labels does transfer need to match the baseline trained on all of them?

`compare --label-fractions 0.01,0.05,0.1,0.25,1` (shares of the training labels) or `5,10,20`
(labels per class) runs every arm, each seed, again at each smaller label budget. The budgets
share the comparison's split: for a seed, validation and test are the ones the full comparison
used, and the training subsets are nested (the 5 % subset lies inside the 10 % one) and
stratified (each class keeps its share, and at least one example). A budget that would leave a
class without an example is an error, raised before anything trains.

All the labels is the ordinary comparison (RUN/arms/), never run twice; a smaller budget B is an
ordinary comparison's arms in RUN/labels/B/arms/. The curves go to RUN/label_curves.json and the
comparison's `label_curve`, with the smallest measured budget at which the best transfer arm's
median test accuracy reaches the best baseline arm's at all labels.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import Splits, make_splits
from .errors import HeadstartError
from .log import say
from .records import write_json

FILE = "label_curves.json"


def budget_name(value: float) -> str:
    """The folder and display name of a budget: '5pct' for a share of 0.05, '10-per-class' for 10."""
    return f"{value * 100:g}pct" if value <= 1 else f"{int(value)}-per-class"


def nested_subsets(train: np.ndarray, labels: np.ndarray, classes: list[str], budgets: list[float],
                   seed: int, noun: str = "examples") -> list[np.ndarray]:
    """One training subset per budget (ascending), each inside the next.

    Every class's training examples are shuffled once (from `seed`); a budget takes the first
    n_k of each class, n_k = round(share * count_k) or the per-class count. n_k never falls as
    the budget grows, so smaller subsets are prefixes of larger ones: nested and stratified.
    """
    train = np.asarray(train, dtype=np.int64)
    counts = np.bincount(labels[train], minlength=len(classes))
    rng = np.random.default_rng([seed, 7])  # its own stream: the split's draws stay untouched
    order = [rng.permutation(train[labels[train] == k]) for k in range(len(classes))]
    subsets = []
    for budget in sorted(budgets):
        take = _per_class(budget, counts, classes, noun)
        subsets.append(np.sort(np.concatenate([order[k][:n] for k, n in enumerate(take)])))
    return subsets


def _per_class(budget: float, counts: np.ndarray, classes: list[str], noun: str) -> np.ndarray:
    present = counts > 0
    if budget > 1:  # labels per class
        short = np.flatnonzero(present & (counts < budget))
        if len(short):
            k = short[0]
            raise HeadstartError(
                f"--label-fractions asks for {int(budget)} labels per class but class '{classes[k]}' has only "
                f"{counts[k]} training {noun}", hint=f"use per-class counts up to {int(counts[present].min())}, "
                                                     f"or shares such as 0.1,0.25,1")
        return np.where(present, int(budget), 0)
    take = np.floor(budget * counts + 0.5).astype(np.int64)  # round half up: monotone in the budget
    empty = np.flatnonzero(present & (take < 1))
    if len(empty):
        k = empty[0]
        smallest = 0.5 / counts[present].min()
        raise HeadstartError(
            f"--label-fractions {budget:g} leaves class '{classes[k]}' without a training {noun[:-1]} "
            f"({counts[k]} × {budget:g} rounds to 0)",
            hint=f"use shares of at least {smallest:.3g} (one {noun[:-1]} of every class), or per-class "
                 f"counts such as 2,5,10")
    return take


def plan(config, data) -> list[tuple[float, dict[int, dict]]]:
    """Per budget below all the labels (ascending): per seed, the split's indices with the
    budget's nested training subset. Drawn, and a too-small budget refused, before anything
    trains; the split is the very one the comparison's arms train on (make_splits is a function
    of its seed). Indices only: each fit builds its own Splits from them."""
    fit = config.fit
    budgets = [b for b in config.label_fractions if b != 1]  # 1 = all: the comparison itself
    per_budget: list[dict[int, dict]] = [{} for _ in budgets]
    for seed in range(config.seeds):
        full = make_splits(data, seed=seed, train_per_class=fit.train_per_class, train_size=fit.train_size,
                           val_fraction=fit.val_fraction, test_fraction=fit.test_fraction,
                           max_eval=fit.max_eval).indices
        subsets = nested_subsets(np.array(full["train"]), data.labels, data.classes, budgets, seed,
                                 getattr(data, "noun", "examples"))
        for i, train in enumerate(subsets):
            per_budget[i][seed] = {**full, "train": train.tolist()}
    return list(zip(budgets, per_budget))


def run_label_curves(data, comparison: dict, runs: dict, run_dir: Path, planned, *, run_arms) -> dict:
    """Run the arms at each planned budget; write RUN/label_curves.json; return it.
    run_arms(root, splits_for) runs the comparison's arms in ROOT/arms/ on splits_for(seed)."""
    all_labels = _median_int([r["summary"]["sizes"]["train"] for r in next(iter(runs.values()))])
    points = []
    for budget, per_seed in planned:
        sizes = [len(indices["train"]) for indices in per_seed.values()]
        if min(sizes) >= all_labels:  # a per-class count that takes every label: the comparison itself
            say(f"label budget {budget_name(budget)} is all {all_labels} training labels: the comparison itself")
            continue
        say(f"label budget {budget_name(budget)}: {_median_int(sizes)} training labels")
        root = Path("labels") / budget_name(budget)
        # a new Splits per fit (a fit may extend its training part: --add-labels)
        points.append((budget_name(budget), str(root), run_arms(
            run_dir / root, lambda seed: Splits.from_dict(data, {"indices": per_seed[seed], "seed": seed}))))
    points.append(("all", ".", runs))
    curve = curves(points, comparison, all_labels)
    curve["budgets"] = [*(b for b, _ in planned), "all"]  # shares or per-class counts, then all
    write_json(run_dir / FILE, curve)
    say(curve["sentence"])
    return curve


def curves(points: list[tuple[str, str, dict]], comparison: dict, all_labels: int) -> dict:
    """The curve record from (budget name, folder, arm runs) ascending: per arm, per budget,
    the labels used and the median, lowest and highest test accuracy over the seeds."""
    baselines = {a["name"] for a in comparison["arms"] if a.get("baseline")}
    arms = []
    for name in points[-1][2]:
        measured = []
        for budget, folder, runs in points:
            seeds = runs[name]
            tests = [float(r["summary"]["test_accuracy"]) for r in seeds]
            labels = [int(r["summary"]["sizes"]["train"]) for r in seeds]
            measured.append({"budget": budget, "dir": folder, "labels": _median_int(labels),
                             "share": round(_median_int(labels) / all_labels, 4),
                             "test_accuracy": float(np.median(tests)), "low": min(tests), "high": max(tests),
                             "seeds": tests, "labels_per_seed": labels})
        arms.append({"name": name, "baseline": name in baselines, "points": measured})
    record = {"all_labels": all_labels, "baseline_arm": comparison.get("baseline_arm"),
              "noise": comparison.get("noise"), "arms": arms}
    return {**record, **labels_needed(arms, comparison.get("baseline_arm"), all_labels, comparison.get("noise"))}


def labels_needed(arms: list[dict], baseline: str | None, all_labels: int, noise: float | None = None) -> dict:
    """The smallest measured budget at which a transfer arm's median test accuracy is at least
    the baseline arm's at all labels, and the sentence that says it.

    Matching is plain >=: a transfer arm below the baseline by less than the noise has not shown
    it matches, it only has not shown it does not. The smallest budget within the noise (the
    comparison's: the larger of the seed spread and one binomial standard error) is recorded as
    `within_noise` and named in the sentence when it is smaller.
    """
    out = {"needed": None, "within_noise": None}
    base = next((a for a in arms if a["name"] == baseline), None)
    transfer = [a for a in arms if not a["baseline"]]
    if base is None or not transfer:
        return {**out, "sentence": "Label curve: no baseline arm to match, so no labels-needed figure."}
    bar = base["points"][-1]["test_accuracy"]  # the baseline trained on every label
    out["baseline_accuracy"] = bar

    def first(arm, floor):
        return next((p for p in sorted(arm["points"], key=lambda p: p["labels"])
                     if p["test_accuracy"] >= floor - 1e-9), None)

    def best(floor):  # the transfer arm that gets there with the fewest labels (then the most accurate)
        found = [(p, a["name"]) for a in transfer if (p := first(a, floor))]
        return min(found, key=lambda f: (f[0]["labels"], -f[0]["test_accuracy"]), default=None)

    whole = f"all {all_labels:,}"
    matched = best(bar)
    loose = best(bar - noise) if noise else None
    if loose:
        out["within_noise"] = {"arm": loose[1], "labels": loose[0]["labels"], "share": loose[0]["share"]}
    if matched:
        point, arm = matched
        out["needed"] = {"arm": arm, "labels": point["labels"], "share": point["share"],
                         "test_accuracy": point["test_accuracy"]}
        sentence = (f"{arm} needs {point['labels']:,} labels ({point['share']:.0%} of {all_labels:,}) to match "
                    f"{baseline} trained on {whole} (test accuracy {point['test_accuracy']:.3f} vs {bar:.3f}).")
    else:
        top, arm = max(((p, a["name"]) for a in transfer for p in a["points"]),
                       key=lambda f: (f[0]["test_accuracy"], -f[0]["labels"]))
        sentence = (f"No transfer arm matched {baseline} trained on {whole} labels at any measured budget: the "
                    f"best, {arm}, reached {top['test_accuracy']:.3f} with {top['labels']:,} labels vs {bar:.3f}.")
    if loose and (not matched or loose[0]["labels"] < matched[0]["labels"]):
        sentence += (f" Within the noise ({noise * 100:.1f} points) {loose[1]} is level already at "
                     f"{loose[0]['labels']:,} labels ({loose[0]['share']:.0%}).")
    return {**out, "sentence": sentence}


def _median_int(values: list[int]) -> int:
    return int(round(float(np.median(values))))
