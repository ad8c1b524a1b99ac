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


MAX_BYTES = 20 * 1024 * 1024   # size cap of an uploaded file (configurable)
MAX_PIXELS = 40_000_000        # pixel cap: refuses decompression bombs before decoding
MIN_SIDE = 16                  # smaller images carry too little for a detector
# the only Pillow plugins tried (no EPS/PS/PDF: EPS runs Ghostscript where it is installed). The JPEG
# plugin also opens JPEGs carrying extra pictures (MPO, from phone cameras).
FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")
SUPPORTED = "PNG, JPEG, WebP, BMP, TIFF or GIF"
# what a refused file probably is, by its first bytes (only to name it in the message)
_SIGNATURES = ((b"%!PS", "PostScript/EPS"), (b"\xc5\xd0\xd3\xc6", "EPS"), (b"%PDF", "PDF"), (b"<svg", "SVG"),
               (b"<?xml", "SVG/XML"), (b"\x00\x00\x00\x0cjP", "JPEG 2000"), (b"\xff\x4f\xff\x51", "JPEG 2000"),
               (b"\x00\x00\x01\x00", "ICO"), (b"icns", "ICNS"), (b"8BPS", "Photoshop"), (b"gimp xcf", "GIMP"),
               (b"qoif", "QOI"), (b"DDS ", "DDS"))


class ImageError(ValueError):
    """An unusable image; the message is meant for the person who sent it."""


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB: 16/32-bit rescaled, transparency composited on white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I") and arr.max() > 255 else max(float(arr.max()), 1.0)
        if image.mode == "F":
            arr = arr - arr.min()
            top = max(float(arr.max()), 1e-12)
        image = Image.fromarray(np.clip(arr / top * 255.0, 0, 255).astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def decode_image(data: bytes, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Bytes of an uploaded file -> RGB image with EXIF orientation applied, or ImageError."""
    from PIL import ImageOps, UnidentifiedImageError

    if not data:
        raise ImageError("The file is empty.")
    if len(data) > max_bytes:
        raise ImageError(f"The file is {len(data) / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB.")
    import io
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        kind = next((name for magic, name in _SIGNATURES if data.lstrip()[:len(magic)] == magic), "unknown")
        raise ImageError(f"This file is not an image that can be read: not a supported image format ({kind}); "
                         f"use {SUPPORTED}.")
    except Exception as err:  # noqa: BLE001 - PIL raises many kinds on hostile input
        raise ImageError(f"The image could not be opened: {err}.")
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(f"The image is {width}x{height} = {width * height / 1e6:.0f} megapixels; "
                         f"the limit is {max_pixels / 1e6:.0f} megapixels.")
    if min(width, height) < MIN_SIDE:
        raise ImageError(f"The image is {width}x{height} pixels; it needs at least {MIN_SIDE} px on each side.")
    try:
        image.seek(0)  # animated GIF/WebP/TIFF: the first frame
        image.load()
        image = ImageOps.exif_transpose(image)
        return _to_rgb(image)
    except Exception:  # noqa: BLE001
        raise ImageError("The image file is truncated or corrupt and could not be decoded.")


def image_id(image: Image.Image) -> str:
    """Content hash of the decoded pixels: the same picture gets the same id (and cached results)."""
    import hashlib
    digest = hashlib.sha256(f"{image.size}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()[:32]


def data_url(image: Image.Image, max_side: int = 1024) -> tuple[str, int, int]:
    """A downscaled JPEG data URL for display (keeps what the browser receives small) and its size."""
    import base64
    import io
    thumb = image.copy()
    thumb.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    thumb.save(buf, "JPEG", quality=88)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode(), thumb.width, thumb.height


def fit_for_model(image: Image.Image, longest_edge: int) -> Image.Image:
    """The image with its longest side at most 2 x the model's longest edge (what the model reads,
    with room for zooming in the page): a huge upload is not kept and cached at full size."""
    limit = 2 * int(longest_edge)
    if max(image.size) <= limit:
        return image
    scale = limit / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.LANCZOS)
