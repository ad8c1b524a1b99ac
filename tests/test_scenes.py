"""The procedural scene generator: deterministic, exact boxes, known classes."""
import json

import numpy as np
import pytest

from app.cli import main
from core.demo.scenes import (CLASSES, CLUTTER, HIDDEN, MAX_OBJECTS, MIN_VISIBLE, SCENE_SIZE, SCENE_SIZES,
                              make_scene, mask_box, scene_v2, visible_truth)


def test_same_seed_same_scene_other_seed_other_scene():
    a, truth_a = make_scene(7)
    b, truth_b = make_scene(7)
    c, _ = make_scene(8)
    assert np.array_equal(np.asarray(a), np.asarray(b)) and truth_a == truth_b
    assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_version_1_boxes_inside_the_image_and_labels_from_the_class_list():
    counts, size = [], SCENE_SIZES[1]
    for seed in range(200):
        image, truth = make_scene(seed, version=1)
        assert image.size == (size, size) and image.mode == "RGB"
        assert 1 <= len(truth) <= 5
        counts.append(len(truth))
        for obj in truth:
            x0, y0, x1, y1 = obj["box"]
            assert obj["label"] in CLASSES
            assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size
            assert x1 - x0 >= 0.1 * size and y1 - y0 >= 0.1 * size
    assert set(counts) == {1, 2, 3, 4, 5}
    labels = {o["label"] for s in range(200) for o in make_scene(s, version=1)[1]}
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


# ---- version 1 stays as it was: the first demo model's scenes (models/demo-detr's history) ----

def _digest(image, truth) -> str:
    import hashlib
    return hashlib.sha256(np.asarray(image).tobytes() + json.dumps(truth).encode()).hexdigest()


def test_version_1_scenes_are_byte_identical_to_before_version_2():
    # recorded from the generator before version 2 was added
    assert _digest(*make_scene(1_000_000, version=1)) == "e02964c6f53e28c5877f360031fb37f42c27860ea2aa94fdc5ae410f1f3a6718"


def test_the_bundled_model_scenes_are_version_2():
    assert make_scene(1_000_000) == make_scene(1_000_000, version=2) and SCENE_SIZE == 256


# ---- version 2: 256 px, occlusion and clutter, boxes from the label mask ----

def test_visible_truth_by_hand():
    """A square half hidden by a circle keeps the box of its visible half; a triangle with 4 of its 10
    pixels showing is dropped and its pixels marked hidden; clutter pixels are nobody's."""
    label = np.zeros((10, 10), np.int16)
    label[2:6, 2:6] = 1                 # square, 16 pixels drawn
    label[1:7, 4:8] = 2                 # circle on top, 24 pixels: the square's columns 4, 5 go
    label[8, 0:4] = 3                   # triangle: 10 pixels drawn, 4 left
    label[0, :] = CLUTTER               # a line in front (crosses nothing labelled here)
    truth, visible = visible_truth(label, ["square", "circle", "triangle"], [16, 24, 10])
    assert truth == [{"label": "square", "box": [2.0, 2.0, 4.0, 6.0]}, {"label": "circle", "box": [4.0, 1.0, 8.0, 7.0]}]
    assert visible == [0.5, 1.0]
    assert (label[8, 0:4] == HIDDEN).all() and (label[0] == CLUTTER).all()
    assert set(np.unique(label)) == {HIDDEN, CLUTTER, 0, 1, 2}


def test_v2_same_seed_same_scene_other_seed_other_scene():
    a, b, c = scene_v2(11), scene_v2(11), scene_v2(12)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image)) and a.truth == b.truth
    assert np.array_equal(a.label, b.label)
    assert not np.array_equal(np.asarray(a.image), np.asarray(c.image))
    image, truth = make_scene(11, version=2)
    assert np.array_equal(np.asarray(image), np.asarray(a.image)) and truth == a.truth


@pytest.fixture(scope="module")
def v2_scenes():
    return [scene_v2(s) for s in range(150)]


def test_v2_boxes_are_the_extent_of_each_objects_visible_pixels(v2_scenes):
    for scene in v2_scenes:
        assert scene.image.size == (256, 256) and 1 <= len(scene.truth) <= MAX_OBJECTS[2]
        assert scene.label.max() == len(scene.truth)  # every positive label is a labelled object
        for k, obj in enumerate(scene.truth):
            shown = scene.label == k + 1
            x0, y0, x1, y1 = (int(v) for v in obj["box"])
            assert obj["label"] in CLASSES and obj["box"] == mask_box(shown)
            assert shown[y0:y1, x0:x1].sum() == shown.sum()              # nothing visible outside the box
            assert shown[y0, x0:x1].any() and shown[y1 - 1, x0:x1].any()  # and the box is tight
            assert shown[y0:y1, x0].any() and shown[y0:y1, x1 - 1].any()
    assert {o["label"] for s in v2_scenes for o in s.truth} == set(CLASSES)


def test_v2_objects_overlap_and_are_partly_hidden(v2_scenes):
    visible = np.array([v for s in v2_scenes for v in s.visible])
    assert visible.min() >= MIN_VISIBLE
    assert (visible < 0.95).mean() > 0.1, "occlusion should be common"
    sides = np.array([o["box"][2] - o["box"][0] for s in v2_scenes for o in s.truth])
    assert sides.min() < 30 and sides.max() > 100  # a wider range of sizes than version 1


def test_v2_clutter_is_drawn_and_never_labelled(v2_scenes):
    """Clutter is in most scenes, some of it in front of labelled objects, and every labelled region is
    one solid shape: a labelled stroke of clutter across an object would bring a second colour."""
    with_clutter = [s for s in v2_scenes if (s.label == CLUTTER).sum() > 50]
    assert len(with_clutter) > 0.5 * len(v2_scenes)
    assert sum(any((s.label[int(o["box"][1]):int(o["box"][3]), int(o["box"][0]):int(o["box"][2])] == CLUTTER).any()
                   for o in s.truth) for s in v2_scenes) > 10  # clutter inside object boxes
    checked = 0
    for scene in v2_scenes:
        arr = np.asarray(scene.image, dtype=float)
        for k in range(len(scene.truth)):
            inner = _eroded(scene.label == k + 1, 2)  # 2 px in from the edges: blur (sigma <= 1) barely reaches
            if inner.sum() >= 20:
                pixels = arr[inner]
                assert (np.abs(pixels - np.median(pixels, 0)).sum(1) < 40).mean() > 0.97, scene.truth[k]
                checked += 1
    assert checked > 0.9 * sum(len(s.truth) for s in v2_scenes)


def _eroded(mask: np.ndarray, steps: int) -> np.ndarray:
    """Pixels whose 4-neighbours, `steps` times over, are all in the mask."""
    for _ in range(steps):
        padded = np.pad(mask, 1)
        mask = mask & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask


def test_scenes_command_writes_version_2(tmp_path):
    assert main(["scenes", "--count", "2", "--seed", "5", "--out", str(tmp_path), "--scene-version", "2"]) == 0
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["scene-0001.png"] == make_scene(6, version=2)[1]
    from PIL import Image
    written = Image.open(tmp_path / "scene-0000.png")
    assert written.size == (256, 256)
    assert np.array_equal(np.asarray(written), np.asarray(make_scene(5, version=2)[0]))
    coco = json.loads((tmp_path / "annotations.json").read_text())
    assert coco["images"][0]["width"] == 256
