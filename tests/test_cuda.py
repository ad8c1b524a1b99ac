"""The CUDA paths: every core computation on a GPU gives what it gives on the CPU.

Skipped where no GPU is present (CI has none); run on a GPU machine with
`python -m pytest tests/test_cuda.py`.
"""
import numpy as np
import pytest
import torch

from core.models.detection import above, detect
from core.methods.registry import METHODS
from core.models.mc_dropout import backbone_features, mc_dropout, mc_dropout_naive, sample_from_features
from core.models.loading import load_model
from core.demo.scenes import make_scene

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def models():
    """The demo model on both devices; cuDNN's TF32 convolutions off, so the two agree to ~1e-5."""
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield load_model("demo", device="cpu"), load_model("demo", device="cuda")
    torch.backends.cudnn.allow_tf32 = tf32


@pytest.fixture(scope="module")
def scene():
    return make_scene(1_000_003)[0]


def _close_maps(a: np.ndarray, b: np.ndarray, tolerance: float) -> None:
    """Same shape, same argmax region and values within `tolerance` of the map's range."""
    assert a.shape == b.shape
    scale = max(np.abs(a).max(), 1e-12)
    assert np.abs(a - b).max() <= tolerance * scale, np.abs(a - b).max() / scale
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.999


def test_model_lives_on_the_gpu_and_detects_as_on_the_cpu(models, scene):
    cpu, gpu = models
    assert gpu.device.type == "cuda" and gpu.pixel_values(scene).device.type == "cuda"
    a, b = detect(cpu, scene), detect(gpu, scene)
    assert [d["label"] for d in a] == [d["label"] for d in b]
    np.testing.assert_allclose([d["score"] for d in a], [d["score"] for d in b], atol=2e-3)
    np.testing.assert_allclose([d["box"] for d in a], [d["box"] for d in b], atol=0.5)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_explanation_method_on_the_gpu_matches_the_cpu(models, scene, method):
    cpu, gpu = models
    query = above(detect(cpu, scene), 0.7)[0]["index"]
    params = {**METHODS[method].defaults, **({"steps": 16} if method == "ig" else {})}
    a = METHODS[method].compute(cpu, cpu.pixel_values(scene), query, params)[method].heatmap
    b = METHODS[method].compute(gpu, gpu.pixel_values(scene), query, params)[method].heatmap
    assert isinstance(b, np.ndarray)
    _close_maps(a, b, tolerance=2e-2)


def test_mc_dropout_on_the_gpu_fast_equals_naive_and_p0_is_deterministic(models, scene):
    _, gpu = models
    pixels = gpu.pixel_values(scene)
    with torch.no_grad():
        ref = gpu.model(pixels)
    logits, boxes = sample_from_features(gpu, backbone_features(gpu, pixels), samples=4, p=0.0, chunk=3)
    assert logits.device.type == "cuda"
    torch.testing.assert_close(logits, ref.logits.expand_as(logits), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(boxes, ref.pred_boxes.expand_as(boxes), atol=1e-5, rtol=1e-4)

    fast = mc_dropout(gpu, pixels, scene.size, samples=12, p=0.3, seed=5, chunk=5)
    naive = mc_dropout_naive(gpu, pixels, scene.size, samples=12, p=0.3, seed=5)
    for f, n in zip(fast["detections"], naive["detections"]):
        np.testing.assert_allclose(f["scores"], n["scores"], atol=1e-4)
        np.testing.assert_allclose(f["sampled_boxes"], n["sampled_boxes"], atol=0.05)
    assert max(d["score_std"] for d in fast["detections"]) > 0.01  # dropout really acted
