"""ODAM: per-target element-wise maps, each normalised to its own maximum, combined by maximum."""
import numpy as np
import pytest
import torch

from core.methods.odam import combine, compute_odam, odam_layer, target_gradients, target_maps
from core.methods.registry import METHODS
from core.methods.targets import TARGETS
from tests.test_gradcam import ENCODER, STAGE2_CONV, reference


@pytest.fixture
def pixels(tiny, rgb_image):
    return tiny.pixel_values(rgb_image)


def test_maps_and_combination_by_hand():
    # one channel on a 1 x 3 map, A = [1, 2, -1]; five targets' gradients
    a = torch.tensor([[[1.0, 2.0, -1.0]]])
    g = torch.tensor([[[[2.0, 1.0, 0.0]]], [[[0.0, 0.5, -4.0]]], [[[-1.0, -1.0, -1.0]]],
                      [[[0.1, 0.0, 0.0]]], [[[0.0, 0.0, 0.0]]]])
    maps = target_maps(a, g)
    np.testing.assert_allclose(maps[:, 0], [[2, 2, 0], [0, 1, 4], [0, 0, 1], [0.1, 0, 0], [0, 0, 0]], atol=1e-6)
    # each divided by its own maximum (2, 4, 1, 0.1; the all-zero one stays 0), then the maximum over targets
    np.testing.assert_allclose(combine(maps), [[1.0, 1.0, 1.0]], atol=1e-6)
    np.testing.assert_allclose(combine(maps[:2]), [[1.0, 1.0, 1.0]], atol=1e-6)  # [1, 1, 0] and [0, .25, 1]
    np.testing.assert_allclose(combine(maps[[1, 3]]), [[1.0, 0.25, 1.0]], atol=1e-6)


@pytest.mark.parametrize("layer", [None, STAGE2_CONV, ENCODER])
def test_matches_an_independent_computation(tiny, pixels, layer):
    result = compute_odam(tiny, pixels, 2, {"layer": layer})["odam"]
    name = layer or odam_layer(tiny.model)
    per_target = []
    for t in TARGETS:
        a, g, _, _ = reference(tiny.model, pixels, name, 2, t)
        m = np.maximum((g * a).sum(0), 0)
        per_target.append(m / m.max() if m.max() > 0 else m)
    expected = np.max(per_target, axis=0)
    assert expected.max() == pytest.approx(1.0) and result.heatmap.dtype == np.float32
    np.testing.assert_allclose(result.heatmap, expected, atol=1e-5)
    assert result.info["layer"] == name and result.info["targets"] == list(TARGETS)
    assert result.info["target"] == "class+cx+cy+w+h" and result.info["method"] == "odam"
    assert len(result.info["target_peaks"]) == 5 and min(result.info["target_peaks"]) > 0


def test_one_forward_and_batched_equals_looped(tiny, pixels, monkeypatch):
    forwards, backwards = [], []
    handle = tiny.model.register_forward_pre_hook(lambda m, i: forwards.append(1))
    grad = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: backwards.append(1) or grad(*a, **k))
    try:
        batched = compute_odam(tiny, pixels, 1, {"layer": None}, batched=True)["odam"]
        assert len(forwards) == 1 and len(backwards) == 1  # five gradients, one vmapped backward
        looped = compute_odam(tiny, pixels, 1, {"layer": None}, batched=False)["odam"]
        assert len(forwards) == 2 and len(backwards) == 1 + 5
    finally:
        handle.remove()
    np.testing.assert_allclose(batched.heatmap, looped.heatmap, atol=1e-6)


@pytest.mark.parametrize("batched", [True, False])
def test_target_gradients_several_inputs(batched):
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    scores = torch.stack([x[0] * y[1], y.sum()])
    gx, gy = target_gradients(scores, [x, y], batched)
    # d/dy only directly: x0 * y1 -> [0, x0], sum -> [1, 1]; d/dx through y = 3x as well: [y1, 3 x0], [3, 3]
    np.testing.assert_allclose(gy.detach(), [[0, 1], [1, 1]])
    np.testing.assert_allclose(gx.detach(), [[6, 3], [3, 3]])


def test_registered():
    assert METHODS["odam"].compute is compute_odam and METHODS["odam"].family == "odam"
    assert [p.name for p in METHODS["odam"].params] == ["layer"]
