"""Registry of explanation methods: a new method is one module in core/methods/ plus one entry here.

Each entry: method name -> label, family, computation and its declared parameters
(core.params.Param). Methods of one family share one computation and so one cache entry
(Grad-CAM and Grad-CAM++), and must declare the same parameters.
"""
from __future__ import annotations

from dataclasses import dataclass

from core import params as P
from core.methods.explanation import Computation


@dataclass(frozen=True)
class Method:
    name: str
    label: str          # what a person sees
    family: str         # methods of one family come from one computation
    compute: Computation
    params: tuple[P.Param, ...] = ()

    @property
    def defaults(self) -> dict:
        return P.defaults(self.params)

    def validate(self, values: dict | None, context: dict | None = None, strict: bool = True) -> dict:
        """The full, checked parameters (core.params.validate): what runs and what the cache key holds."""
        return P.validate(self.params, values, context, strict)


METHODS: dict[str, Method] = {}


def register(method: Method) -> None:
    METHODS[method.name] = method


def context(loaded) -> dict:
    """The model-dependent bounds the declarations name (core.params: choices_from / max_from)."""
    from core.methods.gradcam import layer_choices
    config = loaded.model.config
    return {"layers": [name for name, _ in layer_choices(loaded.model)],
            "longest_edge": loaded.preprocess.longest_edge,
            "max_query": config.num_queries - 1,
            "max_decoder_layer": config.decoder_layers - 1}


# Registry entries (imported here, after register exists, so method modules never import this one).
from core.methods.gradcam import PARAMS as CAM_PARAMS, compute_cams  # noqa: E402

register(Method("gradcam", "Grad-CAM", "cam", compute_cams, CAM_PARAMS))
register(Method("gradcam++", "Grad-CAM++", "cam", compute_cams, CAM_PARAMS))

from core.methods.integrated_gradients import PARAMS as IG_PARAMS, compute_ig  # noqa: E402

register(Method("ig", "Integrated Gradients", "ig", compute_ig, IG_PARAMS))

from core.methods.attention import PARAMS as ATTENTION_PARAMS, compute_attention  # noqa: E402
from core.methods.relevance import PARAMS as RELEVANCE_PARAMS, compute_relevance  # noqa: E402

register(Method("attention", "DETR attention", "attention", compute_attention, ATTENTION_PARAMS))
register(Method("relevance", "Attention relevance (Chefer et al.)", "relevance", compute_relevance,
                RELEVANCE_PARAMS))
