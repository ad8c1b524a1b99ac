"""The shipped demo weights, tested as they are (never retrained in CI)."""
import pytest

from core.models.detection import above, detect
from core.evaluation.metrics import box_iou
from core.models.loading import DEMO_DIR, load_model
from core.demo.scenes import CLASSES, SCENE_SIZE, make_scene

SEEDS = range(1_000_100, 1_000_110)  # held-out: training uses seeds below 1,000,000


@pytest.fixture(scope="module")
def demo():
    return load_model("demo", device="cpu")


def test_weights_are_small_safetensors_with_their_preprocessing(demo):
    assert (DEMO_DIR / "model.safetensors").stat().st_size < 50 * 2**20
    assert demo.preprocess.shortest_edge == 320 and SCENE_SIZE == 256  # trained at 320 px (--input-size)
    assert sorted(demo.id2label.values()) == sorted(CLASSES)


def test_demo_finds_the_objects_of_held_out_scenes(demo):
    matched = total = false = 0
    for seed in SEEDS:
        image, truth = make_scene(seed)
        dets = above(detect(demo, image), 0.5)
        total += len(truth)
        for obj in truth:
            same = [d for d in dets if d["label"] == obj["label"]]
            if same and box_iou([obj["box"]], [d["box"] for d in same]).max() >= 0.5:
                matched += 1
        false += sum(1 for d in dets if box_iou([d["box"]], [o["box"] for o in truth]).max() < 0.5)
    assert matched / total >= 0.8, f"{matched}/{total} true boxes found"
    assert false <= 0.2 * total, f"{false} detections match no object"
