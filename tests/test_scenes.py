"""The procedural scene generator: deterministic, exact boxes, known classes."""
import json

import numpy as np

from app.cli import main
from core.demo.scenes import CLASSES, SCENE_SIZE, make_scene


def test_same_seed_same_scene_other_seed_other_scene():
    a, truth_a = make_scene(7)
    b, truth_b = make_scene(7)
    c, _ = make_scene(8)
    assert np.array_equal(np.asarray(a), np.asarray(b)) and truth_a == truth_b
    assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_boxes_inside_the_image_and_labels_from_the_class_list():
    counts = []
    for seed in range(200):
        image, truth = make_scene(seed)
        assert image.size == (SCENE_SIZE, SCENE_SIZE) and image.mode == "RGB"
        assert 1 <= len(truth) <= 5
        counts.append(len(truth))
        for obj in truth:
            x0, y0, x1, y1 = obj["box"]
            assert obj["label"] in CLASSES
            assert 0 <= x0 < x1 <= SCENE_SIZE and 0 <= y0 < y1 <= SCENE_SIZE
            assert x1 - x0 >= 0.1 * SCENE_SIZE and y1 - y0 >= 0.1 * SCENE_SIZE
    assert set(counts) == {1, 2, 3, 4, 5}
    labels = {o["label"] for s in range(200) for o in make_scene(s)[1]}
    assert labels == set(CLASSES)


def test_the_object_is_where_its_box_says():
    """Pixels inside a lone object's box differ from the background; outside they do not change."""
    for seed in range(50):
        image, truth = make_scene(seed)
        if len(truth) == 1:
            break
    x0, y0, x1, y1 = (int(round(v)) for v in truth[0]["box"])
    arr = np.asarray(image, dtype=float)
    inside = arr[y0 + 2:y1 - 2, x0 + 2:x1 - 2].reshape(-1, 3)
    centre = arr[(y0 + y1) // 2, (x0 + x1) // 2]
    assert (np.abs(inside - centre).sum(1) < 30).mean() > 0.3  # a solid shape fills much of its box


def test_scenes_command_writes_pngs_and_truth(tmp_path):
    assert main(["scenes", "--count", "3", "--seed", "5", "--out", str(tmp_path)]) == 0
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert sorted(truth) == ["scene-0000.png", "scene-0001.png", "scene-0002.png"]
    assert truth["scene-0001.png"] == make_scene(6)[1]
    from PIL import Image
    assert np.array_equal(np.asarray(Image.open(tmp_path / "scene-0002.png")), np.asarray(make_scene(7)[0]))
