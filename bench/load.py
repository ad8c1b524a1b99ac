"""Serving many people: concurrent sessions over HTTP, and what a background job costs.

    .venv/bin/python -m bench.load [--sessions 8] [--rounds 2] [--cold-rounds 1] [--setup both|single|celery]
                                   [--model demo]
    .venv/bin/python -m bench.load --jobs 6          # fork-per-job: inherited model vs reload per job
    .venv/bin/python -m bench.load --abuse 50        # one session firing 50 jobs beside 4 normal ones,
                                                     # with the per-session job cap (2) and without (0)

HTTP: each simulated session does what the page does (Dash's callback protocol on
/_dash-update-component, background callbacks polled like the browser polls them): upload a
small image -> detection -> Grad-CAM of the top detection -> the heatmap figure. Round 1 uses a new
image per session (everything computed); later rounds repeat the same images (everything cached).
Against (a) one process, `python -m app serve` (diskcache: a forked process per job), and (b)
gunicorn with 2 workers + Redis + a Celery worker with 2 pool processes. Prints throughput,
p50/p95 latency per step, server time of cached steps, error count, and peak memory per process.
Loopback only; bounded in sessions (<= 32) and time (--budget seconds per setup).
Without models/demo-detr (and --model demo) it serves an untrained model of the demo's shape.
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the servers set it (app/background.py), before torch loads
REQUEST_TIMEOUT = 60


# --- Dash's callback protocol -------------------------------------------------------------------

def _outputs(output: str):
    """dash's output string -> the payload's `outputs` ({id, property} or a list of them)."""
    def one(part):
        ident, prop = part.rsplit(".", 1)
        return {"id": json.loads(ident) if ident.startswith("{") else ident, "property": prop}
    if output.startswith(".."):
        return [one(p) for p in output[2:-2].split("...")]
    return one(output)


class DashClient:
    """One page load: the end id, the callback graph and the layout's initial values."""

    def __init__(self, base: str):
        self.base, self.http = base, requests.Session()
        page = self._get("/").text
        self.end_id = json.loads(page.split('id="_dash-config" type="application/json">', 1)[1]
                                 .split("</script>", 1)[0])["end_id"]
        # server callbacks only: a clientside one can share an output (allow_duplicate) but has no server function
        self.callbacks = {cb["output"]: cb for cb in self._get("/_dash-dependencies").json()
                          if not cb.get("clientside_function")}
        self.values: dict = {}
        self._collect(self._get("/_dash-layout").json())
        self.server_s = 0.0

    def _get(self, path):
        r = self.http.get(self.base + path, timeout=REQUEST_TIMEOUT)
        r.raise_for_status()
        return r

    def _collect(self, node):
        if isinstance(node, dict):
            props = node.get("props", {})
            if isinstance(props.get("id"), str):
                for k, v in props.items():
                    if k != "children":
                        self.values[(props["id"], k)] = v
            for v in props.values():
                self._collect(v)
        elif isinstance(node, list):
            for v in node:
                self._collect(v)

    def _post(self, payload, **args):
        t = time.perf_counter()
        r = self.http.post(self.base + "/_dash-update-component", params={"endId": self.end_id, **args},
                           json=payload, timeout=REQUEST_TIMEOUT)
        self.server_s += time.perf_counter() - t
        if r.status_code == 204:
            return {}
        r.raise_for_status()
        return r.json()

    def call(self, output_prefix: str, changed: str, **values) -> dict:
        """Run the callback whose output starts with `output_prefix`, with `values` ({"id.prop": v})
        over the layout's; polls a background callback to its end. Returns {id: {prop: value}}."""
        output = next(o for o in self.callbacks if o.lstrip(".").startswith(output_prefix))
        cb = self.callbacks[output]

        def deps(items):
            out = []
            for d in items:
                if not isinstance(d["id"], str):  # pattern-matching (ALL): no matches sent
                    out.append([])
                    continue
                name = f"{d['id']}.{d['property']}"
                out.append({**d, "value": values.get(name, self.values.get((d["id"], d["property"])))})
            return out
        payload = {"output": output, "outputs": _outputs(output), "inputs": deps(cb["inputs"]),
                   "changedPropIds": [changed], "state": deps(cb.get("state", []))}
        data = self._post(payload)
        if "cacheKey" in data:  # background: poll like the browser (inputs nulled)
            blank = json.loads(json.dumps(payload))
            for d in blank["inputs"] + blank["state"]:
                if isinstance(d, dict):
                    d["value"] = None
            interval = (cb.get("background") or {}).get("interval", 1000) / 1000
            handles = {"cacheKey": data["cacheKey"], "job": data["job"]}
            deadline = time.time() + REQUEST_TIMEOUT * 5
            while "response" not in data:
                if time.time() > deadline:
                    raise TimeoutError(f"{output_prefix}: no result")
                time.sleep(interval)
                data = self._post(blank, **handles)
        response = data.get("response", {})
        for ident, props in response.items():
            for k, v in props.items():
                self.values[(ident, k)] = v
        return response


def scene_png(seed: int) -> str:
    from core.demo.scenes import make_scene
    buf = io.BytesIO()
    make_scene(seed)[0].save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def session(base: str, seed: int) -> dict:
    """upload -> detection -> Grad-CAM -> heatmap figure; wall and server seconds per step."""
    steps, errors = {}, []
    c = DashClient(base)

    def step(name, fn):
        c.server_s, t = 0.0, time.perf_counter()
        out = fn()
        steps[name] = (time.perf_counter() - t, c.server_s)
        return out
    contents = scene_png(seed)
    store = step("upload", lambda: c.call("image-store.data", "upload.contents",
                                          **{"upload.contents": contents, "upload.filename": f"{seed}.png"}))
    image = store["image-store"]["data"]
    dets = step("detect", lambda: c.call("detections-store.data", "image-store.data",
                                         **{"image-store.data": image}))["detections-store"]["data"]
    if dets.get("error") or not dets["detections"]:
        errors.append(dets.get("error") or "no detections")
        return {"steps": steps, "errors": errors}
    query = max(dets["detections"], key=lambda d: d["score"])["index"]
    result = step("gradcam", lambda: c.call("explain-result.data", "picker.value", **{
        "picker.value": query, "image-store.data": image, "method.value": "cam",
        "cam-variant.value": "gradcam"}))["explain-result"]["data"]
    if result.get("error"):
        errors.append(result["error"])
        return {"steps": steps, "errors": errors}
    fig = step("figure", lambda: c.call("explain-figure.figure", "explain-result.data", **{
        "explain-result.data": result, "image-store.data": image, "detections-store.data": dets}))
    if "explain-figure" not in fig:
        errors.append("no heatmap figure")
    return {"steps": steps, "errors": errors}


# --- the stacks -----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, procs) -> None:
    end = time.time() + timeout
    while time.time() < end:
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{p.args[:3]} exited with {p.returncode}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer in {timeout:.0f} s")


class Stack:
    """Processes started for one setup; all stopped (process groups) on exit."""

    def __init__(self, setup: str, model: str, workdir: Path):
        self.setup, self.procs, self.dir = setup, [], workdir / setup
        self.dir.mkdir(parents=True)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.env = {**os.environ, "DETR_MODEL": model, "DETR_CACHE_DIR": str(self.dir / "cache"),
                    "PYTHONPATH": str(ROOT), "TRANSFORMERS_VERBOSITY": "error"}
        self.env.pop("REDIS_URL", None)
        if setup == "single":
            self._start("web", [PYTHON, "-m", "app", "serve", "--port", str(port), "--model", model])
        else:
            rport = free_port()
            self.env["REDIS_URL"] = f"redis://127.0.0.1:{rport}/0"
            self._start("redis", [shutil.which("redis-server") or "redis-server", "--port", str(rport), "--bind",
                                  "127.0.0.1", "--save", "", "--appendonly", "no", "--maxmemory", "256mb",
                                  "--maxmemory-policy", "volatile-lru"])
            self._start("celery", [str(Path(PYTHON).parent / "celery"), "-A", "app.celery_app", "worker",
                                   "--concurrency", "2", "--loglevel", "warning"])
            self._start("web", [str(Path(PYTHON).parent / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"),
                                "-b", f"127.0.0.1:{port}", "-w", "2", "app.wsgi:server"])

    def _start(self, role, cmd):
        out = open(self.dir / f"{role}.log", "w")
        self.procs.append((role, subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                                  start_new_session=True)))

    def wait_ready(self, timeout: float) -> None:
        wait_http(self.url + "/_dash-layout", timeout, [p for _, p in self.procs])
        if self.setup == "celery":  # every pool process has loaded its model
            end = time.time() + timeout
            while time.time() < end and sum(1 for p in self.tree() if p[0] == "celery-pool") < 2:
                time.sleep(0.5)

    def tree(self):
        """(role, psutil.Process) for every process of the stack."""
        out = []
        for role, p in self.procs:
            try:
                root = psutil.Process(p.pid)
                kids = root.children(recursive=True)
            except psutil.NoSuchProcess:
                continue
            if role == "celery":
                out += [("celery-main", root)] + [("celery-pool", k) for k in kids]
            elif role == "web" and self.setup == "celery":
                out += [("gunicorn-master", root)] + [("gunicorn-worker", k) for k in kids]
            elif role == "web":
                out += [("web", root)] + [("job", k) for k in kids]
            else:
                out += [(role, root)]
        return out

    def stop(self):
        for _, p in reversed(self.procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for _, p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)


class MemorySampler(threading.Thread):
    """Peak RSS (and USS: pages only that process holds) per process, sampled every 0.25 s."""

    def __init__(self, stack: Stack):
        super().__init__(daemon=True)
        self.stack, self.stop, self.peak = stack, threading.Event(), {}

    def run(self):
        while not self.stop.is_set():
            for role, p in self.stack.tree():
                try:
                    if p.status() == psutil.STATUS_ZOMBIE:
                        continue
                    mem = p.memory_full_info()
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                rss, uss, first = self.peak.get(p.pid, (0, 0, None))[:3]
                self.peak[p.pid] = (max(rss, mem.rss), max(uss, mem.uss), first or mem.rss, mem.rss, role)
            self.stop.wait(0.25)


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def run_setup(setup, model, sessions, rounds, cold_rounds, budget, workdir):
    stack = Stack(setup, model, workdir)
    sampler = MemorySampler(stack)
    try:
        t = time.time()
        stack.wait_ready(min(budget, 240))
        print(f"\n== {setup}: {'python -m app serve' if setup == 'single' else 'gunicorn -w 2 + redis + celery --concurrency 2'}"
              f" (ready in {time.time() - t:.1f} s)")
        sampler.start()
        for r in range(rounds):
            # new images in each of the first cold_rounds rounds (every step computed), then the last
            # cold round's images again (every step cached)
            base = 1_000_100 + 100 * min(r, cold_rounds - 1)
            seeds = [base + i for i in range(sessions)]
            t = time.time()
            with ThreadPoolExecutor(sessions) as pool:
                futures = [pool.submit(session, stack.url, s) for s in seeds]
                results = []
                for f in futures:
                    try:
                        results.append(f.result(timeout=max(1.0, budget - (time.time() - t))))
                    except Exception as err:  # noqa: BLE001 - counted, not fatal
                        results.append({"steps": {}, "errors": [f"{type(err).__name__}: {err}"]})
            wall = time.time() - t
            errors = [e for res in results for e in res["errors"]]
            done = sum(1 for res in results if not res["errors"])
            print(f"round {r + 1} ({'cold' if r < cold_rounds else 'cached'}): {done}/{sessions} sessions in {wall:.1f} s, "
                  f"{done / wall:.2f} sessions/s, errors {len(errors)}" + (f" e.g. {errors[0]}" if errors else ""))
            for name in ("upload", "detect", "gradcam", "figure"):
                walls = [res["steps"][name][0] for res in results if name in res["steps"]]
                servers = [res["steps"][name][1] for res in results if name in res["steps"]]
                if walls:
                    print(f"  {name:8s} wall p50 {pct(walls, .5) * 1e3:7.0f} ms  p95 {pct(walls, .95) * 1e3:7.0f} ms"
                          f"   server (sum of requests) p50 {pct(servers, .5) * 1e3:6.0f} ms"
                          f"  p95 {pct(servers, .95) * 1e3:6.0f} ms")
    finally:
        sampler.stop.set()
        if sampler.is_alive():
            sampler.join(2)
        stack.stop()
    print("  peak memory (MiB; rss counts pages shared with the parent, uss only the process' own):")
    jobs = [v for v in sampler.peak.values() if v[4] == "job"]
    if jobs:
        print(f"    job processes    {len(jobs):3d} seen  rss peak {max(v[0] for v in jobs) / 2**20:7.0f}"
              f"  uss peak {max(v[1] for v in jobs) / 2**20:7.0f}")
    for pid, (rss, uss, first, last, role) in sorted(sampler.peak.items(), key=lambda kv: kv[1][4]):
        if role != "job":
            print(f"    {role:16s} pid {pid:7d}  rss peak {rss / 2**20:7.0f}  uss peak {uss / 2**20:7.0f}"
                  f"  rss first {first / 2**20:6.0f} last {last / 2**20:6.0f}")


# --- one session firing many jobs beside normal sessions --------------------------------------------

def flood(base: str, seed: int, burst: int, steps0: int = 8) -> dict:
    """One browser session: upload, detect, then `burst` Integrated Gradients requests at once (each
    with its own step count: none is cached). Counts the jobs answered "wait" and the others."""
    c = DashClient(base)
    contents = scene_png(seed)
    image = c.call("image-store.data", "upload.contents", **{"upload.contents": contents,
                                                             "upload.filename": f"{seed}.png"})["image-store"]["data"]
    dets = c.call("detections-store.data", "image-store.data", **{"image-store.data": image})["detections-store"]["data"]
    query = max(dets["detections"], key=lambda d: d["score"])["index"]

    def one(i):
        try:
            out = c.call("explain-result.data", "explain.n_clicks", **{
                "explain.n_clicks": 1, "picker.value": query, "image-store.data": image, "method.value": "ig",
                "ig-steps.value": steps0 + i, "ig-baseline.value": "black"})["explain-result"]["data"]
        except Exception as err:  # noqa: BLE001
            return f"request failed: {type(err).__name__}"
        return "refused" if "wait for your running job" in str(out.get("error", "")) else (
            "error" if out.get("error") else "done")
    t = time.perf_counter()
    with ThreadPoolExecutor(burst) as pool:
        outcomes = list(pool.map(one, range(burst)))
    return {k: outcomes.count(k) for k in set(outcomes)} | {"wall": time.perf_counter() - t}


class JobMemory(threading.Thread):
    """Peak number of job processes and their summed memory (RSS of each minus what it shares is not
    known cheaply: USS, its own pages); stops the stack when the machine runs short of memory."""

    def __init__(self, stack: Stack, floor_gib: float = 3.0):
        super().__init__(daemon=True)
        self.stack, self.floor, self.stop = stack, floor_gib * 2**30, threading.Event()
        self.peak_jobs, self.peak_uss, self.aborted = 0, 0, False

    def run(self):
        while not self.stop.is_set():
            jobs = [p for role, p in self.stack.tree() if role == "job"]
            uss = 0
            for p in jobs:
                try:
                    uss += p.memory_full_info().uss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            self.peak_jobs, self.peak_uss = max(self.peak_jobs, len(jobs)), max(self.peak_uss, uss)
            if psutil.virtual_memory().available < self.floor:
                self.aborted = True
                self.stack.stop()
                return
            self.stop.wait(0.25)


def abuse_bench(model: str, burst: int, normal: int, rounds: int, workdir: Path) -> None:
    """p50/p95 of normal sessions' steps and whole sessions while one session floods the server with
    `burst` jobs, on one machine (python -m app serve: a forked process per job), with the
    per-session cap (DETR_JOBS_PER_SESSION=2) and without it (0)."""
    for cap in (2, 0):
        os.environ["DETR_JOBS_PER_SESSION"] = str(cap)
        stack = Stack("single", model, workdir / f"cap{cap}")
        memory = JobMemory(stack)
        try:
            stack.wait_ready(240)
            memory.start()
            session(stack.url, 1_000_000)  # warm: the first request of a process is the slow one
            flooding = ThreadPoolExecutor(1).submit(flood, stack.url, 1_000_001, burst)
            time.sleep(1.0)  # the burst is under way
            t = time.perf_counter()

            def person(i):
                out = []
                for r in range(rounds):
                    start = time.perf_counter()
                    try:
                        res = session(stack.url, 1_000_300 + 10 * i + r)
                    except Exception as err:  # noqa: BLE001 - counted, not fatal
                        res = {"steps": {}, "errors": [f"{type(err).__name__}: {err}"]}
                    out.append((time.perf_counter() - start, res))
                return out
            with ThreadPoolExecutor(normal) as pool:
                runs = [x for xs in pool.map(person, range(normal)) for x in xs]
            normal_wall = time.perf_counter() - t
            flooded = flooding.result(timeout=1800)
        finally:
            memory.stop.set()
            stack.stop()
        log = (stack.dir / "web.log").read_text()
        unended = set(re.findall(r"\(pid (\d+)\) running", log)) - set(re.findall(r"\(pid (\d+)\) ended", log))
        errors = sum(len(res["errors"]) for _, res in runs)
        walls = [w for w, res in runs if not res["errors"]]
        print(f"\n== cap {cap if cap else 'off'}: {normal} normal sessions x {rounds} rounds beside one session firing "
              f"{burst} IG jobs ({', '.join(f'{k} {v}' for k, v in sorted(flooded.items()) if k != 'wall')}; "
              f"its burst took {flooded['wall']:.1f} s)")
        print(f"  job processes at once: at most {memory.peak_jobs}, their own memory (USS) at most "
              f"{memory.peak_uss / 2**30:.2f} GiB" + ("; ABORTED: the machine ran short of memory" if memory.aborted else "")
              + (f"; jobs that never ended: {len(unended)}" if unended else ""))
        print(f"  normal sessions: {len(walls)} ok, {errors} errors, all done in {normal_wall:.1f} s; "
              f"session wall p50 {pct(walls, .5):.2f} s  p95 {pct(walls, .95):.2f} s" if walls else "  no normal session ok")
        for name in ("upload", "detect", "gradcam", "figure"):
            steps = [res["steps"][name][0] for _, res in runs if name in res["steps"]]
            if steps:
                print(f"  {name:8s} wall p50 {pct(steps, .5) * 1e3:7.0f} ms  p95 {pct(steps, .95) * 1e3:7.0f} ms")
    os.environ.pop("DETR_JOBS_PER_SESSION", None)


# --- (a) inherited model vs (b) reload per job ---------------------------------------------------------

def _job(reload: bool, model: str, seed: int, out):
    import torch
    from core import service
    from core.models.detection import detect
    from core.methods.gradcam import compute_cams
    from core.models.loading import load_model
    from core.demo.scenes import make_scene
    t = time.perf_counter()
    loaded = load_model(model) if reload else service.model()
    load_s = time.perf_counter() - t
    image = make_scene(seed)[0]
    dets = detect(loaded, image)
    compute_cams(loaded, loaded.pixel_values(image), max(dets, key=lambda d: d["score"])["index"],
                 {"layer": None, "target": "class"})
    mem = psutil.Process().memory_full_info()
    out.put((load_s, time.perf_counter() - t, mem.rss, mem.uss, torch.get_num_threads()))


def jobs_bench(model: str, jobs: int) -> None:
    """A job as DiskcacheManager runs it (multiprocess.Process forked from the web process, which
    loaded the model and never ran it): (a) using the inherited model, (b) loading its own."""
    from multiprocess import Process, Queue
    from core import service  # noqa: F401
    from core.demo import scenes  # noqa: F401
    from core.methods import gradcam  # noqa: F401
    from core.models import detection  # noqa: F401 - imported, as in the web process
    t = time.perf_counter()
    service.model()
    print(f"model {model}: load in the parent {time.perf_counter() - t:.2f} s; "
          f"parent rss {psutil.Process().memory_info().rss / 2**20:.0f} MiB")
    for reload in (False, True):
        rows = []
        for i in range(jobs):
            q = Queue()
            t = time.perf_counter()
            p = Process(target=_job, args=(reload, model, 1_000_200 + i, q))
            p.start()
            row = q.get(timeout=300)
            p.join(60)
            rows.append((time.perf_counter() - t, *row))
        name = "(b) reload per job  " if reload else "(a) inherited model "
        print(f"{name}: job wall (fork to exit) median {statistics.median(r[0] for r in rows) * 1e3:6.0f} ms, "
              f"in the job {statistics.median(r[2] for r in rows) * 1e3:6.0f} ms, "
              f"of which model load {statistics.median(r[1] for r in rows) * 1e3:6.0f} ms, "
              f"job rss {statistics.median(r[3] for r in rows) / 2**20:5.0f} MiB, "
              f"uss (its own pages) {statistics.median(r[4] for r in rows) / 2**20:5.0f} MiB, threads {rows[0][5]}")


def bench_model(model: str, workdir: Path) -> str:
    from core.models.loading import DEMO_DIR
    if model != "demo" or DEMO_DIR.exists():
        return model
    import torch
    from transformers import DetrForObjectDetection
    from core.demo.train import demo_config, save_demo
    torch.manual_seed(0)
    path = workdir / "untrained-demo"
    save_demo(DetrForObjectDetection(demo_config()), path)
    print(f"(no models/demo-detr: serving an untrained model of its shape from {path})")
    return str(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cold-rounds", type=int, default=1, help="rounds with new images (memory over many jobs)")
    ap.add_argument("--setup", choices=("both", "single", "celery"), default="both")
    ap.add_argument("--model", default="demo")
    ap.add_argument("--budget", type=float, default=600, help="seconds per setup for the sessions")
    ap.add_argument("--jobs", type=int, default=0, help="run the per-job benchmark with this many jobs instead")
    ap.add_argument("--abuse", type=int, default=0, metavar="N",
                    help="one session firing N jobs beside --normal sessions, with and without the per-session cap")
    ap.add_argument("--normal", type=int, default=4, help="normal sessions beside --abuse")
    args = ap.parse_args(argv)
    if not 1 <= args.sessions <= 32:
        ap.error("--sessions must be 1..32")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout` and the like: stop the stacks first
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        workdir = Path(tmp)
        model = bench_model(args.model, workdir)
        if args.jobs:
            from core import service
            service.configure(model)
            jobs_bench(model, args.jobs)
            return 0
        if args.abuse:
            if not 1 <= args.abuse <= 64:
                ap.error("--abuse must be 1..64")
            abuse_bench(model, args.abuse, args.normal, args.rounds, workdir)
            return 0
        for setup in (("single", "celery") if args.setup == "both" else (args.setup,)):
            run_setup(setup, model, args.sessions, args.rounds, min(args.cold_rounds, args.rounds), args.budget,
                      workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
