"""Shared steps of the browser tests: what a person does, in functions."""
import json
import time

from core.scenes import make_scene

TIMEOUT = 60


def scene_file(tmp_path, seed=1_000_003):
    path = tmp_path / f"scene-{seed}.png"
    make_scene(seed)[0].save(path)
    return path


def upload(dash_duo, path):
    dash_duo.wait_for_element("#upload input[type=file]", timeout=TIMEOUT).send_keys(str(path))


def wait_until(predicate, message, timeout=TIMEOUT):
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(message)


def traces(dash_duo, graph_id):
    """The plotly traces a graph currently shows (name, type, line width, hovertemplate)."""
    return json.loads(dash_duo.driver.execute_script(
        "const g = document.getElementById(arguments[0]).querySelector('.js-plotly-plot');"
        "return JSON.stringify(g && g.data ? g.data.map(t => ({name: t.name, type: t.type, "
        "width: t.line && t.line.width, hovertemplate: t.hovertemplate})) : []);", graph_id))


def click(dash_duo, selector):
    """Scroll the element to the middle of the window first, as a person would, then click it."""
    element = dash_duo.find_element(selector)
    dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
    element.click()


def select(dash_duo, selector, value):
    """Choose a dropdown option by its label, with the dropdown scrolled into view."""
    element = dash_duo.find_element(selector)
    dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
    dash_duo.select_dcc_dropdown(selector, value=value)


def rows(dash_duo):
    return dash_duo.find_elements("#detection-table tbody tr td[data-dash-column=index]")


def upload_and_pick(dash_duo, tmp_path, seed=1_000_003):
    """Upload a scene, wait for its detections, pick the first one; returns the picked query index."""
    upload(dash_duo, scene_file(tmp_path, seed))
    wait_until(lambda: len(rows(dash_duo)) > 0, "no detection rows after upload")
    dash_duo.select_dcc_dropdown("#picker", index=0)
    label = wait_until(lambda: dash_duo.find_element("#picker").text.strip(), "nothing picked")
    return int(label.split(":")[0])
