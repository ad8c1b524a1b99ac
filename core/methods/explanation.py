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
