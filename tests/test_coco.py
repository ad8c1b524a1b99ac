"""COCO datasets and AP (core/evaluation/coco.py): a hand-made dataset with a known AP, category
matching by name, and the demo scenes' annotations.json."""
import json

import numpy as np
import pytest
from PIL import Image

from core.evaluation.coco import DatasetError, coco_ap, load_coco, load_folder, match_categories

ID2LABEL = {0: "cat", 1: "traffic light", 2: "dog"}


def _write(tmp_path, images, annotations, categories):
    for i in images:
        Image.new("RGB", (i["width"], i["height"]), "gray").save(tmp_path / i["file_name"])
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


@pytest.fixture
def dataset(tmp_path):
    images = [{"id": 1, "file_name": "a.png", "width": 64, "height": 64},
              {"id": 2, "file_name": "b.png", "width": 64, "height": 64}]
    anns = [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [0, 0, 10, 10]},
            {"id": 2, "image_id": 2, "category_id": 7, "bbox": [0, 0, 10, 10]},
            {"id": 3, "image_id": 2, "category_id": 9, "bbox": [20, 20, 10, 10]},
            {"id": 4, "image_id": 2, "category_id": 11, "bbox": [40, 40, 10, 10]}]
    cats = [{"id": 7, "name": "Cat"}, {"id": 9, "name": "traffic_light"}, {"id": 11, "name": "zebra"}]
    return load_coco(tmp_path, _write(tmp_path, images, anns, cats), ID2LABEL)


def test_categories_matched_by_name_and_the_rest_reported(dataset):
    assert dataset.label_ids == {"Cat": 0, "traffic_light": 1}
    assert dataset.unmatched == ["zebra"] and dataset.model_only == ["dog"]
    assert [o["label_id"] for o in dataset.objects[2]] == [0, 1]  # the zebra is left out
    assert dataset.objects[2][1]["box"] == [20.0, 20.0, 30.0, 30.0]
    assert match_categories(["Person"], {0: "cat"}) == ({}, ["Person"], ["cat"])


def test_known_ap(dataset):
    """cat: TP 0.9 (image 1), FP 0.8, TP 0.7 (image 2): precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1;
    interpolated: 1 for the 51 recall points <= 0.5, 2/3 for the other 50; traffic light: 1."""
    dets = np.array([[1, 0, 0, 10, 10, 0.9, 0], [2, 30, 30, 40, 40, 0.8, 0], [2, 0, 0, 10, 10, 0.7, 0],
                     [2, 20, 20, 30, 30, 0.6, 1], [2, 0, 0, 10, 10, 0.95, 2]])  # "dog": not in the dataset
    ap_cat = (51 + 50 * 2 / 3) / 101
    r = coco_ap(dataset, dets)
    assert r["per_class_ap"] == pytest.approx({"Cat": ap_cat, "traffic_light": 1.0})
    assert [r["ap"], r["ap50"], r["ap75"]] == pytest.approx([(ap_cat + 1) / 2] * 3)  # exact boxes
    assert r["ap_small"] == pytest.approx(r["ap"]) and r["ap_medium"] is None  # 10 x 10 boxes are small
    shifted = dets.copy()
    shifted[3, 1:5] = [20, 20, 30, 32.5]  # IoU 100 / 125 = 0.8: matches at 0.5..0.8
    r = coco_ap(dataset, shifted)
    assert r["per_class_ap"]["traffic_light"] == pytest.approx(7 / 10)
    assert coco_ap(dataset, np.zeros((0, 7)))["ap"] == 0.0


def test_dataset_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_coco(tmp_path / "nope", tmp_path / "a.json", ID2LABEL)
    with pytest.raises(DatasetError, match="cannot read"):
        load_coco(tmp_path, tmp_path / "a.json", ID2LABEL)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DatasetError, match="not JSON"):
        load_coco(tmp_path, tmp_path / "bad.json", ID2LABEL)
    path = _write(tmp_path, [], [], [{"id": 1, "name": "cat"}])
    data = json.loads(path.read_text())
    data["images"] = [{"id": 1, "file_name": "missing.png", "width": 5, "height": 5}]
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match="missing.png"):
        load_coco(tmp_path, path, ID2LABEL)
    path = _write(tmp_path, [], [], [{"id": 1, "name": "zebra"}])
    with pytest.raises(DatasetError, match="no category"):
        load_coco(tmp_path, path, ID2LABEL)


def test_scenes_annotations_match_truth(tmp_path):
    from core.demo.scenes import CLASSES, write_scenes
    truth = write_scenes(tmp_path, 4, 11)
    data = load_folder(tmp_path, dict(enumerate(CLASSES)))
    assert [i["file_name"] for i in data.images] == sorted(truth)
    for image in data.images:
        objs = data.objects[image["id"]]
        assert [o["label"] for o in objs] == [t["label"] for t in truth[image["file_name"]]]
        assert np.allclose([o["box"] for o in objs], [t["box"] for t in truth[image["file_name"]]], atol=0.011)


def test_folder_with_an_images_subfolder(tmp_path):
    (tmp_path / "images").mkdir()
    images = [{"id": 3, "file_name": "a.png", "width": 32, "height": 24}]
    _write(tmp_path / "images", images, [], [{"id": 1, "name": "dog"}])
    (tmp_path / "images" / "annotations.json").rename(tmp_path / "annotations.json")
    data = load_folder(tmp_path, ID2LABEL)
    assert data.images[0]["file_name"] == "a.png" and data.load(data.images[0]).size == (32, 24)
    with pytest.raises(DatasetError, match="no annotations.json"):
        load_folder(tmp_path / "images", ID2LABEL)
