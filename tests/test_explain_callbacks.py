"""The explanation card's callbacks called directly: generated from the registry and the parameter
declarations, forged values refused before any model run, variant switches are cache lookups."""
import dataclasses
from contextvars import copy_context

import numpy as np
import pytest

from callbacks import explain as cb
from components import ids
from components.explain import explain_controls
from app.dash_adapter import set_context
from core import params as P, service
from core.methods import registry
from core.methods.gradcam import DEFAULT_VARIANT


def _run(fams, family, values=None, variants=None, target="class", query=1, image=None, set_progress=None):
    def run():
        set_context(dict(triggered_inputs=[{"prop_id": "explain.n_clicks", "value": 1}]))
        return cb.run_explanation(set_progress or (lambda p: None), 1, query, family, variants or {}, values or {},
                                  target, image, fams)
    return copy_context().run(run)


def test_the_card_follows_the_registry():
    fams = {f["family"]: f for f in cb.families()}
    assert [name for name, _, _ in fams["cam"]["methods"]][:2] == ["gradcam", "gradcam++"]
    assert [p.name for p in fams["ig"]["params"]] == ["baseline", "steps", "sigma", "seed", "resolution", "samples"]
    assert fams["ig"]["target"] and not fams["attention"]["target"] and fams["cam"]["quick"] and not fams["ig"]["quick"]


def test_a_new_method_needs_no_edit_here(monkeypatch):
    """One module + one registry line: the card gets its entry and one control per declared parameter."""
    toy = registry.Method("toy", "Toy map", "toy", lambda *a, **k: {}, (P.Param("width", "int", 3, "How wide.",
                                                                               label="Width", min=1, max=9),))
    monkeypatch.setitem(registry.METHODS, "toy", toy)
    fams = cb.families()
    assert fams[-1]["family"] == "toy" and fams[-1]["label"] == "Toy map"
    card = explain_controls(fams, P.TARGET, {})
    width = _find(card, ids.param_id("toy", "width"))
    assert (width.min, width.max, width.value) == (1, 9, 3)
    assert any(o["value"] == "toy" for o in _find(card, ids.METHOD).options)


def _find(component, wanted):
    if getattr(component, "id", None) == wanted:
        return component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, (list, tuple)) else [children] if children is not None else []:
        found = _find(child, wanted)
        if found is not None:
            return found
    return None


def test_controls_take_ranges_and_defaults_from_the_declaration():
    card = explain_controls(cb.families(), P.TARGET, cb.control_options({"layers": [("a", "layer a")]}))
    sigma = _find(card, ids.param_id("ig", "sigma"))
    assert (sigma.min, sigma.max, sigma.value) == (0.5, 64.0, 8.0)
    steps = _find(card, ids.IG_STEPS)
    assert steps.value == 28 and {o["value"] for o in steps.options} >= {8, 28, 32, 300, "auto"}
    assert [o["value"] for o in _find(card, ids.CAM_LAYER).options] == ["a"]


@pytest.mark.parametrize("values, says", [
    ({ids.IG_STEPS: 10**6}, "Steps must be 1..1024 or auto"),
    ({ids.param_id("ig", "baseline"): "rm -rf"}, "Baseline must be one of black"),
    ({ids.IG_RESOLUTION: 20000}, "must be 32..1333"),
    ({ids.param_id("ig", "sigma"): float("nan")}, "Blur sigma (px) must be"),
])
def test_forged_values_are_refused_before_any_model_run(served, rgb_image, monkeypatch, values, says):
    key = service.put_image(rgb_image)
    image = {"image_id": key, "width": 64, "height": 48}
    spy = dataclasses.replace(registry.METHODS["ig"], compute=lambda *a, **k: pytest.fail("the model ran"))
    monkeypatch.setitem(registry.METHODS, "ig", spy)
    ref = _run(cb.families(), "ig", values, image=image)
    assert says in ref["error"] and ref["method"] == "ig"
    assert service.model_calls() == 0


def test_forged_query_and_target_are_refused(served, rgb_image):
    image = {"image_id": service.put_image(rgb_image), "width": 64, "height": 48}
    assert "Query must be 0..4" in _run(cb.families(), "cam", query=99, image=image)["error"]
    assert "Target must be one of class" in _run(cb.families(), "cam", target="__class__", image=image)["error"]


def test_switching_the_variant_is_a_lookup(served, rgb_image, monkeypatch):
    key = service.put_image(rgb_image)
    image = {"image_id": key, "width": 64, "height": 48}
    ref = _run(cb.families(), "cam", image=image)
    assert "error" not in ref and ref["method"] == DEFAULT_VARIANT  # the measured default, not Grad-CAM
    calls = service.model_calls()
    first = cb.draw_explanation(ref, "gradcam", 0.5, False, image, None)
    second = cb.draw_explanation(ref, "gradcam++", 0.5, False, image, None)
    assert service.model_calls() == calls
    assert "Grad-CAM++ for 1" in str(second[2]) and "Grad-CAM for 1" in str(first[2])
    z = [np.asarray(f[0].data[-1].z) for f in (first, second)]
    assert not np.array_equal(z[0], z[1])


def test_a_failing_method_shows_a_sentence_with_an_error_id_and_logs_the_traceback(served, rgb_image, monkeypatch,
                                                                                 caplog):
    def broken(*_args, **_kwargs):
        raise RuntimeError("secret internals")
    monkeypatch.setitem(registry.METHODS, "attention", dataclasses.replace(registry.METHODS["attention"],
                                                                           compute=broken))
    image = {"image_id": service.put_image(rgb_image), "width": 64, "height": 48}
    ref = _run(cb.families(), "attention", image=image)
    assert ref["error"].startswith("The explanation failed because of an error on the server (error id ")
    assert "secret" not in ref["error"]
    error_id = ref["error"].split("error id ")[1][:8]
    record = next(r for r in caplog.records if error_id in r.getMessage())
    assert record.levelname == "ERROR" and "secret internals" in str(record.exc_info[1])


def test_map_uncertainty_shows_mean_and_std_side_by_side(served, rgb_image):
    key = service.put_image(rgb_image)
    image = {"image_id": key, "width": 64, "height": 48}
    fams = cb.families()

    def run(mc):
        def go():
            set_context(dict(triggered_inputs=[{"prop_id": "explain.n_clicks", "value": 1}]))
            return cb.run_explanation(lambda p: None, 1, 1, "cam", {"cam": "gradcam"}, {}, "class", image, fams, mc)
        return copy_context().run(go)
    plain = run(None)
    ref = run({"samples": 3, "dropout": 0.0, "seed": 0, "identity": "slot"})
    assert "error" not in ref and ref["info"]["samples"] == 3
    mean_fig, style, info, std_fig, std_style = cb.draw_explanation(ref, "gradcam", 0.5, False, image, None)
    assert style == std_style == {"display": "block"} and "Stability" in str(info)
    assert np.allclose(np.asarray(std_fig.data[-1].z), 0)  # dropout 0: every sample is the plain model
    plain_fig = cb.draw_explanation(plain, "gradcam", 0.5, False, image, None)[0]
    np.testing.assert_allclose(np.asarray(mean_fig.data[-1].z), np.asarray(plain_fig.data[-1].z), atol=1e-5)
    forged = run({"samples": 10**6, "dropout": 0.1, "seed": 0, "identity": "slot"})
    assert "MC Dropout Samples must be 1..100" in forged["error"]


def test_integrated_gradients_pushes_early_maps_before_the_final_one(served, rgb_image):
    image = {"image_id": service.put_image(rgb_image), "width": 64, "height": 48}
    ticks = []
    ref = _run(cb.families(), "ig", {ids.IG_STEPS: 32}, image=image, set_progress=ticks.append)
    assert "error" not in ref and ref["info"]["steps"] == 32
    # every tick: bar value, max, label and the latest early map's reference (None before the first)
    assert all(len(t) == 4 for t in ticks) and ticks[0] == (0, 1, "starting", None)
    previews = [t[3] for t in ticks if t[3] is not None]
    firsts = [p for i, p in enumerate(previews) if i == 0 or p["preview"] != previews[i - 1]["preview"]]
    assert [p["info"]["steps"] for p in firsts] == [5, 9, 17]
    assert ticks[-1][:2] == (32, 32) and ticks[-1][3] is firsts[-1]  # the bar ends full, the last preview rides along
    early = cb.draw_preview(firsts[0], None, 0.5, False, image, None)
    assert "Early map: 5 of 32 steps" in str(early[2]) and "Convergence" in str(early[2])
    final = cb.draw_explanation(ref, None, 0.5, False, image, None)
    assert "Early map" not in str(final[2]) and "32 steps" in str(final[2])
    assert not np.array_equal(np.asarray(early[0].data[-1].z), np.asarray(final[0].data[-1].z))
    # a preview reaching the page after its job's final map changes nothing
    assert cb.draw_preview(firsts[1], ref, 0.5, False, image, None) == (cb.no_update,) * 4
