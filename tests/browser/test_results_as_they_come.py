"""Results on screen as they come: Compare's panels and MC-Dropout's histograms appear while their job's
progress bar still shows; Cancel stops a comparison midway, and the page computes the next one."""
import time

import pytest
from selenium.webdriver.common.keys import Keys

from core.evaluation.compare import default_methods
from tests.browser.helpers import TIMEOUT, cells, click, traces, upload_and_pick, wait_until

N = len(default_methods())


def _shown(dash_duo, selector) -> bool:
    found = dash_duo.find_elements(selector)
    return bool(found) and found[0].is_displayed()


def _press(dash_duo, selector):
    """A click in the page's script: the Compare card is below the fold, and it moves as panels arrive."""
    dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].click();",
                                   dash_duo.find_element(selector))


def _compare_state(dash_duo) -> dict:
    """What the Compare card shows at one moment, read in one script (the page moves while a job runs)."""
    return dash_duo.driver.execute_script(
        "const shown = id => { const e = document.getElementById(id); return !!e && e.offsetParent !== null; };"
        "return {running: shown('compare-progress'), table: shown('compare-table-group'),"
        " plots: document.querySelectorAll('#compare-grid .compare-panel .js-plotly-plot').length,"
        " pending: document.querySelectorAll('#compare-grid .compare-pending').length,"
        " info: document.getElementById('compare-info').innerText,"
        " grid: document.getElementById('compare-grid').innerText};")


@pytest.mark.parametrize("stage", ["maps", "scores"])
def test_compare_results_appear_while_the_job_runs_and_cancel_stops_it(dash_duo, dashboard, tmp_path, monkeypatch,
                                                                       stage):
    # the demo model compares in seconds: one stage is slowed down so a person (and this test) can watch it
    # and cancel it; the job process is forked from this one, patch included
    import dataclasses

    import core.evaluation.faithfulness as faithfulness
    from core.methods import registry
    if stage == "maps":  # Integrated Gradients takes its time, as at many steps on a real model
        ig = registry.METHODS["ig"]
        monkeypatch.setitem(registry.METHODS, "ig", dataclasses.replace(
            ig, compute=lambda *a, **k: (time.sleep(8), ig.compute(*a, **k))[1]))
    else:  # every scoring batch takes a second
        scorer = faithfulness.detection_scorer
        monkeypatch.setattr(faithfulness, "detection_scorer", lambda *a, **k: (
            lambda score: lambda images: (time.sleep(1), score(images))[1])(scorer(*a, **k)))
    dash_duo.start_server(dashboard)
    # a scene of its own: a comparison another test left in the cache would be answered at once
    upload_and_pick(dash_duo, tmp_path, seed={"maps": 1_000_021, "scores": 1_000_023}[stage])
    _press(dash_duo, "#compare")

    def seen():
        s = _compare_state(dash_duo)
        if stage == "maps":  # the one-pass methods' panels are there, IG's waits, no table yet
            return s["running"] and s["plots"] > 0 and s
        return s["running"] and s["plots"] == N and "Scoring ..." in s["grid"] and s
    early = wait_until(seen, lambda: f"no {stage} while the job ran: {_compare_state(dash_duo)}", timeout=120)
    assert early["plots"] + early["pending"] == N and not early["table"], early
    assert "ranking comes once every map is scored" in early["info"], early
    assert early["pending"] >= 1 if stage == "maps" else True, early
    if stage == "scores":  # every map's coarse curves (10 of 20 steps) first: an early ranking, said to be one
        ranked = wait_until(lambda: (lambda s: s["running"] and s["table"] and s)(_compare_state(dash_duo)),
                            lambda: f"no early ranking while the job ran: {_compare_state(dash_duo)}", timeout=120)
        assert "Early ranking" in ranked["info"] and "10 of 20 deletion / insertion steps" in ranked["info"], ranked
        assert "(early: 10 of 20 steps)" in ranked["grid"] and len(cells(dash_duo, "compare-table", "method")) == N

    # Cancel midway: the job stops, the button comes back, the card says what is on screen
    _press(dash_duo, "#compare-cancel")
    wait_until(lambda: not _shown(dash_duo, "#compare-progress") and dash_duo.find_element("#compare").is_enabled(),
               "Compare stayed busy after Cancel")
    dash_duo.wait_for_contains_text("#compare-info", "Cancelled", timeout=TIMEOUT)
    time.sleep(2)  # a stopped job sends nothing more: no final table comes, an early one stays as it was
    assert _compare_state(dash_duo)["table"] == (stage == "scores")

    # the next comparison (at full speed) runs to its end: every panel, then the ranking table
    monkeypatch.undo()
    _press(dash_duo, "#compare")
    final = wait_until(lambda: (lambda s: s["table"] and not s["running"] and "All methods for" in s["info"] and s)(
        _compare_state(dash_duo)),
                       lambda: f"no final comparison: {_compare_state(dash_duo)}", timeout=3 * TIMEOUT)
    assert final["plots"] == N and final["pending"] == 0 and "All methods for" in final["info"], final
    assert "Scoring" not in final["grid"] and len(cells(dash_duo, "compare-table", "method")) == N


def test_uncertainty_histograms_update_before_the_job_ends(dash_duo, dashboard, tmp_path, monkeypatch):
    # the demo model samples 100 passes in well under a second: each chunk of samples is slowed down so a
    # person (and this test) can watch them arrive; the job process is forked from this one, patch included
    import core.models.mc_dropout as mc
    add = mc.Matching.add
    monkeypatch.setattr(mc.Matching, "add", lambda self, *a: (time.sleep(0.4), add(self, *a))[1])
    dash_duo.start_server(dashboard)
    upload_and_pick(dash_duo, tmp_path)
    dash_duo.find_element("#threshold [role=slider]").send_keys(Keys.HOME)  # every detection gets its histogram
    handle = dash_duo.find_element("#mc-samples [role=slider]")
    handle.send_keys(Keys.END)
    wait_until(lambda: handle.get_attribute("aria-valuenow") == "100", "the samples slider did not reach 100")
    click(dash_duo, "#mc-run")

    def partial():
        running = _shown(dash_duo, "#mc-progress")
        info = dash_duo.find_element("#uncertainty-info").text
        bars = [t for t in traces(dash_duo, "uncertainty-figure") if (t["name"] or "").startswith("hist-")]
        steady = dash_duo.find_element("#uncertainty-info").text == info  # no chunk drawn between the reads
        return running and steady and "So far" in info and bars and (info, bars)
    info, bars = wait_until(partial, "no histogram before the MC-Dropout job ended", timeout=120)
    drawn = int(info.split("So far ")[1].split(" of")[0])
    assert 0 < drawn < 100 and "of 100 samples" in info
    assert all(f"of {drawn} samples" in t["hovertemplate"] for t in bars)
    # then the final figure: all 100 samples
    wait_until(lambda: (lambda text: text.startswith("100 samples at dropout"))(
        dash_duo.find_element("#uncertainty-info").text), "no final MC-Dropout result", timeout=120)
    wait_until(lambda: not _shown(dash_duo, "#mc-progress"), "the progress bar stayed")
    final = [t for t in traces(dash_duo, "uncertainty-figure") if (t["name"] or "").startswith("hist-")]
    assert final and all("of 100 samples" in t["hovertemplate"] for t in final)
    time.sleep(1)  # nothing drawn from an early result comes after the final one
    assert dash_duo.find_element("#uncertainty-info").text.startswith("100 samples at dropout")


def test_an_early_drawing_never_covers_the_final_result_or_a_cancel(dash_duo, dashboard):
    """The page-side gate (callbacks/preview.py) as the browser runs it: a drawing of an early result that
    arrives once the job's final result is in the browser, or once the person cancelled that run, is
    dropped, else it is shown."""
    import json as json_

    from callbacks.preview import KEEP, SHOW_UNLESS_FINAL
    dash_duo.start_server(dashboard)
    dash_duo.wait_for_element("#upload", timeout=TIMEOUT)
    gate = SHOW_UNLESS_FINAL % (json_.dumps(["image_id", "samples", "run"]), 3)
    view = {"request": {"image_id": "a", "samples": 30, "run": 1},
            "outputs": [{"data": []}, KEEP, "So far 8 of 30 samples"]}
    run = ("const f = new Function('return ' + arguments[0])(); const keep = window.dash_clientside.no_update;"
           "return f(arguments[1], arguments[2], arguments[3]).map(v => v === keep ? 'KEEP' : v);")
    final = {"image_id": "a", "samples": 30, "model": "demo", "run": 1}
    shown = [{"data": []}, "KEEP", "So far 8 of 30 samples"]
    for end in (final, {**final, "error": "stopped"}):  # the run's end, its error included (a killed job)
        assert dash_duo.driver.execute_script(run, gate, view, end, None) == ["KEEP"] * 3, end
    for result in (None, {**final, "samples": 10}, {**final, "error": "stopped", "run": 0}, {**final, "image_id": "b"}):
        assert dash_duo.driver.execute_script(run, gate, view, result, None) == shown, result
    # the request the Cancel click stored: that run's drawings stay away, another run's are shown
    assert dash_duo.driver.execute_script(run, gate, view, None, view["request"]) == ["KEEP"] * 3
    assert dash_duo.driver.execute_script(run, gate, view, None, {**view["request"], "run": 0}) == shown
