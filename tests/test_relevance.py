import copy

import numpy as np
import pytest
import torch

from core.methods.registry import METHODS
from core.methods.relevance import (compute_relevance, decoder_cross_step, decoder_self_step, encoder_step, head_mean,
                            init_relevance, normalise, propagate)

t = lambda rows: torch.tensor(rows, dtype=torch.float64)

# A 1-layer toy: 2 image tokens, 2 queries. Encoder with 2 heads, decoder with 1 head.
ENC = (t([[[.5, .5], [.5, .5]], [[1, 0], [0, 1]]]), t([[[2, 0], [2, -2]], [[-1, 0], [0, 2]]]))
DEC_SELF = (t([[[.5, .5], [0, 1]]]), t([[[2, 2], [0, 1]]]))
DEC_CROSS = (t([[[.25, .75], [.5, .5]]]), t([[[4, -1], [-2, 2]]]))


def test_initialisation():
    R_ii, R_qq, R_qi = init_relevance(num_queries=2, num_tokens=3)
    assert torch.equal(R_ii, torch.eye(3)) and torch.equal(R_qq, torch.eye(2))
    assert torch.equal(R_qi, torch.zeros(2, 3))


def test_head_mean_and_normalise_by_hand():
    # heads: relu([[1, 0], [1, -1]]) and relu([[-1, 0], [0, 2]]), averaged
    assert torch.equal(head_mean(*ENC), t([[.5, 0], [.5, 1]]))
    # minus I: [[.5, 0], [.5, 1]]; rows / [.5, 1.5]; plus I
    torch.testing.assert_close(normalise(t([[1.5, 0], [.5, 2]])), t([[2, 0], [1 / 3, 5 / 3]]))
    assert torch.equal(normalise(torch.eye(2, dtype=torch.float64)), torch.eye(2, dtype=torch.float64))  # 0 rows


def test_update_rules_by_hand():
    R_ii, R_qq, R_qi = init_relevance(2, 2, torch.float64)
    R_ii = encoder_step(R_ii, t([[.5, 0], [.5, 1]]))
    assert torch.equal(R_ii, t([[1.5, 0], [.5, 2]]))
    R_qq, R_qi = decoder_self_step(R_qq, t([[1, 2], [0, 1]]), t([[1, 1], [0, 1]]))
    assert torch.equal(R_qq, t([[2, 1], [0, 2]])) and torch.equal(R_qi, t([[2, 5], [0, 2]]))
    # normalise(R_qq) = [[1.5, .5], [0, 2]]; its transpose @ I @ normalise(R_ii) added to R_qi
    R_qi = decoder_cross_step(t([[2, 1], [0, 2]]), R_ii, torch.zeros(2, 2, dtype=torch.float64), t([[1, 0], [0, 1]]))
    torch.testing.assert_close(R_qi, t([[3, 0], [5 / 3, 10 / 3]]))


def test_one_layer_toy_by_hand():
    # R_ii = [[1.5, 0], [.5, 2]]; R_qq = [[2, 1], [0, 2]], R_qi stays 0 after self-attention;
    # cross Abar = I, so R_qi = [[1.5, 0], [.5, 2]] @ [[2, 0], [1/3, 5/3]]
    R_qi = propagate([ENC], [(DEC_SELF, DEC_CROSS)])
    torch.testing.assert_close(R_qi, t([[3, 0], [5 / 3, 10 / 3]]))


def test_tiny_detr_matches_propagation_of_its_own_attention_gradients(tiny, rgb_image):
    x = tiny.pixel_values(rgb_image)
    query = 1
    e = compute_relevance(tiny, x, query, METHODS["relevance"].defaults)["relevance"]
    # reference: gradients of the class logit w.r.t. the returned attention weights, taken here
    xr = x.clone().requires_grad_(True)
    q0 = torch.zeros(1, tiny.model.config.num_queries, tiny.model.config.d_model, requires_grad=True)
    with torch.enable_grad():
        # on a copy: output_attentions=True leaves transformers' capture hooks on a model
        out = copy.deepcopy(tiny.model)(pixel_values=xr, decoder_inputs_embeds=q0, output_attentions=True)
        maps = [out.encoder_attentions[0], out.decoder_attentions[0], out.cross_attentions[0]]
        assert all(m.requires_grad for m in maps)  # HF keeps attention weights in the graph
        cls = int(out.logits[0, query, :-1].argmax())
        grads = torch.autograd.grad(out.logits[0, query, cls], maps)
    (A_e, g_e), (A_s, g_s), (A_c, g_c) = [(m[0].detach(), g[0]) for m, g in zip(maps, grads)]
    expected = propagate([(A_e, g_e)], [((A_s, g_s), (A_c, g_c))])[query]
    h, w = e.info["grid"]
    np.testing.assert_allclose(e.heatmap, expected.reshape(h, w).numpy(), rtol=1e-5, atol=1e-8)
    assert e.heatmap.max() > 0 and e.heatmap.min() >= 0
    assert e.info["class_index"] == cls
    assert e.info["target_value"] == pytest.approx(float(out.logits[0, query, cls].detach()), abs=1e-5)
    assert all(p.grad is None and not p.requires_grad for p in tiny.model.parameters())


def test_box_target_explains_another_score(tiny, rgb_image):
    x = tiny.pixel_values(rgb_image)
    cls = compute_relevance(tiny, x, 0, {"target": "class"})["relevance"]
    cx = compute_relevance(tiny, x, 0, {"target": "cx"})["relevance"]
    assert cx.info["target"] == "cx" and 0 < cx.info["target_value"] < 1
    assert not np.allclose(cls.heatmap, cx.heatmap)
