"""The app's configuration, read from the environment here and nowhere else.

`Settings()` reads every setting once (command-line values override by keyword); whoever needs a
setting gets it from this object: create_app, the background-callback manager, the Celery app, the
cache (`apply` configures core/) and the service's model. Nothing is written back to the
environment: forked job processes inherit what `apply` configured.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _env(name: str, default=None, cast=str):
    raw = os.environ.get(name)
    return default if raw in (None, "") else cast(raw)


def _flag(raw: str) -> bool:
    return raw.strip().lower() not in ("0", "false", "no", "off")


@dataclass
class Settings:
    model: str = field(default_factory=lambda: _env("DETR_MODEL", "facebook/detr-resnet-50"))
    device: str | None = field(default_factory=lambda: _env("DETR_DEVICE"))
    host: str = "127.0.0.1"
    port: int = 8050
    debug: bool = field(default_factory=lambda: _env("DASH_DEBUG", False, _flag))
    # uploads: the file cap (the request cap derives from it, app/security.py) and the pixel cap
    max_upload_mb: int = field(default_factory=lambda: _env("DETR_MAX_UPLOAD_MB", 20, int))
    max_megapixels: int = field(default_factory=lambda: _env("DETR_MAX_MEGAPIXELS", 40, int))
    # signs background-job handles and the session cookie; the same on every web process
    secret_key: str | None = field(default_factory=lambda: _env("DETR_SECRET_KEY"))
    log_level: str = field(default_factory=lambda: _env("DETR_LOG_LEVEL", "INFO").upper())
    # shared stores: Redis (results, jobs, Celery) when set, else diskcache under cache_dir
    redis_url: str | None = field(default_factory=lambda: _env("REDIS_URL"))
    # dataset folders (annotations.json + images) the Evaluate tab offers; the page never sends a path
    datasets: list[str] = field(default_factory=lambda: [d for d in _env("DETR_DATASETS", "").split(":") if d])
    cache_dir: str = field(default_factory=lambda: _env("DETR_CACHE_DIR", str(ROOT / "cache")))
    cache_size: int = field(default_factory=lambda: _env("DETR_CACHE_SIZE", 2 * 1024**3, int))
    # jobs: wall-clock limit (seconds), running-or-queued jobs per browser session
    job_time_limit: int = field(default_factory=lambda: _env("DETR_JOB_TIME_LIMIT", 900, int))
    jobs_per_session: int = field(default_factory=lambda: _env("DETR_JOBS_PER_SESSION", 2, int))
    heartbeat_every: float = field(default_factory=lambda: _env("DETR_JOB_HEARTBEAT_EVERY", 2.0, float))
    heartbeat_timeout: float = field(default_factory=lambda: _env("DETR_JOB_HEARTBEAT_TIMEOUT", 30.0, float))
    queue_timeout: float = field(default_factory=lambda: _env("DETR_JOB_QUEUE_TIMEOUT", 300.0, float))
    # Celery workers
    worker_max_tasks: int = field(default_factory=lambda: _env("DETR_WORKER_MAX_TASKS", 500, int))
    worker_max_memory_mb: int = field(default_factory=lambda: _env("DETR_WORKER_MAX_MEMORY_MB", 3000, int))
    worker_concurrency: int | None = field(default_factory=lambda: _env("DETR_WORKER_CONCURRENCY", None, int))
    torch_threads: int | None = field(default_factory=lambda: _env("DETR_TORCH_THREADS", None, int))
    # gunicorn (gunicorn.conf.py)
    gunicorn_bind: str = field(default_factory=lambda: _env("GUNICORN_BIND", "127.0.0.1:8050"))
    gunicorn_workers: int = field(default_factory=lambda: _env("GUNICORN_WORKERS", 2, int))
    gunicorn_threads: int = field(default_factory=lambda: _env("GUNICORN_THREADS", 4, int))
    gunicorn_timeout: int = field(default_factory=lambda: _env("GUNICORN_TIMEOUT", 120, int))

    @property
    def max_upload_bytes(self) -> int:
        """The upload cap in bytes: `dcc.Upload(max_size=...)` and core.images.decode_image."""
        return self.max_upload_mb * 2**20

    @property
    def max_pixels(self) -> int:
        return self.max_megapixels * 1_000_000

    def apply(self) -> None:
        """Configure core/ with these settings: the result store and the model the service loads."""
        from core import cache, service
        cache.configure(redis_url=self.redis_url, directory=self.cache_dir, size=self.cache_size)
        service.configure(self.model, self.device)
