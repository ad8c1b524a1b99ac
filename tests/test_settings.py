"""Configuration is read from the environment in app/settings.py only, and handed to what needs it."""
import re
from pathlib import Path

from app.settings import Settings
from core import cache, service

ROOT = Path(__file__).resolve().parents[1]
# reads that are not the app's configuration
ALLOWED = {
    "core/models/loading.py": "HF_HUB_OFFLINE: huggingface_hub's own switch, checked before a download",
}


def test_settings_come_from_the_environment_and_keywords_override(monkeypatch):
    monkeypatch.setenv("DETR_JOB_TIME_LIMIT", "60")
    monkeypatch.setenv("DETR_JOBS_PER_SESSION", "0")
    monkeypatch.setenv("REDIS_URL", "rediss://:pw@redis.example:6380/0")
    monkeypatch.setenv("DETR_LOG_LEVEL", "debug")
    monkeypatch.delenv("DETR_SECRET_KEY", raising=False)
    s = Settings(max_upload_mb=3)
    assert (s.job_time_limit, s.jobs_per_session, s.redis_url, s.log_level) == (60, 0, "rediss://:pw@redis.example:6380/0",
                                                                                "DEBUG")
    assert s.secret_key is None and s.max_upload_bytes == 3 * 2**20


def test_apply_configures_the_cache_and_the_model(tmp_path, monkeypatch):
    monkeypatch.setattr(service, "_model", None)
    try:
        Settings(cache_dir=str(tmp_path), redis_url=None, model="demo", device="cpu").apply()
        assert cache.store().directory == str(tmp_path)
        assert service._wanted == ("demo", "cpu")
    finally:
        cache.configure()
        service.configure(service.DEFAULT_MODEL)


def test_no_other_module_reads_the_environment_for_configuration():
    pattern = re.compile(r"os\.environ(?!\.setdefault\(\"OMP_WAIT_POLICY\")|os\.getenv|getenv\(")
    offenders = []
    for path in [*ROOT.glob("app/*.py"), *ROOT.glob("core/**/*.py"), *ROOT.glob("callbacks/*.py"),
                 *ROOT.glob("components/*.py"), ROOT / "gunicorn.conf.py"]:
        rel = path.relative_to(ROOT).as_posix()
        if rel == "app/settings.py" or rel in ALLOWED:
            continue
        offenders += [f"{rel}:{n}" for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == [], "read the setting in app/settings.py and pass it on: " + ", ".join(offenders)
