"""axe-core (4.x, bundled by the axe-core-python package) over the page's main states: no critical or
serious violation, and the moderate landmark/heading rules that are ours to fix."""
import json

from selenium.webdriver.common.keys import Keys

from tests.browser.test_links import _start
from tests.browser.helpers import TIMEOUT, click, upload_and_pick, wait_until

BLOCKING = {"critical", "serious"}
# upstream, not fixable with attributes: dcc.Checklist (Dash 4.4) draws each option as a role=option
# label around its checkbox (axe: nested-interactive); used by the Evaluate tab's method list
UPSTREAM = {("nested-interactive", 'label[data-option-index="0"]')}
OURS = {"landmark-one-main", "page-has-heading-one", "region", "html-has-lang", "landmark-no-duplicate-main",
        "heading-order"}


def axe_violations(driver) -> list[dict]:
    """Every violation axe-core finds on the page as it is now: rule, impact, element count, first targets."""
    from axe_core_python.selenium import Axe
    # dbc.Tooltip (dash-bootstrap-components) renders an open tooltip in a portal at the end of <body>,
    # outside every landmark (axe: region); the tooltip's own text is checked where it is written
    results = Axe().run(driver, {"exclude": [[".tooltip"]]})
    return [{"rule": v["id"], "impact": v["impact"], "count": len(v["nodes"]),
             "targets": [n["target"] for n in v["nodes"][:3]]} for v in results["violations"]]


def _caption(dash_duo, graph_id):
    """A figure's accessible name and description (its visually hidden caption)."""
    return dash_duo.driver.execute_script(
        "const c = document.getElementById(arguments[0] + '-caption'); return c ? c.textContent : '';", graph_id)


def _set_samples(dash_duo, n):
    handle = dash_duo.find_element("#mc-samples [role=slider]")
    handle.send_keys(Keys.HOME)
    for _ in range(n - 1):
        handle.send_keys(Keys.ARROW_RIGHT)


def test_the_link_bar_by_keyboard(dash_duo, dashboard):
    """Tab reaches the link and its Copy button; focus shows the link's tooltip (as for every control)."""
    _start(dash_duo, dashboard)
    field = dash_duo.wait_for_element("#link-text", timeout=TIMEOUT)
    dash_duo.driver.execute_script("arguments[0].focus();", field)
    dash_duo.wait_for_contains_text(".tooltip", "A link to this view", timeout=10)
    field.send_keys(Keys.TAB)
    assert dash_duo.driver.switch_to.active_element.get_attribute("id") == "link-copy"


def test_no_critical_or_serious_violation_in_the_main_states(dash_duo, dashboard, tmp_path):
    found = {}
    _start(dash_duo, dashboard)
    dash_duo.wait_for_element("#samples button", timeout=TIMEOUT)
    found["empty page"] = axe_violations(dash_duo.driver)

    upload_and_pick(dash_duo, tmp_path)  # picking runs the quick default method (Grad-CAM)
    wait_until(lambda: dash_duo.find_element("#explain-figure").is_displayed(), "no explanation shown")
    found["detection + explanation"] = axe_violations(dash_duo.driver)
    picked = dash_duo.find_element("#picker").text.split(" (")[0]  # "3: circle"
    wait_until(lambda: "highest value" in _caption(dash_duo, "explain-figure"), "the map has no description")
    assert _caption(dash_duo, "explain-figure").startswith("Explanation map: ")
    assert f"Picked: {picked}" in _caption(dash_duo, "detection-figure")

    _set_samples(dash_duo, 3)
    click(dash_duo, "#mc-run")
    dash_duo.wait_for_contains_text("#uncertainty-info", "3 samples at dropout", timeout=120)
    found["MC-Dropout"] = axe_violations(dash_duo.driver)
    wait_until(lambda: "over 3 samples" in _caption(dash_duo, "uncertainty-histogram"), "no histogram description")

    dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].click();",
                                   dash_duo.find_element("#compare"))
    dash_duo.wait_for_contains_text("#compare-info", "All methods for", timeout=3 * TIMEOUT)
    found["Compare"] = axe_violations(dash_duo.driver)
    names = [e.get_attribute("aria-label") for e in dash_duo.find_elements("#compare-grid [role=figure]")]
    assert len(names) == len(dash_duo.find_elements(".compare-panel")) >= 5 and all("highest" in n for n in names)

    tab = wait_until(lambda: next((e for e in dash_duo.find_elements(".nav-tabs .nav-link") if "Evaluate" in e.text),
                                  None), "no Evaluate tab")
    dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].click();", tab)
    dash_duo.wait_for_element("#eval-run", timeout=TIMEOUT)
    wait_until(lambda: dash_duo.driver.execute_script(  # the tab's fade-in done (contrast is measured)
        "const p = document.querySelector('.tab-pane.active'); return p && getComputedStyle(p).opacity === '1';"),
        "the Evaluate tab did not finish showing")
    found["Evaluate tab"] = axe_violations(dash_duo.driver)

    print("axe-core violations per state:\n" + json.dumps(found, indent=1))
    bad = {state: [v for v in vs if (v["impact"] in BLOCKING or v["rule"] in OURS)
                   and (v["rule"], v["targets"][0][0]) not in UPSTREAM] for state, vs in found.items()}
    assert not any(bad.values()), json.dumps(bad, indent=1)
