"""Integrated Gradients for one DETR detection: captum's IntegratedGradients rule (Gauss-Legendre
points and weights), evaluated coarse to fine so a job can show early maps (`_integrate`; the final
map equals captum's, tested); captum's GradientShap for the multi-baseline "expected" variant.

F(x) is the detection's explained score (core.methods.targets.target_score, class fixed from the input
as given). Completeness: sum(attributions) = F(x) - F(baseline) + delta (captum's convergence
delta); relative_delta = |delta| / |F(x) - F(baseline)| says how far from complete
the step count leaves the integral (None when F(x) == F(baseline): nothing to attribute).

"expected" (captum GradientShap over the other five baselines): each of `samples` draws picks a
baseline b_i and a point between b_i and x; captum's delta for draw i is that one draw's
completeness error. We report delta = mean_i delta_i, which equals
sum(attributions) - (F(x) - mean_i F(b_i)); so f_baseline is mean_i F(b_i) over the drawn
baselines, and relative_delta is the Monte-Carlo error of the averaged attributions relative to
F(x) - f_baseline: it shrinks with more samples (roughly 1/sqrt), not with steps.

Thread safety: the shared model is only called forward; gradients are taken with
torch.autograd.grad with respect to the inputs (parameters stay frozen, no .grad written).
"""
from __future__ import annotations

import threading
from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F

from core import memory, params as P
from core.methods.baselines import BASELINES, make_baseline
from core.methods.explanation import Explanation, Progress, partial_of
from core.methods.targets import predicted_class, target_score
from core.models import backbone

PARAMS = (
    P.Param("baseline", "choice", "blur", "What 'no signal' looks like: the path of Integrated Gradients starts there.",
            label="Baseline", choices=tuple(BASELINES)),
    # 28 steps: maps at rank correlation >= 0.91 with 32 steps' on every scene (bench/ig_fidelity.py: 50 demo
    # scenes, min 0.941 per pixel, 0.914 per cell; bundled v2 demo 0.939 / 0.934; R50 0.994) at 0.85-0.90x
    # the time; 24 fell to 0.897 on the v1 demo. (On R50 at 800 px on 2 cores 32 steps took 66 s, over the minute a person waits.)
    P.Param("steps", "int", 28, "Points on the path from baseline to image (each a forward and a backward pass); "
            "'auto' raises 50 -> 100 -> 200 -> 300 until the attributions add up to the score change within 5%.",
            label="Steps", min=1, max=1024, auto=True, presets=(8, 16, 28, 32, 50, 100, 200, 300)),
    P.Param("sigma", "float", 8.0, "Gaussian blur radius of the blurred baseline, in pixels of IG's input.",
            label="Blur sigma (px)", min=0.5, max=64.0),
    P.SEED,
    # no cap by default: IG at 0.6x the input's size ranked pixels unlike the full map (rank correlation
    # 0.10 per pixel, 0.29 per 16 x 16 cell, trained 256 px model; README "Real model on a 2-core CPU")
    P.Param("resolution", "int", None, "Largest short side (px) at which IG runs: a bigger model input is scaled "
            "down to it (cost grows with pixels), a smaller one runs as it is; empty: the model's own input size.",
            label="IG input size (max short side, px)", min=32, max=1333, optional=True),
    P.TARGET,
    P.Param("samples", "int", 8, "Draws of the expected-gradients baseline (multi-baseline only).",
            label="Expected-gradients samples", min=1, max=64),
)
DEFAULTS = P.defaults(PARAMS)
AUTO_STEPS = (50, 100, 200, 300)
# early maps at these many path points (R50 at 800 px: the 5-point map at 13.7x a forward, all 28 at 55x)
LEVELS = (5, 9, 17, 33, 65)
AUTO_TOLERANCE = 0.05
# Images evaluated at once, bounded by pixels: activation memory grows with batch x pixels
# (~1.8 GiB per megapixel with gradients for DETR-ResNet-50 on CPU). At 2 M pixels IG's process
# peaked at 3.4 GiB RSS (R50 architecture, 400 px: 9 images a chunk); at 0.9 M, 2.0 GiB and no
# slower (4 images; 1 at 800 x 1066), bench/cpu_r50.py on 2 cores. The 128 px demo still runs
# 54 steps at once, where batching is ~5x faster than one step at a time.
PIXELS_PER_CHUNK = 900_000
# where a job saves memory: DETR-R50 at 800 px, IG's live memory 1621 MiB with no stage recomputed, 1284
# with two, for 14% more time on 2 cores; the same map (bench/memory.py; RSS peaks vary more than that)
RECOMPUTED_STAGES = 2
# GradientShap draws with numpy's global generator: seeding it is only reproducible if two
# "expected" computations do not interleave.
_NP_RANDOM = threading.Lock()


def chunk_size(shape, count: int) -> int:
    """Images per forward/backward chunk for inputs of `shape` [.., H, W], at most `count`."""
    return max(1, min(count, PIXELS_PER_CHUNK // (shape[-2] * shape[-1])))


def resize(pixel_values: torch.Tensor, resolution: int | None) -> torch.Tensor:
    """Bilinear (antialiased) downscale so the shortest side is at most `resolution` px (None: unchanged).
    Never upscales: a larger input would only cost more, with nothing the model could see in it."""
    h, w = pixel_values.shape[-2:]
    if not resolution or min(h, w) <= int(resolution):
        return pixel_values
    scale = int(resolution) / min(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return F.interpolate(pixel_values, size=size, mode="bilinear", align_corners=False, antialias=True)


class _Counted:
    """The score function captum calls, counting evaluated images to report progress."""

    def __init__(self, score, total: int, progress: Progress | None):
        self.score, self.total, self.progress, self.done = score, total, progress, 0

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        out = self.score(batch)
        self.done += batch.shape[0]
        if self.progress:
            self.progress(min(self.done, self.total), self.total)
        return out


def gauss_legendre(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """captum's default rule ("gausslegendre"): path points alphas in (0, 1) and their weights (sum 1)."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    return 0.5 * (1 + nodes), 0.5 * weights


def refinement_levels(steps: int) -> list[np.ndarray]:
    """Nested subsets of the `steps` Gauss-Legendre points (indices), coarse to fine, the last all of
    them: 5, 9, 17, 33, ... evenly spaced indices (k - 1 doubling keeps them nested) while a level has
    at most 60% of the points. Evaluating the points level by level costs exactly the full run."""
    sizes = [k for k in LEVELS if k <= 0.6 * steps]
    return [np.round(np.linspace(0, steps - 1, k)).astype(int) for k in sizes] + [np.arange(steps)]


def interpolatory_weights(alphas: np.ndarray) -> np.ndarray:
    """Weights integrating, over [0, 1], every polynomial of degree < len(alphas) exactly at these
    points: an early level's own quadrature (positive for these Chebyshev-like subsets)."""
    vander = np.polynomial.legendre.legvander(2 * alphas - 1, len(alphas) - 1)
    unit = np.zeros(len(alphas))
    unit[0] = 1.0  # integral over [0, 1] of P_m(2a - 1) is 1 for m = 0, else 0
    return np.linalg.solve(vander.T, unit)


def _relative(delta: float, f_input: float, f_baseline: float) -> float | None:
    gap = abs(f_input - f_baseline)
    return abs(delta) / gap if gap > 0 else None


def compute_ig(loaded, pixel_values: torch.Tensor, query: int, params: dict,
               progress: Progress | None = None) -> dict[str, Explanation]:
    """Integrated Gradients of detection `query` -> {"ig": Explanation}.

    params: baseline (black|blur|uniform|gaussian|mean|expected), steps (int or "auto"), sigma
    (blur, px at IG's resolution), seed (noise baselines, expected draws), resolution (shortest
    side for IG, None = as given), target (core.methods.targets.TARGETS), samples (expected).
    Optional "internal_batch_size" ("auto" = chunk_size, None = all at once, int) is for benchmarks.
    The heatmap is the attributions summed over colour channels, at IG's input resolution.
    """
    p = {**DEFAULTS, **params}
    if p["baseline"] not in BASELINES:
        raise ValueError(f"unknown baseline {p['baseline']!r}; choose one of {'|'.join(BASELINES)}")
    model, pre = loaded.model, loaded.preprocess
    with torch.inference_mode():
        class_index = predicted_class(model(pixel_values=pixel_values).logits, query, loaded)
    x = resize(pixel_values, p["resolution"])

    def score(batch):  # channels-last input: the backbone's convs run faster on CPU (bench/compare.py)
        return target_score(model(pixel_values=batch.contiguous(memory_format=torch.channels_last)), query,
                            p["target"], class_index)

    baselines = make_baseline(p["baseline"], x, pre.mean, pre.std, sigma=float(p["sigma"]), seed=int(p["seed"]))
    with torch.inference_mode():
        f_all = score(torch.cat([x, baselines]))
    f_input = float(f_all[0])
    info = {"baseline": p["baseline"], "target": p["target"], "class_index": class_index, "f_input": f_input,
            "shape": list(x.shape[-2:])}
    if p["baseline"] == "expected":
        attributions = _expected(score, x, baselines, p, progress, info)
        info["f_references"] = {n: float(f) for n, f in zip([n for n in BASELINES if n != "expected"], f_all[1:])}
    else:
        info["f_baseline"] = float(f_all[1])
        with _saving_stages(model):
            attributions = _integrate(score, x, baselines, p, progress, info)
    heatmap = attributions[0].sum(0).detach().cpu().numpy()
    return {"ig": Explanation(heatmap=heatmap, info=info)}


def _saving_stages(model):
    """Where a job saves memory (core.memory.saving: Compare, whose peak IG's backward is), the first
    RECOMPUTED_STAGES backbone stages are run again in each backward instead of keeping their activations."""
    if not memory.saving():
        return nullcontext()
    try:
        return memory.recomputed([stage for _, stage in backbone.stages(model)[:RECOMPUTED_STAGES]])
    except backbone.NoConvBackbone:
        return nullcontext()


def _integrate(score, x, baseline, p, progress, info) -> torch.Tensor:
    """Integrated Gradients with captum's Gauss-Legendre rule, its points evaluated coarse to fine
    (refinement_levels): after each level the early map (that level's own quadrature over the points
    so far) and its completeness go to `partial_of(progress)`; the last level is the plain rule over
    all points, so the final map is the one a single run gives, at the same cost. The completeness
    delta needs no extra forwards: F(x) and F(baseline) are known."""
    auto = p["steps"] == "auto"
    schedule = AUTO_STEPS if auto else (int(p["steps"]),)
    counted = _Counted(score, sum(schedule), progress)
    partial = partial_of(progress)
    batch = p.get("internal_batch_size", "auto")
    gap = info["f_input"] - info["f_baseline"]
    diff = x - baseline
    tried = []
    for steps in schedule:
        alphas, weights = gauss_legendre(steps)
        levels = refinement_levels(steps) if partial and not auto else [np.arange(steps)]
        # one row of weights per level over all points (0 outside the level); the last row is the rule's own
        table = np.zeros((len(levels), steps))
        for row, idx in zip(table, levels[:-1]):
            row[idx] = interpolatory_weights(alphas[idx])
        table[-1] = weights
        table = torch.as_tensor(table, dtype=x.dtype, device=x.device)
        sums = torch.zeros((len(levels), *x.shape[1:]), dtype=x.dtype, device=x.device)
        seen = np.zeros(0, dtype=int)
        size = steps if batch is None else chunk_size(x.shape, steps) if batch == "auto" else int(batch)
        for level, idx in enumerate(levels):
            new = np.setdiff1d(idx, seen)  # sorted: the points this level adds
            for start in range(0, len(new), size):
                part = new[start:start + size]
                a = torch.as_tensor(alphas[part], dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)
                with torch.enable_grad():
                    path = (baseline + a * diff).requires_grad_(True)
                    grads, = torch.autograd.grad(counted(path).sum(), path)
                sums[level:] += torch.einsum("lc,c...->l...", table[level:, part], grads)
            seen = idx
            attributions = sums[level:level + 1] * diff
            delta = float(attributions.sum()) - gap
            if level < len(levels) - 1:
                partial({"ig": Explanation(heatmap=attributions[0].sum(0).cpu().numpy(), info={
                    **info, "steps": len(idx), "steps_final": steps, "delta": delta,
                    "relative_delta": _relative(delta, info["f_input"], info["f_baseline"]), "partial": True})})
        relative = _relative(delta, info["f_input"], info["f_baseline"])
        tried.append({"steps": steps, "delta": delta, "relative_delta": relative})
        if relative is not None and relative <= AUTO_TOLERANCE:
            break
    if progress and counted.done < counted.total:
        progress(counted.total, counted.total)  # auto stopped early
    info.update(steps=tried[-1]["steps"], delta=tried[-1]["delta"], relative_delta=tried[-1]["relative_delta"])
    if auto:
        info["steps_tried"] = tried
        info["converged"] = tried[-1]["relative_delta"] is not None and tried[-1]["relative_delta"] <= AUTO_TOLERANCE
    return attributions


def _expected(score, x, references, p, progress, info) -> torch.Tensor:
    from captum.attr import GradientShap
    samples = int(p["samples"])
    counted = _Counted(score, 3 * samples, progress)  # per draw: one gradient + captum's two delta forwards
    gs = GradientShap(counted)
    batch = p.get("internal_batch_size", "auto")
    size = chunk_size(x.shape, samples) if batch == "auto" else (batch or samples)
    total, deltas = torch.zeros_like(x), []
    with _NP_RANDOM:
        state = np.random.get_state()
        np.random.seed(int(p["seed"]))
        try:
            for start in range(0, samples, size):
                n = min(size, samples - start)
                attributions, delta = gs.attribute(x, baselines=references, n_samples=n, stdevs=0.0,
                                                   return_convergence_delta=True)
                total += attributions.detach() * n
                deltas.append(delta.detach())
        finally:
            np.random.set_state(state)
    attributions = total / samples
    delta = float(torch.cat(deltas).mean())
    # mean_i delta_i = sum(attr) - (F(x) - mean_i F(b_i)): the drawn baselines' mean score
    info["f_baseline"] = info["f_input"] - float(attributions.sum()) + delta
    info.update(steps=None, samples=samples, delta=delta,
                relative_delta=_relative(delta, info["f_input"], info["f_baseline"]))
    return attributions
