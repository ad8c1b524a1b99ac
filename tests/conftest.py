import numpy as np
import pytest
from PIL import Image

from core.models.loading import load_model
from tests.tiny import tiny_detr


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A tiny DETR written with save_pretrained, with a preprocessor config for 64 px inputs."""
    from core.images import write_preprocessor_config
    path = tmp_path_factory.mktemp("tiny-detr")
    tiny_detr().save_pretrained(path)
    write_preprocessor_config(path, shortest_edge=64, longest_edge=128)
    return path


@pytest.fixture(scope="session")
def tiny(tiny_dir):
    """The tiny DETR loaded through the real loading code (a LoadedModel)."""
    return load_model(str(tiny_dir), device="cpu")


@pytest.fixture
def rgb_image():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from threads, and on a busy 2-core machine OpenMP barriers make
    them up to 100x slower; one thread also keeps processes forked by browser tests safe."""
    import torch
    torch.set_num_threads(1)


@pytest.fixture
def serve(monkeypatch, tmp_path):
    """serve(loaded): `loaded` served by core.service from a private cache; jobs keep the test
    process' threads (no job-process setup)."""
    from core import cache, service

    def start(loaded):
        cache.configure(directory=tmp_path)
        service.use_model(loaded)
        monkeypatch.setattr(service, "job_process_setup", lambda: None)
        return loaded
    yield start
    cache.configure()


@pytest.fixture
def served(tiny, serve):
    """The tiny model served from a private cache."""
    return serve(tiny)
