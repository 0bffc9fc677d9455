"""Benchmark: the deploy table -- one fitted model as PyTorch, ONNX Runtime fp32 / int8 / fp16 and pruned.

Fits one run (finetune on `elpv` at 128 px by default, seed 0), exports it to ONNX as is and
quantized (`headstart export RUN --format onnx [--quantize int8|fp16]`), prunes it
(`headstart prune RUN --sparsity 0.3`), and prints the run's deploy table (RUN/deploy.json,
which each of those steps adds a row to) as markdown for BENCHMARKS.md, with what the figures
say (int8 slower than fp32 on a CPU without VNNI, and why). Every figure is measured on this
machine, one model after the other, in the same process.

    python bench/deploy_table.py --dataset elpv --image-size 128 --budget 2m
    python bench/deploy_table.py --train-per-class 20 --budget 10s --prune-budget 10s   # a smoke run
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from headstart import api
from headstart.compare import machine_info
from headstart.config import FitConfig, parse_duration
from headstart.errors import HeadstartError
from headstart.pipeline import fit
from headstart.report import build_fit_report, deploy_table

COLUMNS = ("model", "size (MB)", "parameters", "MFLOPs", "latency b1 (ms)", "latency b32 (ms)",
           "throughput (/s)", "test accuracy")


def markdown(table: dict) -> str:
    """The deploy table as BENCHMARKS.md shows it: a row per model, then what the figures say."""
    def cell(value, fmt):
        return "—" if value is None else fmt.format(value)

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in table["rows"]:
        params = r.get("params")
        lines.append("| " + " | ".join([
            r["name"], cell(r.get("file_mb"), "{:.2f}"),
            cell(params / 1e6 if params else None, "{:.2f} M"), cell(r.get("mflops"), "{:.3g}"),
            cell(r.get("latency_ms_b1"), "{:.1f}"), cell(r.get("latency_ms_b32"), "{:.1f}"),
            cell(r.get("throughput_per_s"), "{:.0f}"), cell(r.get("test_accuracy"), "{:.3f}")]) + " |")
    machine = table.get("machine") or {}
    vnni = machine.get("vnni")
    lines += ["", f"Machine: {machine.get('cpu')}, {machine.get('cores')} cores; AVX2 "
                  f"{'yes' if machine.get('avx2') else 'no'}, VNNI "
                  + ("unknown" if vnni is None else f"yes ({', '.join(machine.get('vnni_flags') or [])})" if vnni else "no")
                  + ". " + (table.get("flops_note") or "")]
    lines += [""] + [f"- {f['text']}" for f in table.get("findings") or []]
    return "\n".join(lines)


def step(what: str, do, needs: str | None = None) -> object:
    """Run one stage and say how long it took; one whose API (`needs`) this checkout lacks is skipped, said so."""
    if needs and not hasattr(api, needs):
        print(f"{what}: skipped (no headstart.api.{needs} in this checkout)", flush=True)
        return None
    started = time.perf_counter()
    print(f"{what} ...", flush=True)
    try:
        result = do()
    except HeadstartError as e:  # e.g. an int8 model refused for its accuracy: a result, said with its figures
        print(f"  refused: {e}", flush=True)
        return None
    print(f"  done in {time.perf_counter() - started:.1f} s", flush=True)
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="elpv")
    p.add_argument("--backbone", default="tf_efficientnet_lite0")
    p.add_argument("--strategy", default="finetune")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--budget", default="2m", help="the fit's training budget")
    p.add_argument("--train-per-class", type=int, help="fewer training images (a smoke run)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quantize", nargs="*", default=["int8", "fp16"], help="quantized exports beside the fp32 one")
    p.add_argument("--sparsity", type=float, default=0.3)
    p.add_argument("--prune-budget", default="1m", help="the pruned model's recovery fine-tune budget")
    p.add_argument("--out", default=f"runs/bench-deploy-table-{datetime.now():%Y%m%d-%H%M%S}",
                   help="the run folder (must not hold a run)")
    args = p.parse_args()
    os.environ.setdefault("HEADSTART_QUIET", "1")

    config = FitConfig(data=args.dataset, backbone=args.backbone, strategy=args.strategy, image_size=args.image_size,
                       budget_seconds=parse_duration(args.budget), train_per_class=args.train_per_class,
                       seed=args.seed, out=args.out)
    print(f"fit {args.strategy} on {args.dataset} ...", flush=True)
    run = fit(config).run_dir
    step("export onnx fp32", lambda: api.export(run, format="onnx"), needs="export")
    for precision in args.quantize:
        step(f"export onnx {precision}", lambda: api.export(run, format="onnx", quantize=precision), needs="export")
    step(f"prune {args.sparsity:.0%}", lambda: api.prune(run, sparsity=args.sparsity, budget=args.prune_budget),
         needs="prune")

    build_fit_report(run)
    table = deploy_table(run) or {"rows": []}
    print("\n" + markdown(table))
    out = Path("bench/results/deploy_table.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "argv": sys.argv,
                               "run_dir": str(run), "machine": {**machine_info(), **(table.get("machine") or {})},
                               "rows": table.get("rows"), "findings": table.get("findings"),
                               "markdown": markdown(table)}, indent=2))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
