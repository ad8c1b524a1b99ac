"""Registry of explanation methods: a new method is one module in core/methods/ plus one entry here.

Each entry: method name -> label, family, computation, its declared parameters
(core.params.Param) and where it applies (`applies(loaded)`: None, or a one-line reason why not
for this model). Methods of one family share one computation and so one cache entry (the CAM
variants), and must declare the same parameters.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

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
    applies: Callable[[object], str | None] | None = None  # None: every model

    def reason(self, loaded) -> str | None:
        """None when the method applies to `loaded`, else one sentence saying why not."""
        return self.applies(loaded) if self.applies else None

    @property
    def defaults(self) -> dict:
        return P.defaults(self.params)

    def validate(self, values: dict | None, context: dict | None = None, strict: bool = True) -> dict:
        """The full, checked parameters (core.params.validate): what runs and what the cache key holds."""
        return P.validate(self.params, values, context, strict)


METHODS: dict[str, Method] = {}


def register(method: Method) -> None:
    METHODS[method.name] = method


def applicable(loaded) -> dict[str, str | None]:
    """Every registered method (and "mc_dropout", a view) -> None where it applies to `loaded`,
    else the one-line reason it does not: what the page and the CLI show instead of running it."""
    from core.models.mc_dropout import applies as mc_dropout_applies
    return {**{name: method.reason(loaded) for name, method in METHODS.items()}, "mc_dropout": mc_dropout_applies(loaded)}


def require(loaded, name: str) -> None:
    """Raise ParamError with the one-line reason when method `name` does not apply to `loaded`
    (the CLI's exit 2, the server's refusal before any job starts)."""
    reason = applicable(loaded).get(name, f"Unknown method {name!r}.")
    if reason is not None:
        raise P.ParamError(reason)


def context(loaded) -> dict:
    """The model-dependent bounds the declarations name (core.params: choices_from / max_from)."""
    from core.methods.gradcam import layer_choices
    config = loaded.model.config
    layers = [name for name, _ in layer_choices(loaded.model)] if _conv_backbone(loaded) is None else []
    return {"layers": layers,
            "max_query": config.num_queries - 1,
            "max_decoder_layer": config.decoder_layers - 1,
            "max_level": getattr(config, "num_feature_levels", 1) - 1}


# ---- where methods apply (one line each, the reason a person reads) ----------------------------

def _conv_backbone(loaded) -> str | None:
    from core.models.backbone import NoConvBackbone, find_backbone
    try:
        find_backbone(loaded.model)
    except NoConvBackbone:
        return f"{loaded.family.name}: the CAM family needs a convolutional backbone with stages, and this model has none."
    return None


def _softmax_head(loaded) -> str | None:
    if loaded.family.no_object:
        return None
    return (f"D-RISE's weights read a softmax head with a no-object class (objectness = 1 - p(no-object)); "
            f"{loaded.family.name} scores each class with a sigmoid, which it does not handle yet.")


def _dense(loaded) -> str | None:
    if loaded.family.attention == "dense":
        return None
    return (f"{loaded.family.name} has a deformable decoder: it samples a few points per query instead of attending "
            f"to every image token, so it has no attention map; use sampling points.")


def _deformable(loaded) -> str | None:
    if loaded.family.attention == "deformable":
        return None
    return (f"{loaded.family.name} has a dense-attention decoder (no sampling points); "
            f"use its decoder cross-attention.")


# Registry entries (imported here, after register exists, so method modules never import this one).
from core.methods.gradcam import PARAMS as CAM_PARAMS, VARIANTS, compute_cams  # noqa: E402

for _name, (_label, _tooltip) in VARIANTS.items():  # one family: one forward and one backward serve all
    register(Method(_name, _label, "cam", compute_cams, CAM_PARAMS, quick=True, help=_tooltip,
                    applies=_conv_backbone))

from core.methods.odam import PARAMS as ODAM_PARAMS, compute_odam  # noqa: E402

register(Method("odam", "ODAM", "odam", compute_odam, ODAM_PARAMS, quick=True,
                help="element-wise maps of the class score and of the four box coordinates, each scaled to its "
                     "own maximum, combined by maximum (one forward, one batched backward).",
                applies=_conv_backbone))

from core.methods.integrated_gradients import PARAMS as IG_PARAMS, compute_ig  # noqa: E402

register(Method("ig", "Integrated Gradients", "ig", compute_ig, IG_PARAMS,
                help="gradients along a path from a baseline image to this one; attributions add up to the "
                     "score change (completeness)."))

from core.methods.attention import PARAMS as ATTENTION_PARAMS, compute_attention  # noqa: E402
from core.methods.relevance import PARAMS as RELEVANCE_PARAMS, compute_relevance  # noqa: E402

register(Method("attention", "DETR attention", "attention", compute_attention, ATTENTION_PARAMS, quick=True,
                help="the decoder cross-attention of the detection's query: where it read the image.",
                applies=_dense))
register(Method("relevance", "Attention relevance (Chefer et al.)", "relevance", compute_relevance,
                RELEVANCE_PARAMS, quick=True,
                help="attention weighted by its gradient, propagated through every layer (one backward).",
                applies=_dense))

from core.methods.drise import PARAMS as DRISE_PARAMS, compute_drise  # noqa: E402

register(Method("drise", "D-RISE (black-box)", "drise", compute_drise, DRISE_PARAMS,
                help="reads nothing inside the model: how much the detection survives when random parts of the "
                     "image are hidden (N masked forward passes).", applies=_softmax_head))

from core.methods.sampling_points import PARAMS as SAMPLING_PARAMS, compute_sampling_points  # noqa: E402

register(Method("sampling_points", "Deformable sampling points", "sampling_points", compute_sampling_points,
                SAMPLING_PARAMS, quick=True, applies=_deformable,
                help="the points a deformable decoder sampled for the query, weighted by their attention."))
