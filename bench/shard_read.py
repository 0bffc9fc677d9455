"""WebDataset tar shards: headstart's tarfile reader (data/shards.py) against the webdataset
package's, reading the same shards (samples grouped by key, members' bytes in memory; no decoding).

    .venv/bin/python bench/shard_read.py --samples 20000 --shards 8
    (pip install webdataset for its column; without it only ours is timed)

Prints samples per second for each reader, best of --repeats passes (the shards sit in the page
cache after the first).
"""
from __future__ import annotations

import argparse
import io
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def _write(folder: Path, samples: int, shards: int) -> list[Path]:
    rng = np.random.default_rng(0)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(out, "JPEG")
    jpg = out.getvalue()  # ~5 kB, about a small photo thumbnail
    files = [folder / f"shard-{k:03d}.tar" for k in range(shards)]
    for k, path in enumerate(files):
        with tarfile.open(path, "w") as tar:
            for i in range(k, samples, shards):
                for extension, raw in (("jpg", jpg), ("cls", str(i % 10).encode())):
                    info = tarfile.TarInfo(f"{i:08d}.{extension}")
                    info.size = len(raw)
                    tar.addfile(info, io.BytesIO(raw))
    return files


def _ours(files: list[Path]) -> int:
    from headstart.data.shards import _samples

    return sum(1 for _ in _samples(files))


def _webdataset(files: list[Path]) -> int:
    import webdataset as wds

    return sum(1 for _ in wds.WebDataset([str(f) for f in files], shardshuffle=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    readers = {"headstart (tarfile)": _ours}
    try:
        import webdataset  # noqa: F401

        readers["webdataset"] = _webdataset
    except ImportError:
        print("webdataset is not installed: timing ours only")
    with tempfile.TemporaryDirectory() as folder:
        files = _write(Path(folder), args.samples, args.shards)
        print("| reader | samples | samples/s (best of %d) |" % args.repeats)
        print("|---|---|---|")
        for name, read in readers.items():
            best = float("inf")
            for _ in range(args.repeats):
                start = time.perf_counter()
                count = read(files)
                best = min(best, time.perf_counter() - start)
            print(f"| {name} | {count:,} | {count / best:,.0f} |")


if __name__ == "__main__":
    main()
