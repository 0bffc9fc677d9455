"""Benchmark: `--strategy auto` against each fixed strategy at the same budget (issues 9, 24).

For each dataset and seed, on one split: `fit --strategy auto --budget B` first (its features
are not cached yet; the machine's one-off costs -- rate measurements, the ONNX Runtime export
of the extraction engine -- are paid once, by the first run that needs them, in a cache that
starts cold), then every fixed strategy under the same budget with the feature cache off
(each pays its own feature pass, as compare's arms do). Reported per
dataset: the median test accuracy of each, auto's choices, its gap to the best fixed strategy
(goal: within 1 point on every dataset), whether auto stayed inside the budget (the whole fit's
wall time including the report, against budget x 1.05 + 5 s), and auto's race: each arm's
slices, seconds, best validation accuracy and fate (won, dropped, stopped).

    python bench/auto_vs_fixed.py                                   # 5 datasets, 3 seeds, 30 s
    python bench/auto_vs_fixed.py --datasets digits --seeds 1 --budget 15s --max-eval 200   # smoke
    python bench/auto_vs_fixed.py --datasets digits,bbc-news --seeds 1 --budget 60s --max-eval 300
    python bench/auto_vs_fixed.py --competing --fixed none --budget 60s   # auto beside one busy process

--competing runs every fit beside one competing CPU-bound process (budget_promise.py's), started
before the fit and stopped after it: the goal's second condition (within 2 points at 60 s).
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

from headstart.compare import machine_info
from headstart.choose.auto_fit import fit_auto as fit  # pipeline.fit, choosing first when the strategy is auto
from headstart.config import FitConfig, parse_duration
from headstart.errors import HeadstartError
from headstart.pipeline import load

# dataset -> (labels per class or None for all, the fixed strategies of its modality)
DATASETS = {
    "elpv": (100, ("probe", "lp-ft", "finetune", "scratch")),
    "fashion-mnist": (100, ("probe", "lp-ft", "finetune", "scratch")),
    "mnist-5k": (100, ("probe", "lp-ft", "finetune", "scratch")),
    "digits": (None, ("probe", "lp-ft", "finetune", "scratch")),
    "bbc-news": (50, ("probe", "lp-ft", "finetune", "lora", "tfidf", "scratch")),
}


def one_fit(data, dataset: str, strategy: str, seed: int, args, per_class, cache: bool) -> dict:
    from budget_promise import with_condition  # bench/: the same competing process as that benchmark

    return with_condition("competing" if args.competing else "idle",
                          lambda: _one_fit(data, dataset, strategy, seed, args, per_class, cache))


def _one_fit(data, dataset: str, strategy: str, seed: int, args, per_class, cache: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        summary = fit(FitConfig(data=dataset, strategy=strategy, seed=seed, budget_seconds=args.budget,
                                train_per_class=per_class, max_eval=args.max_eval, explain_examples=0,
                                scratch_model=None if strategy != "scratch" else _scratch_model(data),
                                out=str(Path(tmp) / "run")),
                      data=data, use_feature_cache=cache).summary
        wall = time.perf_counter() - started
        # --budget may have cut the test pass to a stratified sample (eval_budget.py): the benchmark
        # scores every strategy on the whole test split, after the timed command, so all compare alike
        sized = (summary.get("evaluation_sized") or {}).get("test")
        whole_test = _whole_test_accuracy(Path(tmp) / "run") if sized else summary["test_accuracy"]
    auto = summary.get("auto", {}).get("strategy")
    race = (auto or {}).get("evidence", {}).get("race") or {}
    return {"strategy": summary["strategy"], "test_accuracy": whole_test,
            **({"test_accuracy_sampled": summary["test_accuracy"], "test_sampled": sized} if sized else {}),
            "best_val_accuracy": summary["best_val_accuracy"], "train_seconds": summary["train_seconds"],
            "fit_wall_seconds": round(wall, 2), "within_budget": wall <= args.budget * 1.05 + 5,
            "choosing_seconds": auto["evidence"]["choosing_seconds"] if auto else 0.0,
            "reason": auto["reason"] if auto else None,
            "scratch_prior": ((auto or {}).get("evidence", {}).get("cheap") or {}).get("scratch_prior"),
            "transfer_image_size": ((auto or {}).get("evidence", {}).get("transfer_image_size") or {}).get("size"),
            "input_size": summary.get("input_size"),
            # the race: each arm's slices, wall seconds, best validation accuracy and fate
            "race": [{"arm": a["name"], "slices": len(a.get("slices") or []), "wall_seconds": a.get("wall_seconds"),
                      "best_val": max((p["accuracy"] for p in a.get("curve") or []), default=None),
                      "fate": a.get("fate")} for a in race.get("arms") or []]}


def _whole_test_accuracy(run_dir: Path) -> float:
    """The delivered model's accuracy on its run's whole test split (not the sample --budget scored)."""
    from headstart.run import Run

    run = Run.open(run_dir).require_finished()
    model = run.model()
    test = model.prepare(run.reload_data().splits.test)
    return float((model.logits(test).argmax(1).numpy() == test.labels).mean())


def _scratch_model(data) -> str:
    from headstart.modalities import modality_of
    return modality_of(data).default_scratch_model


def run_dataset(dataset: str, args) -> dict:
    per_class, fixed = DATASETS[dataset]
    if args.fixed:  # a subset of the fixed strategies (the slow CPU ones can be left out, and said so)
        fixed = tuple(f for f in fixed if f in args.fixed.split(","))  # "none": auto alone
    data = load(FitConfig(data=dataset, strategy="probe"))
    seeds = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        # auto first on each seed's split: the feature cache holds nothing of that split yet (the
        # fixed strategies run with it off), while the machine's one-off costs (rate measurements,
        # engine exports) are paid by the first run that needs them and kept, as on a user's machine
        try:
            row = {"auto": one_fit(data, dataset, "auto", seed, args, per_class, cache=True)}
        except HeadstartError as e:  # a budget this machine (or its load) cannot meet: recorded, not fatal
            print(json.dumps({"dataset": dataset, "seed": seed, "auto_refused": str(e)}), flush=True)
            row = {"auto": {"strategy": "refused", "test_accuracy": 0.0, "fit_wall_seconds": None, "race": [],
                            "reason": str(e)}}
        row["auto"]["seed"] = seed
        for strategy in fixed:
            row[strategy] = one_fit(data, dataset, strategy, seed, args, per_class, cache=False)
        print(json.dumps({"dataset": dataset, "seed": seed,
                          **{k: (v["strategy"], round(v["test_accuracy"], 4)) for k, v in row.items()}}), flush=True)
        seeds.append(row)
    med = {name: statistics.median(s[name]["test_accuracy"] for s in seeds) for name in seeds[0]}
    best_fixed = max(fixed, key=lambda name: med[name]) if fixed else None  # none run: compare by hand
    gap = round(100 * (med[best_fixed] - med["auto"]), 2) if best_fixed else None
    return {"dataset": dataset, "train_per_class": per_class, "seeds": seeds, "median_test_accuracy": med,
            "best_fixed": best_fixed, "gap_points": gap, "competing": args.competing,
            "auto_choices": [s["auto"]["strategy"] for s in seeds],
            "auto_fit_wall_seconds": [s["auto"]["fit_wall_seconds"] for s in seeds],
            "goal_met": gap is not None and gap <= (2.0 if args.competing else 1.0)}


def markdown(results: list[dict], budget: float) -> str:
    lines = []
    for r in results:
        fixed = [k for k in r["median_test_accuracy"] if k != "auto"]
        lines += [f"### {r['dataset']} (budget {budget:.0f} s, {len(r['seeds'])} seeds)", "",
                  "| " + " | ".join(["auto", *fixed]) + " | auto chose | gap to best fixed |",
                  "|" + "---|" * (len(fixed) + 3)]
        cells = [f"{r['median_test_accuracy'][k]:.3f}" for k in ["auto", *fixed]]
        gap = (f"{r['gap_points']:+.2f} points ({'met' if r['goal_met'] else 'missed'})"
               if r.get("gap_points") is not None else "no fixed strategy run")
        lines.append("| " + " | ".join(cells) + f" | {', '.join(r['auto_choices'])} | {gap} |")
        lines += ["", f"auto's whole-fit wall seconds per seed: {r['auto_fit_wall_seconds']}", ""]
        for i, s in enumerate(r["seeds"]):
            seed = s["auto"].get("seed", i)
            arms = "; ".join(f"{a['arm']} ({a['slices']} slices, {a['wall_seconds']} s, best val {a['best_val']}): "
                             f"{a['fate']}" for a in s["auto"]["race"])
            lines += [f"- seed {seed} race: {arms}"]
        lines += [""]
    return "\n".join(lines)


def _merge(args) -> int:
    """One table from result files of the same budget run in parts (e.g. --first-seed 0 and 1)."""
    parts = [json.loads(Path(f).read_text()) for f in args.merge]
    by_dataset: dict[str, dict] = {}
    for part in parts:
        for r in part["results"]:
            into = by_dataset.setdefault(r["dataset"], {**r, "seeds": []})
            into["seeds"] += r["seeds"]
    results = []
    for r in by_dataset.values():
        names = [k for k in r["seeds"][0] if all(k in s for s in r["seeds"])]
        med = {k: statistics.median(s[k]["test_accuracy"] for s in r["seeds"]) for k in names}
        fixed = [k for k in names if k != "auto"]
        best = max(fixed, key=lambda k: med[k]) if fixed else None
        gap = round(100 * (med[best] - med["auto"]), 2) if best else None
        results.append({**r, "median_test_accuracy": med, "best_fixed": best, "gap_points": gap,
                        "auto_choices": [s["auto"]["strategy"] for s in r["seeds"]],
                        "auto_fit_wall_seconds": [s["auto"]["fit_wall_seconds"] for s in r["seeds"]],
                        "goal_met": gap is not None and gap <= (2.0 if r.get("competing") else 1.0)})
    print(markdown(results, parts[0]["budget_seconds"]))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0,
                   help="seeds first..first+seeds-1 (a long run split in parts; --merge joins their results)")
    p.add_argument("--merge", nargs="+", default=None, metavar="RESULTS_JSON",
                   help="print the markdown of these result files' seeds together (no fits)")
    p.add_argument("--budget", default="30s")
    p.add_argument("--max-eval", type=int, default=500)
    p.add_argument("--fixed", default="", help="only these fixed strategies (comma-separated; default all)")
    p.add_argument("--competing", action="store_true",
                   help="every fit beside one competing CPU-bound process (the goal's loaded condition)")
    p.add_argument("--results", default="bench/results/auto_vs_fixed.json")
    args = p.parse_args(argv)
    args.budget = parse_duration(args.budget)
    if args.merge:
        return _merge(args)
    os.environ.setdefault("HEADSTART_QUIET", "1")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="auto-vs-fixed-cache-") as cache:  # cold at the start, gone at the end
        os.environ["HEADSTART_CACHE"] = cache
        results = [run_dataset(d.strip(), args) for d in args.datasets.split(",") if d.strip()]
    out = {"benchmark": "auto_vs_fixed", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "machine": machine_info(), "budget_seconds": args.budget, "seeds": args.seeds,
           "condition": "one competing CPU-bound process" if args.competing else "idle",
           "command": "python bench/auto_vs_fixed.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "wall_seconds": round(time.perf_counter() - started, 1), "results": results}
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(out, indent=1, default=str))
    print(markdown(results, args.budget))
    return 0


if __name__ == "__main__":
    sys.exit(main())
