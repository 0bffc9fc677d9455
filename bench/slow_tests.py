"""Which tests `make check` leaves out: the slowest ones, read from a timed run of the whole suite.

`make check` is the quick loop for work in progress (goal: under 90 s on 2 cores). It runs every
test except those marked `slow`; besides the tests marked in their own file, the slow ones are
listed by node id in tests/slow_tests.txt (conftest.py marks them at collection). This script
writes that list from a timed run: the fastest tests are kept in `make check` while their summed
time (setup + call + teardown, at one worker's share of the machine) stays within `--check-seconds`
of worker time per worker; everything slower is listed.

    rm -f /tmp/headstart_test_times.jsonl
    PYTHONPATH=bench .venv/bin/python -m pytest -q -n 2 -p slow_tests   # times into /tmp
    .venv/bin/python bench/slow_tests.py                                # the list from them

(`make slow-list` does the three.)

Run the timed suite on an idle machine: a loaded one inflates every time, unevenly.
"""
from __future__ import annotations

import argparse
import json
import re
import time
from collections import defaultdict
from pathlib import Path

TIMES = Path("/tmp/headstart_test_times.jsonl")
LIST = Path(__file__).resolve().parent.parent / "tests" / "slow_tests.txt"
FILE_SECONDS = LIST.with_name("file_seconds.txt")  # conftest runs the heaviest files first


# --------------------------------------------------------------------------- as a pytest plugin

def pytest_runtest_logreport(report):
    """Append each phase's duration as it ends (the xdist controller sees every worker's reports)."""
    gateway = getattr(getattr(report, "node", None), "gateway", None)  # the controller knows the worker
    with open(TIMES, "a") as f:
        f.write(json.dumps({"id": report.nodeid, "when": report.when, "seconds": report.duration,
                            "at": time.time(), "worker": getattr(gateway, "id", None)}) + "\n")


# --------------------------------------------------------------------------- the list

def function_id(node_id: str) -> str:
    """tests/test_x.py::test_y[param] -> tests/test_x.py::test_y: a parametrised test is listed
    once, by its function (its cases share their cost's cause)."""
    return re.sub(r"\[.*\]$", "", node_id)


def _phases(rows: list[dict]) -> dict[tuple[str, str], float]:
    """(node id, phase) -> seconds; the largest where several timed runs are read together (a
    test is as slow as the slowest order it ran in: a shared cache may have been warm in one)."""
    phases: dict[tuple[str, str], float] = {}
    for row in rows:  # a plugin loaded in controller and worker reports each phase twice: same figure
        key = (row["id"], row["when"])
        phases[key] = max(phases.get(key, 0.0), row.get("seconds", row.get("d", 0.0)))
    return phases


def per_function_seconds(rows: list[dict]) -> dict[str, float]:
    seconds: dict[str, float] = defaultdict(float)
    for (node, _), s in _phases(rows).items():
        seconds[function_id(node)] += s
    return dict(seconds)


def fixture_heavy_modules(rows: list[dict], limit: float) -> list[str]:
    """Test files whose set-ups (module-scoped fixtures: a fit, a server) sum to over `limit`
    seconds: listed whole, since leaving out their slowest tests only hands the fixture's cost
    to the next test of the file."""
    setup: dict[str, float] = defaultdict(float)
    for (node, when), seconds in _phases(rows).items():
        if when == "setup":
            setup[node.split("::")[0]] += seconds
    return sorted(m for m, s in setup.items() if s > limit)


def slow_functions(seconds: dict[str, float], budget: float) -> list[str]:
    """Everything beyond the fastest tests whose summed seconds fit the budget."""
    kept, total = set(), 0.0
    for name, s in sorted(seconds.items(), key=lambda kv: kv[1]):
        if total + s > budget:
            break
        kept.add(name)
        total += s
    return sorted(set(seconds) - kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--times", type=Path, nargs="+", default=[TIMES],
                        help="timed runs (the whole suite, and make check's own to catch costs moved)")
    parser.add_argument("--module-setup-seconds", type=float, default=10.0,
                        help="list a whole test file whose set-ups sum to more than this")
    # 85: make check's wall is these seconds plus ~10 s of start-up and collection, under its 90 s
    # goal with room for a slower run (100 gave 94 s once, 2026-12-07)
    parser.add_argument("--check-seconds", type=float, default=75.0,
                        help="summed test seconds make check may spend (both workers together)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="divide every time by this (a run's loaded/idle ratio, when it was loaded)")
    args = parser.parse_args()
    rows = [json.loads(line) for path in args.times for line in path.read_text().splitlines() if line.strip()]
    modules = fixture_heavy_modules(rows, args.module_setup_seconds * args.scale)
    seconds = {k: v / args.scale for k, v in per_function_seconds(rows).items()
               if k.split("::")[0] not in modules}
    slow = slow_functions(seconds, args.check_seconds)
    kept = sum(s for k, s in seconds.items() if k not in slow)
    LIST.write_text(
        "# Tests make check leaves out (conftest.py marks them slow), by bench/slow_tests.py from timed\n"
        f"# runs: {len(modules)} whole files (their fixtures are the cost), then {len(slow)} of {len(seconds)}\n"
        f"# test functions of the others; the rest sum to {kept:.0f} s of test time.\n"
        + "".join(f"{name}\n" for name in modules + slow))
    per_file: dict[str, float] = {}
    for (node, _), spent in _phases(rows).items():
        per_file[node.split("::")[0]] = per_file.get(node.split("::")[0], 0.0) + spent / args.scale
    FILE_SECONDS.write_text(
        "# Seconds each test file took in the timed runs (bench/slow_tests.py): conftest.py runs the\n"
        "# heaviest first, so xdist never leaves a long file for the end.\n"
        + "".join(f"{name} {spent:.1f}\n" for name, spent in sorted(per_file.items(), key=lambda kv: -kv[1])))
    print(f"{len(modules)} files and {len(slow)} of {len(seconds)} functions listed as slow in {LIST}; "
          f"make check keeps {kept:.0f} s")


if __name__ == "__main__":
    main()
