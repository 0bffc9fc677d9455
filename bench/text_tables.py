"""Time-to-accuracy tables from a bench/text_vs_hf.py run: every arm and the HF Trainer peer,
median training seconds (evaluation excluded) to reach each validation accuracy threshold.

A single target (the best baseline's best validation accuracy) is a max over many noisy
evaluations; on 150 validation texts one text is 0.7 points. Thresholds show the whole
race instead: who gets where, and how soon.

    python bench/text_tables.py bench/results/text_vs_hf.json
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from headstart.compare import time_to_target  # noqa: E402
from headstart.records import read_metrics  # noqa: E402

THRESHOLDS = (0.80, 0.85, 0.90, 0.93, 0.95)


def median_time(times: list[float | None]) -> float | None:
    reached = [t for t in times if t is not None]
    return statistics.median(reached) if len(reached) * 2 > len(times) else None


def arm_times(compare_dir: Path, arm: str, seeds: int, threshold: float) -> float | None:
    folder = arm.replace(":", "-")
    runs = [compare_dir / "arms" / (folder if s == 0 else f"{folder}-seed{s}") for s in range(seeds)]
    return median_time([time_to_target(read_metrics(r), threshold) for r in runs])


def peer_times(peer: dict, threshold: float) -> float | None:
    times = []
    for run in peer["runs"]:
        hit = next((p["train_seconds"] for p in run["curve"] if p["val_accuracy"] >= threshold - 1e-9), None)
        times.append(hit)
    return median_time(times)


def cell(t: float | None) -> str:
    return "—" if t is None else f"{t:.1f}"


def main(path: str) -> None:
    results = json.loads(Path(path).read_text())
    seeds = results["settings"]["seeds"]
    for size in results["sizes"]:
        compare_dir = Path(size["compare_dir"])
        print(f"\n#### {size['train_per_class']} labels per class — median training seconds to a validation accuracy\n")
        print("| arm | " + " | ".join(f"{t:.2f}" for t in THRESHOLDS) + " | best val | test | train s |")
        print("|---|" + "---:|" * (len(THRESHOLDS) + 3))
        best = {t: None for t in THRESHOLDS}
        for a in size["arms"]:
            times = [arm_times(compare_dir, a["name"], seeds, t) for t in THRESHOLDS]
            if not a["baseline"]:
                for t, v in zip(THRESHOLDS, times):
                    if v is not None and (best[t] is None or v < best[t]):
                        best[t] = v
            print(f"| {a['name']}{' (baseline)' if a['baseline'] else ''} | " + " | ".join(map(cell, times))
                  + f" | {a['best_val_accuracy']:.3f} | {a['test_accuracy']:.3f} | {a['train_seconds']:.1f} |")
        peer = size["hf_trainer"]
        peer_row = [peer_times(peer, t) for t in THRESHOLDS]
        print("| HF Trainer (defaults) | " + " | ".join(map(cell, peer_row))
              + f" | {peer['best_val_accuracy']:.3f} | {peer['test_accuracy']:.3f} | {peer['train_seconds']:.1f} |")
        ratios = []
        for t, p in zip(THRESHOLDS, peer_row):
            if best[t] is None:
                continue
            if p is None:
                ratios.append(f"{t:.2f}: HF never (≥ {peer['train_seconds'] / best[t]:.0f}× by its whole run)")
            else:
                ratios.append(f"{t:.2f}: {p / best[t]:.1f}×")
        print("\nBest headstart arm vs HF Trainer, time to threshold: " + "; ".join(ratios))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench/results/text_vs_hf.json")
