"""Training on version-2 scenes warm-started from the bundled model, and `evaluate-demo --json` on the result:
issue 18's figures, a 256 px preprocessor, detection timed on one thread."""
import json

import pytest
import torch

from app.cli import main
from core.demo.scenes import make_scene
from core.demo.train import train
from core.models.loading import DEMO_DIR


@pytest.fixture(scope="module")
def v2_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo-v2")
    result = train(out, steps=2, batch=2, eval_every=2, eval_scenes=3, device="cpu", resume=DEMO_DIR,
                   scene_version=2, log=lambda line: None)
    return out, result


def test_v2_training_saves_a_256_px_model_and_logs_duplicates(v2_model):
    out, result = v2_model
    config = json.loads((out / "preprocessor_config.json").read_text())
    assert config["size"]["shortest_edge"] == 256
    assert result["step"] == 2 and result["true_objects"] == sum(len(make_scene(1_500_000 + s, version=2)[1])
                                                                   for s in range(3))
    assert {"map50", "map", "duplicates_pct", "false_positives_pct"} <= set(result)


def test_evaluate_demo_json_reports_every_goal_of_issue_18(v2_model, capsys):
    out, _ = v2_model
    threads = torch.get_num_threads()
    assert main(["evaluate-demo", "--model", str(out), "--scene-version", "2", "--scenes", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert torch.get_num_threads() == threads  # one thread while timing, restored after
    assert report["scene_version"] == 2 and report["threads"] == 1 and report["threshold"] == 0.7
    assert report["true_objects"] == sum(len(make_scene(1_000_000 + s, version=2)[1]) for s in range(3))
    assert report["duplicates_pct"] == round(100 * report["duplicates"] / report["true_objects"], 2)
    assert report["false_positives_pct"] == round(100 * report["false_positives"] / report["true_objects"], 2)
    assert 0 <= report["map50_95"] <= report["map50"] <= 1 and report["ms_per_image"] > 0
    # the tensors are the file, less its small JSON header
    assert report["weights_mb"] == pytest.approx((out / "model.safetensors").stat().st_size / 1e6, abs=0.05)


def test_evaluate_demo_refuses_a_threshold_out_of_range(capsys):
    assert main(["evaluate-demo", "--scenes", "1", "--threshold", "1.5"]) == 2
    assert "threshold must be 0..1" in capsys.readouterr().err.lower()
