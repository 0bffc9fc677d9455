"""Benchmark: what `fit --strategy probe` costs as the folder grows (issue 25).

For each N: a synthetic folder of N small JPEGs (10 classes; made once, kept under --root),
then `headstart fit DIR --strategy probe --train-per-class 50` as a subprocess twice, on an
empty cache (cold) and again on the caches the first run left (warm). Per run: peak RSS (the
kernel's ru_maxrss, which counts the pages of memory-mapped files the process touched, and
the peak of RSS less file-backed pages, polled: the memory only this process holds), the
summary's decode, training (embedding + head) and wall seconds, per item, and the disk the
caches use. Decode alone is also timed in-process at 1 and 2 threads (--decode-sample files).

    python bench/scale.py --n 2000 10000                      # this checkout
    git worktree add /tmp/h7-base 9694e6d                      # the code before issue 25
    python bench/scale.py --n 2000 10000 --code /tmp/h7-base/src --label base
    python bench/scale.py --plot                                # bench/results/scale.png from every label

Results: bench/results/scale-LABEL.json (one row per N and run); the plot: cost against N.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
CLASSES = 10
FIT_ARGS = ["--strategy", "probe", "--train-per-class", "50", "--seed", "0"]


def make_folder(root: Path, n: int) -> Path:
    """N small JPEGs (64x48 to 96x72), 10 classes, each a tinted gradient with noise: decodable,
    different from each other, cheap to make. Made once per N and kept."""
    from PIL import Image

    folder = root / f"jpegs-{n}"
    done = folder / ".complete"
    if done.exists():
        return folder
    rng = np.random.default_rng(n)
    ramp = np.linspace(0, 1, 96, dtype=np.float32)
    for i in range(n):
        k = i % CLASSES
        w, h = int(rng.integers(64, 97)), int(rng.integers(48, 73))
        tint = np.array([(k * 37) % 256, (k * 91) % 256, (k * 53) % 256], dtype=np.float32)
        base = ramp[:w][None, :, None] * tint[None, None, :] + rng.normal(0, 20, (h, w, 3)).astype(np.float32)
        path = folder / f"class{k}" / f"{i:07d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(path, quality=85)
    done.touch()
    return folder


def disk_bytes(path: Path) -> int:
    # blocks actually used: a sparse file (rows of skipped images) counts what it occupies
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file()) if path.exists() else 0


# --data-only: the stage that grows with N, without the model: load the folder, split it as the
# probe does, and read the pixels of every split (what embedding them reads). Prints its clocks.
DATA_ONLY = """
import json, sys, time
import numpy as np
from headstart.modalities import load_data
from headstart.data import make_splits
t0 = time.perf_counter()
data = load_data(sys.argv[1], size=224)
t1 = time.perf_counter()
splits = make_splits(data, seed=0, train_per_class=50)
for part in (splits.train, splits.val, splits.test):
    for start in range(0, len(part), 64):
        np.asarray(part.images[start:start + 64]).sum()
t2 = time.perf_counter()
print(json.dumps({"decode_seconds": t1 - t0, "train_seconds": t2 - t1, "wall_seconds": t2 - t0,
                  "sizes": {p: len(getattr(splits, p)) for p in ("train", "val", "test")}}))
"""


def run_fit(folder: Path, out: Path, cache: Path, code: Path | None, data_only: bool = False) -> dict:
    """One `headstart fit` (or the data stage alone) in a subprocess: its clocks, its peak RSS two ways."""
    import psutil

    env = dict(os.environ, HEADSTART_CACHE=str(cache))
    if code is not None:
        env["PYTHONPATH"] = str(code)
    started = time.perf_counter()
    command = [sys.executable, "-c", DATA_ONLY, str(folder)] if data_only else \
        [sys.executable, "-m", "headstart", "fit", str(folder), "--out", str(out), *FIT_ARGS]
    errors = tempfile.TemporaryFile()  # a file, not a pipe: a full pipe would stall the run
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE if data_only else subprocess.DEVNULL,
                            stderr=errors)
    peak_anon = [0]

    def poll() -> None:
        try:
            p = psutil.Process(proc.pid)
            while proc.poll() is None:
                m = p.memory_info()
                peak_anon[0] = max(peak_anon[0], m.rss - m.shared)  # shared = RssFile + RssShmem on Linux
                time.sleep(0.05)
        except psutil.Error:
            pass

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    stdout = proc.stdout.read() if data_only else b""
    _, status, usage = os.wait4(proc.pid, 0)  # not proc.wait(): wait4 returns the child's rusage
    proc.returncode = os.waitstatus_to_exitcode(status)
    watcher.join()
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        errors.seek(0)
        raise SystemExit(f"fit failed ({proc.returncode}):\n{errors.read().decode()[-3000:]}")
    summary = json.loads(stdout) if data_only else json.loads((out / "summary.json").read_text())
    sizes = summary.get("sizes", {})
    embedded = sum(sizes.values())
    return {
        "process_seconds": round(elapsed, 2),
        "wall_seconds": summary.get("wall_seconds"),
        "decode_seconds": summary.get("decode_seconds"),
        "train_seconds": summary.get("train_seconds"),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "peak_anon_mb": round(peak_anon[0] / 2**20, 1),
        "summary_peak_rss_mb": summary.get("peak_rss_mb"),
        "embedded_items": embedded,
        "test_accuracy": summary.get("test_accuracy"),
    }


def decode_threads(folder: Path, sample: int) -> dict:
    """Decode `sample` files in-process into a sink that keeps nothing, at 1 and 2 threads."""
    from headstart.data import sources

    files = sorted(p.resolve() for p in folder.rglob("*.jpg"))[:sample]
    out = {}
    for workers in (1, 2):
        started = time.perf_counter()
        sources._decode_all(files, 224, False, lambda chunk: None, workers=workers)
        out[f"ms_per_item_{workers}_threads"] = round(1000 * (time.perf_counter() - started) / len(files), 3)
    return out


def measure(n: int, args) -> dict:
    folder = make_folder(args.root, n)
    cache = args.root / f"cache-{args.label}-{n}"
    shutil.rmtree(cache, ignore_errors=True)
    row: dict = {"label": args.label, "n": n}
    for run in ("cold", "warm"):
        out = args.root / f"run-{args.label}-{n}-{run}"
        shutil.rmtree(out, ignore_errors=True)
        result = run_fit(folder, out, cache, args.code, args.data_only)
        result["cache_mb"] = {sub.name: round(disk_bytes(sub) / 2**20, 1) for sub in sorted(cache.glob("*"))
                              if sub.is_dir()}
        row[run] = result
        print(json.dumps({"n": n, "run": run, **result}), flush=True)
    cold = row["cold"]
    row["decode_ms_per_item"] = round(1000 * (cold["decode_seconds"] or 0) / n, 3)
    row["embed_and_head_ms_per_embedded_item"] = round(1000 * (cold["train_seconds"] or 0) / max(cold["embedded_items"], 1), 2)
    row["warm_decode_share"] = round((row["warm"]["decode_seconds"] or 0) / max(cold["decode_seconds"] or 1e-9, 1e-9), 4)
    if args.decode_sample and args.code is None:
        row["decode_threads"] = decode_threads(folder, min(n, args.decode_sample))
        print(json.dumps({"n": n, **row["decode_threads"]}), flush=True)
    return row


def plot(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (rss, secs) = plt.subplots(1, 2, figsize=(10, 4))
    for result in sorted(RESULTS.glob("scale-*.json")):
        rows = sorted(json.loads(result.read_text()), key=lambda r: r["n"])
        label, ns = rows[0]["label"], [r["n"] for r in rows]
        rss.plot(ns, [r["cold"]["peak_rss_mb"] for r in rows], "o-", label=f"{label}: peak RSS")
        rss.plot(ns, [r["cold"]["peak_anon_mb"] for r in rows], "x--", label=f"{label}: peak RSS less mapped files")
        secs.plot(ns, [r["cold"]["wall_seconds"] for r in rows], "o-", label=f"{label}: first run")
        secs.plot(ns, [r["warm"]["wall_seconds"] for r in rows], "x--", label=f"{label}: second run (caches)")
    rss.set(xlabel="images in the folder", ylabel="MB", title="fit --strategy probe: memory")
    secs.set(xlabel="images in the folder", ylabel="seconds", title="wall time")
    for ax in (rss, secs):
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="*", default=[], help="folder sizes, e.g. 10000 30000 100000")
    parser.add_argument("--root", type=Path, default=Path("/tmp/headstart-scale"), help="folders, caches, runs")
    parser.add_argument("--code", type=Path, default=None, help="a src/ folder to run instead of this checkout's")
    parser.add_argument("--label", default="streaming", help="what the results file calls this code")
    parser.add_argument("--decode-sample", type=int, default=2000, help="files decoded in-process at 1 and 2 threads")
    parser.add_argument("--data-only", action="store_true",
                        help="only load, split and read the splits' pixels (the stage that grows with N; no model)")
    parser.add_argument("--plot", action="store_true", help="plot every results file into bench/results/scale.png")
    args = parser.parse_args()
    if args.n:
        RESULTS.mkdir(exist_ok=True)
        args.label += "-data-only" if args.data_only else ""
        result = RESULTS / f"scale-{args.label}.json"
        rows = {r["n"]: r for r in (json.loads(result.read_text()) if result.exists() else [])}
        for n in args.n:
            rows[n] = measure(n, args)
            result.write_text(json.dumps(sorted(rows.values(), key=lambda r: r["n"]), indent=2) + "\n")
    if args.plot:
        plot(RESULTS / "scale.png")


if __name__ == "__main__":
    main()
