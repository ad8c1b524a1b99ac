"""The one result type every explanation method returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

# progress(done, total): called as steps complete, so a background job can show a bar
Progress = Callable[[int, int], None]


@dataclass
class Explanation:
    """A 2-D map over the whole model input (any resolution: layer grid, feature grid or pixels)
    and JSON-able facts about it (layer, target, target_value, convergence delta, ...)."""

    heatmap: np.ndarray
    info: dict = field(default_factory=dict)


class Computation(Protocol):
    """Shared signature of every method family: one computation may serve several methods
    (Grad-CAM and Grad-CAM++ come from one forward and one backward), so it returns a dict
    method name -> Explanation.

    loaded: core.models.loading.LoadedModel; pixel_values: [1, 3, H, W] on loaded.device; query: DETR
    query slot; params: the method's own parameters (JSON-able, part of the cache key)."""

    def __call__(self, loaded, pixel_values, query: int, params: dict,
                 progress: Progress | None = None) -> dict[str, Explanation]: ...


class Reporter:
    """A Progress that also takes early results: `partial(results)` is called by methods that refine
    their map as they go (Integrated Gradients at 9, 17, ... steps) with the same dict they will return,
    so a job can show a first map long before the last. Callers that only want a bar pass a plain function."""

    def __init__(self, bar: Progress | None = None, partial: Callable[[dict], None] | None = None):
        self.bar, self.partial = bar, partial

    def __call__(self, done: int, total: int) -> None:
        if self.bar:
            self.bar(done, total)


def partial_of(progress) -> Callable[[dict], None] | None:
    """The early-results callback a progress carries (a Reporter's `partial`), else None."""
    return getattr(progress, "partial", None)
