"""Explanation maps under MC-Dropout: dropout 0 gives the plain map, batched samples equal one
sample at a time with the same masks, the batched backward is one backward, stability by hand."""
import numpy as np
import pytest
import torch

from core.demo.scenes import make_scene
from core.methods import mc_maps
from core.methods.attention import compute_attention
from core.methods.gradcam import compute_cams
from core.models import mc_dropout as mc


@pytest.fixture(scope="module")
def pixels(tiny):
    return tiny.pixel_values(make_scene(3)[0])


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_dropout_zero_gives_the_plain_map_and_no_spread(tiny, pixels, method):
    r = mc_maps.map_uncertainty(tiny, pixels, 1, method, {}, samples=4, p=0.0, seed=0)
    plain = compute_cams(tiny, pixels, 1, {})[method].heatmap
    assert plain.max() > 0 and r["mean"].shape == plain.shape == r["std"].shape
    np.testing.assert_allclose(r["mean"], plain, rtol=1e-5, atol=1e-5 * plain.max())
    assert np.all(r["std"] == 0)
    assert r["stability"] == pytest.approx(1.0) and r["samples"] == 4 and r["dropout"] == 0.0


def test_attention_dropout_zero_gives_the_plain_map(tiny, pixels):
    r = mc_maps.map_uncertainty(tiny, pixels, 2, "attention", {}, samples=3, p=0.0)
    plain = compute_attention(tiny, pixels, 2, {"decoder_layer": -1})["attention"].heatmap
    np.testing.assert_allclose(r["mean"], plain, rtol=1e-5, atol=1e-6)
    assert np.all(r["std"] == 0)


@pytest.mark.parametrize("identity", ["slot", "matched"])
def test_batched_samples_equal_one_sample_at_a_time(tiny, pixels, identity):
    kwargs = dict(samples=5, p=0.3, seed=1, identity=identity)
    r = mc_maps.map_uncertainty(tiny, pixels, 1, "gradcam++", {}, chunk=5, **kwargs)
    naive = mc_maps.cam_maps_naive(tiny, pixels, 1, "gradcam++", {}, **kwargs)
    assert naive.max() > 0 and r["std"].max() > 0  # the samples differ: dropout acts
    np.testing.assert_allclose(r["maps"], naive, rtol=1e-4, atol=1e-5 * naive.max())
    chunked = mc_maps.map_uncertainty(tiny, pixels, 1, "gradcam++", {}, chunk=2, **kwargs)
    np.testing.assert_allclose(chunked["maps"], r["maps"], rtol=1e-5, atol=1e-6 * naive.max())
    np.testing.assert_allclose(r["mean"], naive.mean(0), rtol=1e-4, atol=1e-5 * naive.max())
    np.testing.assert_allclose(r["std"], naive.std(0), rtol=1e-3, atol=1e-5 * naive.max())


def test_matched_identity_follows_the_uncertainty_cards_samples(tiny, pixels):
    """Same seed and p: the same dropout masks as the Uncertainty card, so the same matched slots."""
    r = mc_maps.map_uncertainty(tiny, pixels, 1, "gradcam", {}, samples=6, p=0.5, seed=2, identity="matched")
    card = mc.mc_dropout(tiny, pixels, (64, 64), samples=6, p=0.5, seed=2)
    assert r["slots"] == card["detections"][1]["matched"]["slots"]
    assert r["slots"] != [1] * 6  # at p = 0.5 DETR hands the object to other slots: the test can tell


def test_the_batched_backward_is_one_backward(tiny, pixels):
    """A backward hook on the transformer's last module counts the passes back through it."""
    private, calls = mc._transformer_copy(tiny, 0.3), []
    handle = private.class_labels_classifier.register_full_backward_hook(lambda *a: calls.append(1))
    try:
        mc_maps.map_uncertainty(tiny, pixels, 1, "gradcam", {}, samples=6, p=0.3, chunk=6)
        batched = len(calls)
        mc_maps.map_uncertainty(tiny, pixels, 1, "gradcam", {}, samples=6, p=0.3, chunk=1)
    finally:
        handle.remove()
    assert batched == 1 and len(calls) - batched == 6


def test_stability_is_the_mean_pairwise_spearman_correlation():
    maps = np.array([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 5.0], [4.0, 3.0, 2.0, 1.0]])
    assert mc_maps.stability(maps) == pytest.approx((1.0 - 1.0 - 1.0) / 3)
    maps = np.array([[1.0, 2.0, 3.0, 4.0], [2.0, 1.0, 3.0, 4.0]])  # one swap: rho = 1 - 6 * 2 / (4 * 15)
    assert mc_maps.stability(maps) == pytest.approx(0.8)
    assert mc_maps.stability(np.array([[0.0, 0, 0, 0], [1, 2, 3, 4], [1, 2, 3, 4]])) == pytest.approx(1.0)
    assert np.isnan(mc_maps.stability(np.zeros((3, 4))))


def test_refuses_what_it_cannot_do(tiny, pixels):
    with pytest.raises(ValueError, match="map uncertainty is for"):
        mc_maps.map_uncertainty(tiny, pixels, 1, "ig", {}, samples=2)
    with pytest.raises(ValueError, match="identity"):
        mc_maps.map_uncertainty(tiny, pixels, 1, "gradcam", {}, samples=2, identity="box")
    with pytest.raises(ValueError, match="before the transformer"):
        mc_maps.map_uncertainty(tiny, pixels, 1, "gradcam", {"layer": "model.encoder.layers.0"}, samples=2)


def test_attention_samples_are_softmax_rows_that_move_with_dropout(tiny, pixels):
    r = mc_maps.map_uncertainty(tiny, pixels, 2, "attention", {"decoder_layer": -1}, samples=4, p=0.5, seed=3)
    np.testing.assert_allclose(r["maps"].reshape(4, -1).sum(1), 1.0, rtol=1e-5)
    assert r["std"].max() > 1e-3 and r["decoder_layer"] == 0 and r["maps"].shape[0] == 4
