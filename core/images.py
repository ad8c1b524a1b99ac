"""Image decoding, validation and the model's pre-processing."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> [3, H, W] float tensor in the model's normalised space."""
    x = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]


def write_preprocessor_config(out: Path, shortest_edge: int, longest_edge: int) -> None:
    """The HF `preprocessor_config.json` a DETR directory carries (what DetrImageProcessor reads)."""
    config = {
        "image_processor_type": "DetrImageProcessor", "format": "coco_detection",
        "do_resize": True, "size": {"shortest_edge": shortest_edge, "longest_edge": longest_edge},
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": list(IMAGENET_MEAN), "image_std": list(IMAGENET_STD), "do_pad": True,
    }
    (Path(out) / "preprocessor_config.json").write_text(json.dumps(config, indent=2))
