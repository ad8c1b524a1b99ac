"""Shareable links in a browser: a copied link reopens the same view in a fresh page; an evicted
image is asked for again (and the view comes back after the upload); a forged link is refused."""
from urllib.parse import parse_qsl, urlsplit

from selenium.webdriver.common.keys import Keys

from core import cache
from tests.browser.helpers import (TIMEOUT, click, rows, scene_file, select, traces, upload, upload_and_pick,
                                   wait_until)


def _view(dash_duo):
    """Detections (table rows), the picked one, and the map's hover text at one point (the map's first
    grid cell, in the image's top-left corner), or None while no heatmap is drawn."""
    table = [r.text for r in rows(dash_duo)]
    picked = dash_duo.find_element("#picker").text.strip()
    if not any(t["type"] == "heatmap" for t in traces(dash_duo, "explain-figure")):
        return table, picked, None

    def hover():  # plotly's own hover at the map's first grid cell (a data point, not a pixel)
        dash_duo.driver.execute_script(
            "const gd = document.getElementById('explain-figure').querySelector('.js-plotly-plot');"
            "const t = gd._fullData.find(t => t.type === 'heatmap');"
            "Plotly.Fx.hover(gd, {xval: t.x[0], yval: t.y[0]}, 'xy');")
        return " ".join(e.text for e in dash_duo.find_elements("#explain-figure .hovertext"))
    text = wait_until(hover, "no hover text over the heatmap", timeout=20)
    return table, picked, text


def _link(dash_duo):
    return wait_until(lambda: dash_duo.find_element("#link-text").get_attribute("value"), "no link shown")


def _start(dash_duo, app):
    """On a free port: other sessions on this machine run dash_duo's default port too."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dash_duo.start_server(app, port=port)


def _fresh(dash_duo, url):
    """A fresh page session: nothing of the old page's state (stores live in the page's memory)."""
    dash_duo.driver.get("about:blank")
    dash_duo.driver.delete_all_cookies()
    dash_duo.driver.get(url)
    dash_duo.wait_for_element("#picker", timeout=TIMEOUT)


def test_a_copied_link_reopens_the_same_view(dash_duo, dashboard, tmp_path):
    _start(dash_duo, dashboard)
    upload_and_pick(dash_duo, tmp_path)
    for _ in range(5):  # a threshold other than the default (0.65): the link carries it
        dash_duo.find_element("#threshold [role=slider]").send_keys(Keys.ARROW_LEFT)
    wait_until(lambda: dash_duo.find_element("#threshold [role=slider]").get_attribute("aria-valuenow") == "0.65",
               "the threshold did not move")
    select(dash_duo, "#method", "DETR attention")
    click(dash_duo, "#explain")
    dash_duo.wait_for_contains_text("#explain-info", "DETR attention", timeout=TIMEOUT)
    wait_until(lambda: _view(dash_duo)[2] is not None, "no heatmap")
    before = _view(dash_duo)
    assert len(before[0]) > 0 and "value" in before[2]
    dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].click();",
                                   dash_duo.find_element("#link-copy"))
    dash_duo.wait_for_contains_text("#link-copied", "copied", timeout=10)
    link = _link(dash_duo)
    fields = dict(parse_qsl(urlsplit(link).query))
    assert set(fields) >= {"image", "threshold", "query", "method"} and len(link) < 300  # no image data
    assert fields["method"] == "attention" and fields["threshold"] == "0.65"
    assert before[1].startswith(fields["query"] + ":")

    _fresh(dash_duo, link)
    wait_until(lambda: dash_duo.find_element("#picker").text.strip() == before[1],
               lambda: f"the link did not pick {before[1]!r}: picker {dash_duo.find_element('#picker').text!r}, "
               f"{len(rows(dash_duo))} rows, message {dash_duo.find_element('#link-message').text!r}, "
               f"count {dash_duo.find_element('#detection-count').text!r}", timeout=2 * TIMEOUT)
    dash_duo.wait_for_contains_text("#explain-info", "DETR attention", timeout=TIMEOUT)
    after = wait_until(lambda: _view(dash_duo)[2] is not None and _view(dash_duo), "no heatmap after the link")
    assert after == before
    assert _link(dash_duo) == link  # the reopened view gives the same link


def test_an_evicted_image_is_asked_for_and_the_view_comes_back_after_the_upload(dash_duo, dashboard, tmp_path):
    _start(dash_duo, dashboard)
    index = upload_and_pick(dash_duo, tmp_path)
    wait_until(lambda: _view(dash_duo)[2] is not None, "no heatmap")
    link = _link(dash_duo)
    image_id = dict(parse_qsl(urlsplit(link).query))["image"]
    cache.store().delete("image:" + image_id)

    _fresh(dash_duo, link)
    dash_duo.wait_for_contains_text("#link-message", "no longer on the server. Upload it again", timeout=TIMEOUT)
    assert rows(dash_duo) == []
    upload(dash_duo, scene_file(tmp_path))
    wait_until(lambda: dash_duo.find_element("#picker").text.strip().startswith(f"{index}:"),
               "the link's detection was not picked after the upload", timeout=2 * TIMEOUT)
    wait_until(lambda: _view(dash_duo)[2] is not None, "no heatmap after the upload")


def test_a_link_with_an_out_of_range_value_is_refused(dash_duo, dashboard):
    _start(dash_duo, dashboard)
    dash_duo.wait_for_element("#samples button", timeout=TIMEOUT)
    calls = cache.store().get("stats:model_calls", 0)
    _fresh(dash_duo, dash_duo.server_url + "/?image=" + "ab" * 16 + "&threshold=0.5&query=1&method=ig&steps=5000")
    dash_duo.wait_for_contains_text("#link-message", "cannot be opened: Steps must be 1..1024", timeout=TIMEOUT)
    assert "Nothing was run" in dash_duo.find_element("#link-message").text
    assert rows(dash_duo) == [] and cache.store().get("stats:model_calls", 0) == calls
