"""Shareable links: a view encoded in the query string comes back identical, and a link's values
are validated like any other input (the same declarations, the model's bounds)."""
import pytest

from callbacks import links
from callbacks.explain import families
from components import ids
from core import params as P
from core.methods.registry import context

CONTEXT = {"layers": ["backbone.layer3", "backbone.layer4"], "longest_edge": 800, "max_query": 99,
           "max_decoder_layer": 5}
IMAGE = "0123456789abcdef0123"


def _fams():
    return {f["family"]: f for f in families()}


def test_a_view_survives_encode_decode_validate():
    fams = _fams()
    values = {ids.param_id("ig", "baseline"): "gaussian", ids.param_id("ig", "steps"): 16,
              ids.param_id("ig", "sigma"): 4.5, ids.param_id("ig", "seed"): 7, ids.param_id("ig", "resolution"): None,
              ids.param_id("ig", "samples"): 3, ids.param_id("cam", "layer"): "backbone.layer3"}
    state = links.view_state({"image_id": IMAGE}, 0.55, 12, "ig", None, values, "cx", list(fams.values()))
    search = links.encode(state)
    assert "data" not in search and len(search) < 200  # an id and a few numbers, no image data
    fields = links.decode(search)
    assert fields["image"] == IMAGE and fields["threshold"] == "0.55" and fields["query"] == "12"
    assert "layer" not in fields  # only the shown family's parameters
    got = links.validate(fields, list(fams.values()), CONTEXT)
    assert got == {"image_id": IMAGE, "threshold": 0.55, "query": 12, "family": "ig", "variant": "ig",
                   "params": {"baseline": "gaussian", "steps": 16, "sigma": 4.5, "seed": 7, "samples": 3},
                   "target": "cx"}


def test_a_variant_and_a_model_dependent_choice_come_back():
    fams = list(_fams().values())
    state = links.view_state({"image_id": IMAGE}, 0.7, 3, "cam", "gradcam++",
                             {ids.param_id("cam", "layer"): "backbone.layer4"}, "class", fams)
    got = links.validate(links.decode(links.encode(state)), fams, CONTEXT)
    assert (got["family"], got["variant"], got["params"], got["target"]) == (
        "cam", "gradcam++", {"layer": "backbone.layer4"}, "class")


@pytest.mark.parametrize("search, says", [
    ("?image=xyz&threshold=0.5", "image id"),
    ("?image=" + IMAGE + "&threshold=5", "Confidence Threshold must be 0..1"),
    ("?image=" + IMAGE + "&threshold=0.5&query=100", "Query must be 0..99"),
    ("?image=" + IMAGE + "&method=ig&steps=5000", "Steps must be 1..1024"),
    ("?image=" + IMAGE + "&method=ig&baseline=<script>", "Baseline must be one of"),
    ("?image=" + IMAGE + "&method=cam&layer=backbone.layer1", "Layer must be one of"),
    ("?image=" + IMAGE + "&method=cam&variant=ig", "variant 'ig' is not one of"),
    ("?image=" + IMAGE + "&method=nope", "method 'nope'"),
    ("?image=" + IMAGE + "&method=cam&steps=32", "Unknown parameter(s) in the link: steps"),
])
def test_out_of_range_or_forged_links_are_refused_with_a_sentence(search, says):
    with pytest.raises(P.ParamError, match=None) as err:
        links.validate(links.decode(search), list(_fams().values()), CONTEXT)
    assert says in str(err.value)


def test_no_parameter_name_collides_with_the_links_own_fields():
    for f in families():
        assert not {p.name for p in f["params"]} & set(links.RESERVED), f["family"]


def test_the_models_context_has_what_links_check(tiny):
    ctx = context(tiny)
    fields = links.decode(f"?image={IMAGE}&threshold=0.3&query={ctx['max_query']}&method=attention")
    assert links.validate(fields, families(), ctx)["query"] == ctx["max_query"]
    with pytest.raises(P.ParamError):
        links.validate({**fields, "query": str(ctx["max_query"] + 1)}, families(), ctx)
