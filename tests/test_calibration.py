"""Calibration errors (core/evaluation/calibration.py): known answers on hand-made detections, and
the same numbers as the uq-detr package on random ones."""
import numpy as np
import pytest

from core.evaluation import calibration as cal

BOX = [0.0, 0.0, 10.0, 10.0]
FAR = [50.0, 50.0, 60.0, 60.0]


def _image(dets, truth, classes=2):
    """dets: [(box, label, conf)] (probs: conf on the label, the rest spread evenly); truth: [(box, label)]."""
    probs = np.full((len(dets), classes), 0.0)
    for k, (_, label, conf) in enumerate(dets):
        probs[k] = (1 - conf) / classes  # keeps conf the maximum for conf > 1 / (classes + 1)
        probs[k, label] = conf
    return {"boxes": np.array([d[0] for d in dets], float).reshape(-1, 4),
            "labels": np.array([d[1] for d in dets], int), "conf": np.array([d[2] for d in dets], float),
            "probs": probs, "truth_boxes": np.array([t[0] for t in truth], float).reshape(-1, 4),
            "truth_labels": np.array([t[1] for t in truth], int)}


def test_d_ece_known_answer():
    # 4 detections at 0.6 of which 2 right (gap 0.1), 6 at 0.9 all right (gap 0.1): D-ECE = 0.1
    images = [_image([(BOX, 0, 0.6)], [(BOX, 0)]) for _ in range(2)]
    images += [_image([(FAR, 0, 0.6)], [(BOX, 0)]) for _ in range(2)]
    images += [_image([(BOX, 1, 0.9)], [(BOX, 1)]) for _ in range(6)]
    p = cal.prepare(images)
    assert cal.errors(p, 0.3)["d_ece"] == pytest.approx(0.1)
    assert cal.errors(p, 0.7)["d_ece"] == pytest.approx(0.1)  # only the six right ones: |1 - 0.9|
    assert cal.errors(p, 0.9)["d_ece"] is None and cal.errors(p, 0.9)["detections"] == 0  # strictly above


def test_oce_known_answer():
    # object 1 (class 0): two detections over it, mean distribution (0.7, 0.15): Brier 0.3^2 + 0.15^2;
    # object 2: nothing over it: 1
    image = _image([(BOX, 0, 0.8), ([0.0, 0.0, 10.0, 9.0], 0, 0.6)], [(BOX, 0), (FAR, 1)])
    image["probs"] = np.array([[0.8, 0.1], [0.6, 0.2]])
    assert cal.errors(cal.prepare([image]), 0.3)["oce"] == pytest.approx((0.09 + 0.0225 + 1) / 2)
    # above 0.7 only the first one counts: (0.2^2 + 0.1^2 + 1) / 2
    assert cal.errors(cal.prepare([image]), 0.7)["oce"] == pytest.approx((0.04 + 0.01 + 1) / 2)


def test_lrp_and_la_ece_known_answer():
    # one TP at IoU 0.75 (localisation error 0.25 / 0.5), one FP, one FN
    tp_box = [0.0, 0.0, 10.0, 7.5]
    image = _image([(tp_box, 0, 0.9), (FAR, 1, 0.8)], [(BOX, 0), ([20.0, 20.0, 30.0, 30.0], 1)])
    e = cal.errors(cal.prepare([image]), 0.5)
    assert e["lrp"] == pytest.approx((1 + 1 + 0.5) / 3)
    # LA-ECE: class 0 |0.75 - 0.9|, class 1 |0 - 0.8|, averaged
    assert e["la_ece"] == pytest.approx((0.15 + 0.8) / 2)


def test_reliability_diagram_bins():
    bins = cal.reliability([0.05, 0.15, 0.16, 1.0], [1, 0, 1, 1])
    assert [b["count"] for b in bins] == [1, 2, 0, 0, 0, 0, 0, 0, 0, 1]
    assert bins[1]["confidence"] == pytest.approx(0.155) and bins[1]["precision"] == 0.5
    assert bins[2]["confidence"] is None


def _random_images(rng, n=30, classes=4):
    images = []
    for _ in range(n):
        m = int(rng.integers(0, 4))
        truth = [(list(np.r_[xy, xy + rng.uniform(5, 30, 2)]), int(rng.integers(classes)))
                 for xy in rng.uniform(0, 60, (m, 2))]
        dets = []
        for _ in range(int(rng.integers(0, 12))):
            if truth and rng.uniform() < 0.6:  # near a true box: a TP or a duplicate
                box = np.array(truth[int(rng.integers(len(truth)))][0]) + rng.normal(0, 2, 4)
            else:
                xy = rng.uniform(0, 60, 2)
                box = np.r_[xy, xy + rng.uniform(5, 30, 2)]
            dets.append(list(box))
        probs = rng.dirichlet(np.ones(classes + 1) * 0.3, len(dets))[:, :classes]
        images.append({"boxes": np.array(dets, float).reshape(-1, 4), "labels": probs.argmax(1),
                       "conf": probs.max(1), "probs": probs,
                       "truth_boxes": np.array([t[0] for t in truth], float).reshape(-1, 4),
                       "truth_labels": np.array([t[1] for t in truth], int)})
    return images


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_numbers_as_uq_detr(seed):
    uq = pytest.importorskip("uq_detr")
    images = _random_images(np.random.default_rng(seed))
    p = cal.prepare(images)
    for t in (0.05, 0.2, 0.4, 0.6):
        keep = [im["conf"] > t for im in images]
        dets = [uq.Detections(im["boxes"][k], im["conf"][k], im["labels"][k]) for im, k in zip(images, keep)]
        full = [uq.Detections(im["boxes"][k], im["probs"][k], im["labels"][k]) for im, k in zip(images, keep)]
        truths = [uq.GroundTruth(im["truth_boxes"], im["truth_labels"]) for im in images]
        mine = cal.errors(p, t)
        assert mine["detections"] > 5
        assert mine["d_ece"] == pytest.approx(uq.dece(dets, truths, tp_criterion="greedy").score, abs=1e-12)
        assert mine["la_ece"] == pytest.approx(uq.laece(dets, truths, tp_criterion="greedy").score, abs=1e-12)
        assert mine["lrp"] == pytest.approx(uq.lrp(dets, truths).score, abs=1e-12)
        assert mine["oce"] == pytest.approx(uq.oce(full, truths).score, abs=1e-12)


def test_greedy_match_most_confident_first():
    # two detections over one object: the more confident takes it even if its IoU is lower
    matched, iou = cal.greedy_match([[0, 0, 10, 9], BOX], [0, 0], [0.9, 0.5], [BOX], [0])
    assert matched.tolist() == [0, -1] and iou[0] == pytest.approx(0.9)
    # another class never matches
    assert cal.greedy_match([BOX], [1], [0.9], [BOX], [0])[0].tolist() == [-1]
