"""Celery for many machines: `celery -A app.celery_app worker --concurrency 2 --loglevel info`.

Broker and result backend: Settings.redis_url (REDIS_URL). Web and worker processes run the same
code: the worker's main process registers every callback (callbacks.register_all) with the same
manager (dash names each task by a hash of its callback's id and source), and never touches the
model. Each pool process loads the model once, after the fork (worker_process_init), with torch
threads set to its share of the cores. While a job runs, a thread writes a heartbeat the web process reads to tell a
dead worker from a slow one (app/background.py). This module imports app/background.py, never the
other way round.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path

from celery import signals

# before torch loads: idle OpenMP threads sleep instead of spinning (see gunicorn.conf.py)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# `celery -A` puts the working directory on sys.path only while it imports this module (and then
# removes one copy): a second copy keeps the repository there for the modules imported later
ROOT = str(Path(__file__).resolve().parent.parent)
sys.path.insert(1, ROOT)

from app.background import ALIVE, KEEP, make_celery, make_manager  # noqa: E402
from app.settings import Settings  # noqa: E402

log = logging.getLogger(__name__)
settings = Settings()
if not settings.redis_url:
    settings.redis_url = "redis://127.0.0.1:6379/0"
celery_app = make_celery(settings)


def register_callbacks() -> None:
    """Register every callback on an app with the same manager as the web process (callbacks.register_all,
    dash names each task by a hash of its callback's id and source): tasks only, no model."""
    import dash
    from callbacks import register_all
    register_all(dash.Dash(__name__, background_callback_manager=make_manager(settings, celery_app)), settings)


@signals.worker_init.connect
def _worker_init(sender=None, **_):
    """Main worker process, before the pool forks: tasks only, no torch work."""
    if settings.worker_concurrency is None:
        settings.worker_concurrency = int(getattr(sender, "concurrency", 1) or 1)
    settings.apply()
    from app import security
    security.warn_without_secret_key(settings)
    register_callbacks()


def torch_threads() -> int:
    """This pool process' share of the cores (Settings.torch_threads overrides)."""
    if settings.torch_threads:
        return settings.torch_threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // (settings.worker_concurrency or 1))


@signals.worker_process_init.connect
def _load_model(**_):
    """Each pool process, after the fork: its threads, then its own model (loaded once, kept for every
    job), warmed by one small forward and the explainers' imports so the first job is not the slow one."""
    import torch
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    from core import service
    from core.methods import registry  # noqa: F401 - imports every method's module
    settings.apply()
    torch.set_num_threads(torch_threads())
    loaded = service.model()
    with torch.no_grad():
        loaded.model(pixel_values=torch.zeros(1, 3, 64, 64, device=loaded.device))


_beats: dict[str, tuple[threading.Event, threading.Thread, float]] = {}


@signals.task_prerun.connect
def _start_heartbeat(task_id=None, task=None, args=None, **_):
    if not (task and task.name.startswith("background_callback_") and args):
        return
    key, client, stop = ALIVE + args[0], celery_app.backend.client, threading.Event()
    every = settings.heartbeat_every

    def beat():
        while True:
            try:
                client.set(key, f"{time.time()} {os.getpid()}", ex=KEEP)
            except Exception:  # noqa: BLE001 - Redis away: the web side reports it
                pass
            if stop.wait(every):
                return
    thread = threading.Thread(target=beat, daemon=True, name="detr-heartbeat")
    _beats[task_id] = stop, thread, time.monotonic()
    log.info("job %s running (pid %d)", task_id, os.getpid())
    thread.start()


@signals.task_postrun.connect
def _stop_heartbeat(task_id=None, args=None, state=None, **_):
    found = _beats.pop(task_id, None)
    if found is not None:
        found[0].set()
        found[1].join(timeout=settings.heartbeat_every + 1)  # no beat written after the delete
        log.info("job %s ended (%s) after %.2f s", task_id, state, time.monotonic() - found[2])
        try:
            celery_app.backend.client.delete(ALIVE + args[0])
        except Exception:  # noqa: BLE001
            pass
