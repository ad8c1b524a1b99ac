"""D-RISE: similarity against hand-computed values, maps of a toy model that only looks at one
region, determinism, normalisation, and a run on a tiny DETR."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from core.methods.drise import PARAMS, compute_drise, draw_masks, similarity, upsample
from core.methods.registry import METHODS

REGION = (8, 16, 20, 28)  # rows y0:y1, cols x0:x1 of a 32 x 32 input


class RegionModel(torch.nn.Module):
    """Two queries over classes (a, b, no-object). Query 0's box is REGION and its confidence
    grows with the mean of the input inside REGION; query 1 is constant and elsewhere. Nothing
    outside REGION changes the output."""

    def forward(self, pixel_values):
        y0, y1, x0, x1 = REGION
        s = pixel_values[:, :, y0:y1, x0:x1].mean((1, 2, 3))
        n = len(s)
        q0 = torch.stack([4 * s, torch.zeros_like(s), 2 - 4 * s], -1)
        q1 = torch.tensor([0.0, 1.0, 0.0]).expand(n, 3)
        box0 = torch.tensor([(x0 + x1) / 64, (y0 + y1) / 64, (x1 - x0) / 32, (y1 - y0) / 32])
        box1 = torch.tensor([0.2, 0.8, 0.2, 0.2])
        return SimpleNamespace(logits=torch.stack([q0, q1], 1), pred_boxes=torch.stack([box0, box1])[None].expand(n, 2, 4))


def loaded_of(model):
    return SimpleNamespace(model=model, id2label={0: "a", 1: "b"})


def test_similarity_matches_hand_computed_values():
    target_box = torch.tensor([0.5, 0.5, 0.4, 0.4])      # xyxy 0.3 0.3 0.7 0.7
    target_probs = torch.tensor([0.9, 0.1])
    boxes = torch.tensor([[[0.6, 0.5, 0.4, 0.4],          # xyxy 0.4 0.3 0.8 0.7: IoU 0.12 / 0.20 = 0.6
                           [0.5, 0.5, 0.4, 0.4]],         # the target box: IoU 1
                          [[0.05, 0.05, 0.1, 0.1],        # disjoint from the target
                           [0.95, 0.95, 0.1, 0.1]]])
    logits = torch.log(torch.tensor([[[0.6, 0.2, 0.2], [0.1, 0.1, 0.8]],
                                     [[0.6, 0.2, 0.2], [0.6, 0.2, 0.2]]]))
    # query 0: 0.6 x (1 - 0.2) x cos([.6 .2], [.9 .1]); query 1: 1 x (1 - 0.8) x cos([.1 .1], [.9 .1])
    q0 = 0.6 * 0.8 * (0.6 * 0.9 + 0.2 * 0.1) / (math.hypot(0.6, 0.2) * math.hypot(0.9, 0.1))
    q1 = 1.0 * 0.2 * (0.1 * 0.9 + 0.1 * 0.1) / (math.hypot(0.1, 0.1) * math.hypot(0.9, 0.1))
    assert q0 > q1  # the maximum is over queries: the better match counts, whatever its slot
    got = similarity(target_box, target_probs, boxes, logits)
    np.testing.assert_allclose(got.numpy(), [q0, 0.0], rtol=1e-5, atol=1e-7)


def test_masks_are_smooth_shifted_grids_with_the_keep_rate():
    grids, shifts = draw_masks(400, 4, 0.3, torch.Generator().manual_seed(0))
    masks = upsample(grids, shifts, 30, 50)
    assert masks.shape == (400, 30, 50) and masks.min() >= 0 and masks.max() <= 1 + 1e-6
    assert abs(float(grids.mean()) - 0.3) < 0.02 and abs(float(masks.mean()) - 0.3) < 0.03
    assert len(torch.unique(masks)) > 10  # bilinear, not binary
    # a mask with shift 0 is the top-left crop of the bilinearly upsampled grid
    one = upsample(grids[:1], torch.zeros(1, 2), 30, 50)[0]
    big = torch.nn.functional.interpolate(grids[:1, None], size=(40, 65), mode="bilinear")[0, 0]
    assert torch.equal(one, big[:30, :50])


def test_map_peaks_in_the_only_region_the_model_reads():
    x = torch.ones(1, 3, 32, 32)
    params = {"masks": 400, "grid": 8, "keep": 0.5, "seed": 1}
    e = compute_drise(loaded_of(RegionModel()), x, 0, params)["drise"]
    assert e.heatmap.shape == (32, 32)
    r, c = np.unravel_index(np.argmax(e.heatmap), e.heatmap.shape)
    y0, y1, x0, x1 = REGION
    assert y0 <= r < y1 and x0 <= c < x1
    assert e.info["class_index"] == 0 and e.info["masks"] == 400 and e.info["grid"] == 8
    assert -1 <= e.info["convergence_rho"] <= 1 and e.info["convergence_r"] > 0.5


def test_same_seed_same_map_at_any_batch_size_and_other_seed_differs():
    x, loaded = torch.ones(1, 3, 32, 32), loaded_of(RegionModel())
    params = {"masks": 100, "grid": 4, "keep": 0.5, "seed": 3}
    a = compute_drise(loaded, x, 0, params)["drise"].heatmap
    b = compute_drise(loaded, x, 0, {**params, "batch_size": 7})["drise"].heatmap
    c = compute_drise(loaded, x, 0, {**params, "seed": 4})["drise"].heatmap
    np.testing.assert_allclose(a, b, rtol=1e-6)
    assert not np.allclose(a, c)


def test_map_is_weighted_mask_sum_over_n_times_keep():
    """A model that ignores its input: every mask has the same weight w, so the map is
    w * sum(masks) / (N p)."""
    class Constant(torch.nn.Module):
        def forward(self, pixel_values):
            n = len(pixel_values)
            return SimpleNamespace(logits=torch.log(torch.tensor([0.7, 0.1, 0.2])).expand(n, 1, 3),
                                   pred_boxes=torch.tensor([0.5, 0.5, 0.5, 0.5]).expand(n, 1, 4))

    params = {"masks": 100, "grid": 4, "keep": 0.4, "seed": 5}
    e = compute_drise(loaded_of(Constant()), torch.ones(1, 3, 20, 24), 0, params)["drise"]
    w = 1 - 0.2  # IoU 1, cosine 1
    grids, shifts = draw_masks(100, 4, 0.4, torch.Generator().manual_seed(5))
    expected = w * upsample(grids, shifts, 20, 24).double().sum(0) / (100 * 0.4)
    np.testing.assert_allclose(e.heatmap, expected.numpy(), rtol=1e-5)
    assert e.info["similarity_mean"] == pytest.approx(w, rel=1e-6)


def test_tiny_detr_run_reports_progress_and_convergence(tiny):
    from core.demo.scenes import make_scene
    x = tiny.pixel_values(make_scene(3)[0])
    calls = []
    params = METHODS["drise"].validate({"masks": 100, "grid": 8})
    e = compute_drise(tiny, x, 1, params, progress=lambda d, t: calls.append((d, t)))["drise"]
    assert e.heatmap.shape == tuple(x.shape[-2:]) and np.isfinite(e.heatmap).all()
    assert calls[-1] == (100, 100) and len(calls) >= 2
    assert e.info["seed"] == 0 and e.info["keep"] == 0.5 and np.isfinite(e.info["convergence_rho"])


def test_convergence_is_the_correlation_of_the_first_half_with_all_masks():
    """Recompute the half map from the same masks and weights by hand."""
    from core.methods.drise import pearson, spearman
    x, loaded = torch.ones(1, 3, 32, 32), loaded_of(RegionModel())
    params = {"masks": 100, "grid": 4, "keep": 0.5, "seed": 2}
    e = compute_drise(loaded, x, 0, params)["drise"]
    grids, shifts = draw_masks(100, 4, 0.5, torch.Generator().manual_seed(2))
    masks = upsample(grids, shifts, 32, 32)
    out = loaded.model(x * masks[:, None])
    ref = loaded.model(x)
    w = similarity(ref.pred_boxes[0, 0], ref.logits[0, 0].softmax(-1)[:-1], out.pred_boxes, out.logits).double()
    first = (w[:50, None, None] * masks[:50].double()).sum(0).numpy()
    full = (w[:, None, None] * masks.double()).sum(0).numpy()
    np.testing.assert_allclose(e.heatmap, full / 50, rtol=1e-5)
    assert e.info["convergence_r"] == pytest.approx(pearson(first, full), abs=1e-5)
    assert e.info["convergence_rho"] == pytest.approx(spearman(first, full), abs=1e-3)


def test_declared_parameters():
    assert METHODS["drise"].family == "drise" and METHODS["drise"].params == PARAMS
    assert METHODS["drise"].defaults == {"masks": 1000, "grid": 16, "keep": 0.5, "seed": 0}
    from core.params import ParamError
    for bad in ({"masks": 99}, {"masks": 8001}, {"grid": 1}, {"keep": 1.0}, {"keep": 0.0}):
        with pytest.raises(ParamError):
            METHODS["drise"].validate(bad)
