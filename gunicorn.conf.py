"""gunicorn settings (read from the working directory): `gunicorn app.wsgi:server`.

The web workers only serve pages and short callbacks; the model runs in background jobs (a forked
process per job on one machine, Celery workers with REDIS_URL). Environment overrides:
GUNICORN_BIND, GUNICORN_WORKERS, GUNICORN_THREADS, GUNICORN_TIMEOUT.
"""
import os

# Idle OpenMP threads sleep instead of spinning (read when torch loads, so set here, before the workers
# import it). Jobs share the cores: measured on 2 busy cores, detection + Grad-CAM with 2 threads took
# 15-19 s spinning vs 0.2-0.3 s passive (1 thread: 0.08-0.4 s).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8050")
workers = int(os.environ.get("GUNICORN_WORKERS", 2))
# threads: a page polls its running jobs every 0.5 s; a slow upload must not hold up everyone's polls
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", 4))
# requests are short (uploads, cache reads, figures); a worker silent this long is stuck and replaced
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 120))
graceful_timeout = 30
keepalive = 5  # longer than the poll interval: a page keeps its connection (and usually its worker)
# Never preload: with preload the app (and the model) would be built once in the master and forked.
# Each worker builds it after the fork instead: a process forked from one whose torch thread pool
# has run hangs in its first parallel op, and on a GPU a CUDA context cannot cross a fork.
# Costs one model load per worker at start.
preload_app = False
# gunicorn's control socket has one default path per user: two instances (tests, benchmarks) would clash
control_socket_disable = True
