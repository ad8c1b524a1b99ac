"""Integrated Gradients baselines ("what the image is compared with"), built in the model's
normalised input space: "black" is normalise(0) per channel, not the tensor 0.

Every builder takes the normalised input x [1, 3, H, W] and the model's per-channel mean/std, and
returns a tensor like x. Noise baselines draw from their own seeded generator (on the CPU, so the
same seed gives the same baseline on every device and in every thread).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# name -> (label, one-line explanation): the tooltips of the baseline picker
BASELINES: dict[str, tuple[str, str]] = {
    "black": ("Black", "All pixels black: attributions say what the image adds over darkness; "
                       "dark objects get little credit."),
    "blur": ("Blurred input", "The image under a Gaussian blur (sigma in pixels): attributions show the "
                              "edges and texture the blur removes, not the overall colours."),
    "uniform": ("Uniform noise", "Independent random pixels, uniform over all colours (seeded): a baseline "
                                 "with no structure and no preferred colour."),
    "gaussian": ("Gaussian noise around the input", "The image plus random pixel noise (seeded): attributions "
                                                    "show what small perturbations of this very image change."),
    "mean": ("Mean colour (neutral)", "Every pixel the image's own average colour: attributions show what "
                                      "differs from a flat image of the same overall tone."),
    "expected": ("Expected gradients (multi-baseline)", "Averages gradient x (input - baseline) over random points "
                                                        "between the input and the other five baselines "
                                                        "(captum GradientShap): less tied to one baseline's bias."),
}

NOISE_STD = 0.2  # pixel units (0..1) of the "gaussian" baseline's noise


def _stats(mean, std, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    as_t = lambda v: torch.as_tensor(v, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)
    return as_t(mean), as_t(std)


def to_pixels(x: torch.Tensor, mean, std) -> torch.Tensor:
    """Normalised model input -> pixels in 0..1."""
    m, s = _stats(mean, std, x)
    return x * s + m


def to_model(pixels: torch.Tensor, mean, std) -> torch.Tensor:
    """Pixels in 0..1 -> normalised model input."""
    m, s = _stats(mean, std, pixels)
    return (pixels - m) / s


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def black(x, mean, std):
    return to_model(torch.zeros_like(x), mean, std)


def blur(x, mean, std, sigma: float = 8.0):
    """Separable Gaussian blur; done on x directly: normalising is per-channel affine and the kernel
    sums to 1 (replicate padding), so blur(normalise(p)) == normalise(blur(p))."""
    if sigma <= 0:
        return x.clone()
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    out = F.pad(x, (radius, radius, 0, 0), mode="replicate")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    out = F.pad(out, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def uniform(x, mean, std, seed: int = 0):
    noise = torch.rand(x.shape, generator=_generator(seed), dtype=x.dtype).to(x.device)
    return to_model(noise, mean, std)


def gaussian(x, mean, std, seed: int = 0):
    noise = torch.randn(x.shape, generator=_generator(seed), dtype=x.dtype).to(x.device)
    return to_model((to_pixels(x, mean, std) + NOISE_STD * noise).clamp(0, 1), mean, std)


def mean_colour(x, mean, std):
    """Per-channel average colour of the image (averaging commutes with the per-channel normalisation)."""
    return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()


def make_baseline(name: str, x: torch.Tensor, mean, std, sigma: float = 8.0, seed: int = 0) -> torch.Tensor:
    """One baseline like x ([1, 3, H, W]); for "expected", the [5, 3, H, W] stack of the other five
    (the distribution GradientShap draws from)."""
    if name == "black":
        return black(x, mean, std)
    if name == "blur":
        return blur(x, mean, std, sigma)
    if name == "uniform":
        return uniform(x, mean, std, seed)
    if name == "gaussian":
        return gaussian(x, mean, std, seed)
    if name == "mean":
        return mean_colour(x, mean, std)
    if name == "expected":
        return torch.cat([make_baseline(n, x, mean, std, sigma, seed) for n in BASELINES if n != "expected"])
    raise ValueError(f"unknown baseline {name!r}; choose one of {'|'.join(BASELINES)}")
