"""Results on screen as they come (issue 20, item 1): Compare's panels, scores and ranking, and
MC-Dropout's statistics, reported while the job runs; the final results are the same as without."""
import json
import math

import numpy as np
import pytest

from core import cache, service
from core.evaluation.compare import METHODS, compare, default_methods
from core.evaluation.faithfulness import faithfulness_many
from core.methods.explanation import Reporter
from core.methods.gradcam import DEFAULT_VARIANT
from core.methods.registry import METHODS as REGISTRY
from core.models.mc_dropout import mc_dropout

FAST_IG = {"steps": 8}
STAGES = ("maps", "scores", "ranking")


def assert_same(a, b, path="result"):
    """Equal, arrays and nan included (timings aside: "seconds" differ from run to run)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), path
        for k in a:
            if k != "seconds":
                assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=path)
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), path
    else:
        assert a == b, path


def test_faithfulness_reports_coarse_scores_then_full_ones_as_the_curves_complete(tiny, rgb_image):
    x = tiny.pixel_values(rgb_image)
    rng = np.random.default_rng(0)
    maps = {name: rng.random((6, 8)) for name in ("a", "b", "c")}
    calls = []
    # 4 steps, coarse to fine: the unperturbed image and the baseline, then point 2 of each curve (2 images
    # a map), then points 1 and 3 (4 a map). Batches of 4 end at 4, 8, 12, 16, 20 images: a's coarse
    # curves are complete after 4, b's and c's after 8, then a's, b's, c's full ones after 12, 16, 20
    final = faithfulness_many(tiny, x, 2, maps, steps=4, batch_size=4, gt_box=[0, 0, 20, 20],
                              progress=Reporter(None, calls.append))
    assert [{n: r["steps"] for n, r in c.items()} for c in calls] == [
        {"a": 2}, {"a": 2, "b": 2, "c": 2}, {"a": 4, "b": 2, "c": 2}, {"a": 4, "b": 4, "c": 2},
        {"a": 4, "b": 4, "c": 4}]
    for c in calls:
        for name, result in c.items():
            if result["steps"] == 4:
                assert_same(result, final[name])
    assert_same(final, faithfulness_many(tiny, x, 2, maps, steps=4, batch_size=4, gt_box=[0, 0, 20, 20]))


def test_coarse_scores_are_exactly_those_of_a_run_with_half_the_steps(tiny, rgb_image):
    x = tiny.pixel_values(rgb_image)
    maps = {"a": np.random.default_rng(1).random((6, 8))}
    calls = []  # one image a batch, so every image is scored alone in both runs
    faithfulness_many(tiny, x, 2, maps, steps=6, batch_size=1, progress=Reporter(None, calls.append))
    coarse = next(c["a"] for c in calls if c["a"]["steps"] == 3)
    assert_same(coarse, faithfulness_many(tiny, x, 2, maps, steps=3, batch_size=1)["a"])
    assert [c["a"]["steps"] for c in calls] == [3, 6]


def test_compare_reports_maps_then_scores_then_the_ranking_and_the_result_is_the_same(tiny, rgb_image):
    x = tiny.pixel_values(rgb_image)
    kwargs = dict(gt_box=[0, 0, 32, 24], image_size=rgb_image.size, steps=4)
    plain = compare(tiny, x, 2, default_methods(FAST_IG), **kwargs)
    calls, bar = [], []
    progress = Reporter(lambda done, total: bar.append(done), calls.append)
    streamed = compare(tiny, x, 2, default_methods(FAST_IG), progress=progress, **kwargs)
    assert_same(streamed, plain)
    assert bar[-1] == 1000 and bar == sorted(bar)  # the bar still moves as before

    stages = [c["stage"] for c in calls]
    assert stages == sorted(stages, key=STAGES.index) and stages.count("ranking") == 1 and stages[-1] == "ranking"
    maps = [c for c in calls if c["stage"] == "maps"]
    # one call per map, each with the maps so far in the compared order; the one-pass methods come before
    # Integrated Gradients (the slow one), so their panels need not wait for it
    assert [len(c["methods"]) for c in maps] == list(range(1, len(METHODS) + 1))
    arrived = [next(n for n in c["methods"] if n not in before["methods"])
               for before, c in zip([{"methods": {}}] + maps, maps)]
    # first the maps of the joint forward and backward (ready at once), then ODAM, Integrated Gradients last
    assert arrived == ["gradcam", "gradcam++", DEFAULT_VARIANT, "attention", "relevance", "odam", "ig"]
    assert all(REGISTRY[n].quick for n in arrived[:-1]) and not REGISTRY["ig"].quick
    for c in maps:
        assert list(c["methods"]) == [n for n in METHODS if n in c["methods"]]
        for name, m in c["methods"].items():
            assert "scores" not in m
            np.testing.assert_array_equal(m["heatmap"], plain["methods"][name]["heatmap"])
            assert m["info"] == plain["methods"][name]["info"] and m["params"] == plain["methods"][name]["params"]
    scores = [c for c in calls if c["stage"] == "scores"]
    # (method, curve steps) of the scored maps: coarse scores (2 of 4 steps) map by map, then full ones
    scored = [[(n, m["scores"]["steps"]) for n, m in c["methods"].items() if "scores" in m] for c in scores]
    assert len(scores) >= 2 and scored[-1] == [(n, 4) for n in METHODS]
    assert all({n for n, _ in a} <= {n for n, _ in b} and sum(k for _, k in a) < sum(k for _, k in b)
               for a, b in zip(scored, scored[1:]))
    assert all(k in (2, 4) for s in scored for _, k in s)
    for c in scores:
        assert list(c["methods"]) == list(METHODS) and "ranking" not in c
        for name, m in c["methods"].items():
            if "scores" in m and m["scores"]["steps"] == 4:
                assert_same(m["scores"], plain["methods"][name]["scores"])
    last = {k: v for k, v in calls[-1].items() if k != "stage"}
    assert_same(last, plain)


def test_compare_scores_arrive_map_by_map_when_batches_are_small(tiny, rgb_image, monkeypatch):
    import core.evaluation.faithfulness as faithfulness
    monkeypatch.setattr(faithfulness, "BATCH", 4)  # four images a batch
    x = tiny.pixel_values(rgb_image)
    calls = []
    compare(tiny, x, 2, default_methods(FAST_IG), steps=4, progress=Reporter(None, calls.append))
    scores = [[m["scores"]["steps"] for m in c["methods"].values() if "scores" in m]
              for c in calls if c["stage"] == "scores"]
    # 2 images a map's coarse curves, 4 more its full ones, after the 2 they share: batches of 4 complete
    # the coarse scores of 1, 3, 5, 7 maps, then the full scores of one map a batch
    assert [len(s) for s in scores] == [1, 3, 5, 7] + [len(METHODS)] * len(METHODS)
    assert [s.count(4) for s in scores] == [0, 0, 0, 0] + list(range(1, len(METHODS) + 1))


def test_mc_dropout_reports_the_samples_so_far_exactly_as_a_shorter_run(tiny, rgb_image):
    x = tiny.pixel_values(rgb_image)
    calls = []
    args = dict(p=0.3, seed=5, chunk=4)
    streamed = mc_dropout(tiny, x, rgb_image.size, samples=10, progress=Reporter(None, calls.append), **args)
    assert_same(streamed, mc_dropout(tiny, x, rgb_image.size, samples=10, **args))
    # after each chunk but the last (whose result is the final one): 4, then 8 samples
    assert [c["samples"] for c in calls] == [4, 8]
    # a sample's dropout masks depend on (seed, sample index) only, not on how many are drawn or in which
    # chunks: what was shown after 8 samples is a run of 8 samples, and its first 8 of the final ones
    assert_same(calls[1], mc_dropout(tiny, x, rgb_image.size, samples=8, **args))
    for c in calls:
        for early, final in zip(c["detections"], streamed["detections"]):
            assert early["scores"] == final["scores"][:c["samples"]]
            assert early["matched"]["slots"] == final["matched"]["slots"][:c["samples"]]


# ---- the callbacks: the early results' references on the progress output, drawn from the cache ----

@pytest.fixture
def served(served, rgb_image):
    key = service.put_image(rgb_image)
    return {"key": key, "detections": {"image_id": key, "detections": service.detections(key)},
            "image": {"image_id": key, "width": 64, "height": 48, "name": "rgb", "truth": None}}


def _new(ticks):
    """The distinct early-result references among the progress ticks, in order."""
    refs = [t[3] for t in ticks if t[3] is not None]
    return [r for i, r in enumerate(refs) if i == 0 or r["preview"] != refs[i - 1]["preview"]]


def test_compare_job_shows_panels_then_scores_then_the_table(served, monkeypatch):
    from callbacks import compare as cb
    monkeypatch.setattr(cb, "IG_DEFAULTS", {**cb.IG_DEFAULTS, **FAST_IG})
    image, dets = served["image"], served["detections"]
    ticks = []
    ref = cb.run_comparison(ticks.append, 1, 3, image, dets, None, None, "black", 8, 50, None)
    assert "error" not in ref and ticks[0] == (0, 1, "starting", None) and ticks[-1][:2] == (1000, 1000)
    previews = _new(ticks)
    assert [p["stage"] for p in previews] == sorted((p["stage"] for p in previews), key=STAGES.index)
    assert previews[-1]["stage"] == "ranking"
    n = len(METHODS)

    first = cb.draw_comparison_preview(previews[0], None, "minmax", 3, image, dets)
    cells, rows, table_style, info = first
    ready = [c for c in cells if "compare-panel" in c.className]
    assert len(cells) == n and len(ready) == 1 and rows == [] and table_style == cb.HIDDEN
    assert f"1 of {n} maps, 0 scored so far" in str(info) and "Computing the map" in str(cells)
    assert "Scoring ..." in str(ready[0])
    # the panel shown early is the final one's picture
    final_cells = cb.draw_comparison(json.loads(json.dumps(ref)), "minmax", 3, image, dets)[0]
    name = next(iter(cache.store().get(previews[0]["preview"])["methods"]))
    picture = ready[0].children.children[1].figure.data[0].source
    assert picture == final_cells[METHODS.index(name)].children.children[1].figure.data[0].source

    maps_done = next(p for p in previews if p["stage"] == "scores")
    cells, rows, table_style, info = cb.draw_comparison_preview(maps_done, None, "minmax", 3, image, dets)
    assert sum("compare-panel" in c.className for c in cells) == n and table_style == cb.HIDDEN
    assert "deletion" in str(cells) and "ranking comes once every map is scored" in str(info)
    # every map scored from its coarse curves (10 of the 20 steps): an early ranking, said to be one
    def steps(p):  # the curve steps behind each scored map of an early result
        return [m["scores"]["steps"] for m in cache.store().get(p["preview"])["methods"].values() if "scores" in m]
    coarse = next(p for p in previews if steps(p) == [10] * n)
    cells, rows, table_style, info = cb.draw_comparison_preview(coarse, None, "minmax", 3, image, dets)
    assert table_style == cb.SHOWN and len(rows) == n and "Early ranking" in str(info)
    assert "scores from 10 of 20 deletion / insertion steps" in str(info)
    assert str(cells).count("(early: 10 of 20 steps)") == n
    # the ranking's early result is the final view; once the final result is there, an early one draws nothing
    assert str(cb.draw_comparison_preview(previews[-1], None, "minmax", 3, image, dets)) == str(
        cb.draw_comparison(ref, "minmax", 3, image, dets))
    assert cb.draw_comparison_preview(previews[0], ref, "minmax", 3, image, dets) == (cb.no_update,) * 4
    assert cb.draw_comparison_preview(previews[0], None, "minmax", 2, image, dets) == (cb.no_update,) * 4


def test_uncertainty_job_shows_histograms_as_samples_arrive(served):
    from callbacks import uncertainty as cb
    from components.uncertainty import INSET_BINS
    image, dets = served["image"], served["detections"]
    ticks = []
    ref = cb.run_uncertainty(ticks.append, 1, 10, 0.5, 3, image)  # chunks of 4 on a CPU: early results at 4 and 8
    assert "error" not in ref
    previews = _new(ticks)
    assert [p["drawn"] for p in previews] == [4, 8] and all(p["samples"] == 10 for p in previews)
    assert ticks[-1][:3] == (10, 10, "10/10 samples")
    pick = dets["detections"][0]["index"]
    final = cb.draw_uncertainty(ref, 0.0, pick, "slot", image, dets)
    stats = {d["index"]: d for d in service.cached_uncertainty(ref["model"], served["key"], 10, 0.5, 3)["detections"]}
    for p in previews:
        fig, style, hist, _, table, info = cb.draw_uncertainty_preview(p, None, 0.0, pick, "slot", image, dets)
        assert style == cb.SHOWN and f"So far {p['drawn']} of 10 samples" in str(info)
        bars = next(t for t in fig.data if t.name == f"hist-{pick}")
        counts = np.asarray(bars.customdata, dtype=float)[::6, 0]
        expected, _ = np.histogram(stats[pick]["scores"][:p["drawn"]], bins=np.linspace(0, 1, INSET_BINS + 1))
        np.testing.assert_array_equal(counts, expected)  # the first samples of the final run, counted
        assert sum(hist.data[0].y) == p["drawn"]
    assert "10 samples at dropout" in str(final[-1]) and "So far" not in str(final[-1])
    # an early result reaching the page after the final one changes nothing
    assert cb.draw_uncertainty_preview(previews[-1], ref, 0.0, pick, "slot", image, dets) == (cb.no_update,) * 6


def test_uncertainty_final_result_is_the_one_without_early_results(served, tiny, rgb_image):
    from callbacks import uncertainty as cb
    ref = cb.run_uncertainty(lambda _: None, 1, 10, 0.5, 3, served["image"])
    streamed = service.cached_uncertainty(ref["model"], served["key"], 10, 0.5, 3)
    plain = mc_dropout(tiny, tiny.pixel_values(rgb_image), rgb_image.size, samples=10, p=0.5, seed=3, chunk=4)
    assert_same({k: v for k, v in streamed.items() if k != "model"}, plain)


def test_an_early_result_never_covers_its_own_runs_end_error_included():
    """A reference first seen in the poll that ends the job (a killed job's error is answered with the
    same request and run) draws nothing; a retry (a new run) shows its own early results."""
    from callbacks import explain, preview as early
    ref = {"image_id": "img", "query": 1, "method": "ig", "family": "ig", "params": {"steps": 32}, "run": 3}
    job = early.Job(lambda _: None, ref, "explain")
    job.publish({"map": 1}, 5)
    image = {"image_id": "img"}
    assert early.early_result(job.preview, image, None, explain.REQUEST) == {"map": 1}
    for end in ({**ref, "info": {}}, {**ref, "error": "The explanation failed: the job process stopped."}):
        assert early.early_result(job.preview, image, end, explain.REQUEST) is None
    retry = {**job.preview, "run": 4}  # the next click's early result while the old error is still shown
    assert early.early_result(retry, image, {**ref, "error": "failed"}, explain.REQUEST) == {"map": 1}
