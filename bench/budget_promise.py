"""Benchmark: is --budget kept, start-up to report? (issue 24, deliverable 3)

Runs each command as a user does -- its own `python -m headstart` process -- and measures its
whole wall time from outside (subprocess), against the promise: budget x 1.05 + 5 s.

    fit --strategy auto --backbone auto --budget B     (the command the promise is made for)
    fit --strategy probe --budget B
    compare --arms probe,scratch --budget B/2 --baseline-budget B/2
        (compare's --budget is per arm: its promise is the arms' sum, B, x 1.05 + 5 s)

on digits and bbc-news, each on an idle machine and beside one competing CPU-bound process
(`python -c "while True: pass"`, started before the command and stopped after it), 1 seed.
The command's own recorded wall (summary.json's wall_seconds, from the process's start) and
what it skipped to keep the budget are reported beside the outside wall.

Results: bench/results/budget_promise.json, and a markdown table on stdout for BENCHMARKS.md.

    python bench/budget_promise.py                                  # 60 s, both datasets
    python bench/budget_promise.py --datasets digits --budget 30s --conditions idle   # a quicker look
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from headstart.config import parse_duration

RESULTS = Path(__file__).parent / "results" / "budget_promise.json"
SLACK_FACTOR, SLACK_SECONDS = 1.05, 5.0


def commands(dataset: str, budget: float, out: Path) -> dict[str, list[str]]:
    """name -> the command line after `python -m headstart`."""
    half = f"{budget / 2:g}s"
    return {
        "fit auto": ["fit", dataset, "--strategy", "auto", "--backbone", "auto", "--budget", f"{budget:g}s",
                     "--out", str(out / "auto")],
        "fit probe": ["fit", dataset, "--strategy", "probe", "--budget", f"{budget:g}s", "--out", str(out / "probe")],
        "compare": ["compare", dataset, "--arms", "probe,scratch", "--budget", half, "--baseline-budget", half,
                    "--out", str(out / "compare")],
    }


def run_one(name: str, argv: list[str], budget: float, out: Path) -> dict:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "headstart", "-q", *argv], capture_output=True, text=True)
    wall = time.perf_counter() - started
    row = {"command": name, "argv": argv, "budget_seconds": budget, "wall_seconds": round(wall, 1),
           "bound_seconds": round(budget * SLACK_FACTOR + SLACK_SECONDS, 1), "returncode": done.returncode}
    row["within"] = done.returncode == 0 and wall <= row["bound_seconds"]
    summary = Path(argv[argv.index("--out") + 1]) / "summary.json"
    if name != "compare" and summary.exists():
        recorded = json.loads(summary.read_text())
        row.update(recorded_wall_seconds=recorded.get("wall_seconds"), skipped=recorded.get("budget_skipped", []),
                   strategy=recorded.get("strategy"), test_accuracy=recorded.get("test_accuracy"),
                   sizes=recorded.get("sizes"), evaluation_sized=recorded.get("evaluation_sized"))
    if done.returncode != 0:
        row["error"] = done.stderr.strip().splitlines()[-1:] if done.stderr.strip() else []
    return row


def with_condition(condition: str, work):
    """Run work() on an idle machine, or beside one competing CPU-bound process."""
    if condition == "idle":
        return work()
    competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.0)  # it is running before the command starts
        return work()
    finally:
        competitor.kill()
        competitor.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="digits,bbc-news")
    parser.add_argument("--budget", default="60s")
    parser.add_argument("--conditions", default="idle,competing")
    parser.add_argument("--commands", default="fit auto,fit probe,compare")
    args = parser.parse_args()
    budget = parse_duration(args.budget)
    wanted = [c.strip() for c in args.commands.split(",")]
    rows = []
    for dataset in args.datasets.split(","):
        for condition in args.conditions.split(","):
            for name in wanted:
                with tempfile.TemporaryDirectory() as tmp:
                    argv = commands(dataset, budget, Path(tmp))[name]
                    row = with_condition(condition, lambda: run_one(name, argv, budget, Path(tmp)))
                row.update(dataset=dataset, condition=condition)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                   "cpus": os.cpu_count(), "load_before": os.getloadavg()[0], "rows": rows},
                                  indent=2))
    print("| data | command | machine | budget | bound | wall (outside) | wall (recorded) | skipped | within |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['dataset']} | {r['command']} | {r['condition']} | {r['budget_seconds']:g} s | "
              f"{r['bound_seconds']:g} s | {r['wall_seconds']:g} s | {r.get('recorded_wall_seconds', '-')} | "
              f"{', '.join(r.get('skipped') or []) or '-'} | {'yes' if r['within'] else 'NO'} |")


if __name__ == "__main__":
    main()
