"""The one timing rule of every benchmark: the median of `repeat` runs after one warm-up run."""
import statistics
import time


def median_seconds(fn, repeat: int) -> float:
    fn()  # warm-up: first-call allocations and lazy imports are not what we measure
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
