"""DETR-ResNet-50's real architecture with random weights: the honest cost of the real model
without downloading it (shared by the benchmarks)."""
from __future__ import annotations

import torch
from PIL import Image

from core.demo.scenes import make_scene
from core.models.loading import LoadedModel, Preprocess, ready


def r50_random(device: str = "cpu") -> LoadedModel:
    from transformers import DetrConfig, DetrForObjectDetection
    config = DetrConfig(use_timm_backbone=False, use_pretrained_backbone=False, num_labels=91)  # COCO-sized head
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    return LoadedModel(model=ready(DetrForObjectDetection(config), device), name="r50-random", preprocess=Preprocess())


def at_size(loaded: LoadedModel, size: int) -> LoadedModel:
    """The model's pre-processing resized to `size` px short side (longest edge 5/3 of it)."""
    pre = loaded.preprocess
    loaded.preprocess = Preprocess(shortest_edge=size, longest_edge=size * 5 // 3, mean=pre.mean, std=pre.std)
    return loaded


def scene(size: int, seed: int = 0) -> Image.Image:
    """A demo scene as a 4:3 image `size` px high (800 -> 1066 x 800, as the issue measured)."""
    return make_scene(seed)[0].resize((size * 4 // 3, size), Image.BILINEAR)
