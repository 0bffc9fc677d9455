"""Benchmark: what an explanation costs, per example and per method, against one prediction.

Fits a probe (packaged weights, no network) on a labelled subset, then, on the same test
examples and in the same process, times one plain prediction per example and each
explanation method per example. Reported: the median seconds per example and the ratio to
the prediction, so the cost a fit report adds (4 mistakes + one correct example per class,
with the default method) can be read off.

    python bench/explain_cost.py --dataset elpv --examples 8
    python bench/explain_cost.py --dataset bbc-news --examples 8
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from headstart.compare import machine_info
from headstart.config import FitConfig
from headstart.explain.registry import choose_method, methods_for
from headstart.heads import predict_logits
from headstart.modalities import modality_of
from headstart.pipeline import fit


def per_example_seconds(fn, n: int) -> list[float]:
    times = []
    for i in range(n):
        started = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="elpv")
    parser.add_argument("--train-per-class", type=int, default=50)
    parser.add_argument("--examples", type=int, default=8)
    parser.add_argument("--results", default=None)
    args = parser.parse_args()

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        result = fit(FitConfig(data=args.dataset, strategy="probe", train_per_class=args.train_per_class,
                               explain_examples=0, max_eval=200, out=str(Path(tmp) / "run")))
    model = result.classifier
    from headstart.data import make_splits
    from headstart.pipeline import load

    data = load(FitConfig(data=args.dataset))
    test = model.prepare(make_splits(data, seed=0, train_per_class=args.train_per_class, max_eval=200).test)
    n = min(args.examples, len(test))
    predicted = model.logits(test).argmax(1)

    def predict_one(i):
        predict_logits(model, test.inputs[i:i + 1])

    predict_one(0)  # warm-up
    rows = {"predict": statistics.median(per_example_seconds(predict_one, n))}
    modality = modality_of(model.describe()).name
    for method in methods_for(modality):
        if method.applies(model) is not None:
            continue
        method.explain(model, test, [(0, int(predicted[0]))])  # warm-up (hooks, allocator)
        rows[method.name] = statistics.median(per_example_seconds(
            lambda i: method.explain(model, test, [(i, int(predicted[i]))]), n))
    default = choose_method(model, modality, "auto").name
    report = {
        "dataset": args.dataset, "backbone": result.summary["backbone"], "input_size": result.summary["input_size"],
        "examples": n, "default_method": default,
        "seconds_per_example": {k: round(v, 4) for k, v in rows.items()},
        "ratio_to_predict": {k: round(v / rows["predict"], 1) for k, v in rows.items()},
        "machine": machine_info(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    print(json.dumps({k: report[k] for k in ("dataset", "backbone", "input_size", "default_method",
                                              "seconds_per_example", "ratio_to_predict")}, indent=1))
    out = Path(args.results or f"bench/results/explain_cost_{args.dataset}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
