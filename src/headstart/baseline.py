"""The baseline arms of a comparison: how long they may train and where they set the bar.

An iterative baseline (scratch) trains to its plateau inside its own cap, and the plateau is
the target; a one-shot baseline (TF-IDF) sets the bar with its best validation accuracy.
"""
from __future__ import annotations

import numpy as np

from .config import CompareConfig
from .train.plateau import PLATEAU_RULE, read_plateau

# The scratch arm's default cap: 5x the transfer arms' budget. On 2 cores, ResNet-9 on elpv
# plateaued after ~150 s at 64 px (25-54 s at 32 px, its size since BENCHMARKS 21.1) while the
# probe needs ~4 s, so the demo's 100 s budget gives scratch
# 500 s, room to plateau at 3x the time it was seen to need; any longer and a compare that
# does not plateau (data too hard for the small net) costs more than the comparison is worth.
BASELINE_CAP_MULTIPLE = 5
# Without --budget the transfer arms run unbounded and so would scratch: 30 minutes bounds
# it (the 30-epoch scratch schedule on elpv takes ~8 minutes on 2 cores; a plateau comes sooner).
BASELINE_CAP_SECONDS = 1800.0


def baseline_budget(config: CompareConfig) -> float:
    """The iterative baseline's cap: --baseline-budget, else a multiple of --budget (or a fixed
    cap without one). Inside it the arm stops on its plateau (see the module's note)."""
    if config.baseline_budget_seconds is not None:
        return config.baseline_budget_seconds
    if config.budget_seconds is not None:
        return BASELINE_CAP_MULTIPLE * config.budget_seconds
    return BASELINE_CAP_SECONDS


def trains_iteratively(strategy: str) -> bool:
    """Arms with a training curve (scratch), as opposed to one-shot fits (TF-IDF)."""
    from .strategies import STRATEGIES
    return strategy in STRATEGIES and STRATEGIES[strategy].default_epochs > 0


def is_baseline(strategy: str) -> bool:
    """Arms that use no pretrained model (scratch, TF-IDF): what transfer must beat."""
    from .strategies import STRATEGIES
    return strategy in STRATEGIES and not STRATEGIES[strategy].pretrained


def time_to_target(rows: list[dict], target: float) -> float | None:
    """Training seconds at the first validation evaluation reaching the target."""
    for row in rows:
        if row["split"] == "val" and row["accuracy"] >= target - 1e-9:
            return float(row["train_seconds"])
    return None


def baseline_bar(config: CompareConfig, name: str, seeds: list[dict]) -> dict:
    """Where a baseline arm sets the bar (medians over seeds). An iterative one (scratch): its
    plateau, {accuracy, seconds, evaluations, reached_cap, rule, ...}; a one-shot one (TF-IDF):
    {accuracy}, its best validation accuracy."""
    def median(values):
        return float(np.median(values))

    first = seeds[0]["summary"]
    best_val = {"accuracy": median([r["summary"]["best_val_accuracy"] for r in seeds])}
    if not trains_iteratively(first["strategy"]):
        return best_val
    per_seed = []
    for r in seeds:
        val = [row for row in r["rows"] if row["split"] == "val"]
        read = read_plateau([row["train_seconds"] for row in val], [row["accuracy"] for row in val])
        if read is None:  # too few evaluations to smooth (e.g. --evals-per-epoch 1, few epochs)
            return best_val
        read["first_reached_seconds"] = time_to_target(r["rows"], read["accuracy"])  # raw, for the record
        read["stop_reason"] = r["summary"].get("stop_reason")
        per_seed.append(read)
    capped = sum(p["stop_reason"] == "budget" for p in per_seed)
    return {
        "arm": name,
        "strategy": first["strategy"],
        "accuracy": median([p["accuracy"] for p in per_seed]),
        "seconds": round(median([p["seconds"] for p in per_seed]), 3),
        "evaluations": int(median([p["evaluations"] for p in per_seed])),
        # stopped by its cap rather than its plateau (most seeds): it may still have been rising
        "reached_cap": capped * 2 > len(per_seed),
        "budget_seconds": baseline_budget(config),
        "rule": PLATEAU_RULE.describe(),
        "per_seed": per_seed,
    }


def _brief(plateau: dict) -> dict:
    return {k: plateau[k] for k in ("accuracy", "seconds", "reached_cap", "budget_seconds")}


def plateau_sentence(name: str, plateau: dict, target_is_plateau: bool = True) -> str:
    """'The scratch baseline plateaued at 0.793 validation accuracy after 153.0 s of training;
    that is the target.'"""
    if plateau["reached_cap"]:
        how = (f"reached {plateau['accuracy']:.3f} validation accuracy after {plateau['seconds']:.1f} s of training, "
               f"and its cap of {plateau['budget_seconds']:.0f} s stopped it before a plateau was confirmed (it may "
               f"still have been gaining: a longer --baseline-budget may raise the bar)")
    else:
        how = f"plateaued at {plateau['accuracy']:.3f} validation accuracy after {plateau['seconds']:.1f} s of training"
    return f"The {name} baseline {how}" + ("; that is the target." if target_is_plateau else ".")
