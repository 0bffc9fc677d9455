"""A simulate-al study as a run directory: split, embed once, simulate, write, report.

RUN/simulate_al.json holds the curves and the verdict; RUN/report.html draws them. The
caller (api.py) hands in the feature model, so this package never builds a pipeline.
"""
from __future__ import annotations

import time

from ..data import make_splits
from ..embed import embed
from ..errors import HeadstartError
from ..log import say
from ..records import new_run_dir, write_json
from .queries import QUERIES
from .simulate import check_plan, simulate


def run_study(data, feature_model, *, methods: list[str] | None, start: int, k: int, rounds: int, seeds: int,
              pool_size: int | None, max_eval: int, out: str | None, settings: dict) -> dict:
    """Hide `data`'s training labels, run every method from the same start sets, write RUN."""
    methods = list(methods or QUERIES)
    if "random" not in methods:
        methods.append("random")  # the baseline every method is judged against
    run_dir = new_run_dir(out, prefix="simulate-al")
    if (run_dir / "simulate_al.json").exists():
        raise HeadstartError(f"{run_dir} already holds a study", hint="choose a new --out")
    started = time.perf_counter()
    splits = make_splits(data, seed=0, max_eval=max_eval)
    if pool_size and len(splits.train) > pool_size:  # a stratified pool of pool_size, same test split
        splits = make_splits(data, seed=0, train_size=pool_size, max_eval=max_eval)
    pool, test = splits.train, splits.test
    check_plan(len(pool), start, k, rounds)  # before the embedding pass, not after it
    say(f"pool {len(pool)} {data.noun} (labels hidden), test {len(test)}, {data.num_classes} classes; "
        f"{len(methods)} methods x {seeds} seed(s) x {rounds} rounds of {k}")
    model = feature_model()
    embed_started = time.perf_counter()
    pool_x = embed(model, pool, description="features (pool)")
    test_x = embed(model, test, description="features (test)")
    embed_seconds = time.perf_counter() - embed_started
    result = simulate(pool_x, pool.labels, test_x, test.labels, data.num_classes, methods=methods, start=start,
                      k=k, rounds=rounds, seeds=seeds)
    described = model.describe()
    result.update({
        "data": data.name, "classes": data.classes, "pool_size": len(pool), "test_size": len(test),
        "start": start, "k": k, "rounds": rounds, "seeds": seeds, "backbone": described.get("name"),
        "weights": described.get("weights"), "embed_seconds": round(embed_seconds, 2),
        "wall_seconds": round(time.perf_counter() - started, 2), "settings": settings,
        "refit": "logistic regression (C=0.1) on standardised frozen features, refitted each round",
    })
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "simulate_al.json", result)
    from ..report.simulation import build_simulation_report
    result["report"] = str(build_simulation_report(run_dir))
    result["run_dir"] = str(run_dir)
    return result
