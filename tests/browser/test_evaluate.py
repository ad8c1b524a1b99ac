"""The Evaluate tab as a person uses it: a few demo scenes, the figures, a worst row opened."""
from selenium.webdriver.common.keys import Keys

from tests.browser.helpers import TIMEOUT, cells, click, rows, wait_until


def test_evaluate_a_few_scenes_then_open_a_worst_detection(dash_duo, dashboard):
    dash_duo.start_server(dashboard)
    tab = wait_until(lambda: next((e for e in dash_duo.find_elements(".nav-tabs .nav-link") if "Evaluate" in e.text),
                                  None), "no Evaluate tab")
    tab.click()
    scenes = dash_duo.wait_for_element("#eval-scenes", timeout=TIMEOUT)
    scenes.clear()
    scenes.send_keys("4")
    click(dash_duo, "#eval-run")
    dash_duo.wait_for_contains_text("#eval-info", "AP50", timeout=3 * TIMEOUT)
    assert "4 images" in dash_duo.find_element("#eval-info").text
    wait_until(lambda: len(dash_duo.find_elements("#eval-figures .js-plotly-plot")) >= 3, "no evaluation figures")
    worst = wait_until(lambda: cells(dash_duo, "eval-worst", "query"), "no worst detections listed")
    query = worst[0].text.strip()
    # the keyboard way (the table is below the figures): focus the first row's cell, Space selects it
    dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].focus();", worst[0])
    dash_duo.driver.switch_to.active_element.send_keys(Keys.SPACE)
    # the Explain tab opens on that image with that detection picked (the threshold may hide it: then nothing)
    wait_until(lambda: len(rows(dash_duo)) > 0, "the opened image shows no detections")
    wait_until(lambda: dash_duo.find_element("#picker").text.strip().startswith(f"{query}:")
               or query not in [c.text for c in rows(dash_duo)], "the worst detection was not picked")
