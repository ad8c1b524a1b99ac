"""gunicorn settings (read from the working directory): `gunicorn app.wsgi:server`.

The web workers only serve pages and short callbacks; the model runs in background jobs (a forked
process per job on one machine, Celery workers with REDIS_URL). Environment overrides (read by
app/settings.py): GUNICORN_BIND, GUNICORN_WORKERS, GUNICORN_THREADS, GUNICORN_TIMEOUT; the log level
is DETR_LOG_LEVEL, and the app logs through gunicorn's handlers (app/logs.py).
"""
import os

from app.settings import Settings

# Idle OpenMP threads sleep instead of spinning (read when torch loads, so set here, before the workers
# import it). Jobs share the cores: measured on 2 busy cores, detection + Grad-CAM with 2 threads took
# 15-19 s spinning vs 0.2-0.3 s passive (1 thread: 0.08-0.4 s). Process setup, not configuration.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_settings = Settings()
bind = _settings.gunicorn_bind
workers = _settings.gunicorn_workers
# threads: a page polls its running jobs every 0.5 s; a slow upload must not hold up everyone's polls
worker_class = "gthread"
threads = _settings.gunicorn_threads
# requests are short (uploads, cache reads, figures); a worker silent this long is stuck and replaced
timeout = _settings.gunicorn_timeout
graceful_timeout = 30
keepalive = 5  # longer than the poll interval: a page keeps its connection (and usually its worker)
loglevel = _settings.log_level.lower()
# Never preload: with preload the app (and the model) would be built once in the master and forked.
# Each worker builds it after the fork instead: a process forked from one whose torch thread pool
# has run hangs in its first parallel op, and on a GPU a CUDA context cannot cross a fork.
# Costs one model load per worker at start.
preload_app = False
# gunicorn's control socket has one default path per user: two instances (tests, benchmarks) would clash
control_socket_disable = True


def on_starting(server):
    """The master, once: several web processes need one shared secret key."""
    from app import logs, security
    logs.setup(_settings.log_level)
    security.warn_without_secret_key(_settings)
