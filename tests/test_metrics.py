"""Box IoU and average precision against hand-computed values."""
import numpy as np
import pytest

from core.evaluation.metrics import average_precision, box_iou, duplicates_and_false_positives, mean_average_precision


def test_box_iou_by_hand():
    iou = box_iou([[0, 0, 10, 10]], [[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30]])
    assert iou[0] == pytest.approx([50 / 150, 1.0, 0.0])


def test_average_precision_by_hand():
    truth = [[{"label": "a", "box": [0, 0, 10, 10]}, {"label": "a", "box": [20, 20, 30, 30]}]]
    preds = [[{"label": "a", "score": 0.9, "box": [0, 0, 10, 10]},     # hit
              {"label": "a", "score": 0.8, "box": [50, 50, 60, 60]},   # miss
              {"label": "a", "score": 0.7, "box": [20, 20, 30, 30]},   # hit
              {"label": "a", "score": 0.6, "box": [0, 0, 10, 10]}]]    # duplicate: miss
    # precision at recall 0.5 is 1, at recall 1.0 it is 2/3: 101-point interpolation
    points = np.linspace(0, 1, 101)
    expected = np.mean([1.0 if r <= 0.5 else 2 / 3 for r in points])
    assert average_precision(preds, truth, "a", 0.5) == pytest.approx(expected)
    assert average_precision([[]], truth, "a", 0.5) == 0.0
    assert np.isnan(average_precision(preds, truth, "b", 0.5))
    perfect = [[{"label": "a", "score": 1.0, "box": o["box"]} for o in truth[0]]]
    assert mean_average_precision(perfect, truth, ["a", "b"]) == pytest.approx(1.0)


def test_duplicates_and_false_positives_by_hand():
    truth = [[{"label": "a", "box": [0, 0, 10, 10]}, {"label": "b", "box": [20, 0, 30, 10]}],
             [{"label": "a", "box": [0, 0, 10, 10]}, {"label": "a", "box": [40, 40, 50, 50]}]]
    preds = [[{"label": "a", "score": 0.99, "box": [0, 0, 10, 10]},   # true
              {"label": "a", "score": 0.90, "box": [0, 0, 10, 9]},    # IoU 0.9 with the 0.99: duplicate
              {"label": "b", "score": 0.95, "box": [0, 0, 10, 10]},   # other class on the a: not a duplicate, false
              {"label": "b", "score": 0.80, "box": [20, 0, 30, 10]},  # true
              {"label": "b", "score": 0.60, "box": [20, 0, 30, 10]}],  # below 0.7: not shown, not counted
             [{"label": "a", "score": 0.75, "box": [0, 0, 10, 10]},   # true (IoU 1/3 with the 0.85: no duplicate)
              {"label": "a", "score": 0.85, "box": [5, 0, 15, 10]},   # IoU 1/3 with the truth: false
              {"label": "a", "score": 0.72, "box": [60, 60, 70, 70]}]]  # near nothing: false
    r = duplicates_and_false_positives(preds, truth, 0.7)
    assert (r["true_objects"], r["duplicates"], r["false_positives"]) == (4, 1, 3)
    assert r["duplicates_pct"] == 25.0 and r["false_positives_pct"] == 75.0
    assert duplicates_and_false_positives(preds, truth, 0.5)["duplicates"] == 2  # the 0.60 b joins in
    assert duplicates_and_false_positives(preds, truth, 0.7, iou=0.95)["duplicates"] == 0
