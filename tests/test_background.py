"""The watched-job layer (app/background.py) on one machine: real forked jobs over a private job store.

Each job is a tiny background callback doing its work through cache.memo, as the real ones do.
"""
import json
import os
import signal
import time

import diskcache
import pytest
from dash.background_callback.managers import BaseBackgroundCallbackManager

from app import background
from app.background import CACHED, make_manager
from app.settings import Settings
from core import cache
from core.errors import JobTimeLimit

WAIT = 30


def work(seconds, tag):
    """A job's callback: its result through the cache; errors become its error output (as the app's do)."""
    try:
        value = cache.memo(cache.key("work", seconds, tag), lambda: (time.sleep(seconds), {"tag": tag})[1])
    except Exception as err:  # noqa: BLE001
        return {"error": str(err)}
    return {"result": value["tag"]}


def stubborn(seconds):
    """Ignores the soft time limit: only the hard one ends it."""
    def compute():
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                time.sleep(0.05)
            except JobTimeLimit:
                pass
        return {"tag": "too late"}
    try:
        return {"result": cache.memo(cache.key("stubborn", seconds), compute)["tag"]}
    except Exception as err:  # noqa: BLE001
        return {"error": str(err)}


def crash(_):
    raise RuntimeError("internal detail /srv/secret.py line 3")


@pytest.fixture
def jobs(tmp_path, monkeypatch):
    """A manager over a private job store and cache with `work`, `stubborn` and `crash` registered;
    start(name, *args, sid=...) starts a job as dash does; result(key, job) polls it to its end."""
    monkeypatch.setattr(BaseBackgroundCallbackManager, "functions", [])
    monkeypatch.setattr(BaseBackgroundCallbackManager, "managers", [])
    cache.configure(directory=tmp_path / "cache")
    settings = Settings(cache_dir=str(tmp_path), job_time_limit=6, jobs_per_session=2)
    manager = make_manager(settings)
    for fn in (work, stubborn, crash):
        BaseBackgroundCallbackManager.register_func(fn, None, fn.__name__)
    keys = {fn.__name__: k for k, fn, _ in manager.functions}
    started = []
    sid = {"now": "session-a"}
    monkeypatch.setattr(background, "session_id", lambda: sid["now"])

    def start(name, *args, session="session-a"):
        sid["now"] = session
        key = f"{name}-{args}-{time.monotonic()}"
        job = manager.call_job_fn(key, manager.func_registry[keys[name]], list(args), {"triggered_inputs": []})
        started.append(job)
        return key, job

    def result(key, job, timeout=WAIT):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            out = manager.get_result(key, job)
            if out is not manager.UNDEFINED:
                return out
            time.sleep(0.1)
        raise AssertionError(f"job {job} gave no result in {timeout} s")

    manager.start, manager.result = start, result
    yield manager
    for job in started:
        if job not in (CACHED, background.FAILED):
            background.DiskcacheManager.terminate_job(manager, job)
    cache.configure()


def test_a_job_runs_in_its_own_process_and_its_records_are_json(jobs):
    key, job = jobs.start("work", 0.2, "x")
    assert isinstance(job, int) and job != os.getpid()
    assert jobs.result(key, job) == {"result": "x"}
    record = json.loads(jobs.handle.get(background.CALL + key))  # the call record, as JSON
    assert record[1] == [0.2, "x"]


def test_a_fully_cached_job_is_answered_without_a_process(jobs):
    cache.memo(cache.key("work", 5, "y"), lambda: {"tag": "y"})
    key, job = jobs.start("work", 5, "y")
    assert job == CACHED
    assert jobs.result(key, job, timeout=1) == {"result": "y"}


def test_a_killed_job_is_answered_with_its_error_output(jobs):
    key, job = jobs.start("work", 20, "killed")
    time.sleep(0.5)
    os.kill(job, signal.SIGKILL)
    out = jobs.result(key, job)
    assert "stopped before it finished" in out["error"]


def test_the_time_limit_stops_a_job_softly_then_hard(jobs):
    t = time.monotonic()
    key, job = jobs.start("work", 20, "slow")
    out = jobs.result(key, job)
    assert "time limit (6 s)" in out["error"] and time.monotonic() - t < 5.8  # the soft limit, at 4.5 s
    t = time.monotonic()
    key, job = jobs.start("stubborn", 20)
    out = jobs.result(key, job)
    assert "time limit (6 s)" in out["error"]
    assert time.monotonic() - t < 9  # its process ended itself at 6 s (the polls' own check waits until 11)


def test_a_session_has_at_most_two_jobs_and_a_third_starts_nothing(jobs):
    first = jobs.start("work", 20, "a1")
    second = jobs.start("work", 20, "a2")
    assert all(isinstance(j, int) for _, j in (first, second))
    key, job = jobs.start("work", 20, "a3")
    assert job == CACHED  # answered at once, no process
    assert "wait for your running job" in jobs.result(key, job, timeout=1)["error"]
    other = jobs.start("work", 0.1, "b1", session="session-b")  # another person is not held up
    assert isinstance(other[1], int) and jobs.result(*other) == {"result": "b1"}
    jobs.terminate_job(first[1])  # cancel (or its end) frees the slot
    key, job = jobs.start("work", 0.1, "a4")
    assert isinstance(job, int) and jobs.result(key, job) == {"result": "a4"}


def test_an_uncaught_exception_reaches_the_person_as_an_error_id_only(jobs, caplog):
    key, job = jobs.start("crash", 1)
    with caplog.at_level("ERROR", logger="app.background"):
        out = jobs.result(key, job)
    error = out["background_callback_error"]
    assert error["tb"] == "" and "/srv/secret.py" not in error["msg"] and "RuntimeError" not in error["msg"]
    error_id = error["msg"].split("error id ")[1].rstrip(").")
    record = next(r for r in caplog.records if getattr(r, "error_id", None) == error_id)
    assert "/srv/secret.py" in record.getMessage() and "Traceback" in record.getMessage()


def test_the_job_store_refuses_pickles(jobs, tmp_path):
    marker = tmp_path / "pwned"

    class Boom:
        def __reduce__(self):
            return (open, (str(marker), "w"))
    diskcache.Cache(jobs.handle.directory).set("forged", Boom())  # written behind the manager's back
    with pytest.raises(cache.UnsafeEntry):
        jobs.handle.get("forged")
    assert not marker.exists()
    jobs.handle.set("plain", {"a": [1, 2]})
    assert jobs.handle.get("plain") == {"a": [1, 2]}


def test_a_job_that_ends_between_the_two_reads_of_a_poll_still_delivers_its_result(jobs):
    """A poll reads the result, then asks whether the job runs (dash's _handle_rest_background_callback):
    'not running and no result' ends the poll loop with no update. A job that writes its result and
    exits between the two reads (a likely cause of results lost under CPU load) must not be taken for a
    cancelled one: that poll keeps the loop going and the next one gets the result."""
    key, job = jobs.start("work", 0.3, "race")
    assert jobs.get_result(key, job) is jobs.UNDEFINED  # still running
    end = time.monotonic() + WAIT
    while background.DiskcacheManager.job_running(jobs, job) and time.monotonic() < end:
        time.sleep(0.02)  # it writes its result and exits
    assert jobs.job_running(job)  # the same poll: the loop goes on
    assert jobs.get_result(key, job) == {"result": "race"}  # the next poll
    assert not jobs.job_running(job)


def test_a_job_process_reaped_during_the_check_is_not_running(jobs, monkeypatch):
    """dash checks pid_exists, then reads the status: a job reaped in between raises NoSuchProcess,
    which must read as 'not running', not fail the poll."""
    import psutil
    key, job = jobs.start("work", 0.2, "reaped")
    assert jobs.result(key, job) == {"result": "reaped"}

    def gone(pid):
        raise psutil.NoSuchProcess(pid)
    with monkeypatch.context() as patch:
        patch.setattr(psutil, "pid_exists", lambda pid: True)
        patch.setattr(psutil, "Process", gone)
        assert not jobs.job_running(job)
