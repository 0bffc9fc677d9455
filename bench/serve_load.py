"""Benchmark: `headstart serve` under load on loopback -- latency, requests per second, and the
same labels as `predict` on every request.

Serves an exported run (by default an elpv probe it fits and exports itself, the smallest real
run: `headstart fit elpv --train-per-class 20 --strategy probe --image-size 128 --out R &&
headstart export R`) with a real uvicorn on 127.0.0.1, and sends REQUESTS single-image
requests at each concurrency (1, 8, 32 by default) from an asyncio client in this process.
For each: p50/p90/p99 latency, requests per second, the mean micro-batch the server ran, and
every answer checked against `predict --engine onnxruntime`'s label for the same file; beside
them `predict`'s own batch throughput on the same images (decoding included, as the server's).
Client and server share this machine's cores: the figures are a floor for a separate client.

    python bench/serve_load.py                                    # 2,000 requests at 1, 8, 32
    python bench/serve_load.py --requests 50 --concurrency 1 8    # a smoke run
    python bench/serve_load.py --run R                            # an exported run of your own
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "serve_load.json"
SERVER = ("import sys\nfrom headstart.deploy.serve import serve\n"
          "sys.exit(serve(sys.argv[1], port=0, max_batch=int(sys.argv[2]), batch_window_ms=float(sys.argv[3]), "
          "log_level='warning'))")


def elpv_images(count: int) -> list[Path]:
    """The first `count` of elpv's own PNG files (300 x 300 grey), in a fixed order."""
    import elpv_dataset

    folder = Path(elpv_dataset.__file__).parent / "data" / "images"
    return sorted(folder.glob("*.png"))[:count]


def fitted_run(out: Path, train_per_class: int, image_size: int) -> Path:
    """An exported elpv probe: the command line's own fit and export, as a user runs them."""
    if not (out / "model.onnx").is_file():
        for argv in (["fit", "elpv", "--train-per-class", str(train_per_class), "--strategy", "probe",
                      "--image-size", str(image_size), "--out", str(out)], ["export", str(out)]):
            print("headstart " + " ".join(argv), flush=True)
            subprocess.run([sys.executable, "-m", "headstart", "-q", *argv], check=True)
    return out


def predict_reference(run: Path, files: list[Path]) -> tuple[dict[str, str], float]:
    """predict's label for each file, and its throughput in images per second (the second of
    two calls, so the file cache is warm for it as it is for the server)."""
    from headstart.deploy.onnx_predict import predict_inputs

    predict_inputs(run, [str(f) for f in files])
    started = time.perf_counter()
    results = predict_inputs(run, [str(f) for f in files])
    seconds = time.perf_counter() - started
    return {r.path: r.label for r in results}, len(files) / seconds


class Server:
    def __init__(self, run: Path, max_batch: int, window_ms: float):
        self.process = subprocess.Popen([sys.executable, "-c", SERVER, str(run), str(max_batch), str(window_ms)],
                                        stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if " at http://" not in line:
            self.process.kill()
            raise SystemExit(f"the server did not start: {line}")
        self.url = line.split(" at ")[1].split()[0].rstrip("/")
        assert self.url.startswith("http://127.0.0.1:"), self.url  # loopback only

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=120)


async def load(url: str, files: list[Path], expected: dict[str, str], requests: int, concurrency: int) -> dict:
    """`requests` one-image requests from `concurrency` clients at once; latency of each."""
    import httpx

    blobs = [(str(f), f.read_bytes()) for f in files]
    latencies, wrong, failed = [], [], []
    next_index = iter(range(requests))

    async def client_loop(client):
        for i in next_index:
            name, blob = blobs[i % len(blobs)]
            started = time.perf_counter()
            response = await client.post("/predict", files=[("file", (Path(name).name, blob, "image/png"))])
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                failed.append(response.status_code)
            elif response.json()["predictions"][0]["label"] != expected[name]:
                wrong.append(name)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
        before = (await client.get("/health")).json()
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        after = (await client.get("/health")).json()
    ms = np.asarray(latencies) * 1000
    batches = after["batches_run"] - before["batches_run"]
    return {"concurrency": concurrency, "requests": requests, "seconds": round(seconds, 3),
            "requests_per_s": round(requests / seconds, 1), "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p90_ms": round(float(np.percentile(ms, 90)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "max_ms": round(float(ms.max()), 2),
            "mean_batch": round((after["inputs_run"] - before["inputs_run"]) / max(1, batches), 2),
            "same_label_as_predict": requests - len(wrong) - len(failed), "wrong": len(wrong), "failed": len(failed)}


def markdown(rows: list[dict], predict_per_s: float) -> str:
    lines = ["| concurrency | requests | requests/s | p50 (ms) | p99 (ms) | mean batch | same label as predict |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['concurrency']} | {r['requests']:,} | {r['requests_per_s']:.0f} | {r['p50_ms']:.1f} | "
                     f"{r['p99_ms']:.1f} | {r['mean_batch']:.1f} | {r['same_label_as_predict']:,} / {r['requests']:,} |")
    lines.append(f"| `predict` (batch 32) | | {predict_per_s:.0f} images/s | | | 32 | |")
    return "\n".join(lines)


def machine() -> dict:
    from importlib.metadata import version

    cpu = platform.processor() or platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {"cpu": cpu, "cores": os.cpu_count(), "load_1min_before": round(os.getloadavg()[0], 2),
            "platform": platform.platform(),
            "versions": {name: version(name) for name in ("onnxruntime", "fastapi", "uvicorn", "httpx")}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, default=ROOT / "runs" / "bench-serve-elpv",
                   help="an exported run (fitted and exported here first when it has no model.onnx)")
    p.add_argument("--train-per-class", type=int, default=20, help="the elpv probe's training images per class")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--requests", type=int, default=2000, help="requests at each concurrency")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--images", type=int, default=256, help="distinct elpv images the requests cycle through")
    p.add_argument("--max-batch", type=int, default=32, help="the server's micro-batch cap")
    p.add_argument("--batch-window-ms", type=float, default=5.0, help="the server's micro-batch window")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    os.environ.setdefault("HEADSTART_QUIET", "1")

    info = machine()
    run = fitted_run(args.run, args.train_per_class, args.image_size)
    files = elpv_images(args.images)
    expected, predict_per_s = predict_reference(run, files)
    print(f"predict: {predict_per_s:.0f} images/s on {len(files)} images", flush=True)
    server = Server(run, args.max_batch, args.batch_window_ms)
    rows = []
    try:
        asyncio.run(load(server.url, files, expected, min(20, args.requests), 1))  # warm-up, not counted
        for concurrency in args.concurrency:
            rows.append(asyncio.run(load(server.url, files, expected, args.requests, concurrency)))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        exit_code = server.stop()
    table = markdown(rows, predict_per_s)
    print("\n" + table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "argv": sys.argv, "run": str(run),
        "machine": info, "server": {"max_batch": args.max_batch, "batch_window_ms": args.batch_window_ms,
                                    "exit_code_on_sigterm": exit_code},
        "predict_images_per_s": round(predict_per_s, 1), "distinct_images": len(files), "rows": rows,
        "markdown": table}, indent=2))
    print(f"\nwrote {args.out}")
    all_same = all(r["wrong"] == 0 and r["failed"] == 0 for r in rows)
    return 0 if all_same and exit_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
