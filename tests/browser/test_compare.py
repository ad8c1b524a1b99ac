"""The Compare view in a browser: pick a detection, press Compare, see every panel and the scores table."""
import json

from selenium.webdriver.common.action_chains import ActionChains

from tests.browser.helpers import TIMEOUT, cells, click, rows, select, wait_until

from core.evaluation.compare import default_methods
from core.methods.registry import METHODS

# every compared method: the five CAM-family and ODAM panels, IG, attention and relevance
METHOD_LABELS = tuple(METHODS[name].label for name in default_methods())
N = len(METHOD_LABELS)


def _pick_best(dash_duo) -> int:
    """Click the table row of the most confident detection (that picks it); returns its query index."""
    scores = [float(e.text) for e in cells(dash_duo, "detection-table", "score")]
    best = scores.index(max(scores))
    index = int(rows(dash_duo)[best].text)
    click(dash_duo, f"#detection-table .ag-center-cols-container .ag-row[row-index='{best}'] .ag-cell[col-id=index]")
    return index


def _click(dash_duo, selector):
    """A click in the page's script: the card is below the fold, and the page's layout moves while the
    explanation card fills in (a pointer click can land on what moved there)."""
    dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].click();",
                                   dash_duo.find_element(selector))


def _panels(dash_duo):
    """Per compare panel: its hover template and how many values each hover cell carries."""
    return json.loads(dash_duo.driver.execute_script(
        "return JSON.stringify([...document.querySelectorAll('#compare-grid .js-plotly-plot')].map(g => ({"
        "hover: g.data[1].hovertemplate, cells: g.data[1].customdata[0][0].length})));"))


def _hover_values(dash_duo):
    return dash_duo.driver.execute_script(
        "const g = document.querySelector('#compare-grid .js-plotly-plot');"
        "return g && JSON.stringify(g.data[1].customdata);")


def test_compare_shows_every_method_and_the_scores(dash_duo, dashboard):
    dash_duo.start_server(dashboard)
    # a sample scene (not an upload) comes with its true boxes
    dash_duo.wait_for_element("#samples button", timeout=TIMEOUT)
    _click(dash_duo, "#samples button")
    wait_until(lambda: len(rows(dash_duo)) > 0, "no detection rows for the sample scene")
    best = _pick_best(dash_duo)
    wait_until(lambda: dash_duo.find_element("#picker").text.strip().startswith(f"{best}:"), "nothing picked")
    # IG steps set in the explanation card are used; the other IG settings keep the comparison's defaults
    for dropdown, value in (("#method", "Integrated Gradients"), ("#ig-steps", "8")):
        select(dash_duo, dropdown, value)
    _click(dash_duo, "#compare")

    panels = wait_until(lambda: len(_panels(dash_duo)) == N and _panels(dash_duo), "not every panel appeared",
                        timeout=3 * TIMEOUT)
    for panel in panels:  # every panel's hover carries every method's value
        assert panel["cells"] == N and all(label in panel["hover"] for label in METHOD_LABELS)
    titles = [e.text for e in dash_duo.find_elements("#compare-grid .card-header")]
    assert sorted(titles) == sorted(METHOD_LABELS)
    def scored():  # each panel's note says "Scoring ..." until its curves are done
        notes = dash_duo.driver.execute_script(  # read at once: the notes are redrawn as panels are scored
            "return [...document.querySelectorAll('#compare-grid .card .small')].map(e => e.innerText);")
        return len(notes) == N and all("deletion" in n for n in notes) and notes
    notes = wait_until(scored, "not every panel was scored", timeout=3 * TIMEOUT)
    assert any("IG (from the explanation card): blur (sigma 8), 8 steps, 320x320 px" in n for n in notes)
    dash_duo.wait_for_contains_text("#compare-info", f"All methods for {best}:", timeout=TIMEOUT)
    assert "Scored against the true" in dash_duo.find_element("#compare-info").text

    methods = cells(dash_duo, "compare-table", "method")
    assert sorted(m.text for m in methods) == sorted(METHOD_LABELS)
    assert "How to read the scores" in dash_duo.find_element("#compare-table-group").text
    # a generated scene has its truth: the true box's pointing game is filled in
    truth = cells(dash_duo, "compare-table", "pointing_game_gt")
    assert len(truth) == N and all(t.text not in ("", "–") for t in truth)

    # hovering a panel shows every method's value at that point
    ActionChains(dash_duo.driver).move_to_element(dash_duo.find_element("#compare-grid .nsewdrag")).perform()
    text = wait_until(lambda: " ".join(e.text for e in dash_duo.find_elements("#compare-grid .hovertext")),
                      "no hover text over a compare panel", timeout=10)
    assert all(label in text for label in METHOD_LABELS)

    # switching the normalisation redraws the panels from the cache: the hover values change
    before = _hover_values(dash_duo)
    _click(dash_duo, "label[for='_dbcprivate_radioitems_compare-norm_input_rank']")
    wait_until(lambda: _hover_values(dash_duo) not in (before, None), "switching to rank did not redraw the panels")
    assert len(_panels(dash_duo)) == N

    # the sanity check: one line of Spearman rho per method, and a verdict
    _click(dash_duo, "#sanity")
    wait_until(lambda: dash_duo.find_element("#sanity-info").text, "the sanity check showed no verdict",
               timeout=3 * TIMEOUT)
    lines = json.loads(dash_duo.driver.execute_script(
        "return JSON.stringify(document.querySelector('#sanity-figure .js-plotly-plot').data.map(t => t.name));"))
    assert sorted(lines) == sorted(METHOD_LABELS)
    # the verdict names exactly the methods whose plotted rho is still above 0.9 at the encoder step (the
    # step the verdict reads): what the text says agrees with what the plot shows
    plotted = json.loads(dash_duo.driver.execute_script(
        "return JSON.stringify(document.querySelector('#sanity-figure .js-plotly-plot').data.map("
        "t => ({name: t.name, x: t.x, y: t.y})));"))
    high = sorted(p["name"] for p in plotted if abs(p["y"][p["x"].index("encoder")] or 0) > 0.9)
    verdict = dash_duo.find_element("#sanity-info").text
    if high:
        assert verdict.startswith("Flagged: ") and sorted(verdict[9:verdict.index(": the map")].split(", ")) == high
    else:
        assert verdict.startswith("No method flagged"), verdict
