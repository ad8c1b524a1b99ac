"""Registry of explanation methods: a new method is one module in core/methods/ plus one entry here.

Each entry: method name -> label, family, computation and its declared parameters
(core.params.Param). Methods of one family share one computation and so one cache entry
(the CAM variants), and must declare the same parameters.
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
    quick: bool = False  # cheap (one pass): the page runs it as soon as a detection is picked
    help: str = ""       # one line for the method picker's tooltip

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
from core.methods.gradcam import PARAMS as CAM_PARAMS, VARIANTS, compute_cams  # noqa: E402

for _name, (_label, _tooltip) in VARIANTS.items():  # one family: one forward and one backward serve all
    register(Method(_name, _label, "cam", compute_cams, CAM_PARAMS, quick=True, help=_tooltip))

from core.methods.odam import PARAMS as ODAM_PARAMS, compute_odam  # noqa: E402

register(Method("odam", "ODAM", "odam", compute_odam, ODAM_PARAMS, quick=True,
                help="element-wise maps of the class score and of the four box coordinates, each scaled to its "
                     "own maximum, combined by maximum (one forward, one batched backward)."))

from core.methods.integrated_gradients import PARAMS as IG_PARAMS, compute_ig  # noqa: E402

register(Method("ig", "Integrated Gradients", "ig", compute_ig, IG_PARAMS,
                help="gradients along a path from a baseline image to this one; attributions add up to the "
                     "score change (completeness)."))

from core.methods.attention import PARAMS as ATTENTION_PARAMS, compute_attention  # noqa: E402
from core.methods.relevance import PARAMS as RELEVANCE_PARAMS, compute_relevance  # noqa: E402

register(Method("attention", "DETR attention", "attention", compute_attention, ATTENTION_PARAMS, quick=True,
                help="the decoder cross-attention of the detection's query: where it read the image."))
register(Method("relevance", "Attention relevance (Chefer et al.)", "relevance", compute_relevance,
                RELEVANCE_PARAMS, quick=True,
                help="attention weighted by its gradient, propagated through every layer (one backward)."))

from core.methods.drise import PARAMS as DRISE_PARAMS, compute_drise  # noqa: E402

register(Method("drise", "D-RISE (black-box)", "drise", compute_drise, DRISE_PARAMS,
                help="reads nothing inside the model: how much the detection survives when random parts of the "
                     "image are hidden (N masked forward passes)."))
