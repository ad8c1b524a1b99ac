"""Shared steps of the browser tests: what a person does, in functions."""
import json
import time

from core.demo.scenes import make_scene

TIMEOUT = 60


def scene_file(tmp_path, seed=1_000_003):
    path = tmp_path / f"scene-{seed}.png"
    make_scene(seed)[0].save(path)
    return path


def upload(dash_duo, path):
    dash_duo.wait_for_element("#upload input[type=file]", timeout=TIMEOUT).send_keys(str(path))


def wait_until(predicate, message, timeout=TIMEOUT):
    """predicate's first true value, polled for `timeout` s; else fails with `message` (or message())."""
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(message() if callable(message) else message)


def traces(dash_duo, graph_id):
    """The plotly traces a graph currently shows (name, type, line width, hovertemplate)."""
    return json.loads(dash_duo.driver.execute_script(
        "const g = document.getElementById(arguments[0]).querySelector('.js-plotly-plot');"
        "return JSON.stringify(g && g.data ? g.data.map(t => ({name: t.name, type: t.type, "
        "width: t.line && t.line.width, hovertemplate: t.hovertemplate})) : []);", graph_id))


def click(dash_duo, selector):
    """Scroll the element to the middle of the window first, as a person would, then click it."""
    from selenium.common.exceptions import ElementClickInterceptedException

    def attempt():
        element = dash_duo.find_element(selector)
        dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
        try:
            element.click()
            return True
        except ElementClickInterceptedException:  # a tooltip or an opening menu is in the way
            return False
    wait_until(attempt, f"could not click {selector}")


def select(br, selector, value=None, index=None):
    """Choose a dropdown option by its label (or position) as a person would: open the dropdown,
    scroll the option into view, click it; retried while the page is still moving."""
    from selenium.common.exceptions import ElementClickInterceptedException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    def pick():
        box = br.find_element(selector)
        br.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", box)
        try:
            if not br.driver.find_elements(By.CSS_SELECTOR, ".dash-dropdown-options"):
                box.click()
                search = br.driver.find_elements(By.CSS_SELECTOR, "input.dash-dropdown-search")
                if value is not None and search:  # typing filters the menu and resets its scroll, so the
                    search[0].send_keys(value)    # option is not hidden under the search box
            options = br.driver.find_elements(By.CSS_SELECTOR, ".dash-dropdown-options .dash-dropdown-option")
            target = options[index] if index is not None and index < len(options) else next(
                (o for o in options if o.text == value), None)
            if target is None:
                return False
            br.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", target)
            target.click()
        except (ElementClickInterceptedException, StaleElementReferenceException):
            br.find_element("body").send_keys(Keys.ESCAPE)
            return False
        text = br.find_element(selector).text
        return value in text if value is not None else ":" in text
    wait_until(pick, f"could not choose {value if value is not None else index} in {selector}")


def cells(dash_duo, table_id, column):
    """The cells of one column of an AG Grid, in the order the grid shows its rows."""
    found = dash_duo.find_elements(f"#{table_id} .ag-center-cols-container .ag-row")
    found.sort(key=lambda row: int(row.get_attribute("row-index")))
    return [c for row in found for c in row.find_elements("css selector", f".ag-cell[col-id={column}]")]


def rows(dash_duo):
    return cells(dash_duo, "detection-table", "index")


def upload_and_pick(dash_duo, tmp_path, seed=1_000_003):
    """Upload a scene, wait for its detections, pick the first one; returns the picked query index."""
    upload(dash_duo, scene_file(tmp_path, seed))
    wait_until(lambda: len(rows(dash_duo)) > 0, "no detection rows after upload")
    select(dash_duo, "#picker", index=0)
    label = wait_until(lambda: dash_duo.find_element("#picker").text.strip(), "nothing picked")
    return int(label.split(":")[0])
