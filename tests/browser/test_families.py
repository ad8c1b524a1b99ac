"""A deformable-decoder model in the page: only the methods that apply are offered, and its own
map (the sampling points of the picked query) is drawn."""
import pytest

from tests.browser.helpers import TIMEOUT, click, rows, scene_file, select, traces, upload, wait_until
from tests.tiny import save_family


@pytest.fixture
def deformable_dashboard(tmp_path):
    from app import create_app
    from app.settings import Settings
    path = save_family("deformable_detr", tmp_path / "deformable")
    return create_app(Settings(model=str(path), device="cpu"))  # the next app's settings load the demo again


def test_a_deformable_model_offers_sampling_points_not_attention(dash_duo, deformable_dashboard, tmp_path):
    dash_duo.start_server(deformable_dashboard)
    upload(dash_duo, scene_file(tmp_path))
    dash_duo.find_element("#threshold [role=slider]").send_keys("\ue011")  # Home: threshold 0, every query
    wait_until(lambda: len(rows(dash_duo)) > 0, "no detection rows for the deformable model")
    click(dash_duo, "#method")
    options = wait_until(lambda: [o.text for o in dash_duo.find_elements(".dash-dropdown-options .dash-dropdown-option")],
                         "the method menu did not open")
    assert "Deformable sampling points" in options
    assert not any("attention" in o.lower() for o in options)  # dense-decoder methods are not offered
    select(dash_duo, "#method", "Deformable sampling points")
    select(dash_duo, "#picker", index=0)
    click(dash_duo, "#explain")
    dash_duo.wait_for_contains_text("#explain-info", "Deformable sampling points for", timeout=TIMEOUT)
    assert any(t["type"] == "heatmap" for t in traces(dash_duo, "explain-figure"))
