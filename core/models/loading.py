"""Loading a DETR-family detector (hub id, local `save_pretrained` directory, or the bundled demo)
through AutoModelForObjectDetection, and its own pre-processing (read from its AutoImageProcessor)."""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, AutoModelForObjectDetection, PreTrainedModel

from core.images import IMAGENET_MEAN, IMAGENET_STD
from core.models.families import NO_TIMM_REVISIONS, Family, UnsupportedModel, family_of

DEFAULT_MODEL = "facebook/detr-resnet-50"
DEMO_NAME = "demo"
DEMO_DIR = Path(__file__).resolve().parents[2] / "models" / "demo-detr"
HUB_HOST = ("huggingface.co", 443)


class ModelUnavailable(RuntimeError):
    """The named model is neither local nor cached, and the hub cannot be reached."""


@dataclass(frozen=True)
class Preprocess:
    """A model's own resize and normalisation, read from its image processor.

    Resize: DETR-style (shortest side to `shortest_edge`, capped so the longest is <= `longest_edge`),
    or to a fixed `fixed_size` (height, width) as RT-DETR and D-FINE do. Pixels are rescaled to [0, 1]
    and then normalised with `mean`/`std`; a processor that does not normalise has mean 0 and std 1,
    so every caller that maps between pixels and model input (baselines, faithfulness) stays right.
    """

    shortest_edge: int = 800
    longest_edge: int = 1333
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    fixed_size: tuple[int, int] | None = None

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after resizing; an image already at the target size is left as it is."""
        if self.fixed_size is not None:
            return self.fixed_size[1], self.fixed_size[0]
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
        """PIL image -> [1, 3, H, W] model-input tensor (CPU)."""
        size = self.target_size(*image.size)
        if size != image.size:
            image = image.resize(size, Image.BILINEAR)
        x = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
        x = (x - torch.tensor(self.mean)[:, None, None]) / torch.tensor(self.std)[:, None, None]
        return x[None]

    @classmethod
    def from_config(cls, config: dict | None) -> "Preprocess":
        """From an image processor's settings (`preprocessor_config.json` or `processor.to_dict()`)."""
        if not config:
            return cls()
        size = config.get("size") or {}
        normalise = config.get("do_normalize", True)
        mean = tuple(config.get("image_mean") or IMAGENET_MEAN) if normalise else (0.0, 0.0, 0.0)
        std = tuple(config.get("image_std") or IMAGENET_STD) if normalise else (1.0, 1.0, 1.0)
        if size.get("height") and size.get("width"):
            h, w = int(size["height"]), int(size["width"])
            return cls(shortest_edge=min(h, w), longest_edge=max(h, w), mean=mean, std=std, fixed_size=(h, w))
        return cls(shortest_edge=int(size.get("shortest_edge", 800)), longest_edge=int(size.get("longest_edge", 1333)),
                   mean=mean, std=std)


@dataclass
class LoadedModel:
    """A DETR-family detector ready to serve: eval mode, parameters frozen, eager attention (so attention maps exist).

    The model object is shared by every request of a process: nothing may change its state
    (train mode, dropout rates, requires_grad); explainers take gradients with respect to
    inputs and activations via `torch.autograd.grad`, never via `.grad` on parameters.
    """

    model: PreTrainedModel  # an AutoModelForObjectDetection: DetrForObjectDetection, RTDetrForObjectDetection, ...
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
    def family(self) -> Family:
        return family_of(self.model)

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


def _needs_timm(config) -> bool:
    """A timm backbone (transformers 5 turns an old `use_timm_backbone: true` into a "timm_backbone"
    backbone config) while timm is not installed."""
    backbone = getattr(getattr(config, "backbone_config", None), "model_type", None)
    if backbone != "timm_backbone" and not getattr(config, "use_timm_backbone", False):
        return False
    try:
        import timm  # noqa: F401
        return False
    except ImportError:
        return True


def _image_processor(source: str, model_type: str, **kwargs) -> Preprocess:
    """The model's own pre-processing: its saved image processor, else its family's processor defaults."""
    try:
        processor = AutoImageProcessor.from_pretrained(source, **kwargs)
    except (OSError, ValueError):  # no preprocessor_config.json: the family's processor with its defaults
        from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING_NAMES
        import transformers
        names = IMAGE_PROCESSOR_MAPPING_NAMES.get(model_type) or {}
        cls = getattr(transformers, names.get("pil") or "", None)
        return Preprocess.from_config(cls().to_dict()) if cls else Preprocess()
    return Preprocess.from_config(processor.to_dict())


def _from_pretrained(source: str, **kwargs) -> tuple[PreTrainedModel, Preprocess]:
    """Model and pre-processing through the Auto classes. Raises ModelUnavailable for a checkpoint
    whose backbone needs timm (not installed: it would pull torchvision, see README) and for a
    model type outside the DETR family (core.models.families)."""
    config = AutoConfig.from_pretrained(source, **kwargs)
    try:
        family_of(config)
    except UnsupportedModel as err:
        raise ModelUnavailable(str(err)) from None
    if _needs_timm(config):
        raise ModelUnavailable(
            f"Model '{source}' uses a timm backbone (use_timm_backbone=True) and timm is not installed; "
            f"install timm with the pinned torch, or use a checkpoint with transformers' own backbone.")
    model = AutoModelForObjectDetection.from_pretrained(source, attn_implementation="eager", **kwargs)
    return model, _image_processor(source, config.model_type, **kwargs)


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
        revision = NO_TIMM_REVISIONS.get(name)  # only where the hub repository has that variant
        try:
            model, pre = _from_pretrained(name, revision=revision, local_files_only=True)
        except OSError:
            if not _hub_reachable():
                raise ModelUnavailable(
                    f"Model '{name}' is not in the local cache and the Hugging Face hub cannot be reached. "
                    f"Connect to the internet once to download it (it is cached afterwards), or pass a local "
                    f"directory written by save_pretrained, or use --model demo.") from None
            model, pre = _from_pretrained(name, revision=revision)
    return LoadedModel(model=ready(model, device), name=name, preprocess=pre)


def ready(model: PreTrainedModel, device: str | None = None) -> PreTrainedModel:
    """A loaded model as every pass expects it: eval mode, no parameter gradients, on `device`, and
    channels_last convolution weights (the same results; 0.84x a forward and 0.89x a Grad-CAM pass
    on the CPU, bench/cpu_precision.py; the passes feed channels_last inputs too)."""
    return model.eval().requires_grad_(False).to(device or default_device(), memory_format=torch.channels_last)


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
