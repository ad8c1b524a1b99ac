"""The Evaluate tab's callbacks called directly, on the demo model and a few demo scenes."""
import pytest

from callbacks import evaluate as cb
from components import ids
from core import service
from core.models.loading import DEMO_DIR, load_model

pytestmark = pytest.mark.skipif(not (DEMO_DIR / "model.safetensors").exists(), reason="demo weights not built")


@pytest.fixture(scope="module")
def demo():
    return load_model("demo", device="cpu")


@pytest.fixture
def served(demo, serve):
    return serve(demo)


def test_evaluate_demo_scenes_draw_and_open_a_row(served):
    progress = []
    values = {"scenes": 3, "scene_seed": 1_000_000, "samples": 0, "seed": 0}
    ref = cb.run_evaluation(progress.append, 1, "demo", ["gradcam"], values, [])
    assert "error" not in ref and ref["source"] == {"kind": "demo", "scenes": 3, "scene_seed": 1_000_000}
    assert progress[-1][0] == progress[-1][1] > 0
    info, graphs, rows, style = cb.draw_evaluation(ref)
    result = service.cached_evaluation(ref["source"], ref["values"], ref["methods"])
    assert f"AP50 {result['ap50']:.3f}" in info and "3 images" in info
    assert {g.id for g in graphs} >= {"eval-figure-reliability", "eval-figure-per_class_ap"}
    assert style["display"] == "block" and rows
    calls = service.model_calls()
    stored, pending, tab = cb.open_row([rows[0]], ref)
    assert tab == ids.EXPLAIN_TAB and pending == {"image_id": stored["image_id"], "query": rows[0]["query"]}
    image, truth = service.evaluation_image(ref["source"], rows[0]["image_id"])
    assert service.get_image(stored["image_id"]).tobytes() == image.tobytes() and stored["truth"] == truth
    assert service.model_calls() == calls  # opening a row runs no model


@pytest.mark.parametrize("choice, values, says", [
    ("folder:3", {}, "Choose the demo scenes or one of the configured datasets"),
    ("/etc", {}, "Choose the demo scenes or one of the configured datasets"),
    ("demo", {"scenes": 10**6}, "Scenes must be 1..1000"),
    ("demo", {"scene_seed": 5}, "First scene seed must be 1000000.."),
    ("demo", {"samples": 1000}, "must be 0..100"),
])
def test_forged_requests_are_refused_before_any_work(served, choice, values, says):
    ref = cb.run_evaluation(lambda p: pytest.fail("a job started"), 1, choice, [], values, ["/data/a"])
    assert says in ref["error"] and service.model_calls() == 0


def test_a_configured_folder_is_named_by_index(tmp_path):
    assert cb.source_of("folder:1", {}, ["/a", str(tmp_path)]) == {"kind": "folder", "path": str(tmp_path)}
