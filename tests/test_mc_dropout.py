import copy
import math
import threading

import numpy as np
import pytest
import torch

from core.models.mc_dropout import (backbone_features, match_slots, mc_dropout, mc_dropout_naive, sample_from_features,
                             summarize, trained_dropout, uncertainty)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads; on a busy machine they cost up to 100x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def pixels(tiny, rgb_image):
    return tiny.pixel_values(rgb_image)


def hf_train_mode(loaded, x, p, n, seed=1):
    """Reference samples another way: a full deepcopy in HF's own train mode, global RNG, batch 1."""
    model = copy.deepcopy(loaded.model).train()
    for m in model.modules():
        for key, rate in (("dropout", p), ("activation_dropout", 0.0), ("attention_dropout", 0.0)):
            if isinstance(getattr(m, key, None), float):
                setattr(m, key, rate)
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(seed)
        outs = [model(x) for _ in range(n)]
    return torch.cat([o.logits for o in outs]), torch.cat([o.pred_boxes for o in outs])


def test_p0_every_sample_is_the_deterministic_forward(tiny, pixels, rgb_image):
    with torch.no_grad():
        ref = tiny.model(pixels)
    logits, boxes = sample_from_features(tiny, backbone_features(tiny, pixels), samples=5, p=0.0, chunk=2)
    assert torch.allclose(logits, ref.logits.expand_as(logits), atol=1e-5)
    assert torch.allclose(boxes, ref.pred_boxes.expand_as(boxes), atol=1e-5)
    result = mc_dropout(tiny, pixels, rgb_image.size, samples=5, p=0.0)
    probs = ref.logits[0].softmax(-1)
    assert len(result["detections"]) == tiny.model.config.num_queries
    for d in result["detections"]:
        q = d["index"]
        assert d["label_id"] == int(probs[q, :-1].argmax())
        np.testing.assert_allclose(d["scores"], [d["score"]] * 5, atol=1e-5)
        np.testing.assert_allclose(d["score"], float(probs[q, :-1].max()), atol=1e-5)
        np.testing.assert_allclose(d["sampled_boxes"], [d["box"]] * 5, atol=1e-2)
        assert d["score_std"] < 1e-6 and max(d["box_std"]) < 1e-3
        assert d["mutual_information"] < 1e-6 and d["variation_ratio"] == 0 and d["slot_swap_fraction"] == 0
        p = probs[q].double()
        np.testing.assert_allclose(d["entropy"], float(-(p * p.log()).sum()), atol=1e-5)


def test_fast_path_equals_naive_path_with_the_same_masks(tiny, pixels, rgb_image):
    fast = mc_dropout(tiny, pixels, rgb_image.size, samples=7, p=0.5, seed=3, chunk=3)
    naive = mc_dropout_naive(tiny, pixels, rgb_image.size, samples=7, p=0.5, seed=3)
    assert fast["detections"][0]["score_std"] > 1e-3  # the samples really differ
    for a, b in zip(fast["detections"], naive["detections"]):
        for key in ("scores", "sampled_boxes", "box_std", "entropy", "mutual_information", "variation_ratio"):
            np.testing.assert_allclose(a[key], b[key], atol=1e-5)
        assert a["matched"]["slots"] == b["matched"]["slots"]


def test_samples_do_not_depend_on_chunking_and_seed_matters(tiny, pixels):
    features = backbone_features(tiny, pixels)
    one = sample_from_features(tiny, features, samples=6, p=0.3, seed=5, chunk=1)
    six = sample_from_features(tiny, features, samples=6, p=0.3, seed=5, chunk=6)
    other = sample_from_features(tiny, features, samples=6, p=0.3, seed=6, chunk=6)
    assert torch.allclose(one[0], six[0], atol=1e-5) and torch.allclose(one[1], six[1], atol=1e-5)
    assert not torch.allclose(one[0], other[0], atol=1e-3)


def test_fast_path_matches_hf_train_mode_statistically(tiny, pixels):
    n, p = 100, 0.5
    logits, boxes = sample_from_features(tiny, backbone_features(tiny, pixels), samples=n, p=p, chunk=25)
    ref_logits, ref_boxes = hf_train_mode(tiny, pixels, p, n)
    for a, b in ((logits, ref_logits), (boxes, ref_boxes)):
        a, b = a.double(), b.double()
        se = ((a.var(0) + b.var(0)) / n).sqrt()
        assert ((a.mean(0) - b.mean(0)).abs() <= 5 * se + 1e-6).all()
        ratio = a.std(0) / b.std(0)
        assert ((ratio > 0.6) & (ratio < 1.6)).all(), ratio


def test_spread_grows_with_p(tiny, pixels, rgb_image):
    def spread(p):
        dets = mc_dropout(tiny, pixels, rgb_image.size, samples=40, p=p, seed=0)["detections"]
        return np.mean([d["score_std"] for d in dets]), np.mean([np.mean(d["box_std"]) for d in dets])
    low, high = spread(0.1), spread(0.5)
    assert high[0] > 1.5 * low[0] and high[1] > 1.5 * low[1]


def test_uncertainty_against_hand_computed_values():
    # T=4 samples of one detection, classes (a, b, no-object)
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.6, 0.3, 0.1], [0.5, 0.1, 0.4]])
    mean = [0.475, 0.3, 0.225]
    h_mean = -sum(m * math.log(m) for m in mean)
    mean_h = np.mean([-sum(v * math.log(v) for v in row) for row in probs])
    out = uncertainty(probs[:, None])  # one query
    assert out["entropy"][0] == pytest.approx(h_mean)
    assert out["mutual_information"][0] == pytest.approx(h_mean - mean_h)
    assert out["variation_ratio"][0] == pytest.approx(0.25)  # top labels a, b, a, a
    # certain but disagreeing samples: all uncertainty is epistemic
    out = uncertainty(np.array([[[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]]]))
    assert out["entropy"][0] == pytest.approx(math.log(2)) and out["mutual_information"][0] == pytest.approx(math.log(2))
    assert out["variation_ratio"][0] == pytest.approx(0.5)
    # identical samples: no mutual information, entropy of the one distribution
    out = uncertainty(np.array([[[0.5, 0.25, 0.25]]] * 3))
    assert out["mutual_information"][0] == pytest.approx(0) and out["entropy"][0] == pytest.approx(1.5 * math.log(2))


def test_hungarian_identity_follows_a_swapped_slot():
    # deterministic: slot 0 = class 0 at left, slot 1 = class 1 at right, slot 2 = weak no-object
    det_logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 3.0]])
    det_boxes = torch.tensor([[0.25, 0.5, 0.2, 0.2], [0.75, 0.5, 0.2, 0.2], [0.5, 0.5, 0.9, 0.9]])
    swapped = [1, 0, 2]
    logits = torch.stack([det_logits, det_logits[swapped]])  # sample 1 swaps slots 0 and 1
    boxes = torch.stack([det_boxes, det_boxes[swapped]])
    probs = logits.softmax(-1).numpy().astype(np.float64)
    slots = match_slots(det_boxes, torch.tensor([0, 1, 0]), logits.softmax(-1), boxes)
    assert slots.tolist() == [[0, 1, 2], [1, 0, 2]]
    dets = summarize(det_logits, det_boxes, logits, boxes, (200, 100), {0: "a", 1: "b"}, threshold=0.5)
    score0 = float(det_logits.softmax(-1)[0, 0])
    assert dets[0]["slot_swap_fraction"] == 0.5 and dets[2]["slot_swap_fraction"] == 0
    np.testing.assert_allclose(dets[0]["matched"]["scores"], [score0, score0], atol=1e-6)
    assert dets[0]["matched"]["score_std"] == pytest.approx(0, abs=1e-6) and dets[0]["score_std"] > 0.4
    assert dets[0]["above_threshold_fraction"] == 0.5 and dets[0]["matched"]["above_threshold_fraction"] == 1
    assert dets[0]["variation_ratio"] == 0.5 and dets[0]["label_counts"] == {"a": 1, "b": 1}
    np.testing.assert_allclose(dets[0]["sampled_boxes"], [[30, 40, 70, 60], [130, 40, 170, 60]], atol=1e-4)
    np.testing.assert_allclose(dets[0]["box_mean"], [80, 40, 120, 60], atol=1e-4)
    np.testing.assert_allclose(dets[0]["box_std"], [50, 0, 50, 0], atol=1e-4)
    np.testing.assert_allclose(dets[0]["matched"]["box_std"], [0, 0, 0, 0], atol=1e-4)


def test_progress_features_reuse_and_validation(tiny, pixels, rgb_image):
    calls = []
    features = backbone_features(tiny, pixels)
    a = mc_dropout(tiny, pixels, rgb_image.size, samples=7, p=0.2, chunk=3, progress=lambda d, t: calls.append((d, t)))
    b = mc_dropout(tiny, pixels, rgb_image.size, samples=7, p=0.2, chunk=3, features=features)
    assert calls == [(3, 7), (6, 7), (7, 7)]
    assert a == b
    assert mc_dropout(tiny, pixels, rgb_image.size, samples=1)["dropout"] == trained_dropout(tiny) == 0.1
    for bad in ({"samples": 0}, {"samples": 101}, {"p": 0.95}, {"p": -0.1}, {"chunk": 0}):
        with pytest.raises(ValueError):
            mc_dropout(tiny, pixels, rgb_image.size, **{"samples": 2, **bad})


def _state(model):
    return ([m.training for m in model.modules()],
            [(getattr(m, k, None)) for m in model.modules() for k in ("dropout", "activation_dropout", "attention_dropout")],
            [p.requires_grad for p in model.parameters()], [p.grad for p in model.parameters()],
            {k: v.clone() for k, v in model.state_dict().items()},
            sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()),
            [m.config._attn_implementation for m in model.modules() if hasattr(m, "config")])


def test_concurrent_mc_dropout_leaves_other_requests_and_shared_model_alone(tiny, pixels, rgb_image):
    model = tiny.model

    def mc():
        return mc_dropout(tiny, pixels, rgb_image.size, samples=12, p=0.5, seed=1, chunk=4)

    def forward():
        with torch.no_grad():
            return model(pixels).logits.clone()

    def gradient():
        x = pixels.clone().requires_grad_(True)
        return torch.autograd.grad(model(x).logits[0, 0, 0], x)[0]

    def global_rng():  # someone else's seeded draws from the global generator
        torch.manual_seed(123)
        return torch.rand(1000)

    jobs = {"mc": mc, "forward": forward, "gradient": gradient, "rng": global_rng}
    before = _state(model)
    alone = {name: job() for name, job in jobs.items()}
    results = {name: [] for name in jobs}
    barrier = threading.Barrier(len(jobs))

    def worker(name):
        barrier.wait()
        for _ in range(10):
            results[name].append(jobs[name]())

    threads = [threading.Thread(target=worker, args=(name,)) for name in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, runs in results.items():
        assert len(runs) == 10, name
        for r in runs:
            if name == "mc":
                assert r == alone["mc"]
            else:
                assert torch.equal(r, alone[name]), name
    after = _state(model)
    assert after[:4] == before[:4] and after[5:] == before[5:]
    assert all(torch.equal(after[4][k], v) for k, v in before[4].items())
