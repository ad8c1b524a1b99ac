import gc
import threading

import numpy as np
import pytest
import torch
from transformers import DetrConfig, DetrForObjectDetection

from core.methods.registry import METHODS
from core.methods.gradcam import compute_cams, default_layer, layer_choices
from core.demo.train import demo_config

TINY_DEFAULT = "model.backbone.model.encoder.stages.1.layers.0.layer.1.convolution"


def reference(model, pixel_values, layer, query, target):
    """Activations and gradients a different way: input requiring grad, a plain hook keeping the
    layer's (non-leaf) output, gradient of the score w.r.t. that output."""
    kept = []
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: kept.append(o))
    try:
        with torch.enable_grad():
            x = pixel_values.clone().requires_grad_(True)
            out = model(pixel_values=x)
            cls = int(out.logits[0, query, :-1].argmax())
            score = out.logits[0, query, cls] if target == "class" else out.pred_boxes[0, query, "cx cy w h".split().index(target)]
            (g,) = torch.autograd.grad(score, kept[0])
    finally:
        handle.remove()
    return kept[0][0].detach().double().numpy(), g[0].double().numpy(), float(score.detach()), cls


def formulas(a, g):
    gradcam = np.maximum((g.mean(axis=(1, 2))[:, None, None] * a).sum(0), 0)
    alpha = np.zeros_like(g)
    for k in range(g.shape[0]):
        for i in range(g.shape[1]):
            for j in range(g.shape[2]):
                denom = 2 * g[k, i, j] ** 2 + a[k].sum() * g[k, i, j] ** 3
                if g[k, i, j] != 0 and denom != 0:
                    alpha[k, i, j] = g[k, i, j] ** 2 / denom
    w = (alpha * np.maximum(g, 0)).sum(axis=(1, 2))
    return gradcam, np.maximum((w[:, None, None] * a).sum(0), 0)


@pytest.fixture
def pixels(tiny, rgb_image):
    return tiny.pixel_values(rgb_image)


def all_hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


@pytest.mark.parametrize("layer", [None, "model.backbone.model.encoder.stages.0"])
@pytest.mark.parametrize("query", [0, 3])
def test_maps_match_formulas(tiny, pixels, layer, query):
    result = compute_cams(tiny, pixels, query, {"layer": layer, "target": "class"})
    a, g, score, cls = reference(tiny.model, pixels, layer or TINY_DEFAULT, query, "class")
    gradcam, gradcampp = formulas(a, g)
    assert gradcampp.max() > 0  # a non-trivial map, so the comparison means something
    np.testing.assert_allclose(result["gradcam"].heatmap, gradcam, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(result["gradcam++"].heatmap, gradcampp, atol=1e-5, rtol=1e-5)
    assert result["gradcam"].heatmap.shape == a.shape[1:] and result["gradcam"].heatmap.dtype == np.float32
    info = result["gradcam"].info
    assert info["layer"] == (layer or TINY_DEFAULT) and info["target"] == "class"
    assert info["class_index"] == cls and info["target_value"] == pytest.approx(score, rel=1e-6)


def test_one_forward_serves_both(tiny, pixels):
    calls, steps = [], []
    handle = tiny.model.register_forward_pre_hook(lambda m, i: calls.append(1))
    try:
        compute_cams(tiny, pixels, 1, {"layer": None, "target": "class"}, progress=lambda d, t: steps.append((d, t)))
    finally:
        handle.remove()
    assert len(calls) == 1 and steps == [(1, 2), (2, 2)]


def test_box_targets(tiny, pixels):
    cls = compute_cams(tiny, pixels, 2, {"layer": None, "target": "class"})
    for target in ("cx", "h"):
        box = compute_cams(tiny, pixels, 2, {"layer": None, "target": target})
        a, g, score, _ = reference(tiny.model, pixels, TINY_DEFAULT, 2, target)
        gradcam, gradcampp = formulas(a, g)
        np.testing.assert_allclose(box["gradcam"].heatmap, gradcam, atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(box["gradcam++"].heatmap, gradcampp, atol=1e-5, rtol=1e-5)
        assert box["gradcam"].info["target"] == target
        assert box["gradcam"].info["target_value"] == pytest.approx(score, rel=1e-6) and 0 < score < 1
        assert not np.allclose(box["gradcam++"].heatmap, cls["gradcam++"].heatmap)


def test_bad_layer_or_target_raises_and_leaves_no_hooks(tiny, pixels):
    with pytest.raises(ValueError, match="no layer"):
        compute_cams(tiny, pixels, 0, {"layer": "nope", "target": "class"})
    with pytest.raises(ValueError, match="unknown target"):
        compute_cams(tiny, pixels, 0, {"layer": None, "target": "area"})
    with pytest.raises(ValueError, match="tensor"):  # the conv encoder returns a list: fails inside the forward
        compute_cams(tiny, pixels, 0, {"layer": "model.backbone", "target": "class"})
    assert all_hooks(tiny.model) == 0


def test_no_hooks_or_tensors_left_after_many(tiny, pixels):
    def live_tensors():
        gc.collect()
        return sum(issubclass(type(o), torch.Tensor) for o in gc.get_objects())

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    for _ in range(5):
        compute_cams(tiny, pixels, 0, {"layer": None, "target": "class"})
    tensors, memory = live_tensors(), rss()
    for i in range(50):
        compute_cams(tiny, pixels, i % 5, {"layer": None, "target": ("class", "cx")[i % 2]})
    assert all_hooks(tiny.model) == 0
    assert live_tensors() <= tensors
    assert rss() - memory < 20 * 2**20


def test_concurrent_equals_sequential(tiny, pixels):
    params = {"layer": None, "target": "class"}
    sequential = [compute_cams(tiny, pixels, q, params) for q in (1, 4)]
    # Both threads wait inside their forwards before the layer, so both CAM hooks are registered
    # and each fires for the other thread's forward too.
    barrier = threading.Barrier(2, timeout=10)

    def wait(module, inputs, output):
        barrier.wait()

    gate = tiny.model.model.backbone.model.embedder.register_forward_hook(wait)
    results, errors = {}, []

    def run(q):
        try:
            results[q] = compute_cams(tiny, pixels, q, params)
        except Exception as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(q,)) for q in (1, 4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        gate.remove()
    assert not errors
    for q, expected in zip((1, 4), sequential):
        for method in ("gradcam", "gradcam++"):
            np.testing.assert_allclose(results[q][method].heatmap, expected[method].heatmap, atol=1e-6)
            assert results[q][method].info == expected[method].info
    assert not np.allclose(results[1]["gradcam++"].heatmap, results[4]["gradcam++"].heatmap)


def test_layer_choices(tiny):
    choices = layer_choices(tiny.model)
    names = dict(tiny.model.named_modules())
    assert default_layer(tiny.model) == TINY_DEFAULT
    assert choices == [
        ("model.backbone.model.encoder.stages.0.layers.0.layer.1.convolution", "stage 1 last conv"),
        ("model.backbone.model.encoder.stages.0", "stage 1 output"),
        (TINY_DEFAULT, "stage 2 last conv"),
        ("model.backbone.model.encoder.stages.1", "stage 2 output"),
    ]
    assert all(isinstance(names[n], torch.nn.Conv2d) for n, label in choices if "conv" in label)


@pytest.mark.parametrize("config, expected, stages", [
    (demo_config(), "model.backbone.model.encoder.stages.2.layers.0.layer.1.convolution", 3),
    # DETR-ResNet-50 without timm: bottleneck blocks, depths 3, 4, 6, 3
    (DetrConfig(use_timm_backbone=False, use_pretrained_backbone=False),
     "model.backbone.model.encoder.stages.3.layers.2.layer.2.convolution", 4),
])
def test_layer_choices_real_shapes(config, expected, stages):
    with torch.device("meta"):  # module names without allocating weights
        model = DetrForObjectDetection(config)
    names = dict(model.named_modules())
    assert default_layer(model) == expected and isinstance(names[expected], torch.nn.Conv2d)
    choices = layer_choices(model)
    assert len(choices) == 2 * stages and all(n in names for n, _ in choices)
    assert choices[-2:] == [(expected, f"stage {stages} last conv"),
                            (f"model.backbone.model.encoder.stages.{stages - 1}", f"stage {stages} output")]


def test_registered():
    assert METHODS["gradcam"].compute is compute_cams and METHODS["gradcam++"].compute is compute_cams
    assert METHODS["gradcam"].family == METHODS["gradcam++"].family == "cam"
    assert METHODS["gradcam++"].label == "Grad-CAM++"
