"""Registry of explanation methods: a new method is one module in core/ plus one entry here.

Each entry: method name -> (family, computation, default params). Methods of one family share
one computation and so one cache entry (Grad-CAM and Grad-CAM++).
"""
from __future__ import annotations

from dataclasses import dataclass

from core.methods.explanation import Computation


@dataclass(frozen=True)
class Method:
    name: str
    label: str          # what a person sees
    family: str         # methods of one family come from one computation
    compute: Computation
    defaults: dict


METHODS: dict[str, Method] = {}


def register(method: Method) -> None:
    METHODS[method.name] = method


# Registry entries (imported here, after register exists, so method modules never import this one).
from core.methods.gradcam import compute_cams  # noqa: E402

register(Method("gradcam", "Grad-CAM", "cam", compute_cams, {"layer": None, "target": "class"}))
register(Method("gradcam++", "Grad-CAM++", "cam", compute_cams, {"layer": None, "target": "class"}))

from core.methods.integrated_gradients import DEFAULTS as IG_DEFAULTS, compute_ig  # noqa: E402

register(Method("ig", "Integrated Gradients", "ig", compute_ig, dict(IG_DEFAULTS)))

from core.methods.attention import compute_attention  # noqa: E402
from core.methods.relevance import compute_relevance  # noqa: E402

register(Method("attention", "DETR attention", "attention", compute_attention, {"layer": -1}))
register(Method("relevance", "Attention relevance (Chefer et al.)", "relevance", compute_relevance,
                {"target": "class"}))
