"""What a person sees: upload, boxes and table, threshold, picking, tooltips, bad files."""
import json

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from core.scenes import make_scene

TIMEOUT = 60


def _scene_file(tmp_path, seed=1_000_003):
    path = tmp_path / "scene.png"
    make_scene(seed)[0].save(path)
    return path


def _upload(dash_duo, path):
    dash_duo.find_element("#upload input[type=file]").send_keys(str(path))


def _figure(dash_duo):
    return json.loads(dash_duo.driver.execute_script(
        "const g = document.getElementById('detection-figure').querySelector('.js-plotly-plot');"
        "return JSON.stringify({data: g.data.map(t => ({name: t.name, width: t.line && t.line.width}))});"))


def _box_traces(dash_duo):
    return [t for t in _figure(dash_duo)["data"] if (t["name"] or "").startswith("det-")]


def _rows(dash_duo):
    return dash_duo.find_elements("#detection-table tbody tr td[data-dash-column=index]")


def _wait_rows(dash_duo, predicate, message):
    dash_duo.wait_for_element("#detection-table", timeout=TIMEOUT)
    import time
    end = time.time() + TIMEOUT
    while time.time() < end:
        if predicate(len(_rows(dash_duo))):
            return len(_rows(dash_duo))
        time.sleep(0.3)
    raise AssertionError(message)


def test_upload_threshold_pick(dash_duo, dashboard, tmp_path):
    dash_duo.start_server(dashboard)
    _upload(dash_duo, _scene_file(tmp_path))
    shown = _wait_rows(dash_duo, lambda n: n > 0, "no detection rows after upload")
    dash_duo.wait_for_contains_text("#detection-count", f"{shown} of", timeout=TIMEOUT)
    assert len(_box_traces(dash_duo)) == shown

    # threshold 0: every query is shown (the model is not re-run: the count of all stays the same)
    handle = dash_duo.find_element("#threshold .rc-slider-handle")
    handle.send_keys(Keys.HOME)
    total = _wait_rows(dash_duo, lambda n: n > shown, "lowering the threshold showed no more detections")
    assert "of 12 detections at confidence >= 0.00" in dash_duo.find_element("#detection-count").text
    assert total == min(12, 10)  # the table pages at 10 rows
    assert len(_box_traces(dash_duo)) == 12

    # pick one in the dropdown: its box is drawn thicker, on top, and its row highlighted
    dash_duo.select_dcc_dropdown("#picker", index=0)
    dash_duo.wait_for_contains_text("#picker", ":", timeout=TIMEOUT)
    picked = dash_duo.find_element("#picker .Select-value-label, #picker [class*=singleValue]").text
    index = int(picked.split(":")[0])
    import time
    end = time.time() + TIMEOUT
    while time.time() < end and not any(t["width"] == 5 for t in _box_traces(dash_duo)):
        time.sleep(0.3)
    widest = [t for t in _box_traces(dash_duo) if t["width"] == 5]
    assert [t["name"] for t in widest] == [f"det-{index}"]
    assert _box_traces(dash_duo)[-1]["name"] == f"det-{index}"


def test_tooltip_on_keyboard_focus(dash_duo, dashboard):
    dash_duo.start_server(dashboard)
    handle = dash_duo.find_element("#threshold .rc-slider-handle")
    dash_duo.driver.execute_script("arguments[0].focus();", handle)
    dash_duo.wait_for_contains_text(".tooltip", "Filter out detections with confidence below this value.",
                                    timeout=10)
    group = dash_duo.find_element("#threshold-group")
    assert group.get_attribute("aria-describedby") == "threshold-tooltip"


def test_bad_file_shows_message_and_page_keeps_working(dash_duo, dashboard, tmp_path):
    dash_duo.start_server(dashboard)
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"this is not an image")
    _upload(dash_duo, bad)
    dash_duo.wait_for_contains_text("#upload-message", "not an image", timeout=TIMEOUT)
    _upload(dash_duo, _scene_file(tmp_path))
    _wait_rows(dash_duo, lambda n: n > 0, "a good image after a bad one was not detected")
