"""The delivered model learns from every label it may (issue 23, deliverable 5): test accuracy of
the model refit on train + validation (--refit yes) against the train-only model (--refit no).

The setting a user with N labels per class is in: those N per class are all the labels there
are; headstart holds out val_fraction of them (15 %) to choose C (and TF-IDF's n-grams), so the
train-only model learns from 85 of 100 per class and the refit one from all 100. Both runs of a
seed share one split and one large test set drawn from the rest of the data (the data's own test
part where it has one), so the difference is the refit alone. Features are cached, so the second
run of a probe pair costs a head fit.

    python bench/refit.py                          # bbc-news tfidf + probe, fashion-mnist probe
    python bench/refit.py --cases elpv-probe --seeds 1
    python bench/refit.py --out bench/results/refit.json

Prints a markdown table (median of the seeds' test accuracies, and the median paired gain).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from headstart.config import FitConfig  # noqa: E402
from headstart.data import Splits  # noqa: E402
from headstart.data.registry import find_builtin  # noqa: E402
from headstart.log import set_quiet  # noqa: E402
from headstart.pipeline import fit  # noqa: E402

# case -> (data, strategy, settings)
CASES = {
    "bbc-news-tfidf": ("bbc-news", "tfidf", {}),
    "bbc-news-probe": ("bbc-news", "probe", {}),
    "fashion-mnist-probe": ("fashion-mnist", "probe", {}),
    "elpv-probe": ("elpv", "probe", {"image_size": 160}),
}


def labelled_splits(data, per_class: int, val_fraction: float, seed: int, test_size: int) -> Splits:
    """per_class labels of each class (train + validation), and a random test set of the rest."""
    rng = np.random.default_rng(seed)
    labels = data.labels
    pool = np.arange(len(data)) if data.is_test is None else np.flatnonzero(~data.is_test)
    train, val = [], []
    for k in range(data.num_classes):
        mine = rng.permutation(pool[labels[pool] == k])[:per_class]
        n_val = max(1, round(val_fraction * len(mine)))
        val += mine[:n_val].tolist()
        train += mine[n_val:].tolist()
    rest = np.setdiff1d(np.arange(len(data)), train + val)
    if data.is_test is not None:
        rest = rest[data.is_test[rest]]
    test = rng.permutation(rest)[:test_size].tolist()
    indices = {"train": sorted(train), "val": sorted(val), "test": sorted(test)}
    return Splits(**{p: data.subset(np.array(i, dtype=np.int64)) for p, i in indices.items()}, indices=indices,
                  seed=seed)


def run_case(case: str, seeds: int, per_class: int, test_size: int, out_root: Path) -> dict:
    name, strategy, settings = CASES[case]
    builtin, options = find_builtin(name)
    data = builtin.load(options)
    rows = []
    for seed in range(seeds):
        splits = labelled_splits(data, per_class, 0.15, seed, test_size)
        row = {"seed": seed, "train": len(splits.train), "val": len(splits.val), "test": len(splits.test)}
        for refit in ("no", "yes"):
            config = FitConfig(data=name, strategy=strategy, seed=seed, refit=refit, explain_examples=0,
                               out=str(out_root / f"{case}-{seed}-{refit}"), **settings)
            summary = fit(config, data=data, splits=splits).summary
            row[refit] = {"test_accuracy": summary["test_accuracy"], "val_accuracy": summary["best_val_accuracy"],
                          "train_seconds": summary["train_seconds"], "delivered": summary["delivered"]}
        row["gain"] = row["yes"]["test_accuracy"] - row["no"]["test_accuracy"]
        rows.append(row)
        print(f"{case} seed {seed}: train-only {row['no']['test_accuracy']:.4f}, refit {row['yes']['test_accuracy']:.4f} "
              f"({row['train']}+{row['val']} labels, {row['test']} test)", file=sys.stderr)
    median = statistics.median
    return {"case": case, "data": name, "strategy": strategy, "per_class": per_class, "seeds": seeds, "runs": rows,
            "train_only": median(r["no"]["test_accuracy"] for r in rows),
            "refit": median(r["yes"]["test_accuracy"] for r in rows),
            "gain": median(r["gain"] for r in rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="bbc-news-tfidf,bbc-news-probe,fashion-mnist-probe",
                        help=f"comma-separated, from {', '.join(CASES)}")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--test", type=int, default=1000, help="test items per seed")
    parser.add_argument("--out", help="write the results here as JSON")
    args = parser.parse_args()
    set_quiet()
    results = []
    with tempfile.TemporaryDirectory() as runs:
        for case in args.cases.split(","):
            results.append(run_case(case, args.seeds, args.per_class, args.test, Path(runs)))
    print("| case | labels/class (train+val) | seeds | test items | train-only test acc | refit test acc | "
          "gain (median, paired) |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        first = r["runs"][0]
        print(f"| {r['case']} | {r['per_class']} ({first['train']}+{first['val']}) | {r['seeds']} | {first['test']} | "
              f"{r['train_only']:.4f} | {r['refit']:.4f} | {r['gain'] * 100:+.1f} pts |")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
