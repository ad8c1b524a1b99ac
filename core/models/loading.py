"""Loading DETR (hub id, local `save_pretrained` directory, or the bundled demo) and its pre-processing."""
from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from transformers import DetrForObjectDetection

from core.images import IMAGENET_MEAN, IMAGENET_STD, normalize

DEFAULT_MODEL = "facebook/detr-resnet-50"
HUB_REVISION = "no_timm"  # the real checkpoint's variant with transformers' own ResNet: no timm needed
DEMO_NAME = "demo"
DEMO_DIR = Path(__file__).resolve().parents[2] / "models" / "demo-detr"
HUB_HOST = ("huggingface.co", 443)


class ModelUnavailable(RuntimeError):
    """The named model is neither local nor cached, and the hub cannot be reached."""


@dataclass(frozen=True)
class Preprocess:
    """DETR's resize rule: shortest side to `shortest_edge`, capped so the longest is <= `longest_edge`."""

    shortest_edge: int = 800
    longest_edge: int = 1333
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after resizing; an image already at the target size is left as it is."""
        size, short, long = self.shortest_edge, min(width, height), max(width, height)
        raw = None
        if long / short * size > self.longest_edge:
            raw = self.longest_edge * short / long
            size = int(round(raw))
        if short == size:
            return width, height
        scale = (raw if raw is not None else size) / short
        if width < height:
            return size, int(scale * height)
        return int(scale * width), size

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """PIL image -> [1, 3, H, W] normalised tensor (CPU)."""
        size = self.target_size(*image.size)
        if size != image.size:
            image = image.resize(size, Image.BILINEAR)
        x = normalize(image)
        if self.mean != IMAGENET_MEAN or self.std != IMAGENET_STD:  # model-specific statistics
            x = x * torch.tensor(IMAGENET_STD)[:, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None]
            x = (x - torch.tensor(self.mean)[:, None, None]) / torch.tensor(self.std)[:, None, None]
        return x[None]

    @classmethod
    def from_config(cls, config: dict | None) -> "Preprocess":
        if not config:
            return cls()
        size = config.get("size") or {}
        return cls(shortest_edge=int(size.get("shortest_edge", 800)), longest_edge=int(size.get("longest_edge", 1333)),
                   mean=tuple(config.get("image_mean", IMAGENET_MEAN)), std=tuple(config.get("image_std", IMAGENET_STD)))


@dataclass
class LoadedModel:
    """A DETR ready to serve: eval mode, parameters frozen, eager attention (so attention maps exist).

    The model object is shared by every request of a process: nothing may change its state
    (train mode, dropout rates, requires_grad); explainers take gradients with respect to
    inputs and activations via `torch.autograd.grad`, never via `.grad` on parameters.
    """

    model: DetrForObjectDetection
    name: str
    preprocess: Preprocess
    fallback_reason: str | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def id2label(self) -> dict[int, str]:
        return {int(k): v for k, v in self.model.config.id2label.items()}

    @property
    def is_demo(self) -> bool:
        return self.name == DEMO_NAME

    def pixel_values(self, image: Image.Image) -> torch.Tensor:
        return self.preprocess(image).to(self.device)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
        return False
    try:
        socket.create_connection(HUB_HOST, timeout=timeout).close()
        return True
    except OSError:
        return False


def _from_pretrained(source: str, **kwargs) -> tuple[DetrForObjectDetection, Preprocess]:
    model = DetrForObjectDetection.from_pretrained(source, attn_implementation="eager", **kwargs)
    from transformers.utils import cached_file
    config_path = cached_file(source, "preprocessor_config.json", _raise_exceptions_for_missing_entries=False,
                              **{k: v for k, v in kwargs.items() if k in ("revision", "local_files_only")})
    config = json.loads(Path(config_path).read_text()) if config_path else None
    return model, Preprocess.from_config(config)


def load_model(name: str = DEFAULT_MODEL, device: str | None = None) -> LoadedModel:
    """Load `name`: "demo", a local `save_pretrained` directory, or a hub id (local cache first).

    Never waits on hub retries: when the model is not cached and the hub does not answer a
    connection within a few seconds, raises ModelUnavailable.
    """
    if name == DEMO_NAME:
        model, pre = _from_pretrained(str(DEMO_DIR))
    elif Path(name).is_dir():
        model, pre = _from_pretrained(name)
    else:
        try:
            model, pre = _from_pretrained(name, revision=HUB_REVISION, local_files_only=True)
        except OSError:
            if not _hub_reachable():
                raise ModelUnavailable(
                    f"Model '{name}' is not in the local cache and the Hugging Face hub cannot be reached. "
                    f"Connect to the internet once to download it (it is cached afterwards), or pass a local "
                    f"directory written by save_pretrained, or use --model demo.") from None
            model, pre = _from_pretrained(name, revision=HUB_REVISION)
    model.eval().requires_grad_(False).to(device or default_device())
    return LoadedModel(model=model, name=name, preprocess=pre)


def load_model_or_demo(name: str = DEFAULT_MODEL, device: str | None = None) -> LoadedModel:
    """`load_model`, falling back to the bundled demo when the named model cannot be had; says why."""
    try:
        return load_model(name, device)
    except ModelUnavailable as err:
        if name == DEMO_NAME:
            raise
        loaded = load_model(DEMO_NAME, device)
        loaded.fallback_reason = (f"{err} Showing the bundled demo model instead (synthetic shapes: "
                                  f"circle, square, triangle, star, cross).")
        return loaded
