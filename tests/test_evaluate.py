"""`evaluate` (core/evaluation/evaluate.py) on demo scenes agrees with figures computed directly,
resumes from its per-image cache, and `python -m app evaluate` writes its three outputs."""
import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from app.cli import main
from core.demo.scenes import CLASSES, make_scene
from core.evaluation import calibration as cal
from core.evaluation.coco import demo_dataset
from core.evaluation.evaluate import evaluate, interval, pointing_game
from core.models.loading import load_model

SEED = 1_000_000
SETTINGS = {"samples": 3, "seed": 5, "sensitivity_samples": 2, "methods": ["attention"]}


@pytest.fixture(scope="module")
def demo():
    return load_model("demo", device="cpu")


@pytest.fixture(scope="module")
def run(demo, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    result = evaluate(demo, demo_dataset(20, SEED, demo.id2label), cache_dir=cache, **SETTINGS)
    return result, cache


def test_ap50_agrees_with_the_hand_written_map(demo, run):
    """Same detections (every query slot) through the project's own 101-point AP: the matching
    rules agree here (greedy by score, best unmatched IoU), so AP50 does to rounding."""
    from core.evaluation.metrics import mean_average_precision
    from core.models.detection import detect
    preds, truths = [], []
    for s in range(SEED, SEED + 20):
        image, truth = make_scene(s)
        preds.append(detect(demo, image))
        truths.append(truth)
    result, _ = run
    assert result["ap50"] == pytest.approx(mean_average_precision(preds, truths, CLASSES, (0.5,)), abs=1e-6)
    assert result["ap50"] > 0.8 and result["ap"] < result["ap50"]


def test_rows_are_the_detections_of_each_image(demo, run):
    from core.models.detection import detect
    result, _ = run
    for image_id in (1, 7, 20):
        image, truth = make_scene(SEED + image_id - 1)
        direct = {d["index"]: d for d in detect(demo, image)}
        rows = [r for r in result["rows"] if r["image_id"] == image_id]
        assert {r["query"] for r in rows} >= {q for q, d in direct.items() if d["score"] >= 0.02}
        for r in rows:
            d = direct[r["query"]]
            assert r["label"] == d["label"] and r["score"] == pytest.approx(d["score"], abs=1e-5)  # batched forward
            assert [r["x0"], r["y0"], r["x1"], r["y1"]] == pytest.approx(d["box"], abs=0.011)
        # true positives: greedy matching of the image's own detections against its truth
        labels = {c: k for k, c in enumerate(CLASSES)}
        dets = list(direct.values())
        matched, _ = cal.greedy_match([d["box"] for d in dets], [labels[d["label"]] for d in dets],
                                      [d["score"] for d in dets], [t["box"] for t in truth],
                                      [labels[t["label"]] for t in truth])
        tp = {d["index"]: int(m >= 0) for d, m in zip(dets, matched)}
        assert all(r["tp"] == tp[r["query"]] for r in rows)
        assert sum(r["tp"] for r in rows) == sum(tp.values())
        assert all(r["best_iou"] >= r["iou"] and (r["best_iou"] >= 0.5 or not r["tp"]) for r in rows)
    # duplicates: false positives over an already detected object of their class
    assert any(r["tp"] == 0 and r["best_iou"] >= 0.5 for r in result["rows"])


def test_mc_scores_are_mc_dropout_score_means(demo, run):
    from core.models.mc_dropout import mc_dropout
    result, _ = run
    image, _ = make_scene(SEED + 2)
    direct = mc_dropout(demo, demo.pixel_values(image), image.size, samples=3, seed=5)
    stats = {d["index"]: d for d in direct["detections"]}
    rows = [r for r in result["rows"] if r["image_id"] == 3]
    assert rows
    for r in rows:
        assert r["mc_score"] == pytest.approx(stats[r["query"]]["score_mean"], abs=1e-5)
        assert r["mc_std"] == pytest.approx(stats[r["query"]]["score_std"], abs=1e-5)
    assert result["mc"]["d_ece"] != result["d_ece"]


def test_calibration_is_that_of_the_rows(run):
    """D-ECE at the threshold from the rows alone (every row above 0.3 is in them) with the same binning."""
    result, _ = run
    above = [r for r in result["rows"] if r["score"] > result["threshold"]]
    assert result["detections"] == len(above)
    assert result["d_ece"] == pytest.approx(cal.binned_ece([r["score"] for r in above], [r["tp"] for r in above]))
    assert sum(b["count"] for b in result["reliability"]) == len(above)
    assert result["by_threshold"]["d_ece"][result["by_threshold"]["thresholds"].index(0.3)] == result["d_ece"]


def test_explanation_scores_agree_with_direct_computation(demo, run):
    from core.evaluation.faithfulness import faithfulness
    from core.methods.registry import METHODS, context
    result, _ = run
    rows = result["explained"]
    assert len(rows) >= 15 and {r["method"] for r in rows} == {"attention"}
    r = rows[3]
    image, truth = make_scene(SEED + r["image_id"] - 1)
    box = next(t["box"] for k, t in enumerate(truth) if 1000 * r["image_id"] + k == r["truth_id"])
    pv = demo.pixel_values(image)
    heatmap = METHODS["attention"].compute(demo, pv, r["query"], METHODS["attention"].validate({}, context(demo)))[
        "attention"].heatmap
    f = faithfulness(demo, pv, r["query"], heatmap, gt_box=box, image_size=image.size)
    assert r["energy_pointing"] == pytest.approx(f["pointing_game_gt"])
    assert r["deletion_auc"] == pytest.approx(f["deletion_auc"]["matched"])
    assert r["insertion_auc"] == pytest.approx(f["insertion_auc"]["matched"])
    assert r["pointing_game"] == pointing_game(heatmap, box, image.size)
    assert r["sensitivity_max"] > 0
    s = result["explanations"]["attention"]["energy_pointing"]
    values = [x["energy_pointing"] for x in rows]
    assert s["mean"] == pytest.approx(np.mean(values)) and s["low"] < s["mean"] < s["high"] and s["n"] == len(rows)


def test_pointing_game_and_interval():
    m = np.zeros((4, 4))
    m[1, 2] = 1.0  # pixel (x 2, y 1) of a 4 x 4 map; image 8 x 8: the maximum lands in x 4..5, y 2..3
    assert pointing_game(m, [4, 2, 6, 4], (8, 8)) == 1.0
    assert pointing_game(m, [0, 0, 4, 2], (8, 8)) == 0.0
    assert np.isnan(pointing_game(np.ones((4, 4)), [0, 0, 8, 8], (8, 8)))
    rng = np.random.default_rng(0)
    v = rng.normal(1.0, 1.0, 400)
    ci = interval(v, 2000, seed=1)
    half = 1.96 * v.std() / np.sqrt(len(v))  # the normal interval the bootstrap approximates
    assert ci["low"] == pytest.approx(v.mean() - half, abs=0.02) and ci["high"] == pytest.approx(v.mean() + half,
                                                                                                  abs=0.02)
    assert interval([0.5, float("nan"), None])["n"] == 1


def test_resumes_from_the_cache(demo, run, tmp_path):
    result, cache = run
    partial = tmp_path / "cache"
    shutil.copytree(cache, partial)
    files = sorted(partial.iterdir())
    for f in files[::2]:  # an interrupted run: half the per-image results are missing
        f.unlink()
    calls = []
    again = evaluate(demo, demo_dataset(20, SEED, demo.id2label), cache_dir=partial,
                     progress=lambda done, total: calls.append((done, total)), **SETTINGS)
    assert 0 < again["images_cached"] < 20 and len(list(partial.iterdir())) == len(files)
    for key in ("ap", "d_ece", "oce", "rows", "explained"):
        assert again[key] == result[key]
    assert again["mc"]["oce"] == result["mc"]["oce"]
    assert calls[-1] == (40, 40) and [d for d, _ in calls] == sorted(d for d, _ in calls)


def _scenes(tmp_path, count=3):
    from core.demo.scenes import write_scenes
    write_scenes(tmp_path / "scenes", count, SEED)
    return tmp_path / "scenes"


def test_cli_writes_json_csv_and_report(tmp_path, capsys):
    scenes, out = _scenes(tmp_path), tmp_path / "out"
    args = ["evaluate", "--images", str(scenes), "--annotations", str(scenes / "annotations.json"), "--model", "demo",
            "--samples", "2", "--methods", "attention", "--sensitivity-samples", "2", "--out", str(out)]
    assert main([*args, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert {"ap", "ap50", "ap75", "per_class_ap", "d_ece", "oce"} <= set(summary)
    assert {"d_ece", "oce"} <= set(summary["mc"]) and "rows" not in summary
    saved = json.loads((out / "evaluation.json").read_text())
    assert saved["ap50"] == summary["ap50"] and "explained" in saved and "rows" not in saved
    with open(out / "detections.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) > 3 and "attention_energy_pointing" in rows[0]
    assert sum(1 for r in rows if r["attention_energy_pointing"]) == len(saved["explained"])
    report = (out / "report.html").read_text()
    assert "Reliability" in report and "Per-class AP" in report
    assert "<script src=" not in report and len(report) > 1_000_000  # plotly.js inside: reads offline
    assert main(args) == 0  # the text summary, from the cache
    assert "3 images (3 from the cache)" in capsys.readouterr().out


def test_cli_exit_codes(tmp_path, capsys):
    scenes = _scenes(tmp_path, 1)
    base = ["evaluate", "--images", str(scenes), "--annotations", str(scenes / "annotations.json"), "--model", "demo"]
    assert main([*base[:4], str(scenes / "missing.json"), "--model", "demo"]) == 2
    assert main([*base, "--samples", "101"]) == 2
    assert main([*base, "--methods", "gradcam,nonsense"]) == 2
    (scenes / "scene-0000.png").unlink()
    assert main(base) == 2
    err = capsys.readouterr().err
    assert "missing.json" in err and "samples" in err.lower() and "nonsense" in err and "scene-0000.png" in err
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "app", *base[:5], "--model", "facebook/detr-resnet-50",
                             "--no-fallback"], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 4 and "Traceback" not in result.stderr


def test_cache_keys_follow_the_image_and_the_settings(demo, run):
    _, cache = run
    other = evaluate(demo, demo_dataset(3, SEED + 50, demo.id2label), cache_dir=cache)  # same file names
    assert other["images_cached"] == 0
    fewer = evaluate(demo, demo_dataset(20, SEED, demo.id2label), cache_dir=cache, limit=3, samples=2, seed=5)
    fresh = evaluate(demo, demo_dataset(3, SEED, demo.id2label), samples=2, seed=5)
    assert fewer["images_cached"] == 3  # the detections are reused, the MC-Dropout means are not
    assert [r["mc_score"] for r in fewer["rows"]] == [r["mc_score"] for r in fresh["rows"]]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_agrees_with_cpu(demo):
    gpu = load_model("demo", device="cuda")
    settings = {"samples": 3, "methods": ["gradcam", "attention"], "sensitivity_samples": 2}
    a = evaluate(demo, demo_dataset(6, SEED, demo.id2label), **settings)
    b = evaluate(gpu, demo_dataset(6, SEED, gpu.id2label), **settings)
    assert b["ap"] == pytest.approx(a["ap"], abs=1e-3) and b["mc"]["oce"] == pytest.approx(a["mc"]["oce"], abs=0.05)
    rows_a = {(r["image_id"], r["query"]): r["score"] for r in a["rows"]}
    rows_b = {(r["image_id"], r["query"]): r["score"] for r in b["rows"]}
    common = rows_a.keys() & rows_b.keys()
    assert len(common) > 10 and all(abs(rows_a[k] - rows_b[k]) < 1e-3 for k in common)
    assert [(r["query"], r["method"]) for r in a["explained"]] == [(r["query"], r["method"]) for r in b["explained"]]
    for ra, rb in zip(a["explained"], b["explained"]):
        assert rb["energy_pointing"] == pytest.approx(ra["energy_pointing"], abs=0.02)


def test_images_of_several_sizes_batched_within_the_pixel_budget(demo, monkeypatch):
    """Images are batched by input size, at most `pixels` input pixels a forward: each image's
    detections are still its own (checked against detect() image by image)."""
    import core.evaluation.evaluate as E
    from core.evaluation.coco import Dataset
    from core.models.detection import detect
    scenes = [make_scene(SEED + k) for k in range(6)]
    images = [im if k % 2 else im.crop((0, 0, 256, 200)) for k, (im, _) in enumerate(scenes)]
    entries = [{"id": k + 1, "file_name": f"{k}.png", "width": im.width, "height": im.height, "key": f"crop:{k}"}
               for k, im in enumerate(images)]
    dataset = Dataset("crops", entries, {e["id"]: [] for e in entries}, {c: k for k, c in enumerate(CLASSES)},
                      lambda e: images[e["id"] - 1])
    calls, forward = [], E.detections

    def spy(loaded, x, sizes):
        calls.append(tuple(x.shape))
        return forward(loaded, x, sizes)
    monkeypatch.setattr(E, "detections", spy)
    # 256 px scenes and 256 x 200 crops, which the demo's pre-processing (320 px) makes 320 x 320 and 409 x 320
    monkeypatch.setattr(E, "default_batch", lambda device: (8, 2 * 320 * 409))  # two per forward
    result = evaluate(demo, dataset)
    assert sorted(calls) == [(1, 3, 320, 320), (1, 3, 320, 409), (2, 3, 320, 320), (2, 3, 320, 409)]
    for k, image in enumerate(images):
        direct = {d["index"]: d for d in detect(demo, image)}
        rows = [r for r in result["rows"] if r["image_id"] == k + 1]
        assert rows and all(r["score"] == pytest.approx(direct[r["query"]]["score"], abs=1e-5) for r in rows)
        assert all([r["x0"], r["y0"], r["x1"], r["y1"]] == pytest.approx(direct[r["query"]]["box"], abs=0.02)
                   for r in rows)
