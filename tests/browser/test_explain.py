"""Explanations as a person sees them: heatmaps with hover values, IG progress."""
from selenium.webdriver.common.action_chains import ActionChains

from tests.browser.helpers import TIMEOUT, click, select, traces, upload_and_pick, wait_until


def _heatmaps(dash_duo):
    return [t for t in traces(dash_duo, "explain-figure") if t["type"] == "heatmap"]


def test_gradcam_plus_plus_heatmap_with_hover_values(dash_duo, dashboard, tmp_path):
    dash_duo.start_server(dashboard)
    index = upload_and_pick(dash_duo, tmp_path)
    wait_until(lambda: _heatmaps(dash_duo), "picking a detection showed no Grad-CAM heatmap")
    # the default is the variant that points at the object (measured), not Grad-CAM
    dash_duo.wait_for_contains_text("#explain-info", "Element-wise Grad-CAM for", timeout=TIMEOUT)
    click(dash_duo, "label[for='_dbcprivate_radioitems_cam-variant_input_gradcam++']")
    dash_duo.wait_for_contains_text("#explain-info", "Grad-CAM++", timeout=TIMEOUT)
    dash_duo.wait_for_contains_text("#explain-info", f"{index}:", timeout=TIMEOUT)
    names = [t["name"] for t in traces(dash_duo, "explain-figure")]
    assert names[-1] == f"det-{index}", "the selected box must stay on top of the heatmap"
    # hover over the plot: the tooltip shows the map's value at that point
    graph = dash_duo.find_element("#explain-figure .nsewdrag")
    dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", graph)
    # a point near the top-left corner of the image, away from the box (offsets from the centre)
    size = graph.size
    ActionChains(dash_duo.driver).move_to_element(graph).move_by_offset(
        -size["width"] // 2 + 8, -size["height"] // 2 + 8).perform()
    text = wait_until(lambda: " ".join(e.text for e in dash_duo.find_elements("#explain-figure .hovertext")),
                      "no hover text over the heatmap", timeout=10)
    assert "value" in text


def test_integrated_gradients_shows_progress_early_maps_then_the_final_map(dash_duo, dashboard, tmp_path):
    dash_duo.start_server(dashboard)
    upload_and_pick(dash_duo, tmp_path)
    select(dash_duo, "#method", "Integrated Gradients")
    select(dash_duo, "#ig-steps", "300")
    click(dash_duo, "#explain")
    wait_until(lambda: dash_duo.find_element("#explain-progress").is_displayed(), "no progress bar while IG runs")
    info = lambda: dash_duo.find_element("#explain-info").text
    early = wait_until(lambda: "Early map" in info() and info(), "no early map before the final one", timeout=120)
    assert "of 300 steps" in early and "Convergence" in early and _heatmaps(dash_duo)
    wait_until(lambda: "Early map" not in info() and "Convergence" in info(), "no final map", timeout=120)
    assert "300 steps" in info() and not dash_duo.find_element("#explain-progress").is_displayed()
    assert _heatmaps(dash_duo)
