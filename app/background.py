"""The background-callback manager: diskcache on one machine, Celery + Redis across machines.

Both are dash's own managers with additions (`_Watched`), made by running the callback itself in
the web process under `cache.only_cached` (never the model: a cache miss raises instead):
- a job whose results are all cached is answered at once, without starting a job (no fork, no
  wait in the Celery queue behind other people's long jobs);
- a job that ends without a result (its worker was killed or ran out of memory, its heartbeat
  stopped, no worker took it, Redis went away) is answered with the callback's own error output
  (the callbacks catch exceptions and return {"error": ...}), so the card says what happened and
  its buttons come back for a retry, instead of a spinner that never ends;
- a browser session has at most Settings.jobs_per_session jobs running or queued: a further one is
  answered "wait for your running job" (the same way) and starts nothing;
- a job on one machine stops at Settings.job_time_limit as Celery's do (soft: the callback's error;
  hard: its process ends);
- a poll reads the result, then asks whether the job runs; a job that writes its result and ends
  between the two is still running for that poll (else dash would end the poll loop with no update
  and the result would never reach the page), and the next poll gets the result;
- what the job store holds is JSON (no pickles: whoever can write to it must not run code here);
  a job's uncaught exception is logged with an error id and the person gets only the id.
The contract this rests on: a background callback does its heavy work through core.service,
whose results go through cache.memo. Dash's private parts are reached through app/dash_adapter.py.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import signal
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from contextvars import copy_context
from pathlib import Path

import diskcache
from dash import CeleryManager, DiskcacheManager, no_update
from dash.exceptions import PreventUpdate

from app import dash_adapter as adapter
from app.security import session_id
from core.cache import UnsafeEntry, fork_guard, safe_disk
from core.errors import JobTimeLimit

# Job processes share the cores: idle OpenMP threads must sleep, not spin (see gunicorn.conf.py). Read
# when torch loads; create_app imports this module before anything imports torch. (Process setup, not
# configuration.)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

log = logging.getLogger(__name__)
CACHED, FAILED = "cached", "failed"   # job ids of jobs answered in the web process
CALL, STOPPED, ALIVE = "detr-job-call-", "detr-job-stopped-", "detr-job-alive-"  # keys in the job store
SESSION = "detr-jobs-of-"  # a browser session's running or queued jobs
KEEP, STOP_MARK = 3600, 120  # seconds a call and a stop mark are kept (a stop mark is read by the next poll)
RESERVED = 30  # seconds a session's slot is held for a job being started
_MISSED = object()


def busy_message(limit: int) -> str:
    return (f"wait for your running job to finish (at most {limit} job{'s' if limit != 1 else ''} "
            "at a time per person)")


def _unreachable() -> tuple:
    import sqlite3
    try:
        from redis.exceptions import ConnectionError as RedisDown, TimeoutError as RedisSlow
        return OSError, sqlite3.OperationalError, RedisDown, RedisSlow
    except ImportError:
        return OSError, sqlite3.OperationalError


_UNREACHABLE = _unreachable()


class _Watched:
    """Mixin over a dash manager; subclasses say how to read and write their store, how to lock a
    key in it, and when a job is lost."""

    def __init__(self, *args, settings, **kwargs):
        self.settings = settings
        self._local: OrderedDict = OrderedDict()  # recent calls and answers, for when the store is unreachable
        self._poll = threading.local()  # the job this thread's poll found running without a result
        super().__init__(*args, **kwargs)

    def call_job_fn(self, key, job_fn, args, context):
        background_key = adapter.key_of(self, job_fn)
        kept = {k: v for k, v in context.items() if k not in ("cookies", "headers")}
        call = (background_key, args, kept, time.time())
        answer = self._run_here(call, context, reason=None)
        if answer is not _MISSED:
            self._put_result(key, answer)
            return CACHED
        sid = session_id()
        try:
            admitted = self._admit(sid, key)
        except _UNREACHABLE:
            admitted = True  # the start below fails and says so
        if not admitted:
            log.info("job refused: session %s already has %d running", sid[:8], self.settings.jobs_per_session)
            self._put_result(key, self._run_here(call, context, busy_message(self.settings.jobs_per_session)))
            return CACHED
        self._remember(key, call)
        try:
            self._put(CALL + key, adapter.to_json(call), KEEP)
            job = super().call_job_fn(key, job_fn, args, context)
        except Exception as err:  # noqa: BLE001 - e.g. the queue is unreachable: say so in the card
            log.warning("a job could not be started: %r", err)
            self._remember(key, self._run_here(call, None, "the job could not be started (the job queue or store "
                                                           "is unreachable)"), answer=True)
            self._release(sid, key)
            return FAILED
        self._admitted(sid, key, job)
        log.info("job %s started: %s", job, _name(self, background_key))
        return job

    # --- jobs per browser session ---

    def _jobs_of(self, sid):
        raw = self._get(SESSION + sid)
        return json.loads(raw) if raw else []

    def _active(self, entry) -> bool:
        if entry["job"] is None:
            return time.time() - entry["t"] < RESERVED
        return self.job_running(entry["job"])

    def _admit(self, sid, key) -> bool:
        """Reserve a slot for a new job of this session, unless it has jobs_per_session running."""
        if sid is None or self.settings.jobs_per_session <= 0:
            return True
        with self._lock(SESSION + sid):
            jobs = [e for e in self._jobs_of(sid) if e["key"] != key and self._active(e)]
            if len(jobs) >= self.settings.jobs_per_session:
                return False
            self._put(SESSION + sid, json.dumps(jobs + [{"key": key, "job": None, "t": time.time()}]), KEEP)
            return True

    def _admitted(self, sid, key, job):
        if sid is None or self.settings.jobs_per_session <= 0:
            return
        with self._lock(SESSION + sid):
            jobs = [{**e, "job": str(job)} if e["key"] == key else e for e in self._jobs_of(sid)]
            self._put(SESSION + sid, json.dumps(jobs), KEEP)

    def _release(self, sid, key):
        if sid is None or self.settings.jobs_per_session <= 0:
            return
        try:
            with self._lock(SESSION + sid):
                self._put(SESSION + sid, json.dumps([e for e in self._jobs_of(sid) if e["key"] != key]), KEEP)
        except _UNREACHABLE:
            pass

    # --- polls ---

    def get_result(self, key, job):
        self._poll.running = None
        if job == FAILED:  # answered by the web process that failed to start it (if this is the one)
            return self._local.pop(("answer", key), self.UNDEFINED)
        if job is None or job == CACHED:
            return _without_traceback(super().get_result(key, job))
        try:
            result = super().get_result(key, job)
            if result is not self.UNDEFINED or self._get(STOPPED + str(job)) is not None:
                return _without_traceback(result)
            call = self._call(key)
            reason = self._lost(key, job, call)
            if reason is None:
                self._poll.running = job
                return result
            result = super().get_result(key, job)  # it may have finished in the meantime
            if result is not self.UNDEFINED:
                return _without_traceback(result)
        except _UNREACHABLE as err:
            call = self._local.get(("call", key))
            if call is None:
                raise
            log.warning("job store unreachable while polling job %s: %r", job, err)
            return self._run_here(call, None, "the job store cannot be reached")
        self._put(STOPPED + str(job), 1, STOP_MARK)
        log.warning("job %s lost: %s", job, reason)
        if call is None:  # its record is gone too (Redis restarted?): dash ends the spinner, no message
            return result
        return self._run_here(call, None, reason)

    def job_running(self, job):
        if getattr(self._poll, "running", None) == job:  # asked by the poll whose get_result saw it run
            self._poll.running = None
            return True
        try:
            return (job not in (CACHED, FAILED) and self._alive(job)
                    and self._get(STOPPED + str(job)) is None)
        except _UNREACHABLE:
            return False

    def get_progress(self, key):
        try:
            return super().get_progress(key)
        except _UNREACHABLE:  # the poll goes on to get_result, which says what happened
            return None

    def get_updated_props(self, key):
        try:
            return super().get_updated_props(key)
        except _UNREACHABLE:
            return {}

    def terminate_job(self, job):
        """Cancel, a newer job for the same output, or dash's clean-up after a result."""
        if job is None or job in (CACHED, FAILED):
            return
        self._put(STOPPED + str(job), 1, STOP_MARK)  # before the kill: a poll that sees it dead knows it was stopped
        super().terminate_job(job)

    def _run_here(self, call, context, reason):
        """The callback in this process with the model out of reach: its cached answer, or (reason
        given) its error output saying `reason`; _MISSED when (reason None) something was not cached."""
        from core.errors import failure
        from core import cache
        background_key, args, kept, _ = call
        fn, progress = adapter.registered(self, background_key)
        pre = [lambda *_: None] if progress else []

        def run():
            adapter.set_context(context or kept)
            with cache.only_cached(reason or "not cached") as limited:
                try:
                    if isinstance(args, dict):
                        out = fn(*pre, **args)
                    elif isinstance(args, (list, tuple)):
                        out = fn(*pre, *args)
                    else:
                        out = fn(*pre, args)
                except PreventUpdate:
                    out = no_update
                except Exception as err:  # noqa: BLE001 - the callback did not catch it
                    if reason is None:
                        return _MISSED
                    return adapter.error_record(failure(err, "The job")[1])
            return _MISSED if reason is None and limited.missed else out
        answer = copy_context().run(run)
        return answer if answer is _MISSED else adapter.as_result(answer)

    def _call(self, key):
        raw = self._get(CALL + key)
        return json.loads(raw) if raw is not None else self._local.get(("call", key))

    def _remember(self, key, value, answer=False):
        self._local[("answer" if answer else "call", key)] = value
        while len(self._local) > 256:
            self._local.popitem(last=False)


def _name(manager, background_key) -> str:
    try:
        return adapter.registered(manager, background_key)[0].__name__
    except (StopIteration, AttributeError):
        return background_key[:12]


def _without_traceback(result):
    """A job's uncaught exception reaches the person as a sentence with an error id; the traceback
    goes to the log."""
    error = adapter.error_of(result)
    if not error or not error.get("tb"):
        return result
    from core.errors import new_id
    error_id = new_id()
    log.error("job failed [error %s]: %s\n%s", error_id, error.get("msg"), error["tb"], extra={"error_id": error_id})
    return adapter.error_record(f"The job failed because of an error on the server (error id {error_id}).")


class WatchedDiskcacheManager(_Watched, DiskcacheManager):
    """One machine: a forked process per job; a job is lost when its process is gone without a
    result, and stopped at the time limit."""

    def make_job_fn(self, fn, progress, key=None):
        job_fn = super().make_job_fn(fn, progress, key)
        limit, name = self.settings.job_time_limit, getattr(fn, "__name__", "job")

        def limited(*args):
            """In the job's process: the soft limit raises JobTimeLimit in the callback (which shows
            it); the hard one ends the process (a poll then reports it)."""
            def too_long(*_):
                raise JobTimeLimit(f"the job ran longer than its time limit ({limit} s) and was stopped")
            signal.signal(signal.SIGALRM, too_long)
            signal.setitimer(signal.ITIMER_REAL, max(0.5, limit - min(30.0, limit / 4)))
            hard = threading.Timer(limit, os._exit, (70,))
            hard.daemon = True  # the process exits when the job ends, timer or not
            hard.start()
            start = time.monotonic()
            log.info("job %s (pid %d) running", name, os.getpid())
            try:
                job_fn(*args)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                hard.cancel()
                log.info("job %s (pid %d) ended after %.2f s", name, os.getpid(), time.monotonic() - start)
        return limited

    def _alive(self, job):
        import psutil
        try:
            return DiskcacheManager.job_running(self, job)
        except psutil.NoSuchProcess:  # it ended (and was reaped) between dash's two psutil calls
            return False

    def _put(self, k, value, seconds):
        self.handle.set(k, value, expire=seconds)

    def _get(self, k):
        return self.handle.get(k)

    def _put_result(self, key, answer):
        self.handle.set(key, answer)

    @contextmanager
    def _lock(self, name):
        with diskcache.Lock(self.handle, "lock-" + name, expire=10):
            yield

    def _lost(self, key, job, call):
        limit = self.settings.job_time_limit
        if call is not None and time.time() - call[3] > limit + 5:  # its own timer did not end it
            if self._alive(job):
                DiskcacheManager.terminate_job(self, job)
            return f"the job ran longer than its time limit ({limit} s) and was stopped"
        if self._alive(job):
            return None
        if call is not None and time.time() - call[3] >= limit:
            return f"the job ran longer than its time limit ({limit} s) and was stopped"
        return "the job process stopped before it finished (killed, or out of memory)"


class WatchedCeleryManager(_Watched, CeleryManager):
    """Celery workers write a heartbeat while a job runs (app/celery_app.py); a job is lost when the
    worker reports it failed, its heartbeat goes stale, or no worker takes it in time."""

    def _alive(self, job):
        return CeleryManager.job_running(self, job)

    def _put(self, k, value, seconds):
        self.handle.backend.client.set(k, value, ex=seconds)

    def _get(self, k):
        return self.handle.backend.client.get(k)

    def _put_result(self, key, answer):
        self.handle.backend.set(key, adapter.to_json(answer))

    @contextmanager
    def _lock(self, name):
        with self.handle.backend.client.lock("lock-" + name, timeout=10, blocking_timeout=10):
            yield

    def get_or_create_signing_secret(self, generate):
        """dash keeps it through the result backend, which expires keys: a web process started after
        that would sign with a new secret that the others reject. Kept without expiry instead."""
        client = self.handle.backend.client
        client.set(self.SIGNING_SECRET_KEY, generate(), nx=True)
        return client.get(self.SIGNING_SECRET_KEY)

    def _lost(self, key, job, call):
        if call is None:
            return "this job's record is gone from the job store"
        task = self.get_task(job)
        if task.state == "FAILURE":
            log.warning("job %s failed on its worker: %r", job, task.result)
            if isinstance(task.result, Exception) and "TimeLimitExceeded" in type(task.result).__name__:
                return f"the job ran longer than its time limit ({self.settings.job_time_limit} s) and was stopped"
            return "the worker running this job stopped before it finished"
        if task.state == "REVOKED":
            return "the job was stopped on its worker"
        if task.state == "SUCCESS":  # finished, and its result is not there (evicted?)
            return "the job's result was lost from the job store"
        beat = self._get(ALIVE + key)
        if beat is not None:
            stale = self.settings.heartbeat_timeout
            if time.time() - float(beat.split()[0]) > stale:
                return f"the worker running this job stopped responding (no heartbeat for {stale:.0f} s)"
            return None
        waited, limit = time.time() - call[3], self.settings.queue_timeout
        if task.state == "PENDING" and waited > limit:
            self.handle.control.revoke(job)
            return f"no worker took this job within {limit:.0f} s (are the Celery workers running?)"
        return None


class JobDisk(safe_disk()):
    """The jobs' diskcache values as JSON (dash's results, progress, our records; bytes as they are),
    never pickles: an entry diskcache would unpickle is refused."""

    def store(self, value, read, key=diskcache.core.UNKNOWN):
        if not read and type(value) is not bytes:
            value = adapter.to_json(value)
        return super().store(value, read, key)

    def fetch(self, mode, filename, value, read):
        data = super().fetch(mode, filename, value, read)
        return json.loads(data) if isinstance(data, str) else data


def _guarded(method):
    @functools.wraps(method)
    def guarded(*args, **kwargs):
        with fork_guard():
            return method(*args, **kwargs)
    return guarded


class GuardedCache(diskcache.Cache):
    """The jobs' diskcache (what dash's DiskcacheManager calls of it), every operation under
    core.cache.fork_guard: jobs fork from this process."""

    get, set, add, delete, touch = (_guarded(getattr(diskcache.Cache, name))
                                    for name in ("get", "set", "add", "delete", "touch"))

    def __init__(self, directory):
        super().__init__(directory, disk=JobDisk)

    @contextmanager
    def transact(self, retry=False):
        with fork_guard(), super().transact(retry) as value:
            yield value


def make_celery(settings):
    """The Celery app (broker and result backend: Settings.redis_url), as web and worker processes
    configure it. JSON only, both ways: a message or result Celery would unpickle is refused."""
    from celery import Celery
    limit = settings.job_time_limit
    app = Celery("detr", broker=settings.redis_url, backend=settings.redis_url)
    app.conf.update(
        task_serializer="json", result_serializer="json", accept_content=["json"], result_accept_content=["json"],
        # one job at a time per pool process: a long explanation must not hold queued jobs an idle process could run
        worker_prefetch_multiplier=1,
        # acknowledged on receipt (the default): a job that kills its worker is not redelivered to kill the
        # next one; the card shows the failure and the person retries
        task_acks_late=False,
        task_track_started=True,
        # a stuck job is stopped (soft: the callback shows the error; hard: the pool process is replaced)
        task_soft_time_limit=max(1, limit - min(30, limit // 4)),
        task_time_limit=limit,
        # memory stays flat per job (bench/load.py), but a pool process is replaced now and then anyway:
        # reloading the model costs about a second
        worker_max_tasks_per_child=settings.worker_max_tasks,
        worker_max_memory_per_child=settings.worker_max_memory_mb * 1024,
        result_expires=KEEP,
        # bounded waits when Redis goes away: the web process answers with an error instead of hanging
        redis_socket_connect_timeout=3,
        redis_socket_timeout=10,
        broker_connection_timeout=3,
        broker_connection_retry_on_startup=True,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1},
    )
    return app


def make_manager(settings, celery=None):
    """DiskcacheManager by default (nothing to install); CeleryManager when Settings.redis_url is set
    (`celery`: the worker's own Celery app, else one made here)."""
    if settings.redis_url:
        return WatchedCeleryManager(celery or make_celery(settings), settings=settings)
    return WatchedDiskcacheManager(GuardedCache(str(Path(settings.cache_dir) / "jobs")), settings=settings)
