"""Celery for many machines: `celery -A app.celery_app worker --concurrency 2 --loglevel info`.

Broker and result backend: REDIS_URL. Web and worker processes run the same code: the worker's
main process imports every callbacks/ module and builds the same manager (dash names each task by
a hash of its callback's id and source), and never touches the model. Each pool process loads the
model once, after the fork (worker_process_init), with torch threads set to its share of the cores.
While a job runs, a thread writes a heartbeat the web process reads to tell a dead worker from a
slow one (app/background.py).
"""
from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from celery import Celery, signals

# before torch loads: idle OpenMP threads sleep instead of spinning (see gunicorn.conf.py)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# `celery -A` puts the working directory on sys.path only while it imports this module (and then
# removes one copy): a second copy keeps the repository there for the modules imported later
ROOT = str(Path(__file__).resolve().parent.parent)
sys.path.insert(1, ROOT)

from app.background import ALIVE, KEEP

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
JOB_TIME_LIMIT = int(os.environ.get("DETR_JOB_TIME_LIMIT", 900))
HEARTBEAT_EVERY = float(os.environ.get("DETR_JOB_HEARTBEAT_EVERY", 2))

celery_app = Celery("detr", broker=REDIS_URL, backend=REDIS_URL)
celery_app.conf.update(
    # one job at a time per pool process: a long explanation must not hold queued jobs an idle process could run
    worker_prefetch_multiplier=1,
    # acknowledged on receipt (the default): a job that kills its worker is not redelivered to kill the
    # next one; the card shows the failure and the person retries
    task_acks_late=False,
    task_track_started=True,
    # a stuck job is stopped (soft: the callback shows the error; hard: the pool process is replaced)
    task_soft_time_limit=JOB_TIME_LIMIT - 30,
    task_time_limit=JOB_TIME_LIMIT,
    # memory stays flat per job (bench/load.py), but a pool process is replaced now and then anyway:
    # reloading the model costs about a second
    worker_max_tasks_per_child=int(os.environ.get("DETR_WORKER_MAX_TASKS", 500)),
    worker_max_memory_per_child=int(os.environ.get("DETR_WORKER_MAX_MEMORY_MB", 3000)) * 1024,
    result_expires=KEEP,
    # bounded waits when Redis goes away: the web process answers with an error instead of hanging
    redis_socket_connect_timeout=3,
    redis_socket_timeout=10,
    broker_connection_timeout=3,
    broker_connection_retry_on_startup=True,
    task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1},
)


def register_callbacks() -> None:
    """Register every callback on an app with the same manager as the web process (callbacks.register_all,
    dash names each task by a hash of its callback's id and source): tasks only, no model."""
    import dash
    from app.background import make_manager
    from app.settings import Settings
    from callbacks import register_all
    register_all(dash.Dash(__name__, background_callback_manager=make_manager(REDIS_URL)), Settings())


@signals.worker_init.connect
def _worker_init(sender=None, **_):
    """Main worker process, before the pool forks: tasks only, no torch work."""
    os.environ.setdefault("DETR_WORKER_CONCURRENCY", str(getattr(sender, "concurrency", 1) or 1))
    register_callbacks()


def torch_threads() -> int:
    """This pool process' share of the cores (DETR_TORCH_THREADS overrides)."""
    if os.environ.get("DETR_TORCH_THREADS"):
        return int(os.environ["DETR_TORCH_THREADS"])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // int(os.environ.get("DETR_WORKER_CONCURRENCY", 1)))


@signals.worker_process_init.connect
def _load_model(**_):
    """Each pool process, after the fork: its threads, then its own model (loaded once, kept for every
    job), warmed by one small forward and the explainers' imports so the first job is not the slow one."""
    import torch
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    from core import service
    from core.methods import registry  # noqa: F401 - imports every method's module
    torch.set_num_threads(torch_threads())
    loaded = service.model()
    with torch.no_grad():
        loaded.model(pixel_values=torch.zeros(1, 3, 64, 64, device=loaded.device))


_beats: dict[str, tuple[threading.Event, threading.Thread]] = {}


@signals.task_prerun.connect
def _start_heartbeat(task_id=None, task=None, args=None, **_):
    if not (task and task.name.startswith("background_callback_") and args):
        return
    key, client, stop = ALIVE + args[0], celery_app.backend.client, threading.Event()

    def beat():
        while True:
            try:
                client.set(key, f"{time.time()} {os.getpid()}", ex=KEEP)
            except Exception:  # noqa: BLE001 - Redis away: the web side reports it
                pass
            if stop.wait(HEARTBEAT_EVERY):
                return
    thread = threading.Thread(target=beat, daemon=True, name="detr-heartbeat")
    _beats[task_id] = stop, thread
    thread.start()


@signals.task_postrun.connect
def _stop_heartbeat(task_id=None, args=None, **_):
    found = _beats.pop(task_id, None)
    if found is not None:
        found[0].set()
        found[1].join(timeout=HEARTBEAT_EVERY + 1)  # no beat written after the delete
        try:
            celery_app.backend.client.delete(ALIVE + args[0])
        except Exception:  # noqa: BLE001
            pass
