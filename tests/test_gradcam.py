import gc
import threading

import numpy as np
import pytest
import torch
from transformers import DetrConfig, DetrForObjectDetection

from core.methods.registry import METHODS
from core.methods.gradcam import DEFAULT_LAYERS, DEFAULT_VARIANT, VARIANTS, cam_maps, compute_cams, default_layer, \
    layer_choices
from core.demo.train import demo_config

STAGE2_CONV = "model.backbone.model.encoder.stages.1.layers.0.layer.1.convolution"
TINY_DEFAULT = STAGE2_CONV  # a layer given explicitly below
ENCODER = "model.encoder.layers.0"


def reference(model, pixel_values, layer, query, target):
    """Activations and gradients a different way: input requiring grad, a plain hook keeping the
    layer's (non-leaf) output, gradient of the score w.r.t. that output. Encoder tokens [1, T, C]
    are put on the grid of the input projection's output, which a second hook records."""
    kept, grid = [], []
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: kept.append(o))
    grid_handle = model.model.input_projection.register_forward_hook(lambda m, i, o: grid.append(o.shape[-2:]))
    try:
        with torch.enable_grad():
            x = pixel_values.clone().requires_grad_(True)
            out = model(pixel_values=x)
            cls = int(out.logits[0, query, :-1].argmax())
            score = out.logits[0, query, cls] if target == "class" else out.pred_boxes[0, query, "cx cy w h".split().index(target)]
            (g,) = torch.autograd.grad(score, kept[0])
    finally:
        handle.remove()
        grid_handle.remove()
    a, g = kept[0][0].detach().double().numpy(), g[0].double().numpy()
    if a.ndim == 2:  # tokens [T, C] -> [C, h, w]
        a, g = (t.T.reshape(-1, *grid[0]) for t in (a, g))
    return a, g, float(score.detach()), cls


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


def elementwise_formulas(a, g):
    """HiResCAM, element-wise Grad-CAM, LayerCAM written out per location."""
    C, H, W = a.shape
    hires, elementwise, layercam = np.zeros((H, W)), np.zeros((H, W)), np.zeros((H, W))
    for i in range(H):
        for j in range(W):
            hires[i, j] = max(sum(g[k, i, j] * a[k, i, j] for k in range(C)), 0)
            elementwise[i, j] = sum(max(g[k, i, j] * a[k, i, j], 0) for k in range(C))
            layercam[i, j] = max(sum(max(g[k, i, j], 0) * a[k, i, j] for k in range(C)), 0)
    return {"hirescam": hires, "gradcam-elementwise": elementwise, "layercam": layercam}


def all_formulas(a, g):
    return dict(zip(("gradcam", "gradcam++"), formulas(a, g)), **elementwise_formulas(a, g))


def test_variants_by_hand():
    # two channels on a 1 x 2 map: A = [[1, 2]], [[3, -1]]; g = [[2, -1]], [[-1, 0.5]]
    a = torch.tensor([[[1.0, 2.0]], [[3.0, -1.0]]])
    g = torch.tensor([[[2.0, -1.0]], [[-1.0, 0.5]]])
    maps = cam_maps(a, g)
    # g*A: channel 0 [2, -2], channel 1 [-3, -0.5]
    np.testing.assert_allclose(maps["hirescam"], [[0.0, 0.0]], atol=1e-6)           # relu([-1, -2.5])
    np.testing.assert_allclose(maps["gradcam-elementwise"], [[2.0, 0.0]], atol=1e-6)  # [2 + 0, 0 + 0]
    np.testing.assert_allclose(maps["layercam"], [[2.0, 0.0]], atol=1e-6)  # relu([2*1 + 0*3, 0*2 + 0.5*-1])
    # Grad-CAM: w = mean g = [0.5, -0.25]; sum_k w_k A_k = [0.5 - 0.75, 1 + 0.25] -> relu
    np.testing.assert_allclose(maps["gradcam"], [[0.0, 1.25]], atol=1e-6)
    # Grad-CAM++: channel 0, sum A = 3: alpha = 4 / (8 + 3 * 8) = 1/8 at g = 2 (relu(g) = 2), -> w0 = 0.25;
    # channel 1, sum A = 2: alpha at g = 0.5 = 0.25 / (0.5 + 2 * 0.125) = 1/3 -> w1 = 1/6
    np.testing.assert_allclose(maps["gradcam++"], [[0.25 + 0.5, 0.5 - 1 / 6]], atol=1e-6)
    assert list(maps) == list(VARIANTS)
    for name, m in all_formulas(a.double().numpy(), g.double().numpy()).items():
        np.testing.assert_allclose(maps[name], m, atol=1e-6)


@pytest.fixture
def pixels(tiny, rgb_image):
    return tiny.pixel_values(rgb_image)


def all_hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


@pytest.mark.parametrize("layer", [STAGE2_CONV, "model.backbone.model.encoder.stages.0", "model.input_projection",
                                   ENCODER])
@pytest.mark.parametrize("query", [0, 3])
def test_maps_match_formulas(tiny, pixels, layer, query):
    result = compute_cams(tiny, pixels, query, {"layer": layer, "target": "class"})
    a, g, score, cls = reference(tiny.model, pixels, layer, query, "class")
    expected = all_formulas(a, g)
    assert list(result) == list(VARIANTS)
    for name, m in expected.items():
        assert m.max() > 0 or name in ("gradcam", "gradcam++", "layercam")  # non-trivial element-wise maps
        np.testing.assert_allclose(result[name].heatmap, m, atol=1e-5, rtol=1e-5)
        assert result[name].heatmap.shape == a.shape[1:] and result[name].heatmap.dtype == np.float32
        info = result[name].info
        assert info["layer"] == layer and info["target"] == "class" and info["method"] == name
        assert info["class_index"] == cls and info["target_value"] == pytest.approx(score, rel=1e-6)


def test_each_variant_at_its_default_layer(tiny, pixels):
    result = compute_cams(tiny, pixels, 1, {"layer": None, "target": "class"})
    assert len({r.info["layer"] for r in result.values()}) > 1  # the defaults differ: several layers, one pass
    for name, r in result.items():
        layer = default_layer(tiny.model, name)
        assert r.info["layer"] == layer
        a, g, _, _ = reference(tiny.model, pixels, layer, 1, "class")
        np.testing.assert_allclose(r.heatmap, all_formulas(a, g)[name], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layer", [None, STAGE2_CONV])
def test_one_forward_and_one_backward_serve_the_family(tiny, pixels, layer):
    calls, backwards, steps = [], [], []
    handle = tiny.model.register_forward_pre_hook(lambda m, i: calls.append(1))
    head = tiny.model.class_labels_classifier.register_full_backward_hook(lambda m, gi, go: backwards.append(1))
    try:
        result = compute_cams(tiny, pixels, 1, {"layer": layer, "target": "class"},
                              progress=lambda d, t: steps.append((d, t)))
    finally:
        handle.remove()
        head.remove()
    assert len(calls) == 1 and len(backwards) == 1 and steps == [(1, 2), (2, 2)]
    assert set(result) == set(VARIANTS)


def test_box_targets(tiny, pixels):
    cls = compute_cams(tiny, pixels, 2, {"layer": TINY_DEFAULT, "target": "class"})
    for target in ("cx", "h"):
        box = compute_cams(tiny, pixels, 2, {"layer": TINY_DEFAULT, "target": target})
        a, g, score, _ = reference(tiny.model, pixels, TINY_DEFAULT, 2, target)
        for name, m in all_formulas(a, g).items():
            np.testing.assert_allclose(box[name].heatmap, m, atol=1e-5, rtol=1e-5)
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
        for method in VARIANTS:
            np.testing.assert_allclose(results[q][method].heatmap, expected[method].heatmap, atol=1e-6)
            assert results[q][method].info == expected[method].info
    assert not np.allclose(results[1]["gradcam++"].heatmap, results[4]["gradcam++"].heatmap)


def test_layer_choices(tiny):
    choices = layer_choices(tiny.model)
    names = dict(tiny.model.named_modules())
    stage1_conv = "model.backbone.model.encoder.stages.0.layers.0.layer.1.convolution"
    assert choices == [
        (stage1_conv, "stage 1 last conv"),
        ("model.backbone.model.encoder.stages.0", "stage 1 output"),
        (STAGE2_CONV, "stage 2 last conv"),
        ("model.backbone.model.encoder.stages.1", "stage 2 output"),
        ("model.input_projection", "input projection"),
        (ENCODER, "encoder output"),
    ]
    assert all(isinstance(names[n], torch.nn.Conv2d) for n, label in choices if "conv" in label)
    # defaults counted back from the last stage, clamped to the first (the tiny backbone has 2)
    assert default_layer(tiny.model, "gradcam-elementwise") == stage1_conv  # ("conv", -2)
    assert default_layer(tiny.model, "gradcam") == "model.backbone.model.encoder.stages.1"  # ("output", -1)
    assert default_layer(tiny.model, "layercam") == "model.backbone.model.encoder.stages.0"  # ("output", -2)
    assert default_layer(tiny.model, "hirescam") == "model.backbone.model.encoder.stages.0"  # ("output", -3)
    assert default_layer(tiny.model) == default_layer(tiny.model, DEFAULT_VARIANT)
    assert set(DEFAULT_LAYERS) == set(VARIANTS) and DEFAULT_VARIANT in VARIANTS


@pytest.mark.parametrize("config, last_conv, default, stages, encoder", [
    (demo_config(), "model.backbone.model.encoder.stages.2.layers.0.layer.1.convolution",
     "model.backbone.model.encoder.stages.1.layers.0.layer.1.convolution", 3, "model.encoder.layers.1"),
    # DETR-ResNet-50 without timm: bottleneck blocks, depths 3, 4, 6, 3
    (DetrConfig(use_timm_backbone=False, use_pretrained_backbone=False),
     "model.backbone.model.encoder.stages.3.layers.2.layer.2.convolution",
     "model.backbone.model.encoder.stages.2.layers.5.layer.2.convolution", 4, "model.encoder.layers.5"),
])
def test_layer_choices_real_shapes(config, last_conv, default, stages, encoder):
    with torch.device("meta"):  # module names without allocating weights
        model = DetrForObjectDetection(config)
    names = dict(model.named_modules())
    assert default_layer(model) == default and isinstance(names[default], torch.nn.Conv2d)
    choices = layer_choices(model)
    assert len(choices) == 2 * stages + 2 and all(n in names for n, _ in choices)
    assert choices[-4:] == [(last_conv, f"stage {stages} last conv"),
                            (f"model.backbone.model.encoder.stages.{stages - 1}", f"stage {stages} output"),
                            ("model.input_projection", "input projection"), (encoder, "encoder output")]
    assert all(default_layer(model, v) in names for v in VARIANTS)


def test_registered():
    for name, (label, tooltip) in VARIANTS.items():
        assert METHODS[name].compute is compute_cams and METHODS[name].family == "cam"
        assert METHODS[name].label == label and METHODS[name].params == METHODS["gradcam"].params
        assert tooltip and "\n" not in tooltip
    assert METHODS["gradcam++"].label == "Grad-CAM++"
