"""MC-Dropout in the dashboard and the CLI: figure builders, callbacks called directly, `python -m app uncertainty`."""
import json

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

from app.cli import main
from callbacks import uncertainty as cb
from components import uncertainty as comp
from core import cache, service

T = 6


def _text(component) -> str:
    """All text inside a Dash component tree."""
    if component is None or isinstance(component, (str, int, float)):
        return "" if component is None else str(component)
    if isinstance(component, (list, tuple)):
        return " ".join(_text(c) for c in component)
    return _text(getattr(component, "children", None))


def _inset_bins(trace):
    """An inset's per-bin hover counts, score ranges and drawn bar heights (6 points per bin)."""
    data = np.asarray(trace.customdata, dtype=float)[::6]
    ys = np.asarray(trace.y, dtype=object).reshape(-1, 6)
    return data[:, 0], data[:, 1:], ys[:, 0].astype(float) - ys[:, 1].astype(float)


def _rows(table) -> dict[str, list[str]]:
    """A stats table as {first cell: the other cells}."""
    body = table.children[1].children
    return {row.children[0].children: [c.children for c in row.children[1:]] for row in body}


@pytest.fixture
def served(tiny, monkeypatch, tmp_path):
    """A private cache, the tiny model served, an image on the server, its detections; a run of T samples."""
    cache.configure(directory=tmp_path)
    monkeypatch.setattr(service, "_model", tiny)
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))
    key = service.put_image(image)
    store = {"image_id": key, "width": 80, "height": 60, "name": "x", "truth": None}
    detections = {"image_id": key, "detections": service.detections(key)}
    progress = []
    ref = cb.run_uncertainty(progress.append, 1, T, 0.5, 3, store)
    yield {"store": store, "detections": detections, "ref": ref, "progress": progress,
           "result": service.cached_uncertainty(ref["model"], key, T, 0.5, 3)}
    cache.configure()


@pytest.fixture
def no_model(monkeypatch):
    monkeypatch.setattr(service, "model", lambda: pytest.fail("the model was called"))


def test_run_reports_progress_and_returns_a_small_reference(served, tiny):
    ref = served["ref"]
    assert ref == {"image_id": served["store"]["image_id"], "samples": T, "dropout": 0.5, "seed": 3,
                   "model": tiny.name, "run": 1}  # run: the button's n_clicks (callbacks/preview.py)
    # every tick: bar value, max, label and the latest samples-so-far reference (callbacks/preview.py)
    assert served["progress"][0] == (0, 1, "starting", None)
    assert served["progress"][-1][:3] == (T, T, f"{T}/{T} samples")
    assert [p[0] for p in served["progress"]] == sorted(p[0] for p in served["progress"])
    result = served["result"]
    assert result["samples"] == T and len(result["detections"]) == tiny.model.config.num_queries
    assert all(len(d["scores"]) == T for d in result["detections"])


def test_cached_per_model_image_samples_rate_seed_and_backbone_reused(served, monkeypatch):
    import core.models.mc_dropout
    key = served["store"]["image_id"]
    calls = service.model_calls()
    assert cb.run_uncertainty(lambda _: None, 2, T, 0.5, 3, served["store"]) == {**served["ref"], "run": 2}
    assert service.model_calls() == calls  # same run: from the cache
    ran = []
    real = core.models.mc_dropout.backbone_features
    monkeypatch.setattr(core.models.mc_dropout, "backbone_features", lambda *a: ran.append(1) or real(*a))
    other = service.uncertainty(key, 4, 0.2, 3)
    assert service.model_calls() == calls + 1 and ran == []  # another rate and count: the backbone is cached
    assert len(other["detections"][0]["scores"]) == 4 and other["dropout"] == 0.2
    assert service.uncertainty(key, 4, 0.2, 4)["detections"][0]["scores"] != other["detections"][0]["scores"]


def test_inset_histograms_count_the_sample_scores(served, no_model):
    dets = served["detections"]["detections"]
    threshold = sorted(d["score"] for d in dets)[1]  # all but the weakest are visible
    fig, style, _, detail_style, _, info = cb.draw_uncertainty(served["ref"], threshold, None, "slot",
                                                               served["store"], served["detections"])
    assert style == cb.SHOWN and detail_style == cb.HIDDEN
    stats = {d["index"]: d for d in served["result"]["detections"]}
    visible = [d["index"] for d in dets if d["score"] >= threshold]
    bars = {t.name: t for t in fig.data if (t.name or "").startswith("hist-")}
    assert sorted(bars) == sorted(f"hist-{i}" for i in visible)
    for i in visible:
        expected, edges = np.histogram(stats[i]["scores"], bins=np.linspace(0, 1, comp.INSET_BINS + 1))
        counts, ranges, heights = _inset_bins(bars[f"hist-{i}"])
        np.testing.assert_array_equal(counts, expected)
        np.testing.assert_allclose(ranges, np.stack([edges[:-1], edges[1:]], -1))
        np.testing.assert_allclose(heights / heights.max(), expected / expected.max())  # bars scale with counts
    # the threshold only filters: the box traces are the detection figure's
    assert sorted(t.name for t in fig.data if (t.name or "").startswith("det-")) == sorted(f"det-{i}" for i in visible)
    assert f"{T} samples at dropout 0.50" in _text(info)


def test_insets_sit_beside_their_box_inside_the_image():
    width, height = 200, 100
    side = min(width, height)
    x0, y0, x1, y1 = comp.inset_box([20, 30, 60, 70], width, height)
    assert x0 == pytest.approx(60 + 0.01 * side) and y0 == 30  # right of the box, top-aligned
    assert x1 - x0 == pytest.approx(0.22 * side) and y1 - y0 == pytest.approx(0.13 * side)
    x0, _, x1, _ = comp.inset_box([150, 30, 195, 70], width, height)
    assert x1 == pytest.approx(150 - 0.01 * side)  # no room on the right: on the left
    x0, y0, x1, y1 = comp.inset_box([0, 95, 200, 100], width, height)  # full width, at the bottom
    assert 0 <= x0 and x1 <= width and 0 <= y0 and y1 <= height
    # duplicate detections: the next inset takes the other side of the same box, then the next row down
    box = [40, 30, 80, 70]
    first = comp.inset_box(box, width, height)
    second = comp.inset_box(box, width, height, [first])
    third = comp.inset_box(box, width, height, [first, second])
    assert first[0] >= 80 and second[2] <= 40 and second[1] == 30
    assert third[0] == first[0] and third[1] == pytest.approx(30 + 0.14 * side)
    assert not any(comp._overlaps(a, b) for a, b in [(first, second), (first, third), (second, third)])


def test_at_most_max_insets_picked_one_included():
    dets = [{"index": i, "label": "a", "score": 0.5 + i / 100, "box": [0, 0, 1, 1]} for i in range(20)]
    shown = cb.shown_detections(dets, 0.0, 2)
    assert len(shown) == comp.MAX_INSETS and shown[0]["index"] == 2
    assert [d["index"] for d in shown[1:]] == list(range(19, 19 - comp.MAX_INSETS + 1, -1))
    fig = comp.add_histogram_insets(go.Figure(), [{**d, "scores": [0.5]} for d in dets], 100, 100)
    assert len([t for t in fig.data if t.name.startswith("hist-")]) == comp.MAX_INSETS


def test_picked_detection_panel_and_threshold_recomputes_without_the_model(served, no_model):
    dets = served["detections"]["detections"]
    stats = {d["index"]: d for d in served["result"]["detections"]}
    # thresholds 0 and the median of a detection's sample scores (at most its own score: it stays visible)
    pick = next(d for d in dets if np.sort(stats[d["index"]]["scores"])[T // 2] <= d["score"])
    scores = np.asarray(stats[pick["index"]]["scores"])
    median = float(np.sort(scores)[T // 2])
    assert 0 < np.mean(scores >= median) < 1
    for threshold in (0.0, median):
        fig, _, hist, detail, table, _ = cb.draw_uncertainty(served["ref"], threshold, pick["index"], "slot",
                                                             served["store"], served["detections"])
        assert detail == {"display": "flex"}
        rows = _rows(table)
        assert rows[f"samples with score ≥ {threshold:.2f}"][0] == f"{100 * np.mean(scores >= threshold):.0f}%"
        matched = np.asarray(stats[pick["index"]]["matched"]["scores"])
        assert rows[f"samples with score ≥ {threshold:.2f}"][1] == f"{100 * np.mean(matched >= threshold):.0f}%"
    # the detail histogram counts the picked detection's scores in DETAIL_BINS bins
    expected, edges = np.histogram(scores, bins=np.linspace(0, 1, comp.DETAIL_BINS + 1))
    np.testing.assert_array_equal(hist.data[0].y, expected)
    np.testing.assert_allclose(hist.data[0].x, (edges[:-1] + edges[1:]) / 2)
    s = stats[pick["index"]]
    assert rows["score mean ± std"][0] == f"{scores.mean():.3f} ± {scores.std():.3f}"
    assert rows["predictive entropy (nats)"][0] == f"{s['entropy']:.3f}"
    assert rows["mutual information (epistemic, nats)"][1] == f"{s['matched']['mutual_information']:.4f}"
    assert rows["slot swap (samples where slot and match differ)"][0] == f"{100 * s['slot_swap_fraction']:.0f}%"
    # the sampled boxes of the picked detection: T outlines in one faint trace, under the boxes
    names = [t.name for t in fig.data]
    sampled = fig.data[names.index("sampled-boxes")]
    xs = np.asarray([v for v in sampled.x if v is not None], dtype=float).reshape(T, 5)
    np.testing.assert_allclose(xs[:, 0], np.asarray(s["sampled_boxes"])[:, 0])
    assert names.index("sampled-boxes") < names.index(f"det-{pick['index']}") < names.index(f"hist-{pick['index']}")


def test_identity_switch_uses_the_matched_samples(served, no_model):
    dets = served["detections"]["detections"]
    stats = {d["index"]: d for d in served["result"]["detections"]}
    pick = dets[0]
    fig, _, hist, _, _, info = cb.draw_uncertainty(served["ref"], 0.0, pick["index"], "matched", served["store"],
                                                   served["detections"])
    matched = stats[pick["index"]]["matched"]
    expected, _ = np.histogram(matched["scores"], bins=np.linspace(0, 1, comp.DETAIL_BINS + 1))
    np.testing.assert_array_equal(hist.data[0].y, expected)
    bar = next(t for t in fig.data if t.name == f"hist-{pick['index']}")
    inset, _ = np.histogram(matched["scores"], bins=np.linspace(0, 1, comp.INSET_BINS + 1))
    np.testing.assert_array_equal(_inset_bins(bar)[0], inset)
    assert "Hungarian-matched" in _text(info)


def test_stale_or_failed_references_say_what_to_do(served, no_model):
    other = {**served["store"], "image_id": "another"}
    out = cb.draw_uncertainty(served["ref"], 0.5, None, "slot", other, served["detections"])
    assert out[1] == cb.HIDDEN and "Run MC Dropout" in _text(out[-1])
    out = cb.draw_uncertainty({**served["ref"], "error": "ValueError: boom"}, 0.5, None, "slot", served["store"],
                              served["detections"])
    assert "boom" in _text(out[-1])
    out = cb.draw_uncertainty({**served["ref"], "seed": 99}, 0.5, None, "slot", served["store"], served["detections"])
    assert out[1] == cb.HIDDEN and "compute" in _text(out[-1])


def test_dropout_note_flags_rates_far_from_the_trained_one():
    assert "Trained rate: 0.10." in _text(comp.dropout_note(0.1, 0.1)) and "far" not in _text(comp.dropout_note(0.15, 0.1))
    assert "far from it" in _text(comp.dropout_note(0.5, 0.1))
    assert "deterministic" in _text(comp.dropout_note(0.0, 0.1))
    assert "far from it" in _text(cb.show_dropout_note(0.3, 0.1))


# ---- CLI ----------------------------------------------------------------------------------------

@pytest.fixture
def image_file(tmp_path, rgb_image):
    path = tmp_path / "image.png"
    rgb_image.save(path)
    return path


def test_cli_json_fields_match_detect_and_the_samples(tiny_dir, image_file, capsys):
    main(["detect", str(image_file), "--model", str(tiny_dir), "--threshold", "0", "--json"])
    cut = sorted(d["score"] for d in json.loads(capsys.readouterr().out)["detections"])[2]
    main(["detect", str(image_file), "--model", str(tiny_dir), "--threshold", str(cut), "--json"])
    detected = json.loads(capsys.readouterr().out)["detections"]
    assert main(["uncertainty", str(image_file), "--model", str(tiny_dir), "--samples", "5", "--dropout", "0.4",
                 "--seed", "2", "--threshold", str(cut), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["image"] == str(image_file) and out["samples"] == 5 and out["dropout"] == 0.4
    assert [d["index"] for d in out["detections"]] == [d["index"] for d in detected]
    assert 0 < len(detected) < 5
    for d, det in zip(out["detections"], detected):
        assert {"index", "label", "score", "scores", "score_mean", "score_std", "entropy", "mutual_information",
                "variation_ratio", "box_mean", "box_std", "above_threshold_fraction", "slot_swap_fraction"} <= set(d)
        assert (d["label"], d["score"]) == (det["label"], det["score"])
        scores = np.asarray(d["scores"])
        assert len(scores) == 5 and len(d["box_mean"]) == len(d["box_std"]) == 4
        assert d["score_mean"] == pytest.approx(scores.mean(), abs=1e-5)
        assert d["score_std"] == pytest.approx(scores.std(), abs=1e-5)
        assert d["above_threshold_fraction"] == pytest.approx(np.mean(scores >= cut))


def test_cli_defaults_and_text_output(tiny_dir, image_file, capsys):
    assert main(["uncertainty", str(image_file), "--model", str(tiny_dir), "--samples", "2", "--threshold", "0",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dropout"] == 0.1 and out["seed"] == 0 and out["threshold"] == 0  # trained rate by default
    assert len(out["detections"]) == 5
    assert main(["uncertainty", str(image_file), "--model", str(tiny_dir), "--samples", "2", "--threshold", "0"]) == 0
    text = capsys.readouterr().out
    assert "5 detections" in text and "2 samples at dropout 0.1" in text and "slot swap" in text


@pytest.mark.parametrize("args", [["--samples", "0"], ["--samples", "101"], ["--dropout", "0.95"],
                                  ["--dropout", "-0.1"], ["--samples", "many"]])
def test_cli_usage_errors_exit_2(tiny_dir, image_file, args, capsys):
    try:
        status = main(["uncertainty", str(image_file), "--model", str(tiny_dir), *args])
    except SystemExit as stop:  # argparse's own type errors
        status = stop.code
    assert status == 2
    assert "error" in capsys.readouterr().err


def test_cli_bad_image_exit_3_and_missing_model_exit_4(tiny_dir, tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    assert main(["uncertainty", str(bad), "--model", str(tiny_dir), "--json"]) == 3
    out, err = capsys.readouterr()
    assert "error" in json.loads(out) and "bad.jpg" in err
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SystemExit) as stop:
        main(["uncertainty", str(bad), "--model", "nobody/no-such-detr", "--no-fallback"])
    assert stop.value.code == 4
