"""Training on version-2 scenes warm-started from the bundled model, and `evaluate-demo --json` on the result:
issue 18's figures, a 256 px preprocessor, detection timed on one thread."""
import json
import math

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
    per_iou = report["ap_per_iou"]
    assert list(per_iou) == ["0.50", "0.55", "0.60", "0.65", "0.70", "0.75", "0.80", "0.85", "0.90", "0.95"]
    assert per_iou["0.50"] == report["map50"] and sum(per_iou.values()) / 10 == pytest.approx(report["map50_95"], abs=1e-4)
    # the tensors are the file, less its small JSON header
    assert report["weights_mb"] == pytest.approx((out / "model.safetensors").stat().st_size / 1e6, abs=0.05)


def test_evaluate_demo_refuses_a_threshold_out_of_range(capsys):
    assert main(["evaluate-demo", "--scenes", "1", "--threshold", "1.5"]) == 2
    assert "threshold must be 0..1" in capsys.readouterr().err.lower()


def test_train_demo_sets_the_no_object_weight_the_loss_reads(tmp_path, capsys):
    from transformers import DetrForObjectDetection
    from core.demo.train import scene_batch
    out = tmp_path / "eos"
    assert main(["train-demo", "--out", str(out), "--resume", str(DEMO_DIR), "--steps", "1", "--batch", "2",
                 "--eval-every", "1", "--device", "cpu", "--eos-coefficient", "1.0"]) == 0
    assert "no-object weight 1.0" in capsys.readouterr().out
    model = DetrForObjectDetection.from_pretrained(out).eval()
    assert model.config.eos_coefficient == 1.0
    pixels, labels = scene_batch(range(2), "cpu")
    with torch.no_grad():
        at_one = float(model(pixel_values=pixels, labels=labels).loss_dict["loss_ce"])
        model.config.eos_coefficient = 0.1  # the loss takes the weight from the config at each call
        at_tenth = float(model(pixel_values=pixels, labels=labels).loss_dict["loss_ce"])
    assert at_one != pytest.approx(at_tenth, rel=1e-3)


@pytest.mark.parametrize("weight", ["0", "-0.5", "1.5", "nan"])
def test_train_demo_refuses_a_no_object_weight_out_of_range(weight, tmp_path, capsys):
    assert main(["train-demo", "--out", str(tmp_path / "m"), "--steps", "1", "--eos-coefficient", weight]) == 2
    assert "--eos-coefficient must be in (0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()  # refused before any work


def test_train_demo_sets_the_giou_loss_weight_the_loss_reads(tmp_path, capsys):
    """The total loss is DETR's weighted sum: class 1, L1 box 5, GIoU the flag's weight, on the last
    decoder layer and each auxiliary one."""
    from transformers import DetrForObjectDetection
    from core.demo.train import scene_batch
    out = tmp_path / "giou"
    assert main(["train-demo", "--out", str(out), "--resume", str(DEMO_DIR), "--steps", "1", "--batch", "2",
                 "--eval-every", "1", "--device", "cpu", "--giou-coefficient", "7"]) == 0
    assert "GIoU loss weight 7" in capsys.readouterr().out
    model = DetrForObjectDetection.from_pretrained(out).eval()
    assert model.config.giou_loss_coefficient == 7 and model.config.giou_cost == 2  # matching cost unchanged
    pixels, labels = scene_batch(range(2), "cpu")
    with torch.no_grad():
        out = model(pixel_values=pixels, labels=labels)
    parts = out.loss_dict
    layers = [""] + [f"_{i}" for i in range(model.config.decoder_layers - 1)]
    expected = sum(parts["loss_ce" + s] + 5 * parts["loss_bbox" + s] + 7 * parts["loss_giou" + s] for s in layers)
    assert float(out.loss) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("weight", ["0", "-1", "21"])
def test_train_demo_refuses_a_giou_weight_out_of_range(weight, tmp_path, capsys):
    assert main(["train-demo", "--out", str(tmp_path / "m"), "--steps", "1", "--giou-coefficient", weight]) == 2
    assert "--giou-coefficient must be an integer in 1..20" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()  # refused before any work


def test_train_demo_refuses_a_fractional_giou_weight(tmp_path, capsys):
    with pytest.raises(SystemExit) as refused:  # the config's field is an integer
        main(["train-demo", "--out", str(tmp_path / "m"), "--steps", "1", "--giou-coefficient", "2.5"])
    assert refused.value.code == 2 and "invalid int value" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_a_model_reads_another_backbone_stage_with_every_other_weight_kept():
    """stage2 halves the demo's stride: a 128 px input gives the encoder 16 x 16 positions, not 8 x 8."""
    from transformers import DetrForObjectDetection
    from core.demo.train import with_features_from
    model = DetrForObjectDetection.from_pretrained(DEMO_DIR).eval()
    finer = with_features_from(model, "stage2").eval()
    before, after = model.state_dict(), finer.state_dict()
    assert before.keys() == after.keys()
    changed = [k for k in before if before[k].shape != after[k].shape or not torch.equal(before[k], after[k])]
    assert sorted(changed) == ["model.input_projection.bias", "model.input_projection.weight"]
    assert after["model.input_projection.weight"].shape[1] == 64  # stage2's channels, not stage3's 128
    pixels = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        assert model(pixel_values=pixels).encoder_last_hidden_state.shape[1] == 8 * 8
        assert finer(pixel_values=pixels).encoder_last_hidden_state.shape[1] == 16 * 16


def test_train_demo_feature_stage_saves_a_model_that_loads_with_it(tmp_path, capsys):
    from transformers import DetrForObjectDetection
    out = tmp_path / "s8"
    assert main(["train-demo", "--out", str(out), "--resume", str(DEMO_DIR), "--steps", "1", "--batch", "2",
                 "--eval-every", "1", "--device", "cpu", "--feature-stage", "stage2"]) == 0
    assert "features of stage2" in capsys.readouterr().out
    model = DetrForObjectDetection.from_pretrained(out)
    assert model.config.backbone_config.out_features == ["stage2"]
    assert model.model.input_projection.weight.shape[1] == 64


def test_train_demo_refuses_a_stage_the_backbone_lacks(tmp_path, capsys):
    with pytest.raises(SystemExit) as refused:
        main(["train-demo", "--out", str(tmp_path / "m"), "--steps", "1", "--feature-stage", "stage4"])
    assert refused.value.code == 2 and "invalid choice" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_train_demo_input_size_trains_and_saves_at_that_size(tmp_path, capsys):
    """--input-size 320 on 256 px scenes: the training batch is what the saved model's own
    pre-processing makes of the scene (a 20 x 20 grid at stride 16), and the boxes are unchanged."""
    from core.demo.train import scene_batch
    from core.models.loading import load_model
    out = tmp_path / "up"
    assert main(["train-demo", "--out", str(out), "--resume", str(DEMO_DIR), "--steps", "1", "--batch", "2",
                 "--eval-every", "1", "--device", "cpu", "--scene-version", "2", "--input-size", "320"]) == 0
    assert "(256 px, input 320 px)" in capsys.readouterr().out
    assert json.loads((out / "preprocessor_config.json").read_text())["size"]["shortest_edge"] == 320
    pixels, labels = scene_batch([5], "cpu", version=2, side=320)
    _, same_labels = scene_batch([5], "cpu", version=2)
    assert pixels.shape == (1, 3, 320, 320) and torch.equal(labels[0]["boxes"], same_labels[0]["boxes"])
    loaded = load_model(str(out), device="cpu")
    assert torch.allclose(loaded.pixel_values(make_scene(5, version=2)[0]), pixels, atol=1e-5)
    with torch.no_grad():
        assert loaded.model(pixel_values=pixels).encoder_last_hidden_state.shape[1] == 20 * 20


@pytest.mark.parametrize("side", ["63", "1025"])
def test_train_demo_refuses_an_input_size_out_of_range(side, tmp_path, capsys):
    assert main(["train-demo", "--out", str(tmp_path / "m"), "--steps", "1", "--input-size", side]) == 2
    assert "--input-size must be in 64..1024" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("no_dropout", [False, True])
def test_train_demo_no_dropout_trains_the_model_as_it_is_served(no_dropout, tmp_path, capsys):
    """--no-dropout: every module runs in inference mode in the training forwards (dropout off, the
    frozen batch-norm's statistics kept), the weights still learn, and the saved config keeps the
    dropout rate MC-Dropout samples with. Without it, the forwards run in training mode."""
    from safetensors.torch import load_file
    modes = set()
    def record(module, args):  # the model's modules, not the loss's (a new DetrLoss module each call)
        if not type(module).__module__.startswith("transformers.loss"):
            modes.add(module.training)
    hook = torch.nn.modules.module.register_module_forward_pre_hook(record)
    try:
        assert main(["train-demo", "--out", str(tmp_path / "m"), "--resume", str(DEMO_DIR), "--steps", "1",
                     "--batch", "2", "--eval-every", "5", "--device", "cpu"]
                    + ["--no-dropout"] * no_dropout) == 0
    finally:
        hook.remove()
    assert modes == ({False} if no_dropout else {True, False})  # False alone would mean no training forward
    assert ("dropout off and batch-norm frozen" in capsys.readouterr().out) == no_dropout
    before, after = load_file(DEMO_DIR / "model.safetensors"), load_file(tmp_path / "m" / "model.safetensors")
    statistics = [k for k in before if "backbone" in k and k.endswith(("running_mean", "running_var"))]
    assert statistics and all(torch.equal(before[k], after[k]) for k in statistics) == no_dropout
    assert not torch.equal(before["class_labels_classifier.weight"], after["class_labels_classifier.weight"])
    assert json.loads((tmp_path / "m" / "config.json").read_text())["dropout"] == 0.1


def test_lr_factor_warms_up_linearly_then_decays_by_cosine():
    from core.demo.train import lr_factor
    assert lr_factor(0, 300, 30) == pytest.approx(1 / 30 * 0.5 * (1 + math.cos(0)))
    assert lr_factor(29, 300, 30) == pytest.approx(0.5 * (1 + math.cos(math.pi * 29 / 300)))
    assert lr_factor(150, 300, 30) == pytest.approx(0.5)
    assert lr_factor(0, 300, 0) == 1.0 and lr_factor(300, 300, 0) == pytest.approx(0.0)


def test_train_demo_passes_warmup_and_refuses_it_out_of_range(tmp_path, capsys, monkeypatch):
    import core.demo.train
    seen = {}
    monkeypatch.setattr(core.demo.train, "train", lambda out, **kw: seen.update(kw) or {})
    assert main(["train-demo", "--out", str(tmp_path / "m"), "--steps", "300", "--warmup", "30"]) == 0
    assert seen["warmup"] == 30 and seen["steps"] == 300
    assert main(["train-demo", "--out", str(tmp_path / "m"), "--steps", "300", "--warmup", "-1"]) == 2
    assert "--warmup must be 0 or more steps" in capsys.readouterr().err
