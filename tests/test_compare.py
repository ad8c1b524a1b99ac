"""The Compare view: core.evaluation.compare on the tiny DETR, the service cache, and its callbacks called directly."""
import io
import json
import math
from contextvars import copy_context

import numpy as np
import pytest
import torch
from PIL import Image

from app.dash_adapter import set_context
from core import service
from core.methods.attention import compute_attention
from core.evaluation.compare import (METHODS, compare, default_methods, explain_all, match_truth, normalise, rank,
                                     summary)
from core.models.detection import postprocess
from core.evaluation.faithfulness import energy_pointing_game
from core.methods.gradcam import DEFAULT_VARIANT, compute_cams
from core.methods.registry import METHODS as REGISTRY

FAST_IG = {"steps": 8}


def test_normalise_by_hand():
    m = np.array([[1.0, 3.0], [5.0, 3.0]])
    np.testing.assert_allclose(normalise(m, "minmax"), [[0, 0.5], [1, 0.5]])
    np.testing.assert_allclose(normalise(m, "rank"), [[0, 0.5], [1, 0.5]])  # ties share the average rank
    np.testing.assert_allclose(normalise(np.array([[0.0, 2.0], [-4.0, 1.0]]), "rank"), [[1 / 3, 1], [0, 2 / 3]])
    x = np.arange(101, dtype=float)  # 99th percentile is 99: 100 saturates, negatives clip to 0
    np.testing.assert_allclose(normalise(x - 50, "p99")[[0, 50, 99, 100]], [0, 0, 1, 1])
    np.testing.assert_allclose(normalise(x, "p99")[[0, 33, 99, 100]], [0, 1 / 3, 1, 1])
    assert not normalise(np.full((2, 2), 7.0), "minmax").any()
    with pytest.raises(ValueError):
        normalise(m, "zscore")


def test_rank_by_hand():
    scores = {"a": {"deletion_auc": 0.2, "insertion_auc": 0.5, "pointing_game": 0.9},
              "b": {"deletion_auc": 0.1, "insertion_auc": 0.8, "pointing_game": 0.2},
              "c": {"deletion_auc": 0.3, "insertion_auc": 0.5, "pointing_game": float("nan")}}
    rows = rank(scores)
    # a: 2, 2 (tied with c), 1 -> 5/3; b: 1, 1, 2 -> 4/3; c: 3, 2, 3 (nan last) -> 8/3
    assert [r["method"] for r in rows] == ["b", "a", "c"]
    assert rows[0]["ranks"] == {"deletion_auc": 1, "insertion_auc": 1, "pointing_game": 2}
    assert rows[1]["mean_rank"] == pytest.approx(5 / 3) and rows[2]["ranks"]["insertion_auc"] == 2
    assert rows[2]["ranks"]["pointing_game"] == 3
    # the truth column counts only when every method has it
    scores["a"]["pointing_game_gt"] = 1.0
    assert "pointing_game_gt" not in rank(scores)[0]["ranks"]
    for s, v in zip(scores.values(), (0.0, 0.5, 1.0)):
        s["pointing_game_gt"] = v
    rows = rank(scores)  # truth ranks a 3, b 2, c 1: b (1+1+2+2)/4, a (2+2+1+3)/4, c (3+2+3+1)/4
    assert [r["method"] for r in rows] == ["b", "a", "c"]
    assert [r["mean_rank"] for r in rows] == pytest.approx([1.5, 2.0, 2.25])
    assert rows[1]["ranks"]["pointing_game_gt"] == 3


def test_match_truth():
    truth = [{"label": "star", "box": [0, 0, 10, 10]}, {"label": "circle", "box": [0, 0, 10, 10]},
             {"label": "star", "box": [5, 0, 15, 10]}]
    assert match_truth([6, 0, 16, 10], "star", truth)["box"] == [5, 0, 15, 10]
    assert match_truth([6, 0, 16, 10], "star", truth)["iou"] == pytest.approx(90 / 110)
    assert match_truth([0, 0, 10, 10], "square", truth) is None
    assert match_truth([50, 50, 60, 60], "star", truth) is None  # no overlap at all
    assert match_truth([0, 0, 10, 10], "star", None) is None


def test_compare_on_tiny(tiny, rgb_image):
    x = tiny.pixel_values(rgb_image)
    H, W = x.shape[-2:]
    seen = []
    r = compare(tiny, x, 2, default_methods(FAST_IG), gt_box=[0, 0, 32, 24], image_size=rgb_image.size, steps=4,
                progress=lambda d, t: seen.append((d, t)))
    assert list(r["methods"]) == list(METHODS)
    # the maps are the methods' own
    cams = compute_cams(tiny, x, 2, {"layer": None, "target": "class"})
    np.testing.assert_allclose(r["methods"]["gradcam++"]["heatmap"], cams["gradcam++"].heatmap, rtol=1e-5)
    attention = compute_attention(tiny, x, 2, {})["attention"]
    np.testing.assert_allclose(r["methods"]["attention"]["heatmap"], attention.heatmap)
    assert r["methods"]["ig"]["info"]["steps"] == 8 and r["methods"]["ig"]["info"]["baseline"] == "blur"
    with torch.no_grad():
        out = tiny.model(pixel_values=x)
    det = postprocess(out.logits[0], out.pred_boxes[0], (W, H), tiny.id2label)[2]
    for name, m in r["methods"].items():
        s = m["scores"]
        assert s["score"] == pytest.approx(det["score"], rel=1e-5)
        assert 0 <= s["deletion_auc"] and 0 <= s["insertion_auc"] and 0 <= s["pointing_game_gt"] <= 1
        assert s["pointing_game"] == pytest.approx(energy_pointing_game(m["heatmap"], det["box"], (W, H)), abs=1e-3)
        curve = s["curves"]["deletion"]["matched"]
        assert s["deletion_auc"] == pytest.approx((sum(curve) - (curve[0] + curve[-1]) / 2) / 4 / curve[0])
    assert r["ranking"] == rank({n: {c: m["scores"][c] for c in ("deletion_auc", "insertion_auc", "pointing_game",
                                                                  "pointing_game_gt")}
                                 for n, m in r["methods"].items()})
    assert seen[-1] == (1000, 1000) and all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))
    report = summary(r)
    json.dumps(report, allow_nan=False)
    assert set(report["methods"]["ig"]) >= {"deletion_auc", "insertion_auc", "pointing_game", "pointing_game_gt"}
    assert report["wall_seconds"] >= sum(report["methods"]["ig"]["seconds"].values())


def test_default_methods_include_the_instance_specific_ones():
    assert DEFAULT_VARIANT in METHODS and "odam" in METHODS and set(default_methods()) == set(METHODS)


def test_joint_pass_gives_each_method_its_own_map_in_one_forward_and_backward(tiny, rgb_image, monkeypatch):
    x = tiny.pixel_values(rgb_image)
    methods = {n: p for n, p in default_methods().items() if n not in ("ig", "odam")}
    own = {n: REGISTRY[n].compute(tiny, x, 2, {**REGISTRY[n].defaults, **p})[n] for n, p in methods.items()}
    forwards, backwards = [], []
    handle = tiny.model.register_forward_pre_hook(lambda m, i: forwards.append(1))
    grad = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: backwards.append(1) or grad(*a, **k))
    try:
        joint, _ = explain_all(tiny, x, 2, methods)
    finally:
        handle.remove()
    assert len(forwards) == 1 and len(backwards) == 1  # CAM family, attention and relevance together
    for n in methods:
        np.testing.assert_array_equal(joint[n].heatmap, own[n].heatmap)
        assert joint[n].info == own[n].info
    # a box target is another scalar: relevance gets its own pass
    forwards.clear()
    handle = tiny.model.register_forward_pre_hook(lambda m, i: forwards.append(1))
    try:
        explain_all(tiny, x, 2, {**methods, "relevance": {"target": "cx"}})
    finally:
        handle.remove()
    assert len(forwards) == 2


def test_service_caches_and_reuses_explanations(served, rgb_image):
    key = service.put_image(rgb_image)
    methods = default_methods(FAST_IG)
    service.explanation(key, 1, "attention", {})  # computed earlier by the explanation card
    before = service.model_calls()
    first = service.comparison(key, 1, methods)
    # the scores (their pass also computes the CAM family and relevance together: one forward and one
    # backward, cached per family), then odam and ig
    assert service.model_calls() == before + 3
    assert all(service.cached_explanation(key, 1, n, p) is not None for n, p in methods.items())
    again = service.comparison(key, 1, methods)
    assert service.model_calls() == before + 3
    assert again["ranking"] == first["ranking"]
    assert service.cached_comparison(key, 1, methods, [0, 0, 5, 5]) is None  # another truth box: another entry


def test_switching_cam_variant_is_a_lookup(served, rgb_image):
    from core.methods.gradcam import VARIANTS
    key = service.put_image(rgb_image)
    first = service.explanation(key, 1, DEFAULT_VARIANT, {})
    before = service.model_calls()
    maps = {v: service.explanation(key, 1, v, {}) for v in VARIANTS}
    assert service.model_calls() == before
    np.testing.assert_array_equal(maps[DEFAULT_VARIANT].heatmap, first.heatmap)
    assert not np.array_equal(maps["gradcam++"].heatmap, first.heatmap)


def _in_context(trigger, fn, *args):
    def run():
        set_context(dict(triggered_inputs=[{"prop_id": f"{trigger}.value", "value": 1}],
                         triggered_id=trigger))
        return fn(*args)
    return copy_context().run(run)


def test_ig_settings_come_from_the_card_only_where_chosen():
    from callbacks import compare as cb
    chosen = _in_context("ig-steps", cb.remember_ig_choice, "blur", 100, 8, None, None)
    assert chosen == ["steps"]
    chosen = _in_context("ig-baseline", cb.remember_ig_choice, "black", 100, 8, None, chosen)
    assert chosen == ["baseline", "steps"]
    assert cb.ig_params(None, "black", 4, 100, 64) == {"baseline": "blur", "steps": 28, "sigma": 8.0,
                                                       "resolution": None}
    assert cb.ig_params(chosen, "black", 4, 100, 64) == {"baseline": "black", "steps": 100, "sigma": 8.0,
                                                         "resolution": None}


def through_browser(data):
    """What a store's data looks like after the browser's JSON: 8.0 comes back as 8."""
    return json.loads(json.dumps(data), parse_float=lambda s: int(float(s)) if float(s).is_integer() else float(s))


def test_callbacks_compute_draw_and_export(served, rgb_image, monkeypatch):
    from callbacks import compare as cb
    monkeypatch.setattr(cb, "IG_DEFAULTS", {**cb.IG_DEFAULTS, **FAST_IG})
    key = service.put_image(rgb_image)
    dets = {"image_id": key, "detections": service.detections(key)}
    det = dets["detections"][3]
    truth = [{"label": det["label"], "box": det["box"]}, {"label": "other", "box": [0, 0, 64, 48]}]
    image = {"image_id": key, "width": 64, "height": 48, "name": "rgb", "truth": truth}
    progress = []
    ref = cb.run_comparison(progress.append, 1, 3, image, dets, None, None, "black", 8, 50, None)
    assert "error" not in ref and ref["gt_box"] == det["box"] and ref["truth_iou"] == pytest.approx(1.0)
    assert ref["methods"]["ig"]["steps"] == 8 and progress[-1][:2] == (1000, 1000)
    ref = through_browser(ref)
    assert ref["methods"]["ig"]["sigma"] == 8 and isinstance(ref["methods"]["ig"]["sigma"], int)

    cells, rows, style, info = cb.draw_comparison(ref, "minmax", 3, image, dets)
    n = len(METHODS)
    assert len(cells) == n and len(rows) == n and style["display"] == "block"
    h, w = service.model().pixel_values(rgb_image).shape[-2:]  # the model's input: no cap by default
    assert f"Deletion / insertion: 20 steps at {w}x{h} px." in str(info)
    assert [r["rank"] for r in rows] == list(range(1, n + 1)) and {r["method"] for r in rows} == set(cb.LABELS.values())
    result = service.cached_comparison(key, 3, ref["methods"], ref["gt_box"])
    best = result["ranking"][0]["method"]
    assert rows[0]["method"] == cb.LABELS[best]
    graphs = [c.children.children[1] for c in cells]
    for k, g in enumerate(graphs):  # every panel's hover carries every method; its own values are its z
        hover = g.figure.data[1]
        custom = np.asarray(hover.customdata)
        assert custom.shape[-1] == n
        np.testing.assert_allclose(np.asarray(hover.z), custom[..., k], atol=5e-4)
        assert all(cb.LABELS[n] in hover.hovertemplate for n in METHODS)
    np.testing.assert_array_equal(np.asarray(graphs[0].figure.data[1].customdata), graphs[-1].figure.data[1].customdata)
    assert "IG (comparison defaults): blur (sigma 8), 8 steps, 85x64 px" in str(cells[METHODS.index("ig")])
    ranked = cb.draw_comparison(ref, "rank", 3, image, dets)[0][0].children.children[1].figure.data[1].customdata
    assert not np.array_equal(np.asarray(ranked), np.asarray(graphs[0].figure.data[1].customdata))
    assert cb.draw_comparison(ref, "minmax", 2, image, dets)[0] == []  # another detection picked: nothing stale

    png = cb.download_png(1, ref, "minmax", image, dets)
    import base64
    sheet = Image.open(io.BytesIO(base64.b64decode(png["content"])))
    assert png["filename"] == "comparison.png" and sheet.width == 3 * (256 + 16)
    exported = json.loads(cb.download_json(1, ref, None, image)["content"])
    assert set(exported["methods"]) == set(METHODS) and exported["gt_box"] == det["box"]
    assert [r["method"] for r in exported["ranking"]] == [r["method"] for r in result["ranking"]]
    assert exported["methods"]["gradcam"]["curves"]["deletion"]["slot"][0] == pytest.approx(det["score"], rel=1e-4)


def test_sanity_callbacks(served, rgb_image, monkeypatch):
    from callbacks import compare as cb
    monkeypatch.setattr(cb, "IG_DEFAULTS", {**cb.IG_DEFAULTS, **FAST_IG})
    key = service.put_image(rgb_image)
    image = {"image_id": key, "width": 64, "height": 48, "name": "rgb", "truth": None}
    ref = through_browser(cb.run_sanity(lambda p: None, 1, 0, image, None, None, None, "black", 8, 50, None))
    fig, style, text = cb.draw_sanity(ref, 0, image)
    result = service.cached_sanity(key, 0, ref["methods"])
    assert [t.name for t in fig.data] == [cb.LABELS[n] for n in METHODS]
    assert list(fig.data[0].x) == result["steps"] and style["display"] == "block"
    flagged = [cb.LABELS[n] for n, m in result["methods"].items() if m["flagged"]]
    assert ("Flagged" in str(text)) == bool(flagged) and all(f in str(text) for f in flagged)
    for m in result["methods"].values():
        assert all(-1 <= r <= 1 or math.isnan(r) for r in m["rho"])
    assert cb.draw_sanity(ref, 1, image)[1] == {"display": "none"}  # another detection: hidden


def test_cli_compare_json_and_exit_codes(tiny_dir, tmp_path, rgb_image, capsys):
    from app.cli import main
    path = tmp_path / "image.png"
    rgb_image.save(path)
    assert main(["compare", str(path), "--query", "1", "--model", str(tiny_dir), "--steps", "4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["methods"]) == set(METHODS) and report["wall_seconds"] > 0
    for m in report["methods"].values():
        assert {"deletion_auc", "insertion_auc", "pointing_game"} <= set(m) and "pointing_game_gt" not in m
    assert report["methods"]["ig"]["params"]["steps"] == 4
    criteria = ("deletion_auc", "insertion_auc", "pointing_game")
    expected = rank({n: {c: m[c] for c in criteria} for n, m in report["methods"].items()})
    assert [r["method"] for r in report["ranking"]] == [r["method"] for r in expected]
    assert main(["compare", str(path), "--query", "99", "--model", str(tiny_dir)]) == 2
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert main(["compare", str(bad), "--query", "1", "--model", str(tiny_dir)]) == 3
