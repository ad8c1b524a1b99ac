"""Intra-op threads for one job versus concurrent jobs, and OpenMP's wait policy.

    .venv/bin/python -m bench.threads [--size 600] [--forwards 4] [--busy 0]

Each configuration starts J job processes at once (DETR-R50 architecture, random weights, --size px),
each with T torch threads and the given OMP_WAIT_POLICY, each running --forwards no-grad forwards;
the table gives the wall time until all are done and its ratio to one job with torch's default
threads. --busy N keeps N other processes computing at nice 19 meanwhile (a shared host).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

CONFIGS = [  # (jobs, threads: None = torch's default, wait policy)
    (1, None, "ACTIVE"), (1, None, "PASSIVE"), (1, 1, "PASSIVE"),
    (2, None, "ACTIVE"), (2, None, "PASSIVE"), (2, 1, "PASSIVE"),
]


def job(size: int, forwards: int, threads: int | None) -> None:
    """One job process: load, warm up, wait for the go line on stdin, run the forwards, say done."""
    import torch
    from bench.r50 import at_size, r50_random, scene
    if threads:
        torch.set_num_threads(threads)
    loaded = at_size(r50_random(), size)
    pixels = loaded.pixel_values(scene(size))
    with torch.inference_mode():
        loaded.model(pixel_values=pixels)
    print("ready", flush=True)
    sys.stdin.readline()
    with torch.inference_mode():
        for _ in range(forwards):
            loaded.model(pixel_values=pixels)
    print("done", flush=True)


def run(jobs: int, threads: int | None, policy: str, args) -> float:
    command = [sys.executable, "-m", "bench.threads", "--size", str(args.size), "--forwards", str(args.forwards),
               "--job-threads", str(threads or 0)]
    env = {**os.environ, "OMP_WAIT_POLICY": policy}
    procs = [subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, env=env) for _ in range(jobs)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    start = time.perf_counter()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        p.stdout.readline()
        p.wait()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=600)
    parser.add_argument("--forwards", type=int, default=4)
    parser.add_argument("--busy", type=int, default=0, help="other busy processes (nice 19) meanwhile")
    parser.add_argument("--job-threads", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job_threads is not None:
        job(args.size, args.forwards, args.job_threads or None)
        return
    busy = [subprocess.Popen(["nice", "-n", "19", sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        walls = {config: run(*config, args) for config in CONFIGS}
    finally:
        for p in busy:
            p.kill()
    base = walls[CONFIGS[0]]
    print(f"{os.cpu_count()} cores, DETR-R50 at {args.size} px, {args.forwards} forwards a job, "
          f"{args.busy} other busy processes")
    print("| jobs | threads a job | OMP_WAIT_POLICY | wall s | x one job, default threads |")
    print("|---:|---:|---|---:|---:|")
    for (jobs, threads, policy), wall in walls.items():
        print(f"| {jobs} | {threads or 'default'} | {policy} | {wall:.1f} | {wall / base:.2f} |")


if __name__ == "__main__":
    main()
