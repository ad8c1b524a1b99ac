"""What a person sees: upload, boxes and table, threshold, picking, tooltips, bad files."""
from selenium.webdriver.common.keys import Keys

from tests.browser.helpers import TIMEOUT, click, rows, scene_file, select, traces, upload, wait_until


def _boxes(dash_duo):
    return [t for t in traces(dash_duo, "detection-figure") if (t["name"] or "").startswith("det-")]


def test_upload_threshold_pick(dash_duo, dashboard, tmp_path):
    dash_duo.start_server(dashboard)
    upload(dash_duo, scene_file(tmp_path))
    dash_duo.wait_for_contains_text("#detection-count", "of 12 detections at confidence >= 0.70", timeout=TIMEOUT)
    shown = int(dash_duo.find_element("#detection-count").text.split()[0])
    assert shown > 0
    wait_until(lambda: len(rows(dash_duo)) == shown, "the table does not list the shown detections")
    wait_until(lambda: len(_boxes(dash_duo)) == shown, "boxes drawn do not match the table")

    # threshold 0: every query is shown; the slider only filters
    dash_duo.find_element("#threshold [role=slider]").send_keys(Keys.HOME)
    dash_duo.wait_for_contains_text("#detection-count", "12 of 12 detections at confidence >= 0.00", timeout=TIMEOUT)
    wait_until(lambda: len(_boxes(dash_duo)) == 12, "lowering the threshold did not draw every box")
    wait_until(lambda: len(rows(dash_duo)) == 10, "the table does not page at 10 rows")

    # pick one: its box is drawn thicker and on top
    select(dash_duo, "#picker", index=0)
    index = int(wait_until(lambda: dash_duo.find_element("#picker").text.strip(), "nothing picked").split(":")[0])
    wait_until(lambda: [t["name"] for t in _boxes(dash_duo) if t["width"] == 5] == [f"det-{index}"],
               "the picked box is not highlighted")
    assert _boxes(dash_duo)[-1]["name"] == f"det-{index}"


def test_clicking_a_table_row_picks_it(dash_duo, dashboard, tmp_path):
    dash_duo.start_server(dashboard)
    upload(dash_duo, scene_file(tmp_path))
    wait_until(lambda: len(rows(dash_duo)) > 0, "no detection rows")
    last = len(rows(dash_duo)) - 1
    index = rows(dash_duo)[last].text.strip()
    click(dash_duo, f"#detection-table .ag-center-cols-container .ag-row[row-index='{last}'] .ag-cell[col-id=index]")
    wait_until(lambda: dash_duo.find_element("#picker").text.strip().startswith(f"{index}:"),
               "clicking a table row did not pick that detection")
    # the keyboard way: arrow up to the first row, Space selects it
    first = rows(dash_duo)[0].text.strip()
    for _ in range(last):  # from the clicked (last) row up to the first
        dash_duo.driver.switch_to.active_element.send_keys(Keys.ARROW_UP)
    dash_duo.driver.switch_to.active_element.send_keys(Keys.SPACE)
    wait_until(lambda: dash_duo.find_element("#picker").text.strip().startswith(f"{first}:"),
               "Space on a focused table row did not pick that detection")


def test_tooltip_on_keyboard_focus(dash_duo, dashboard):
    dash_duo.start_server(dashboard)
    handle = dash_duo.wait_for_element("#threshold [role=slider]", timeout=TIMEOUT)
    dash_duo.driver.execute_script("arguments[0].focus();", handle)
    dash_duo.wait_for_contains_text(".tooltip", "Filter out detections with confidence below this value.", timeout=10)
    assert dash_duo.find_element("#threshold-group").get_attribute("aria-describedby") == "threshold-tooltip"


def test_bad_file_shows_message_and_page_keeps_working(dash_duo, dashboard, tmp_path):
    dash_duo.start_server(dashboard)
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"this is not an image")
    upload(dash_duo, bad)
    dash_duo.wait_for_contains_text("#upload-message", "not an image", timeout=TIMEOUT)
    upload(dash_duo, scene_file(tmp_path))
    dash_duo.wait_for_contains_text("#detection-count", "of 12 detections", timeout=TIMEOUT)


def test_guide_explains_use_choices_and_links_reading(dash_duo, dashboard):
    dash_duo.start_server(dashboard)
    guide = dash_duo.wait_for_element("#guide", timeout=TIMEOUT)
    titles = [b.text for b in guide.find_elements("css selector", ".accordion-button")]
    assert titles == ["How to use this dashboard", "Key interpretability choices & why they matter", "Further reading"]
    for n in range(1, len(titles) + 1):
        click(dash_duo, f"#guide .accordion-item:nth-of-type({n}) .accordion-button")
    dash_duo.wait_for_contains_text("#guide", "Grad-CAM on a transformer detector", timeout=10)
    wait_until(lambda: "Move the Confidence Threshold slider" in guide.text, "the how-to is not shown")
    links = {a.text: a.get_attribute("href") for a in guide.find_elements("css selector", "a")}
    assert links["End-to-End Object Detection with Transformers (DETR, Carion et al. 2020)"] == \
        "https://arxiv.org/abs/2005.12872"
    assert len(links) >= 10 and all(href.startswith("https://") for href in links.values())
