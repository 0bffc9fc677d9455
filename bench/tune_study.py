"""Benchmark: what `headstart tune` buys over the default `fit`, and what a second worker buys.

1. the default `headstart fit` (probe, the default backbone) on the data: test accuracy, wall time;
2. a study of --trials trials with one worker, on a throw-away PostgreSQL server: the best
   trial's test accuracy (chosen on validation, on the same split as 1) and the study's wall time;
3. the same study with two workers on the same server: wall time and trials per minute, as a
   speed-up over 2.

Each study starts from an empty cache (features, decoded images), so the second does not ride on
the first's cached features. Without PostgreSQL binaries step 2 runs on SQLite and 3 is skipped.
Results go to bench/results/tune_study.json.

    python bench/tune_study.py --dataset elpv --trials 20 --budget 30m
    python bench/tune_study.py --dataset blobs-folder --trials 3 --budget 3m --train-per-class 10   # smoke
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from headstart.api import fit, tune
from headstart.compare import machine_info


@contextmanager
def throwaway_postgres():
    """A PostgreSQL server in a temporary folder on a free port (as `postgres` when root); None without binaries."""
    bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    found = shutil.which("initdb")
    bindir = Path(found).parent if found else (Path(bindirs[0]) if bindirs else None)
    if bindir is None or not (bindir / "initdb").exists():
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="headstart-bench-pg-"))
    as_user = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = folder / "data"
    try:
        subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                        "--no-sync"], check=True, capture_output=True)
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "-o",
                        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"], check=True,
                       capture_output=True)
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def fresh_cache():
    folder, before = tempfile.mkdtemp(prefix="headstart-bench-cache-"), os.environ.get("HEADSTART_CACHE")
    os.environ["HEADSTART_CACHE"] = folder  # worker processes inherit it
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("HEADSTART_CACHE", None)
        else:
            os.environ["HEADSTART_CACHE"] = before
        shutil.rmtree(folder, ignore_errors=True)


def study_row(result: dict, wall: float) -> dict:
    best = result["best"] or {}
    done = result["counts"]["complete"] + result["counts"]["pruned"]
    return {"wall_seconds": round(wall, 1), "counts": result["counts"], "trials_per_minute": round(60 * done / wall, 3),
            "best_trial": best.get("number"), "best_val_accuracy": best.get("value"),
            "best_test_accuracy": best.get("test_accuracy"), "best_params": best.get("params"),
            "run_dir": result["run_dir"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="elpv")
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--budget", default="30m", help="each study's wall time")
    p.add_argument("--trial-budget", help="each trial's cap (default: tune's)")
    p.add_argument("--strategies", help="default: tune's")
    p.add_argument("--candidates", help="default: tune's")
    p.add_argument("--train-per-class", type=int)
    p.add_argument("--max-eval", type=int, default=500)
    p.add_argument("--out", default="bench/runs/tune_study")
    p.add_argument("--results", default="bench/results/tune_study.json")
    args = p.parse_args()
    os.environ.setdefault("HEADSTART_QUIET", "1")
    out = Path(args.out) / datetime.now().strftime("%Y%m%d-%H%M%S")
    shared = {"train_per_class": args.train_per_class, "max_eval": args.max_eval}
    searched = {"trials": args.trials, "budget": args.budget, "trial_budget": args.trial_budget,
                "strategies": args.strategies, "candidates": args.candidates}

    with fresh_cache():
        started = time.perf_counter()
        default = fit(args.dataset, out=str(out / "default-fit"), explain_examples=0, **shared).summary
        default_row = {"wall_seconds": round(time.perf_counter() - started, 1), "strategy": default["strategy"],
                       "backbone": default["backbone"], "val_accuracy": default["best_val_accuracy"],
                       "test_accuracy": default["test_accuracy"]}
    print(f"default fit: test {default_row['test_accuracy']:.4f} in {default_row['wall_seconds']} s", flush=True)

    studies = {}
    with throwaway_postgres() as url:
        for workers in (1, 2):
            if workers > 1 and url is None:
                studies["2_workers"] = {"skipped": "no PostgreSQL server binaries here"}
                break
            with fresh_cache():
                started = time.perf_counter()
                result = tune(args.dataset, out=str(out / f"tune-{workers}w"), storage=url, workers=workers,
                              study=f"bench-{workers}w", **searched, **shared)
                studies[f"{workers}_worker{'s' if workers > 1 else ''}"] = study_row(result, time.perf_counter() - started)
            print(f"{workers} worker(s): {studies[list(studies)[-1]]}", flush=True)

    one, two = studies.get("1_worker", {}), studies.get("2_workers", {})
    gained = None if one.get("best_test_accuracy") is None else one["best_test_accuracy"] - default_row["test_accuracy"]
    summary = {
        "benchmark": "tune_study", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": args.dataset, "settings": {**searched, **shared}, "storage": "postgresql" if url else "sqlite",
        "default_fit": default_row, "studies": studies,
        "test_accuracy_gained_points": None if gained is None else round(100 * gained, 2),
        "speedup_2_workers": round(two["trials_per_minute"] / one["trials_per_minute"], 3)
        if two.get("trials_per_minute") and one.get("trials_per_minute") else None,
        "machine": machine_info(),
    }
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: summary[k] for k in ("test_accuracy_gained_points", "speedup_2_workers")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
