"""The background-callback manager: diskcache on one machine, Celery + Redis across machines.

Both are dash's own managers with two additions (`_Watched`), made by running the callback itself
in the web process under `cache.only_cached` (never the model: a cache miss raises instead):
- a job whose results are all cached is answered at once, without starting a job (no fork, no
  wait in the Celery queue behind other people's long jobs);
- a job that ends without a result (its worker was killed or ran out of memory, its heartbeat
  stopped, no worker took it, Redis went away) is answered with the callback's own error output
  (the callbacks catch exceptions and return {"error": ...}), so the card says what happened and
  its buttons come back for a retry, instead of a spinner that never ends.
The contract this rests on: a background callback does its heavy work through core.service,
whose results go through cache.memo.
"""
from __future__ import annotations

import functools
import json
import os
import pickle
import time
from collections import OrderedDict
from contextlib import contextmanager
from contextvars import copy_context
from pathlib import Path

import diskcache
from dash import CeleryManager, DiskcacheManager, no_update
from dash._callback_context import context_value
from dash._utils import AttributeDict
from dash.exceptions import PreventUpdate

from core.cache import fork_guard

# Job processes share the cores: idle OpenMP threads must sleep, not spin (see gunicorn.conf.py). Read
# when torch loads; create_app imports this module before anything imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

CACHED, FAILED = "cached", "failed"   # job ids of jobs answered in the web process
CALL, STOPPED, ALIVE = "detr-job-call-", "detr-job-stopped-", "detr-job-alive-"  # keys in the job store
KEEP, STOP_MARK = 3600, 120  # seconds a call and a stop mark are kept (a stop mark is read by the next poll)
_MISSED = object()


def _unreachable() -> tuple:
    import sqlite3
    try:
        from redis.exceptions import ConnectionError as RedisDown, TimeoutError as RedisSlow
        return OSError, sqlite3.OperationalError, RedisDown, RedisSlow
    except ImportError:
        return OSError, sqlite3.OperationalError


_UNREACHABLE = _unreachable()


def _seconds(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


class _Watched:
    """Mixin over a dash manager; subclasses say how to read and write their store and when a job is lost."""

    def __init__(self, *args, **kwargs):
        self._local: OrderedDict = OrderedDict()  # recent calls and answers, for when the store is unreachable
        super().__init__(*args, **kwargs)

    def call_job_fn(self, key, job_fn, args, context):
        background_key = next(k for k, f in self.func_registry.items() if f is job_fn)
        kept = {k: v for k, v in context.items() if k not in ("cookies", "headers")}
        call = (background_key, args, kept, time.time())
        answer = self._run_here(call, context, reason=None)
        if answer is not _MISSED:
            self._put_result(key, answer)
            return CACHED
        self._remember(key, call)
        try:
            self._put(CALL + key, pickle.dumps(call), KEEP)
            return super().call_job_fn(key, job_fn, args, context)
        except Exception as err:  # noqa: BLE001 - e.g. the queue is unreachable: say so in the card
            self._remember(key, self._run_here(call, None, f"the job could not be started ({err})"), answer=True)
            return FAILED

    def get_result(self, key, job):
        if job == FAILED:  # answered by the web process that failed to start it (if this is the one)
            return self._local.pop(("answer", key), self.UNDEFINED)
        if job is None or job == CACHED:
            return super().get_result(key, job)
        try:
            result = super().get_result(key, job)
            if result is not self.UNDEFINED or self._get(STOPPED + str(job)) is not None:
                return result
            call = self._call(key)
            reason = self._lost(key, job, call)
            if reason is None:
                return result
            result = super().get_result(key, job)  # it may have finished in the meantime
            if result is not self.UNDEFINED:
                return result
        except _UNREACHABLE as err:
            call = self._local.get(("call", key))
            if call is None:
                raise
            return self._run_here(call, None, f"the job store cannot be reached ({err})")
        self._put(STOPPED + str(job), 1, STOP_MARK)
        if call is None:  # its record is gone too (Redis restarted?): dash ends the spinner, no message
            return result
        return self._run_here(call, None, reason)

    def job_running(self, job):
        try:
            return (job not in (CACHED, FAILED) and super().job_running(job)
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
        from core import cache
        background_key, args, kept, _ = call
        fn, progress = next((f, p) for k, f, p in self.functions if k == background_key)
        pre = [lambda *_: None] if progress else []

        def run():
            context_value.set(AttributeDict({**(context or kept), "updated_props": {}}))
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
                    return {"background_callback_error": {"msg": f"{reason}: {err}", "tb": ""}}
            return _MISSED if reason is None and limited.missed else out
        answer = copy_context().run(run)
        if answer is _MISSED:
            return answer
        from _plotly_utils.utils import PlotlyJSONEncoder
        return json.loads(json.dumps(answer, cls=PlotlyJSONEncoder))  # what a job's result decodes to

    def _call(self, key):
        raw = self._get(CALL + key)
        return pickle.loads(raw) if raw is not None else self._local.get(("call", key))

    def _remember(self, key, value, answer=False):
        self._local[("answer" if answer else "call", key)] = value
        while len(self._local) > 256:
            self._local.popitem(last=False)


class WatchedDiskcacheManager(_Watched, DiskcacheManager):
    """One machine: a forked process per job; a job is lost when its process is gone without a result."""

    def _put(self, k, value, seconds):
        self.handle.set(k, value, expire=seconds)

    def _get(self, k):
        return self.handle.get(k)

    def _put_result(self, key, answer):
        self.handle.set(key, answer)

    def _lost(self, key, job, call):
        if DiskcacheManager.job_running(self, job):
            return None
        return "the job process stopped before it finished (killed, or out of memory)"


class WatchedCeleryManager(_Watched, CeleryManager):
    """Celery workers write a heartbeat while a job runs (app/celery_app.py); a job is lost when the
    worker reports it failed, its heartbeat goes stale, or no worker takes it in time."""

    def _put(self, k, value, seconds):
        self.handle.backend.client.set(k, value, ex=seconds)

    def _get(self, k):
        return self.handle.backend.client.get(k)

    def _put_result(self, key, answer):
        self.handle.backend.set(key, json.dumps(answer))

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
            return f"the worker running this job stopped before it finished ({task.result!r})"
        if task.state == "REVOKED":
            return "the job was stopped on its worker"
        if task.state == "SUCCESS":  # finished, and its result is not there (evicted?)
            return "the job's result was lost from the job store"
        beat = self._get(ALIVE + key)
        if beat is not None:
            stale = _seconds("DETR_JOB_HEARTBEAT_TIMEOUT", 30)
            if time.time() - float(beat.split()[0]) > stale:
                return f"the worker running this job stopped responding (no heartbeat for {stale:.0f} s)"
            return None
        waited, limit = time.time() - call[3], _seconds("DETR_JOB_QUEUE_TIMEOUT", 300)
        if task.state == "PENDING" and waited > limit:
            self.handle.control.revoke(job)
            return f"no worker took this job within {limit:.0f} s (are the Celery workers running?)"
        return None


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

    @contextmanager
    def transact(self, retry=False):
        with fork_guard(), super().transact(retry) as value:
            yield value


def make_manager(redis_url: str | None = None):
    """DiskcacheManager by default (nothing to install); CeleryManager when REDIS_URL is set."""
    if redis_url:
        from app.celery_app import celery_app
        return WatchedCeleryManager(celery_app)
    directory = Path(os.environ.get("DETR_CACHE_DIR", Path(__file__).resolve().parent.parent / "cache")) / "jobs"
    return WatchedDiskcacheManager(GuardedCache(str(directory)))
