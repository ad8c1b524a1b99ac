"""Loading (local dir, hub id through the cache, offline fast-fail), pre-processing, post-processing."""
import time

import numpy as np
import pytest
import torch
from PIL import Image

from core.models.detection import detect, postprocess
from core.models.loading import DEMO_DIR, ModelUnavailable, Preprocess, load_model, load_model_or_demo


@pytest.mark.parametrize("size, expected", [
    ((640, 480), (1066, 800)), ((480, 640), (800, 1066)), ((1066, 800), (1066, 800)),
    ((3000, 100), (1333, 44)), ((801, 799), (802, 800)), ((128, 128), (800, 800)),
])
def test_resize_rule_matches_detr(size, expected):
    assert Preprocess().target_size(*size) == expected


def test_preprocess_normalises_and_keeps_target_size_images():
    pre = Preprocess(shortest_edge=32, longest_edge=64)
    image = Image.new("RGB", (48, 32), (124, 116, 104))  # ~ the ImageNet mean colour
    x = pre(image)
    assert x.shape == (1, 3, 32, 48)  # already at the target size: not resized
    assert torch.allclose(x, torch.zeros_like(x), atol=0.01)
    white = pre(Image.new("RGB", (48, 32), (255, 255, 255)))[0, :, 0, 0]
    assert torch.allclose(white, (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225]))
    assert pre(Image.new("RGB", (20, 10))).shape == (1, 3, 32, 64)


def test_save_pretrained_round_trip_through_the_loading_code(tiny_dir, rgb_image):
    from tests.tiny import tiny_detr
    loaded = load_model(str(tiny_dir), device="cpu")
    assert loaded.preprocess.shortest_edge == 64 and loaded.preprocess.longest_edge == 128
    assert loaded.model.config._attn_implementation == "eager"
    assert not loaded.model.training and not any(p.requires_grad for p in loaded.model.parameters())
    convs = [p for p in loaded.model.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    reference = tiny_detr()  # contiguous weights: the same numbers
    x = loaded.pixel_values(rgb_image)
    with torch.no_grad():
        assert torch.allclose(loaded.model(pixel_values=x).logits, reference(pixel_values=x).logits, atol=1e-6)


@pytest.mark.parametrize("repo, ref", [("someone/tiny-detr", "main"), ("facebook/detr-resnet-50", "no_timm")])
def test_hub_id_loads_from_the_local_cache(tiny_dir, tmp_path, monkeypatch, repo, ref):
    """A hub id goes through from_pretrained(..., local_files_only=True) first: fake a cached repo.
    The `no_timm` revision is asked for only where the hub repository has it (facebook/detr-*)."""
    import shutil
    folder = "models--" + repo.replace("/", "--")
    snapshot = tmp_path / "hub" / folder / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_dir, snapshot)
    refs = tmp_path / "hub" / folder / "refs"
    refs.mkdir()
    (refs / ref).write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants as hc
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    loaded = load_model(repo, device="cpu")
    assert loaded.name == repo and loaded.preprocess.shortest_edge == 64


def test_uncached_hub_model_fails_fast_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    start = time.monotonic()
    with pytest.raises(ModelUnavailable, match="not in the local cache"):
        load_model("facebook/detr-resnet-50", device="cpu")
    assert time.monotonic() - start < 5


@pytest.mark.skipif(not (DEMO_DIR / "model.safetensors").exists(), reason="demo weights not built")
def test_fallback_to_demo_says_why(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    start = time.monotonic()
    loaded = load_model_or_demo("facebook/detr-resnet-50", device="cpu")
    assert time.monotonic() - start < 10
    assert loaded.is_demo and "facebook/detr-resnet-50" in loaded.fallback_reason


def test_postprocess_scores_and_boxes_by_hand():
    logits = torch.tensor([[2.0, 0.0, 1.0], [0.0, 0.0, 5.0]])  # 2 real classes + no-object
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.4], [0.25, 0.75, 0.5, 0.5]])
    dets = postprocess(logits, boxes, (200, 100), {0: "a", 1: "b"})
    p = np.exp([2.0, 0.0, 1.0]) / np.exp([2.0, 0.0, 1.0]).sum()
    assert dets[0]["label"] == "a" and dets[0]["score"] == pytest.approx(p[0], abs=1e-6)
    assert dets[0]["box"] == [80.0, 30.0, 120.0, 70.0]
    q = np.exp([0.0, 0.0, 5.0]) / np.exp([0.0, 0.0, 5.0]).sum()
    assert dets[1]["score"] == pytest.approx(q[0], abs=1e-6)  # no-object wins, the score is still its best real class
    assert dets[1]["box"] == [0.0, 50.0, 100.0, 100.0]
    assert [d["index"] for d in postprocess(logits, boxes, (200, 100), {0: "a", 1: "b"}, threshold=0.5)] == [0]


def test_detect_lists_every_query_in_original_pixels(tiny, rgb_image):
    dets = detect(tiny, rgb_image)
    assert [d["index"] for d in dets] == list(range(tiny.model.config.num_queries))
    for d in dets:
        x0, y0, x1, y1 = d["box"]
        assert -1 <= x0 <= x1 <= rgb_image.width + 1 and -1 <= y0 <= y1 <= rgb_image.height + 1
        assert 0 < d["score"] < 1
