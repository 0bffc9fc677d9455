"""Reading a large text file: peak memory and time of the text readers (issue 25, text streams).

Writes a text file of N lines (a pool) and a CSV of N text,label rows, then reads each in a
fresh process and reports the growth of peak RSS over the process's start (imports done) and
the wall time, beside the texts' own size in Python (what one copy costs).

    .venv/bin/python bench/text_stream.py --lines 1000000
    .venv/bin/python bench/text_stream.py --lines 1000000 --reader OLD_text_sources.py   # another version

--reader loads data/text_sources.py from another file (e.g. `git show REV:src/headstart/data/
text_sources.py > old.py`) to compare a previous version on the same files.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

_CHILD = r"""
import importlib.util, json, resource, sys, time
from pathlib import Path
import headstart.data.text_sources as module
if sys.argv[3]:
    spec = importlib.util.spec_from_file_location("other_text_sources", sys.argv[3])
    module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
path, kind = Path(sys.argv[1]), sys.argv[2]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
data = module.load_text_pool(path) if kind == "pool" else module.load_text_table(path)
seconds = time.perf_counter() - start
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
held = sys.getsizeof(data.texts) + sum(sys.getsizeof(t) for t in data.texts)
print(json.dumps({"items": len(data), "peak_growth_mib": grown / 1024, "texts_mib": held / 2**20, "seconds": seconds}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--reader", default="", help="another text_sources.py to compare")
    args = parser.parse_args()
    sentence = "a line of some words that a user might have in a text pool of sentences"
    with tempfile.TemporaryDirectory() as folder:
        pool, table = Path(folder) / "pool.txt", Path(folder) / "rows.csv"
        with open(pool, "w") as f:
            f.writelines(f"{i} {sentence}\n" for i in range(args.lines))
        with open(table, "w") as f:
            f.write("text,label\n")
            f.writelines(f"{i} {sentence},{'ab'[i % 2]}\n" for i in range(args.lines))
        print("| file | items | peak RSS growth (MiB) | the texts alone (MiB) | ratio | seconds |")
        print("|---|---|---|---|---|---|")
        for name, path, kind in (("text file (pool)", pool, "pool"), ("CSV text,label", table, "table")):
            out = subprocess.run([sys.executable, "-c", _CHILD, str(path), kind, args.reader],
                                 capture_output=True, text=True, check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            print(f"| {name} | {r['items']:,} | {r['peak_growth_mib']:.0f} | {r['texts_mib']:.0f} | "
                  f"{r['peak_growth_mib'] / r['texts_mib']:.2f} | {r['seconds']:.1f} |")


if __name__ == "__main__":
    main()
