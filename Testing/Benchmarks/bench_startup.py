"""Benchmark: how fast ``meddl`` answers, against a bare Python start-up, in one run.

    .venv/bin/python Testing/Benchmarks/bench_startup.py            # median of 5 warm runs, as in RESULTS.md

Measures the wall time of fresh processes (each case run once untimed first, so the file cache is warm; then the
median of --repeats):
  python -c pass             the baseline: the interpreter alone (with this venv's site-packages)
  import DLCommon.cli        python -c "import DLCommon.cli"
  meddl --help               the console script, building the whole parser (every registered module's commands)
  meddl segment --help       one module's command
  meddl job: first line      python -m meddl job FOLDER (FOLDER has no recipe.json), until the child prints its
                             first protocol line (@meddl {"fraction": 0.0, "message": "loading the inputs"}); a
                             Slicer widget's progress bar waits this long for its first message
and prints each one's ratio to the baseline. Goal: meddl --help (and meddl COMMAND --help) < 1 s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIRST_RECORD = {"fraction": 0.0, "message": "loading the inputs"}


def meddlScript() -> str:
    script = Path(sys.executable).parent / "meddl"
    return str(script) if script.exists() else (shutil.which("meddl") or "meddl")


def timeRun(command: list[str]) -> float:
    """Seconds until ``command`` exits (it must succeed)."""
    start = time.perf_counter()
    result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            check=False)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"bench_startup: {' '.join(command)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return seconds


def timeFirstLine(command: list[str]) -> float:
    """Seconds until ``command`` prints its first ``@meddl`` line (checked to be the 'loading the inputs' record)."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    line = child.stdout.readline()
    seconds = time.perf_counter() - start
    rest, errors = child.communicate(timeout=120)
    if not line.startswith("@meddl ") or json.loads(line[len("@meddl "):]) != FIRST_RECORD:
        raise SystemExit(f"bench_startup: {' '.join(command)} printed {line!r} first, not the 'loading the inputs' "
                         f"record:\n{rest[-1000:]}{errors[-2000:]}")
    return seconds


def median(measure, command: list[str], repeats: int) -> float:
    measure(command)  # warm-up: file cache, .pyc files
    return statistics.median(measure(command) for _ in range(repeats))


def run(repeats: int = 5) -> dict[str, float]:
    python, meddl = sys.executable, meddlScript()
    with tempfile.TemporaryDirectory(prefix="meddl-bench-startup-") as folder:  # no recipe.json in it
        cases = {
            "python -c pass": (timeRun, [python, "-c", "pass"]),
            "import DLCommon.cli": (timeRun, [python, "-c", "import DLCommon.cli"]),
            "meddl --help": (timeRun, [meddl, "--help"]),
            "meddl segment --help": (timeRun, [meddl, "segment", "--help"]),
            "meddl job: first line": (timeFirstLine, [python, "-m", "meddl", "job", folder]),
        }
        return {name: median(measure, command, repeats) for name, (measure, command) in cases.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results = run(args.repeats)
    baseline = results["python -c pass"]
    print(f"process start-up to exit (job: to its first line), warm, median of {args.repeats}")
    print()
    print("| command | wall time s | / python -c pass | goal |")
    print("|---|---|---|---|")
    for name, seconds in results.items():
        goal = "< 1 s" if name.startswith("meddl") and "help" in name else "-"
        print(f"| {name} | {seconds:.3f} | {seconds / baseline:.1f}x | {goal} |")


if __name__ == "__main__":
    main()
