import hashlib
import math

import numpy as np
import pytest
import torch

from core.evaluation.sanity import THRESHOLD, cascade_steps, randomise, sanity_check, spearman
from tests.tiny import tiny_detr

HEADS = ("class_labels_classifier", "bbox_predictor")


def state_hash(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode()); digest.update(tensor.cpu().numpy().tobytes())
    return digest.hexdigest()


def test_spearman_by_hand():
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)  # 1 - 6 * 2 / (4 * 15)
    assert spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(1.5 / math.sqrt(3))  # ties: average ranks
    assert spearman([[3, 1], [2, 0]], [[30, 10], [20, -5]]) == pytest.approx(1.0)  # monotone, 2-D
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_cascade_covers_every_parameter_from_the_top():
    model = tiny_detr()
    steps = cascade_steps(model)
    assert [name for name, _ in steps] == ["heads", "decoder", "encoder", "stage2", "stage1", "stem"]
    prefixes = [p for _, group in steps for p in group]
    assert all(any(n.startswith(p + ".") for p in prefixes) for n, _ in model.named_parameters())


def test_randomise_changes_only_its_prefixes():
    model, before = tiny_detr(), tiny_detr()
    assert randomise(model, HEADS, torch.Generator().manual_seed(0)) == 8
    for (name, p), q in zip(model.named_parameters(), before.parameters()):
        constant = q.numel() == 1 or bool((q == q.flatten()[0]).all())  # N(mean, std) of a constant: itself
        assert torch.equal(p, q) == (constant or not name.startswith(HEADS))


def test_served_model_untouched_and_unchanged_steps_correlate_exactly(tiny, rgb_image):
    x = tiny.pixel_values(rgb_image)
    before = state_hash(tiny.model)
    steps = [("nothing", ()), ("heads", HEADS), ("decoder", ("model.decoder", "model.query_position_embeddings"))]
    seen = []
    r = sanity_check(tiny, x, 1, {"attention": {}, "relevance": {}}, progress=lambda d, t: seen.append((d, t)),
                     steps=steps)
    assert state_hash(tiny.model) == before
    assert r["steps"] == ["nothing", "heads", "decoder"] and seen[-1] == (4, 4)
    attention, relevance = r["methods"]["attention"], r["methods"]["relevance"]
    assert attention["rho"][0] == pytest.approx(1.0) and relevance["rho"][0] == pytest.approx(1.0)
    assert attention["rho"][1] == pytest.approx(1.0)  # cross-attention does not read the heads
    assert relevance["rho"][1] < 0.99  # its gradients do
    assert attention["rho"][2] < 0.99
    assert len(attention["maps"]) == 4 and np.array_equal(attention["maps"][0], attention["maps"][1])
    assert not attention["flagged"]  # no "encoder" step here: nothing to judge


def test_flag_after_the_encoder_step(tiny, rgb_image):
    x = tiny.pixel_values(rgb_image)
    # an "encoder" step that randomises nothing: the map cannot change, so it must be flagged
    r = sanity_check(tiny, x, 0, {"attention": {}}, steps=[("heads", HEADS), ("encoder", ())])
    assert r["methods"]["attention"]["rho"][1] > THRESHOLD and r["methods"]["attention"]["flagged"]
    # the real cascade randomises the encoder and everything above it: both maps change, neither flagged
    full = sanity_check(tiny, x, 0, {"attention": {}, "relevance": {}})
    at = full["steps"].index("encoder")
    for m in full["methods"].values():
        assert abs(m["rho"][at]) < 0.6 and not m["flagged"]
