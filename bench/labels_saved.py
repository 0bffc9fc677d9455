"""Benchmark: how many labels does transfer need to match the baseline trained on all of them?

One `headstart compare --label-fractions` per dataset (3 seeds, each its own split, shared by
every arm and budget; smaller training sets nested in larger ones): the smallest measured share
of the training labels at which the best transfer arm's median test accuracy reaches the best
baseline arm's (scratch; TF-IDF for text) trained on all of them. Goal: at most 10 %.
Results: bench/results/labels_saved.json and a markdown table on stdout for BENCHMARKS.md.

    python bench/labels_saved.py                        # elpv and bbc-news, 3 seeds (~25 min on 2 cores)
    python bench/labels_saved.py --datasets bbc-news --seeds 1   # quick look
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from headstart.compare import CompareConfig, run_compare
from headstart.config import FitConfig, parse_duration, parse_label_fractions

DATASETS = {
    # name: (arms, budget per arm, label shares, fit settings shared by every arm). Sized to ~25 min
    # on 2 cores; every budget pays the arms' validation and test passes again (no feature cache).
    # elpv: probe at 128 px (4x cheaper than 224); the scratch ResNet-9 trains on the same 128 px,
    # 90 s as in transfer_vs_scratch.py
    "elpv": (("probe", "scratch"), "90s", "0.05,0.1,0.25,1",
             {"backbone": "tf_efficientnet_lite0", "image_size": 128, "max_eval": 300}),
    # bbc-news: MiniLM at 128 tokens vs TF-IDF (full texts); the embedding-bag scratch arm is left
    # out (at all labels it needs the whole 60-90 s budget per seed and ends below TF-IDF)
    "bbc-news": (("probe", "tfidf"), "90s", "0.02,0.05,0.1,0.25,1",
                 {"backbone": "all-MiniLM-L6-v2", "max_length": 128, "max_eval": 150}),
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--budget", help="per arm (default: per dataset, see DATASETS)")
    p.add_argument("--fractions", help="label shares (default: per dataset, see DATASETS)")
    p.add_argument("--evals-per-epoch", type=int, default=1)
    p.add_argument("--out", default="bench/runs/labels_saved")
    p.add_argument("--results", default="bench/results/labels_saved.json")
    args = p.parse_args()

    os.environ.setdefault("HEADSTART_QUIET", "1")
    results = []
    for name in args.datasets.split(","):
        arms, budget, fractions, shared = DATASETS[name]
        out = Path(args.out) / f"{name}-{datetime.now().strftime('%H%M%S')}"
        started = time.perf_counter()
        comparison = run_compare(CompareConfig(
            data=name, arms=arms, seeds=args.seeds, budget_seconds=parse_duration(args.budget or budget),
            evals_per_epoch=args.evals_per_epoch, label_fractions=parse_label_fractions(args.fractions or fractions),
            out=str(out), fit=FitConfig(data=name, explain_examples=0, **shared)))
        comparison["bench_wall_seconds"] = round(time.perf_counter() - started, 1)
        comparison["run_dir"] = str(out)
        results.append(comparison)
        print(table(comparison), flush=True)
        # written after each dataset, so a later failure keeps what finished
        record = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "argv": sys.argv,
                  "goal": "the best transfer arm matches the baseline trained on all labels with <= 10% of them",
                  "machine": comparison["machine"], "results": results}
        Path(args.results).parent.mkdir(parents=True, exist_ok=True)
        Path(args.results).write_text(json.dumps(record, indent=2, default=str) + "\n")
        print(f"wrote {args.results}", flush=True)
    return 0


def table(c: dict) -> str:
    """Markdown: one row per budget, one column per arm (median test accuracy, seeds' range)."""
    curve = c["label_curve"]
    arms = curve["arms"]
    head = ["budget", "train labels"] + [a["name"] + (" (baseline)" if a["baseline"] else "") for a in arms]
    lines = [f"#### {c['data']} ({c['seeds']} seeds, {c['bench_wall_seconds'] / 60:.1f} min)", "",
             "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for i, point in enumerate(arms[0]["points"]):
        cells = [point["budget"], f"{point['labels']:,} ({point['share']:.0%})"]
        for a in arms:
            p = a["points"][i]
            cells.append(f"{p['test_accuracy']:.3f} ({p['low']:.3f}–{p['high']:.3f})")
        lines.append("| " + " | ".join(cells) + " |")
    needed = curve.get("needed")
    verdict = (f"met (≤ 10 %)" if needed and needed["share"] <= 0.10 else "missed") if needed else "missed (no match)"
    lines += ["", f"{curve['sentence']} Goal ≤ 10 % of the labels: {verdict}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
