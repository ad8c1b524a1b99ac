import copy
import threading

import numpy as np
import torch

from core.methods.attention import attention_maps, compute_attention
from core.methods.registry import METHODS


def all_hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_map_is_the_decoder_cross_attention(tiny, rgb_image):
    x = tiny.pixel_values(rgb_image)
    # reference on a copy: output_attentions=True leaves transformers' capture hooks on a model
    with torch.no_grad():
        out = copy.deepcopy(tiny.model)(pixel_values=x, output_attentions=True)
    cross = out.cross_attentions[-1][0].numpy()  # [heads, queries, tokens]
    for query in (0, 3):
        e = compute_attention(tiny, x, query, METHODS["attention"].defaults)["attention"]
        h, w = e.info["grid"]
        # stride 8 for the tiny backbone (stem /4, stage 2 /2): the grid is the feature map DETR reads
        assert (h, w) == (-(-x.shape[2] // 8), -(-x.shape[3] // 8))
        np.testing.assert_allclose(e.heatmap, cross[:, query].mean(0).reshape(h, w), rtol=1e-6)
        assert abs(e.heatmap.sum() - 1) < 1e-5  # softmax rows, no padding
        assert e.info["class_index"] == int(out.logits[0, query, :-1].argmax())
    assert all_hooks(tiny.model) == 0


def test_hooks_record_only_their_thread_and_are_removed(tiny, rgb_image):
    x = tiny.pixel_values(rgb_image)
    with attention_maps(tiny.model) as maps:
        other = threading.Thread(target=lambda: tiny.model(pixel_values=x))
        other.start(); other.join()
        assert maps == {"encoder": [], "decoder": [], "cross": []}
        with torch.no_grad():
            tiny.model(pixel_values=x[..., :32, :40])
        assert maps["grid"] == (4, 5)
        assert [a.shape for a in maps["encoder"] + maps["decoder"] + maps["cross"]] == [(1, 2, 20, 20), (1, 2, 5, 5),
                                                                                       (1, 2, 5, 20)]
    assert all_hooks(tiny.model) == 0
