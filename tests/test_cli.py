"""`python -m app detect`: JSON lines, boxes in original pixels, exit codes."""
import json
import subprocess
import sys
import time

import pytest

from app.cli import main
from core.models.loading import DEMO_DIR


@pytest.fixture
def images(tmp_path, rgb_image):
    good = tmp_path / "good.png"
    rgb_image.save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"definitely not a jpeg")
    return good, bad


def test_detect_json_lines_one_per_image(tiny_dir, images, capsys):
    good, bad = images
    status = main(["detect", str(good), str(bad), str(good), "--model", str(tiny_dir), "--threshold", "0", "--json"])
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert status == 3
    assert [line["image"] for line in lines] == [str(good), str(bad), str(good)]
    assert lines[0]["width"] == 64 and lines[0]["height"] == 48
    assert len(lines[0]["detections"]) == 5  # --threshold 0 lists every query
    assert set(lines[0]["detections"][0]) == {"index", "label", "score", "box"}
    assert lines[0] == lines[2]
    assert "not an image" in lines[1]["error"]
    assert err.count("error:") == 1 and "bad.jpg" in err and "Traceback" not in err


def test_detect_threshold_filters(tiny_dir, images, capsys):
    main(["detect", str(images[0]), "--model", str(tiny_dir), "--threshold", "0", "--json"])
    every = json.loads(capsys.readouterr().out)["detections"]
    cut = sorted(d["score"] for d in every)[2]
    main(["detect", str(images[0]), "--model", str(tiny_dir), "--threshold", str(cut), "--json"])
    kept = json.loads(capsys.readouterr().out)["detections"]
    assert [d["index"] for d in kept] == [d["index"] for d in every if d["score"] >= cut]


def _run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True, timeout=120,
                          env=env)


def test_exit_codes_bad_usage_and_model_unavailable(tmp_path, images):
    assert _run("detect").returncode == 2
    assert _run("detect", str(images[0]), "--threshold", "high").returncode == 2
    import os
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path)}
    start = time.monotonic()
    result = _run("detect", str(images[0]), "--model", "facebook/detr-resnet-50", "--no-fallback", env=env)
    assert result.returncode == 4
    assert "facebook/detr-resnet-50" in result.stderr and "Traceback" not in result.stderr
    assert time.monotonic() - start < 60  # process start-up included; the hub wait itself is < 5 s


@pytest.mark.skipif(not (DEMO_DIR / "model.safetensors").exists(), reason="demo weights not built")
def test_uncached_hub_model_falls_back_to_demo_with_a_notice(tmp_path, images):
    import os
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path)}
    result = _run("detect", str(images[0]), "--model", "facebook/detr-resnet-50", "--json", env=env)
    assert result.returncode == 0
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("notice:") and "demo" in result.stderr
    assert "detections" in json.loads(result.stdout)
