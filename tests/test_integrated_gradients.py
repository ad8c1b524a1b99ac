import numpy as np
import pytest
import torch

import core.methods.integrated_gradients as igm
from core.methods.baselines import BASELINES, NOISE_STD, make_baseline, to_pixels
from core.methods.registry import METHODS
from core.methods.explanation import Reporter
from core.methods.integrated_gradients import compute_ig

QUERY = 0


@pytest.fixture
def x(tiny, rgb_image):
    return tiny.pixel_values(rgb_image)


def _score(tiny, batch, class_index):
    with torch.no_grad():
        return tiny.model(pixel_values=batch).logits[:, QUERY, class_index]


# --- baselines -------------------------------------------------------------------------------

MEAN, STD = (0.3, 0.5, 0.7), (0.2, 0.25, 0.3)  # not ImageNet's: the builders must use what they are given


def _pixels(seed=0):
    return torch.from_numpy(np.random.default_rng(seed).random((1, 3, 20, 24), dtype=np.float32))


def _normalised(pixels):
    return (pixels - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def test_black_is_black_pixels():
    b = make_baseline("black", _normalised(_pixels()), MEAN, STD)
    assert torch.allclose(to_pixels(b, MEAN, STD), torch.zeros(1, 3, 20, 24), atol=1e-6)
    assert torch.allclose(b[0, :, 0, 0], -torch.tensor(MEAN) / torch.tensor(STD))


def test_blur_is_smoother_and_keeps_the_mean():
    x = _normalised(_pixels())
    tv = lambda t: (t[..., 1:, :] - t[..., :-1, :]).abs().sum() + (t[..., 1:] - t[..., :-1]).abs().sum()
    soft, softer = make_baseline("blur", x, MEAN, STD, sigma=1.0), make_baseline("blur", x, MEAN, STD, sigma=4.0)
    assert tv(softer) < tv(soft) < 0.5 * tv(x)
    assert torch.allclose(soft.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=0.05)
    flat = torch.full((1, 3, 9, 9), 0.7)  # a constant image is its own blur (kernel sums to 1)
    assert torch.allclose(make_baseline("blur", flat, MEAN, STD, sigma=2.0), flat, atol=1e-6)


@pytest.mark.parametrize("name", ["uniform", "gaussian"])
def test_noise_baselines_are_seeded(name):
    x = _normalised(_pixels())
    a, b = make_baseline(name, x, MEAN, STD, seed=3), make_baseline(name, x, MEAN, STD, seed=3)
    c = make_baseline(name, x, MEAN, STD, seed=4)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    p = to_pixels(a, MEAN, STD)
    assert p.min() >= -1e-5 and p.max() <= 1 + 1e-5


def test_noise_baseline_statistics():
    grey = _normalised(torch.full((1, 3, 64, 64), 0.5))
    u = to_pixels(make_baseline("uniform", grey, MEAN, STD), MEAN, STD)
    assert abs(float(u.mean()) - 0.5) < 0.02 and abs(float(u.var()) - 1 / 12) < 0.01  # U(0, 1)
    g = to_pixels(make_baseline("gaussian", grey, MEAN, STD), MEAN, STD) - 0.5  # around the input
    assert abs(float(g.mean())) < 0.01 and abs(float(g.std()) - NOISE_STD) < 0.01  # clamp not reached at 2.5 sd


def test_mean_is_the_images_mean_colour():
    pixels = _pixels()
    b = to_pixels(make_baseline("mean", _normalised(pixels), MEAN, STD), MEAN, STD)
    colour = pixels.mean(dim=(2, 3))[0]
    assert torch.allclose(b[0, :, 5, 7], colour, atol=1e-5) and torch.allclose(b.std(dim=(2, 3)), torch.zeros(1, 3))


def test_expected_draws_from_the_other_five():
    x = _normalised(_pixels())
    refs = make_baseline("expected", x, MEAN, STD, sigma=2.0, seed=1)
    assert refs.shape == (5, 3, 20, 24)
    for i, name in enumerate(["black", "blur", "uniform", "gaussian", "mean"]):
        assert torch.equal(refs[i:i + 1], make_baseline(name, x, MEAN, STD, sigma=2.0, seed=1))
    assert set(BASELINES) == {"black", "blur", "uniform", "gaussian", "mean", "expected"}
    assert all(len(v) == 2 and v[1] for v in BASELINES.values())


# --- integrated gradients --------------------------------------------------------------------

@pytest.mark.parametrize("baseline", ["black", "blur", "uniform", "gaussian", "mean"])
def test_completeness(tiny, x, baseline):
    info = (e := compute_ig(tiny, x, QUERY, {"baseline": baseline, "steps": 50})["ig"]).info
    c = info["class_index"]
    fx = float(_score(tiny, x, c))
    fb = float(_score(tiny, make_baseline(baseline, x, tiny.preprocess.mean, tiny.preprocess.std, 8.0, 0), c))
    assert info["f_input"] == pytest.approx(fx, abs=1e-5) and info["f_baseline"] == pytest.approx(fb, abs=1e-5)
    assert fx != pytest.approx(fb, abs=1e-4)  # something to attribute
    total = float(e.heatmap.sum())
    # captum's delta is the completeness error of the attributions summed in the heatmap
    assert abs(total - (fx - fb)) == pytest.approx(abs(info["delta"]), abs=1e-5)
    assert info["relative_delta"] == pytest.approx(abs(info["delta"]) / abs(fx - fb), rel=1e-3)
    assert e.heatmap.shape == tuple(x.shape[-2:]) and info["shape"] == list(x.shape[-2:]) and info["steps"] == 50


def test_relative_delta_shrinks_with_steps(tiny, x):
    rel = [compute_ig(tiny, x, QUERY, {"steps": s, "baseline": "black"})["ig"].info["relative_delta"] for s in (10, 200)]
    assert rel[1] < 0.5 * rel[0]


def test_auto_raises_steps_until_tolerance(tiny, x, monkeypatch):
    params = {"baseline": "gaussian", "resolution": 32}  # small: auto runs up to 650 steps
    rel = {s: compute_ig(tiny, x, QUERY, {**params, "steps": s})["ig"].info["relative_delta"] for s in (50, 100)}
    assert rel[100] < rel[50]
    monkeypatch.setattr(igm, "AUTO_TOLERANCE", (rel[50] + rel[100]) / 2)  # 50 is not enough, 100 is
    info = compute_ig(tiny, x, QUERY, {**params, "steps": "auto"})["ig"].info
    assert [t["steps"] for t in info["steps_tried"]] == [50, 100] and info["steps"] == 100 and info["converged"]
    assert info["relative_delta"] == pytest.approx(rel[100])
    monkeypatch.setattr(igm, "AUTO_TOLERANCE", 0.0)  # never reached: stops at 300 and says so
    info = compute_ig(tiny, x, QUERY, {**params, "resolution": 16, "steps": "auto"})["ig"].info
    assert [t["steps"] for t in info["steps_tried"]] == [50, 100, 200, 300]
    assert info["steps"] == 300 and not info["converged"]


def test_progress_counts_up_to_total_in_chunks(tiny, x, monkeypatch):
    monkeypatch.setattr(igm, "PIXELS_PER_CHUNK", 10 * x.shape[-2] * x.shape[-1])  # 10 images a chunk
    calls = []
    chunked = compute_ig(tiny, x, QUERY, {"steps": 50}, progress=lambda d, t: calls.append((d, t)))["ig"]
    assert [d for d, _ in calls] == [10, 20, 30, 40, 50]  # 5 chunks; the delta needs no extra forwards
    assert {t for _, t in calls} == {50}
    whole = compute_ig(tiny, x, QUERY, {"steps": 50, "internal_batch_size": None})["ig"]
    np.testing.assert_allclose(chunked.heatmap, whole.heatmap, rtol=1e-4, atol=1e-6)
    # the shared model is left as it was: frozen, eval mode, no parameter gradients written
    assert not tiny.model.training
    assert all(not q.requires_grad and q.grad is None for q in tiny.model.parameters())

    calls.clear()
    compute_ig(tiny, x, QUERY, {"steps": "auto", "resolution": 16}, progress=lambda d, t: calls.append((d, t)))
    done = [d for d, _ in calls]
    assert done == sorted(done) and calls[-1][0] == calls[-1][1] == 50 + 100 + 200 + 300
    assert igm.AUTO_STEPS == (50, 100, 200, 300) and igm.AUTO_TOLERANCE == 0.05


def _captum_ig(tiny, x, params, alphas=None, weights=None):
    """captum's own IntegratedGradients on the same score, baseline and class as compute_ig."""
    from captum.attr import IntegratedGradients
    p = {**igm.DEFAULTS, **params}
    with torch.no_grad():
        c = int(tiny.model(pixel_values=x).logits[0, QUERY, :-1].argmax())
    b = make_baseline(p["baseline"], x, tiny.preprocess.mean, tiny.preprocess.std, sigma=p["sigma"], seed=p["seed"])
    ig = IntegratedGradients(lambda batch: tiny.model(pixel_values=batch).logits[:, QUERY, c])
    if alphas is None:
        return ig.attribute(x, baselines=b, n_steps=p["steps"])[0].sum(0).detach().numpy()
    rule = (list(weights), list(alphas))
    return ig._attribute((x,), (b,), n_steps=len(alphas), step_sizes_and_alphas=rule)[0][0].sum(0).detach().numpy()


@pytest.mark.parametrize("steps", [32, 50])
def test_progressive_ig_ends_at_plain_ig(tiny, x, monkeypatch, steps):
    monkeypatch.setattr(igm, "PIXELS_PER_CHUNK", 4 * x.shape[-2] * x.shape[-1])  # chunks inside the levels
    maps, bar = [], []
    reporter = Reporter(lambda d, t: bar.append((d, t)), lambda r: maps.append(r["ig"]))
    final = compute_ig(tiny, x, QUERY, {"steps": steps}, progress=reporter)["ig"]
    plain = compute_ig(tiny, x, QUERY, {"steps": steps})["ig"]
    reference = _captum_ig(tiny, x, {"steps": steps})
    scale = np.abs(reference).max()
    np.testing.assert_allclose(final.heatmap / scale, reference / scale, atol=1e-5)
    np.testing.assert_allclose(plain.heatmap / scale, reference / scale, atol=1e-5)
    assert final.info["steps"] == steps and "partial" not in final.info
    # refinements in order, each with its own completeness figure; the bar counts the full run's images
    assert [m.info["steps"] for m in maps] == [5, 9, 17] and all(m.info["steps_final"] == steps for m in maps)
    assert [d for d, _ in bar] == sorted(d for d, _ in bar) and bar[-1] == (steps, steps)
    gap = final.info["f_input"] - final.info["f_baseline"]
    for m in maps:
        assert m.info["partial"] and m.info["delta"] == pytest.approx(float(m.heatmap.sum()) - gap, abs=1e-5)
        assert m.info["relative_delta"] == pytest.approx(abs(m.info["delta"]) / abs(gap))
    # an early map is captum's IG over that level's points with its interpolatory weights
    alphas, _ = igm.gauss_legendre(steps)
    for m, idx in zip(maps, igm.refinement_levels(steps)):
        early = _captum_ig(tiny, x, {"steps": steps}, alphas[idx], igm.interpolatory_weights(alphas[idx]))
        np.testing.assert_allclose(m.heatmap / scale, early / scale, atol=1e-5)


def test_refinement_levels_are_nested_and_exact_on_polynomials():
    for steps in (16, 32, 50, 300):
        levels = igm.refinement_levels(steps)
        assert list(levels[-1]) == list(range(steps)) and [len(i) for i in levels[:-1]] == \
            [k for k in (5, 9, 17, 33, 65) if k <= 0.6 * steps]
        for coarse, fine in zip(levels, levels[1:]):
            assert set(coarse) <= set(fine)
        alphas, weights = igm.gauss_legendre(steps)
        assert weights.sum() == pytest.approx(1.0) and 0 < alphas.min() and alphas.max() < 1
        for idx in levels[:-1]:
            w = igm.interpolatory_weights(alphas[idx])
            assert (w > 0).all()
            for degree in (0, 3, len(idx) - 1):  # integral of a^d over [0, 1] = 1 / (d + 1)
                assert float(w @ alphas[idx] ** degree) == pytest.approx(1 / (degree + 1), rel=1e-9)


def test_resolution_and_box_target(tiny, x):
    e = compute_ig(tiny, x, QUERY, {"resolution": 32, "target": "cx", "steps": 20})["ig"]
    assert e.heatmap.shape == (32, 42) and e.info["shape"] == [32, 42]
    # the resolution is a cap: a smaller input runs as it is, never upscaled
    assert igm.resize(x, 1000) is x and igm.resize(x, x.shape[-2]) is x
    small = igm.resize(x, 32)
    with torch.no_grad():
        fx = float(tiny.model(pixel_values=small).pred_boxes[0, QUERY, 0])
    assert e.info["f_input"] == pytest.approx(fx, abs=1e-5)
    assert abs(e.heatmap.sum() - (e.info["f_input"] - e.info["f_baseline"])) == pytest.approx(abs(e.info["delta"]),
                                                                                             abs=1e-5)


def test_expected_gradients(tiny, x):
    state = np.random.get_state()
    params = {"baseline": "expected", "samples": 6, "seed": 0}
    a, b = (compute_ig(tiny, x, QUERY, params)["ig"] for _ in range(2))
    c = compute_ig(tiny, x, QUERY, {**params, "seed": 1})["ig"]
    assert np.array_equal(a.heatmap, b.heatmap) and not np.allclose(a.heatmap, c.heatmap)
    assert np.array_equal(np.random.get_state()[1], state[1])  # numpy's global generator left as it was
    info = a.info
    refs = info["f_references"]
    assert list(refs) == ["black", "blur", "uniform", "gaussian", "mean"]
    # f_baseline is the mean score over the drawn baselines: inside the references' range
    assert min(refs.values()) - 1e-5 <= info["f_baseline"] <= max(refs.values()) + 1e-5
    assert info["relative_delta"] == pytest.approx(abs(info["delta"]) / abs(info["f_input"] - info["f_baseline"]))


def test_registered():
    m = METHODS["ig"]
    assert m.compute is compute_ig and m.family == "ig" and m.defaults["baseline"] == "blur"
    assert m.defaults["steps"] == 28 and m.defaults["samples"] == 8
