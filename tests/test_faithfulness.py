import math

import numpy as np
import pytest
import torch

from core.methods.baselines import to_pixels
from core.models.detection import postprocess
from core.evaluation.faithfulness import (auc, energy_pointing_game, faithfulness, faithfulness_many,
                                         perturbation_curves, perturbation_curves_many, pixel_ranks, removal_baseline)

# Toy "model": the score is the mean of the top-left 2x2 region of a 4x4 image (all channels).
IMAGE, BASELINE = torch.ones(1, 3, 4, 4), torch.zeros(1, 3, 4, 4)
REGION = np.zeros((4, 4)); REGION[:2, :2] = 1


def region_mean(images):
    return images[:, :, :2, :2].mean(dim=(1, 2, 3))


def curves_and_aucs(heatmap, steps=4, batch_size=8):
    c = perturbation_curves(IMAGE, BASELINE, heatmap, region_mean, steps=steps, batch_size=batch_size)
    return c, auc(c["deletion"], c["deletion"][0]), auc(c["insertion"], c["deletion"][0])


def test_region_first_gives_the_best_curves():
    # 4 pixels a step: the right map removes the whole region in step 1, the inverted one in the last
    c, deletion, insertion = curves_and_aucs(REGION)
    np.testing.assert_allclose(c["deletion"], [1, 0, 0, 0, 0])
    np.testing.assert_allclose(c["insertion"], [0, 1, 1, 1, 1])
    assert deletion == pytest.approx(0.125) and insertion == pytest.approx(0.875)
    _, deletion_bad, insertion_bad = curves_and_aucs(1 - REGION)
    assert deletion_bad == pytest.approx(0.875) and insertion_bad == pytest.approx(0.125)
    for seed in range(5):  # any other ranking lies in between
        _, d, i = curves_and_aucs(np.random.default_rng(seed).random((4, 4)))
        assert deletion <= d <= deletion_bad and insertion_bad <= i <= insertion


def test_low_resolution_map_is_resized_and_batching_changes_nothing():
    coarse = np.array([[1.0, 0.0], [0.0, 0.0]])  # bilinear to 4x4: the top-left 2x2 block stays on top
    assert set(pixel_ranks(coarse, 4, 4)[:2, :2].flatten().tolist()) == {0, 1, 2, 3}
    calls = []
    counted = lambda images: calls.append(len(images)) or region_mean(images)
    c1 = perturbation_curves(IMAGE, BASELINE, coarse, counted, steps=4, batch_size=3)
    assert calls == [3, 3, 2]  # the image, the baseline, then 2 curves x 3 inner points, in batches of 3
    c2, deletion, _ = curves_and_aucs(coarse, batch_size=1)
    np.testing.assert_array_equal(c1["deletion"], c2["deletion"])
    assert deletion == pytest.approx(0.125)


def test_many_maps_share_batches_and_give_each_its_own_curves(tiny, rgb_image):
    maps = {n: np.random.default_rng(seed).random((4, 4)) for n, seed in (("a", 1), ("b", 2), ("c", 3))}
    calls = []
    counted = lambda images: calls.append(len(images)) or region_mean(images)
    many = perturbation_curves_many(IMAGE, BASELINE, maps, counted, steps=4, batch_size=8)
    assert calls == [8, 8, 4]  # the image and the baseline once, then 3 maps x 2 curves x 3 inner points
    for name, m in maps.items():
        one = perturbation_curves(IMAGE, BASELINE, m, region_mean, steps=4)
        np.testing.assert_array_equal(many[name]["deletion"], one["deletion"])
        np.testing.assert_array_equal(many[name]["insertion"], one["insertion"])
    x = tiny.pixel_values(rgb_image)
    maps = {n: np.random.default_rng(seed).random((8, 10)) for n, seed in (("a", 1), ("b", 2))}
    together = faithfulness_many(tiny, x, 2, maps, steps=4, batch_size=5)
    for name, m in maps.items():
        alone = faithfulness(tiny, x, 2, m, steps=4)
        for mode in ("deletion", "insertion"):
            np.testing.assert_allclose(together[name]["curves"][mode]["matched"], alone["curves"][mode]["matched"],
                                       rtol=1e-5, atol=1e-6)
        assert together[name]["pointing_game"] == alone["pointing_game"]


def test_auc_by_hand():
    assert auc([2, 1, 0], 2) == pytest.approx(0.5)
    assert auc([1, 1, 1, 0], 1) == pytest.approx((1 + 1 + 0.5) / 3)
    assert math.isnan(auc([0, 0], 0))


def test_energy_pointing_game_by_hand():
    m = np.array([[1, 2, 0], [-1, 3, 0], [0, 0, 4]], dtype=float)  # positive mass 10
    assert energy_pointing_game(m, [0, 0, 2, 2], (3, 3)) == pytest.approx(0.6)
    assert energy_pointing_game(m, [0.4, 0.4, 1.6, 1.6], (3, 3)) == pytest.approx(0.6)  # pixel centres inside
    assert energy_pointing_game(m, [0.6, 0.6, 2, 2], (3, 3)) == pytest.approx(0.3)
    assert energy_pointing_game(m, [0, 0, 3, 3], (3, 3)) == pytest.approx(1.0)
    assert energy_pointing_game(np.ones((1, 1)), [0, 0, 5, 10], (10, 10)) == pytest.approx(0.5)  # resized
    assert math.isnan(energy_pointing_game(-np.ones((2, 2)), [0, 0, 1, 1], (2, 2)))


def test_black_and_mean_baselines(tiny, rgb_image):
    x = tiny.pixel_values(rgb_image)
    black = removal_baseline(tiny, x, "black")
    assert to_pixels(black, tiny.preprocess.mean, tiny.preprocess.std).abs().max() < 1e-5
    np.testing.assert_allclose(removal_baseline(tiny, x, "mean")[0, :, 5, 7], x[0].mean((1, 2)), rtol=1e-5)
    with pytest.raises(ValueError):
        removal_baseline(tiny, x, "nope")


def test_tiny_detr_curves(tiny, rgb_image):
    x = tiny.pixel_values(rgb_image)
    H, W = x.shape[-2:]
    heatmap = np.random.default_rng(0).random((8, 10))
    query = 2
    r = faithfulness(tiny, x, query, heatmap, steps=4, gt_box=[0, 0, 64, 48], image_size=(64, 48), batch_size=4)
    with torch.no_grad():
        out = tiny.model(pixel_values=x)
    detection = postprocess(out.logits[0], out.pred_boxes[0], (W, H), tiny.id2label)[query]
    assert r["score"] == pytest.approx(detection["score"], rel=1e-5)
    slot0 = r["curves"]["deletion"]["slot"][0]
    assert slot0 == pytest.approx(r["score"], rel=1e-5)  # unperturbed image, batched with perturbed ones
    # "matched" may pick another slot of the same class over the box: never below the slot's own score
    assert r["curves"]["deletion"]["matched"][0] >= slot0 - 1e-6
    for name in ("slot", "matched"):
        deletion, insertion = r["curves"]["deletion"][name], r["curves"]["insertion"][name]
        assert len(deletion) == len(insertion) == 5
        assert insertion[-1] == pytest.approx(deletion[0], rel=1e-5)  # both the whole image
        assert deletion[-1] == pytest.approx(insertion[0], rel=1e-5)  # both all baseline
        assert r["deletion_auc"][name] == pytest.approx(auc(deletion, deletion[0]))
    assert r["pointing_game_gt"] == pytest.approx(1.0)  # the whole image
    x0, y0, x1, y1 = detection["box"]
    assert r["pointing_game"] == pytest.approx(energy_pointing_game(heatmap, [x0, y0, x1, y1], (W, H)), abs=1e-3)


def test_curves_run_at_most_at_their_resolution(tiny, rgb_image, monkeypatch):
    import core.evaluation.faithfulness as fm
    from core.methods.integrated_gradients import resize
    x = tiny.pixel_values(rgb_image)
    size, small = (x.shape[-1], x.shape[-2]), resize(x, 32)
    heatmap, gt_box = np.random.default_rng(0).random((6, 8)), [8.0, 6.0, 40.0, 30.0]
    shapes, forward = [], tiny.model.forward
    monkeypatch.setattr(tiny.model, "forward", lambda *a, **k: shapes.append(tuple(k["pixel_values"].shape[-2:]))
                        or forward(*a, **k))
    monkeypatch.setattr(fm, "RESOLUTION", 32)
    capped = faithfulness(tiny, x, 0, heatmap, steps=4, gt_box=gt_box)
    assert set(shapes) == {tuple(small.shape[-2:])} and min(shapes[0]) == 32  # every forward at the capped size
    monkeypatch.setattr(fm, "RESOLUTION", 1000)  # a larger cap changes nothing
    assert faithfulness(tiny, small, 0, heatmap, steps=4, gt_box=gt_box, image_size=size) == capped  # box: input px
    before = len(shapes)
    full = faithfulness(tiny, x, 0, heatmap, steps=4, gt_box=gt_box)
    assert full["pointing_game_gt"] == pytest.approx(capped["pointing_game_gt"], abs=0.05)
    assert set(shapes[before:]) == {tuple(x.shape[-2:])}
