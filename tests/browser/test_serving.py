"""Serving many people, end to end: Redis, a Celery worker and gunicorn (2 workers), driven by chromium.

Every process is started on loopback with a private cache and stopped in the fixture's teardown;
every wait has a timeout. The worker's heartbeat is checked every second and called dead after 5 s,
so a killed worker shows in the page within seconds.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.browser.helpers import TIMEOUT, rows, scene_file, upload, upload_and_pick, wait_until

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
START_TIMEOUT = 240  # three Python processes importing torch and loading the model, on a busy machine
JOB_TIMEOUT = 180

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server is not installed (.ci/run installs it)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    def __init__(self, tmp: Path):
        self.tmp, self.procs = tmp, {}
        self.redis_port, self.web_port = _free_port(), _free_port()
        self.url = f"http://127.0.0.1:{self.web_port}"
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.env = {**os.environ, "REDIS_URL": self.redis_url, "DETR_MODEL": os.environ.get("DETR_MODEL", "demo"),
                    "DETR_CACHE_DIR": str(tmp / "cache"), "PYTHONPATH": str(ROOT), "TRANSFORMERS_VERBOSITY": "error",
                    "DETR_JOB_HEARTBEAT_EVERY": "1", "DETR_JOB_HEARTBEAT_TIMEOUT": "5"}

    def start(self, name, cmd):
        log = open(self.tmp / f"{name}.log", "a")
        self.procs[name] = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def start_worker(self):
        (self.tmp / "celery.log").unlink(missing_ok=True)
        self.start("celery", [str(BIN / "celery"), "-A", "app.celery_app", "worker", "--concurrency", "1",
                              "--loglevel", "info", "--without-mingle", "--without-gossip"])
        wait_until(lambda: self._alive("celery") and "ready." in (self.tmp / "celery.log").read_text(),
                   "the Celery worker did not start: " + self.log("celery"), START_TIMEOUT)

    def kill(self, name, sig=signal.SIGKILL):
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def _alive(self, name):
        proc = self.procs[name]
        if proc.poll() is not None:
            raise AssertionError(f"{name} exited ({proc.returncode}): {self.log(name)}")
        return True

    def log(self, name):
        path = self.tmp / f"{name}.log"
        return path.read_text()[-3000:] if path.exists() else ""

    def redis(self):
        import redis
        return redis.Redis.from_url(self.redis_url, socket_timeout=5)

    def model_calls(self) -> int:
        from core.cache import RedisStore
        return int(RedisStore(self.redis_url).get("stats:model_calls", 0))

    def running_jobs(self) -> dict:
        """Heartbeats of the jobs running now: {key: pid of the pool process}."""
        r = self.redis()
        beats = {k: r.get(k) for k in r.keys("detr-job-alive-*")}
        return {k: int(v.split()[1]) for k, v in beats.items()
                if v is not None and time.time() - float(v.split()[0]) < 3}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("serving"))
    try:
        # Redis bounded as the README says: keys with a TTL (cache, results) evicted least-recently-used
        s.start("redis", [shutil.which("redis-server"), "--port", str(s.redis_port), "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no", "--maxmemory", "64mb",
                          "--maxmemory-policy", "volatile-lru"])
        wait_until(lambda: s._alive("redis") and _pings(s), "redis did not start", 30)
        s.start("gunicorn", [str(BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"),
                             "-b", f"127.0.0.1:{s.web_port}", "-w", "2", "app.wsgi:server"])
        s.start_worker()
        wait_until(lambda: s._alive("gunicorn") and _answers(s.url + "/_dash-layout"),
                   "gunicorn did not serve the app", START_TIMEOUT)
        yield s
    finally:
        for name in ("gunicorn", "celery", "redis"):
            s.kill(name, signal.SIGTERM)


def _pings(s):
    try:
        return s.redis().ping()
    except Exception:  # noqa: BLE001 - not up yet
        return False


def _answers(url):
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def second_br(request, tmp_path):
    """Another person: a second chromium with its own page session."""
    from dash.testing.browser import Browser
    with Browser(browser=request.config.getoption("webdriver"), headless=request.config.getoption("headless"),
                 options=request.config.hook.pytest_setup_options(), download_path=str(tmp_path),
                 percy_finalize=False, percy_run=False) as br:
        yield br


def _open(br, stack):
    br.server_url = stack.url
    br.wait_for_element("#upload", timeout=TIMEOUT)


def _ig(br, steps: str, resolution: int | None = None):
    br.select_dcc_dropdown("#method", value="Integrated Gradients")
    br.select_dcc_dropdown("#ig-steps", value=steps)
    if resolution:
        box = br.find_element("#ig-resolution")
        box.clear()
        box.send_keys(str(resolution))
    br.find_element("#explain").click()


def _info(br):
    return br.find_element("#explain-info").text


def test_two_people_one_cache(stack, dash_br, second_br, tmp_path):
    """Upload -> detection -> IG with progress, in the worker; a second person with the same image is
    served from the shared cache: no model run at all."""
    _open(dash_br, stack)
    upload_and_pick(dash_br, tmp_path)
    wait_until(lambda: "Grad-CAM" in _info(dash_br), "picking a detection showed no Grad-CAM", JOB_TIMEOUT)
    _ig(dash_br, "10")
    wait_until(lambda: dash_br.find_element("#explain-progress").is_displayed(), "no progress bar while IG runs")
    assert not dash_br.find_element("#explain").is_enabled(), "Explain must be disabled while its job runs"
    wait_until(lambda: "Convergence" in _info(dash_br), "IG gave no result: " + stack.log("celery"), JOB_TIMEOUT)
    assert not dash_br.find_element("#explain-progress").is_displayed()
    calls = stack.model_calls()
    assert calls >= 3  # detection, Grad-CAM, IG: all in the worker, all counted in the shared cache

    _open(second_br, stack)
    upload_and_pick(second_br, tmp_path)
    wait_until(lambda: "Grad-CAM" in _info(second_br), "second person: no Grad-CAM", TIMEOUT)
    _ig(second_br, "10")
    wait_until(lambda: "Convergence" in _info(second_br), "second person: no IG result", TIMEOUT)
    assert stack.model_calls() == calls, "the second person's results must come from the cache"


def test_killed_worker_shows_an_error_then_retry_works(stack, dash_br, tmp_path):
    _open(dash_br, stack)
    upload_and_pick(dash_br, tmp_path)
    wait_until(lambda: "Grad-CAM" in _info(dash_br), "no Grad-CAM", JOB_TIMEOUT)
    before = stack.running_jobs()
    _ig(dash_br, "100", resolution=256)  # long enough to be killed mid-job
    wait_until(lambda: set(stack.running_jobs()) - set(before), "the IG job never started in the worker", JOB_TIMEOUT)
    stack.kill("celery")  # the whole worker, as when its machine dies

    wait_until(lambda: "failed" in _info(dash_br), "no error after the worker was killed", TIMEOUT)
    assert "stopped" in _info(dash_br)
    wait_until(lambda: dash_br.find_element("#explain").is_enabled(), "Explain stayed disabled: no retry possible")
    assert not dash_br.find_element("#explain-progress").is_displayed()
    # the rest of the page still works: the detections are there and the threshold still filters them
    assert len(rows(dash_br)) > 0

    stack.start_worker()
    dash_br.find_element("#explain").click()
    wait_until(lambda: "Convergence" in _info(dash_br), "the retry after restarting the worker failed: "
               + stack.log("celery"), JOB_TIMEOUT)


def test_cancel_stops_the_job_in_the_worker(stack, dash_br, tmp_path):
    _open(dash_br, stack)
    upload(dash_br, scene_file(tmp_path, seed=1_000_011))
    wait_until(lambda: len(rows(dash_br)) > 0, "no detection rows after upload", JOB_TIMEOUT)
    dash_br.select_dcc_dropdown("#picker", index=0)
    wait_until(lambda: "Grad-CAM" in _info(dash_br), "no Grad-CAM", JOB_TIMEOUT)
    before = stack.running_jobs()
    _ig(dash_br, "300", resolution=256)
    new = wait_until(lambda: set(stack.running_jobs()) - set(before), "the IG job never started", JOB_TIMEOUT)
    pid = stack.running_jobs()[new.pop()]

    dash_br.find_element("#explain-cancel").click()
    wait_until(lambda: not _exists(pid), f"the worker process {pid} running the job was not stopped", TIMEOUT)
    wait_until(lambda: dash_br.find_element("#explain").is_enabled(), "Explain stayed disabled after cancel")
    time.sleep(3)  # polls that see the stopped job must not turn it into an error
    assert "failed" not in _info(dash_br)
    assert not dash_br.find_element("#explain-progress").is_displayed()
    # the worker replaced its pool process and takes new jobs
    _ig(dash_br, "10")
    wait_until(lambda: "Convergence" in _info(dash_br), "no IG result after a cancel", JOB_TIMEOUT)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
