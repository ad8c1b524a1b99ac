"""Serving many people, end to end: Redis, a Celery worker and gunicorn (2 workers), driven by chromium.

Every process is started on loopback with a private cache and stopped in the fixture's teardown;
every wait has a timeout. Redis requires a password and the web processes share DETR_SECRET_KEY,
as the README asks. The worker's heartbeat is checked every second and called dead after 10 s,
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

import psutil
import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.browser.helpers import TIMEOUT, rows, scene_file, upload
from tests.browser.helpers import select as _select
from tests.browser.helpers import wait_until as _until

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
START_TIMEOUT = 240  # three Python processes importing torch and loading the model, on a busy machine
JOB_TIMEOUT = 180



def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    def __init__(self, tmp: Path):
        self.tmp, self.procs = tmp, {}
        self.redis_port, self.web_port = _free_port(), _free_port()
        self.url = f"http://127.0.0.1:{self.web_port}"
        self.redis_password = "serving-test-" + os.urandom(8).hex()
        self.redis_url = f"redis://:{self.redis_password}@127.0.0.1:{self.redis_port}/0"
        self.env = {**os.environ, "REDIS_URL": self.redis_url, "DETR_MODEL": os.environ.get("DETR_MODEL", "demo"),
                    "DETR_SECRET_KEY": os.urandom(24).hex(),
                    "DETR_CACHE_DIR": str(tmp / "cache"), "PYTHONPATH": str(ROOT), "TRANSFORMERS_VERBOSITY": "error",
                    "DETR_JOB_HEARTBEAT_EVERY": "1", "DETR_JOB_HEARTBEAT_TIMEOUT": "10"}

    def start(self, name, cmd):
        log = open(self.tmp / f"{name}.log", "a")
        self.procs[name] = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def start_worker(self):
        (self.tmp / "celery.log").unlink(missing_ok=True)
        self.start("celery", [str(BIN / "celery"), "-A", "app.celery_app", "worker", "--concurrency", "1",
                              "--loglevel", "info", "--without-mingle", "--without-gossip"])
        _until(lambda: self._alive("celery") and "ready." in (self.tmp / "celery.log").read_text(),
                   lambda: "the Celery worker did not start: " + self.log("celery"), START_TIMEOUT)

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
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    s = Stack(tmp_path_factory.mktemp("serving"))
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed run still stops them
    try:
        # Redis bounded as the README says: keys with a TTL (cache, results) evicted least-recently-used
        s.start("redis", [shutil.which("redis-server"), "--port", str(s.redis_port), "--bind", "127.0.0.1",
                          "--requirepass", s.redis_password, "--save", "", "--appendonly", "no", "--maxmemory", "64mb",
                          "--maxmemory-policy", "volatile-lru"])
        _until(lambda: s._alive("redis") and _pings(s), "redis did not start", 30)
        s.start("gunicorn", [str(BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"),
                             "-b", f"127.0.0.1:{s.web_port}", "-w", "2", "app.wsgi:server"])
        s.start_worker()
        _until(lambda: s._alive("gunicorn") and _answers(s.url + "/_dash-layout"),
                   "gunicorn did not serve the app", START_TIMEOUT)
        yield s
    finally:
        for name in ("gunicorn", "celery", "redis"):
            s.kill(name, signal.SIGTERM)
        signal.signal(signal.SIGTERM, previous)


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
    br.wait_for_element("#upload", timeout=JOB_TIMEOUT)


def _choose(br, selector, value):
    """helpers.select, unless the option is already chosen (clicking the chosen option leaves its menu
    open, and the next dropdown would look for its options there)."""
    if br.find_element(selector).text.strip() != value:
        for _ in br.driver.find_elements(By.CSS_SELECTOR, ".dash-dropdown-options"):
            br.find_element("body").send_keys(Keys.ESCAPE)
        _select(br, selector, value)


def _final_map(br) -> bool:
    """IG's final map is shown (an early one says "Early map")."""
    return "Convergence" in _info(br) and "Early map" not in _info(br)


def _ig(br, steps: str):
    _choose(br, "#method", "Integrated Gradients")
    _until(lambda: br.find_element("#ig-group").is_displayed(), "the IG controls did not appear")
    _choose(br, "#ig-steps", steps)
    _explain(br)


def _click(br, selector):
    """A button click, also when a control's tooltip (shown on keyboard focus) lies over the button."""
    br.driver.execute_script("arguments[0].click();", br.find_element(selector))


def _explain(br):
    """Press Explain once it is enabled (a quick Grad-CAM job of the pick may still hold it)."""
    _until(lambda: br.find_element("#explain").is_enabled(), "Explain stayed disabled", JOB_TIMEOUT)
    _click(br, "#explain")


def _info(br):
    return br.find_element("#explain-info").text


def _upload_and_pick(br, tmp_path, seed=1_000_003):
    upload(br, scene_file(tmp_path, seed))
    _until(lambda: len(rows(br)) > 0, lambda: "no detection rows after upload: "
               + br.find_element("#detection-count").text, JOB_TIMEOUT)
    _select(br, "#picker", index=0)
    _until(lambda: "Layer:" in _info(br), lambda: "picking a detection showed no Grad-CAM: " + _info(br),
               JOB_TIMEOUT)


def test_two_people_one_cache(stack, dash_br, second_br, tmp_path):
    """Upload -> detection -> IG with progress, in the worker; a second person with the same image is
    served from the shared cache: no model run at all."""
    _open(dash_br, stack)
    _upload_and_pick(dash_br, tmp_path)
    _ig(dash_br, "16")
    _until(lambda: dash_br.find_element("#explain-progress").is_displayed(), "no progress bar while IG runs")
    assert not dash_br.find_element("#explain").is_enabled(), "Explain must be disabled while its job runs"
    _until(lambda: _final_map(dash_br), lambda: "IG gave no result: " + _info(dash_br) + stack.log("celery"), JOB_TIMEOUT)
    assert not dash_br.find_element("#explain-progress").is_displayed()
    calls = stack.model_calls()
    assert calls >= 3  # detection, Grad-CAM, IG: all in the worker, all counted in the shared cache

    _open(second_br, stack)
    _upload_and_pick(second_br, tmp_path)
    _ig(second_br, "16")
    _until(lambda: _final_map(second_br), "second person: no IG result", TIMEOUT)
    assert stack.model_calls() == calls, "the second person's results must come from the cache"


def test_killed_worker_shows_an_error_then_retry_works(stack, dash_br, tmp_path):
    _open(dash_br, stack)
    _upload_and_pick(dash_br, tmp_path)
    before = stack.running_jobs()
    _ig(dash_br, "300")  # long enough to be killed mid-job
    _until(lambda: set(stack.running_jobs()) - set(before), lambda: "the IG job never started in the worker: "
           + _info(dash_br) + stack.log("celery")[-1500:], JOB_TIMEOUT)
    stack.kill("celery")  # the whole worker, as when its machine dies

    _until(lambda: "failed" in _info(dash_br), lambda: "no error after the worker was killed: " + _info(dash_br), TIMEOUT)
    assert "stopped" in _info(dash_br)
    _until(lambda: dash_br.find_element("#explain").is_enabled(), "Explain stayed disabled: no retry possible")
    assert not dash_br.find_element("#explain-progress").is_displayed()
    # the rest of the page still works: the detections are there and the threshold still filters them
    assert len(rows(dash_br)) > 0

    stack.start_worker()
    _explain(dash_br)
    _until(lambda: _final_map(dash_br), lambda: "the retry after restarting the worker failed: "
           + _info(dash_br) + stack.log("celery"), JOB_TIMEOUT)


def test_cancel_stops_the_job_in_the_worker(stack, dash_br, tmp_path):
    _open(dash_br, stack)
    _upload_and_pick(dash_br, tmp_path, seed=1_000_011)
    before = stack.running_jobs()
    _ig(dash_br, "300")
    new = _until(lambda: set(stack.running_jobs()) - set(before), "the IG job never started", JOB_TIMEOUT)
    pid = stack.running_jobs()[new.pop()]

    _click(dash_br, "#explain-cancel")
    _until(lambda: not _exists(pid), f"the worker process {pid} running the job was not stopped", TIMEOUT)
    _until(lambda: dash_br.find_element("#explain").is_enabled(), "Explain stayed disabled after cancel")
    time.sleep(3)  # polls that see the stopped job must not turn it into an error
    assert "failed" not in _info(dash_br)
    assert not dash_br.find_element("#explain-progress").is_displayed()
    # the worker replaced its pool process and takes new jobs
    _ig(dash_br, "16")
    _until(lambda: _final_map(dash_br), "no IG result after a cancel", JOB_TIMEOUT)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_one_machine_killed_job_process_shows_an_error(dash_duo, dashboard, tmp_path):
    """One machine (DiskcacheManager, a process forked per job): the job's process killed mid-job, the
    card says so and a retry works."""
    dash_duo.start_server(dashboard)
    _upload_and_pick(dash_duo, tmp_path, seed=1_000_042)
    me = psutil.Process()

    def jobs():  # job processes are forks of this one (chromedriver is a child too)
        return {p.pid: p for p in me.children(recursive=True) if p.is_running() and p.cmdline() == me.cmdline()}
    before = set(jobs())
    _ig(dash_duo, "300")
    new = _until(lambda: set(jobs()) - before, "no job process started", JOB_TIMEOUT)
    for pid in new:
        psutil.Process(pid).kill()

    _until(lambda: "failed" in _info(dash_duo), lambda: "no error after the job process was killed: " + _info(dash_duo))
    assert "stopped" in _info(dash_duo)
    _until(lambda: dash_duo.find_element("#explain").is_enabled(), "Explain stayed disabled: no retry possible")
    _explain(dash_duo)
    _until(lambda: _final_map(dash_duo), lambda: "the retry failed: " + _info(dash_duo), JOB_TIMEOUT)


def _raw_post(url: str, length: int, body: bytes) -> int:
    """POST a body of `length` bytes to dash's callback route over a raw socket, sending it from another
    thread while this one waits for the status line; the status code."""
    import threading
    host, port = url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(f"POST /_dash-update-component HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {length}\r\n\r\n".encode())

        def send():
            try:
                conn.sendall(body)
            except OSError:  # refused before reading it all
                pass
        threading.Thread(target=send, daemon=True).start()
        status = int(conn.recv(4096).split(b"\r\n", 1)[0].split()[1])
        try:
            conn.shutdown(socket.SHUT_RDWR)  # ends the sender
        except OSError:  # the server has closed it already
            pass
        return status


def test_hostile_requests_are_refused_and_start_no_job(stack):
    """Forged callback payloads get a clear message (or 4xx), start no job in the worker and run no
    model; the next normal request works."""
    import base64
    from bench.load import DashClient, scene_png
    c = DashClient(stack.url)
    assert c.http.cookies.get("detr_session")  # the signed per-session cookie
    image = c.call("image-store.data", "upload.contents", **{"upload.contents": scene_png(1_000_077),
                                                             "upload.filename": "a.png"})["image-store"]["data"]
    dets = c.call("detections-store.data", "image-store.data", **{"image-store.data": image})
    query = dets["detections-store"]["data"]["detections"][0]["index"]
    received = lambda: (stack.tmp / "celery.log").read_text().count("received")  # noqa: E731
    calls, jobs = stack.model_calls(), received()

    def explain(**values):
        return c.call("explain-result.data", "explain.n_clicks", **{
            "explain.n_clicks": 1, "picker.value": query, "image-store.data": image, **values})["explain-result"]["data"]
    for forged in ({"method.value": "ig", "ig-steps.value": 10**6}, {"method.value": "cam", "cam-layer.value": "no.such"},
                   {"method.value": "cam", "picker.value": -1}):
        out = explain(**forged)
        assert out.get("error") and "Traceback" not in out["error"], (forged, out)
    for samples, p in ((10**6, 0.1), (10, 5)):
        out = c.call("mc-result.data", "mc-run.n_clicks", **{"mc-run.n_clicks": 1, "mc-samples.value": samples,
                                                              "mc-dropout.value": p, "mc-seed.value": 0,
                                                              "image-store.data": image})["mc-result"]["data"]
        assert out.get("error"), (samples, p, out)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 32\nshowpage\n"
    for contents, says in (("data:image/png;base64," + base64.b64encode(b"hello").decode(), "not an image"),
                           ("data:application/postscript;base64," + base64.b64encode(eps).decode(), "EPS")):
        out = c.call("image-store.data", "upload.contents", **{"upload.contents": contents, "upload.filename": "x"})
        assert says in str(out.get("upload-message")), out
    assert _raw_post(stack.url, 60 * 2**20, b"x" * (60 * 2**20)) == 413
    assert _raw_post(stack.url, 300 * 2**20, b"") == 413  # refused from its headers
    time.sleep(1)
    assert stack.model_calls() == calls and received() == jobs, "a forged request started a job or ran the model"
    out = explain(**{"method.value": "cam", "cam-variant.value": "gradcam"})
    assert not out.get("error"), out
