"""MC Dropout as a person sees it: run 5 samples, histograms beside the boxes, the picked one in detail."""
from selenium.webdriver.common.keys import Keys

from core import service
from tests.browser.helpers import TIMEOUT, click, rows, scene_file, select, traces, upload, wait_until


def _names(dash_duo, prefix):
    return sorted(t["name"] for t in traces(dash_duo, "uncertainty-figure") if (t["name"] or "").startswith(prefix))


def _set_samples(dash_duo, n):
    handle = dash_duo.find_element("#mc-samples [role=slider]")
    handle.send_keys(Keys.HOME)
    for _ in range(n - 1):
        handle.send_keys(Keys.ARROW_RIGHT)
    wait_until(lambda: handle.get_attribute("aria-valuenow") == str(n), f"the samples slider did not reach {n}")


def _bars(dash_duo, name):
    """(count, score low, score high) of each bar of an inset, and the first point of the tallest bar."""
    return dash_duo.driver.execute_script(
        "const gd = document.getElementById('uncertainty-figure').querySelector('.js-plotly-plot');"
        "const t = gd.data.find(t => t.name === arguments[0]); const bars = []; let best = 0;"
        "for (let i = 0; i < t.customdata.length; i += 6) {"
        "  bars.push(t.customdata[i]); if (t.customdata[i][0] > t.customdata[best][0]) best = i; }"
        "return [bars, best];", name)


def test_mc_dropout_histograms_beside_the_boxes(dash_duo, dashboard, tmp_path):
    dash_duo.start_server(dashboard)
    upload(dash_duo, scene_file(tmp_path))
    dash_duo.wait_for_contains_text("#detection-count", "of 12 detections", timeout=TIMEOUT)
    if dash_duo.find_element("#detection-count").text.startswith("0 of"):  # an early demo checkpoint
        dash_duo.find_element("#threshold [role=slider]").send_keys(Keys.HOME)
    wait_until(lambda: len(rows(dash_duo)) > 0, "no detection rows")
    select(dash_duo, "#picker", index=0)
    index = int(wait_until(lambda: dash_duo.find_element("#picker").text.strip(), "nothing picked").split(":")[0])

    _set_samples(dash_duo, 5)
    click(dash_duo, "#mc-run")
    dash_duo.wait_for_contains_text("#uncertainty-info", "5 samples at dropout", timeout=120)
    boxes = wait_until(lambda: _names(dash_duo, "det-"), "no boxes on the uncertainty figure")
    assert _names(dash_duo, "hist-") == sorted(f"hist-{n[4:]}" for n in boxes), "a visible box has no histogram"
    bars = [t for t in traces(dash_duo, "uncertainty-figure") if t["name"].startswith("hist-")]
    assert all("of 5 samples" in t["hovertemplate"] for t in bars)
    assert "sampled-boxes" in _names(dash_duo, "sampled-")
    # hovering a bar gives its count and score range
    plot = dash_duo.find_element("#uncertainty-figure .nsewdrag")
    dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", plot)
    bars, best = _bars(dash_duo, f"hist-{index}")
    assert sum(b[0] for b in bars) == 5  # every sample in exactly one bar
    # hover the tallest bar's corner point through plotly's own hover (a mouse at that pixel can land
    # on the box's fill underneath the inset), then read the label the page shows
    dash_duo.driver.execute_script(
        "const gd = document.getElementById('uncertainty-figure').querySelector('.js-plotly-plot');"
        "const n = gd.data.findIndex(t => t.name === arguments[0]);"
        "Plotly.Fx.hover(gd, [{curveNumber: n, pointNumber: arguments[1]}]);", f"hist-{index}", best + 1)
    text = wait_until(lambda: " ".join(e.text for e in dash_duo.find_elements("#uncertainty-figure .hovertext")),
                      "no hover text over the histogram", timeout=10)
    import re
    found = re.search(r"(\d+) of 5 samples\s*score ([\d.]+)-([\d.]+)", text)
    assert found, text
    shown = (int(found.group(1)), float(found.group(2)), float(found.group(3)))
    tallest = bars[best // 6]
    assert shown == (tallest[0], round(tallest[1], 2), round(tallest[2], 2)), (text, tallest)
    dash_duo.wait_for_contains_text("#uncertainty-stats", "mutual information", timeout=TIMEOUT)
    assert "slot swap" in dash_duo.find_element("#uncertainty-stats").text
    title = dash_duo.driver.execute_script(
        "const g = document.getElementById('uncertainty-histogram').querySelector('.js-plotly-plot');"
        "return g && g.layout && g.layout.title ? g.layout.title.text : '';")
    assert title.startswith(f"{index}:"), title

    # the threshold only filters: every box gets its histogram, the model does not run again
    calls = service.model_calls()
    dash_duo.find_element("#threshold [role=slider]").send_keys(Keys.HOME)
    dash_duo.wait_for_contains_text("#detection-count", "12 of 12", timeout=TIMEOUT)
    wait_until(lambda: len(_names(dash_duo, "hist-")) == 12, "lowering the threshold did not add histograms")
    assert service.model_calls() == calls


def test_samples_slider_tooltip_and_trained_rate(dash_duo, dashboard):
    dash_duo.start_server(dashboard)
    dash_duo.wait_for_element("#mc-samples [role=slider]", timeout=TIMEOUT)
    dash_duo.wait_for_contains_text("#mc-dropout-note", "Trained rate: 0.10", timeout=TIMEOUT)
    handle = dash_duo.find_element("#mc-samples [role=slider]")
    dash_duo.driver.execute_script("arguments[0].focus();", handle)
    dash_duo.wait_for_contains_text(".tooltip", "Number of stochastic forward passes", timeout=10)
    dropout = dash_duo.find_element("#mc-dropout [role=slider]")
    dropout.send_keys(Keys.END)
    wait_until(lambda: dropout.get_attribute("aria-valuenow") == "0.9", "the dropout slider did not move")
    dash_duo.wait_for_contains_text("#mc-dropout-note", "far from it", timeout=TIMEOUT)
