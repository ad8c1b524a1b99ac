"""Browser tests: headless Debian chromium driven by dash's testing plugin (fixture dash_duo).

They run in their own pytest process (see the Makefile): background jobs fork from it, and a
process that has already run torch must not fork workers that use several threads.
"""
import os
import shutil

import pytest


def pytest_setup_options():
    from selenium.webdriver.chrome.options import Options
    options = Options()
    if shutil.which("chromium"):
        options.binary_location = shutil.which("chromium")
    for flag in ("--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1100",
                 # Bootstrap scrolls smoothly unless reduced motion is asked for: a click right after
                 # scrolling an element into view could land where it was a moment before
                 "--force-prefers-reduced-motion"):
        options.add_argument(flag)
    return options


@pytest.fixture(scope="session", autouse=True)
def browser_env(tmp_path_factory):
    """The bundled demo model, a private cache, and debug mode off, for every app a test starts."""
    from core import cache
    os.environ["DETR_MODEL"] = "demo"
    os.environ["DETR_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    cache.reset()
    yield


@pytest.fixture
def dashboard():
    from app import create_app
    return create_app()
