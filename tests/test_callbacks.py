"""Callback functions called directly: filtering and drawing never call the model."""
import base64
from contextvars import copy_context

import pytest

from callbacks import detection
from app.dash_adapter import set_context
from core import cache, service
from core.models.detection import option_label

DETS = [
    {"index": 0, "label": "circle", "score": 0.95, "box": [10, 10, 40, 40]},
    {"index": 3, "label": "star", "score": 0.72, "box": [50, 20, 90, 60]},
    {"index": 7, "label": "cross", "score": 0.20, "box": [0, 0, 5, 5]},
]


@pytest.fixture
def no_model(monkeypatch, tmp_path):
    """A private cache, and a model that fails the test if anything asks for it."""
    cache.configure(directory=tmp_path)
    monkeypatch.setattr(service, "model", lambda: pytest.fail("the model was called"))
    yield
    cache.configure()


def _in_context(trigger: str, fn, *args):
    def run():
        set_context(dict(triggered_inputs=[{"prop_id": trigger, "value": 1}]))
        return fn(*args)
    return copy_context().run(run)


def test_threshold_filters_without_the_model(no_model):
    result = {"image_id": "x", "detections": DETS}
    options, value, rows, count = _in_context("threshold.value", detection.filter_detections,
                                              result, 0.7, None, None, 3)
    assert [o["label"] for o in options] == ["0: circle (0.95)", "3: star (0.72)"]
    assert value == 3 and [r["index"] for r in rows] == [0, 3]
    assert count == "2 of 3 detections at confidence >= 0.70"
    # raising the threshold past the picked detection drops the pick
    options, value, rows, _ = _in_context("threshold.value", detection.filter_detections,
                                          result, 0.8, None, None, 3)
    assert value is None and [o["value"] for o in options] == [0]


def test_a_forged_threshold_is_refused_with_a_sentence(no_model):
    result = {"image_id": "x", "detections": DETS}
    for forged in (5, -1, "abc", float("nan")):
        options, value, rows, count = _in_context("threshold.value", detection.filter_detections,
                                                  result, forged, None, None, 3)
        assert options == [] and value is None and rows == []
        assert "Confidence Threshold must be 0..1" in str(count)


def test_clicking_a_box_or_a_row_picks_that_detection(no_model):
    result = {"image_id": "x", "detections": DETS}
    click = {"points": [{"customdata": 3, "curveNumber": 2}]}
    assert _in_context("detection-figure.clickData", detection.filter_detections,
                       result, 0.5, click, None, None)[1] == 3
    selected = [{"index": 3, "label": "star"}]  # AG Grid's selectedRows
    assert _in_context("detection-table.selectedRows", detection.filter_detections,
                       result, 0.5, None, selected, 0)[1] == 3


def test_option_label_format():
    assert option_label(DETS[1]) == "3: star (0.72)"


def test_figure_draws_visible_boxes_and_highlights_the_pick(no_model):
    from PIL import Image
    image = Image.new("RGB", (100, 80), (30, 60, 90))
    key = service.put_image(image)
    store = {"image_id": key, "width": 100, "height": 80, "name": "x", "truth": None}
    fig, styles = detection.draw_detections({"image_id": key, "detections": DETS}, 0.5, 3, False, store)
    boxes = [t for t in fig.data if (t.name or "").startswith("det-")]
    assert [t.name for t in boxes] == ["det-0", "det-3"]  # the picked one last: drawn on top
    assert boxes[-1].line.width == 5 and boxes[0].line.width == 2
    assert list(boxes[0].x) == [10, 40, 40, 10, 10] and list(boxes[0].y) == [10, 10, 40, 40, 10]
    assert styles == {"styleConditions": [{"condition": "params.data.index === 3",
                                           "style": {"backgroundColor": "#fff3cd", "fontWeight": "bold"}}]}


def test_bad_upload_keeps_the_previous_image(no_model):
    contents = "data:image/png;base64," + base64.b64encode(b"not a png").decode()
    store, message = _in_context("upload.contents", detection.load_image, contents, [], None, "x.png")
    assert store is detection.no_update
    assert "not an image" in str(message)


@pytest.mark.parametrize("name", ["scene:abc", "scene:12", "photo:../../etc/passwd", "photo:missing.jpg", "x"])
def test_a_forged_sample_name_opens_nothing(no_model, name):
    def run():
        set_context(dict(triggered_inputs=[{"prop_id": f'{{"name":"{name}","type":"sample"}}.n_clicks',
                                                 "value": 1}]))
        return detection.load_image(None, [1], None, None)
    store, message = copy_context().run(run)
    assert store is detection.no_update and "no such sample" in str(message)


def test_a_huge_upload_is_kept_at_twice_the_model_input(no_model):
    import io
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (3000, 1500), (0, 90, 0)).save(buf, "PNG")
    contents = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    store, _ = _in_context("upload.contents", detection.load_image, contents, [], None, "big.png", 2**30, 10**8, 400)
    assert (store["width"], store["height"]) == (800, 400)
    assert service.get_image(store["image_id"]).size == (800, 400)


def test_upload_stores_the_image_server_side(no_model):
    import io
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(buf, "PNG")
    contents = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    store, message = _in_context("upload.contents", detection.load_image, contents, [], None, "red.png")
    assert set(store) == {"image_id", "width", "height", "name", "truth"} and (store["width"], store["height"]) == (40, 30)
    assert service.get_image(store["image_id"]).getpixel((0, 0)) == (200, 10, 10)
