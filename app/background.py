"""The background-callback manager: diskcache on one machine, Celery + Redis across machines."""
from __future__ import annotations

import os
from pathlib import Path


def make_manager(redis_url: str | None = None):
    """DiskcacheManager by default (nothing to install); CeleryManager when REDIS_URL is set."""
    from dash import CeleryManager, DiskcacheManager
    if redis_url:
        from app.celery_app import celery_app
        return CeleryManager(celery_app)
    import diskcache
    directory = Path(os.environ.get("DETR_CACHE_DIR", Path(__file__).resolve().parent.parent / "cache")) / "jobs"
    return DiskcacheManager(diskcache.Cache(str(directory)))
