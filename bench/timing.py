"""The one timing rule of every benchmark: the median of `repeat` runs after one warm-up run."""
import json
import statistics
import subprocess
import sys
import time


def median_seconds(fn, repeat: int) -> float:
    fn()  # warm-up: first-call allocations and lazy imports are not what we measure
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def in_fresh_process(module: str, worker: str) -> dict:
    """`python -m module <this command's own arguments> --worker worker`, one measurement in a process
    of its own (its peak memory and thread pool untouched by the others); its last output line as JSON."""
    out = subprocess.run([sys.executable, "-m", module, *sys.argv[1:], "--worker", worker],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])
