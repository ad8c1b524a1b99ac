"""Every DETR family (tiny random-weight configs, saved with save_pretrained and loaded through
the real loading code): pre-processing, detections, targets, every applicable method, the
refusals, MC-Dropout where it applies, sampling points, and `python -m app detect`."""
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import AutoImageProcessor

from app.cli import main
from core import params as P
from core.methods.registry import METHODS, applicable, context, require
from core.methods.sampling_points import sampling_records, splat
from core.methods.targets import predicted_class
from core.models.detection import detect
from core.models.loading import ModelUnavailable, load_model
from tests.tiny import save_family

FAMILIES = ("detr", "conditional_detr", "dab-detr", "deformable_detr", "rt_detr", "d_fine")
DENSE, DEFORMABLE = {"attention", "relevance"}, {"sampling_points"}
EVERYWHERE = {"gradcam", "gradcam++", "hirescam", "gradcam-elementwise", "layercam", "odam", "ig"}
# the support matrix: which registered methods apply to which family
MC = {"mc_dropout"}  # where the model was trained with dropout (RT-DETR, D-FINE: rate 0)
# D-RISE reads a softmax head with no-object: DETR only
APPLIES = {"detr": EVERYWHERE | DENSE | MC | {"drise"}, "conditional_detr": EVERYWHERE | DENSE | MC,
           "dab-detr": EVERYWHERE | DENSE | MC, "deformable_detr": EVERYWHERE | DEFORMABLE | MC,
           "rt_detr": EVERYWHERE | DEFORMABLE, "d_fine": EVERYWHERE | DEFORMABLE}


@pytest.fixture(scope="session")
def family_dirs(tmp_path_factory):
    return {f: save_family(f, tmp_path_factory.mktemp(f)) for f in FAMILIES}


@pytest.fixture(scope="session")
def loaded_families(family_dirs):
    return {f: load_model(str(d), device="cpu") for f, d in family_dirs.items()}


@pytest.mark.parametrize("family", FAMILIES)
def test_preprocessing_is_the_models_own(family, family_dirs, loaded_families, rgb_image):
    """Our tensor equals the model's own image processor's (resize rule, normalisation or not)."""
    loaded = loaded_families[family]
    ours = loaded.pixel_values(rgb_image)
    theirs = AutoImageProcessor.from_pretrained(family_dirs[family])(images=rgb_image, return_tensors="pt")
    assert ours.shape == theirs["pixel_values"].shape
    assert torch.allclose(ours, theirs["pixel_values"], atol=1e-5)
    if family in ("rt_detr", "d_fine"):  # fixed square, pixels in [0, 1]
        assert ours.shape[-2:] == (64, 64) and 0 <= float(ours.min()) and float(ours.max()) <= 1


@pytest.mark.parametrize("family", FAMILIES)
def test_detections_agree_with_the_models_own_post_processing(family, family_dirs, loaded_families, rgb_image):
    """One detection per query slot = its best class in transformers' own post-processing
    (softmax with no-object for DETR, sigmoid scores for the others)."""
    loaded = loaded_families[family]
    dets = detect(loaded, rgb_image)
    assert [d["index"] for d in dets] == list(range(5)) and set(dets[0]) == {"index", "label", "score", "box"}
    processor = AutoImageProcessor.from_pretrained(family_dirs[family])
    with torch.no_grad():
        out = loaded.model(pixel_values=loaded.pixel_values(rgb_image))
    (theirs,) = processor.post_process_object_detection(out, threshold=0.0, target_sizes=[rgb_image.size[::-1]])
    entries = [(loaded.id2label[int(l)], float(s), b.tolist())
               for s, l, b in zip(theirs["scores"], theirs["labels"], theirs["boxes"])]
    best = max(dets, key=lambda d: d["score"])
    assert max(e[1] for e in entries) == pytest.approx(best["score"], abs=1e-6)
    for det in dets:  # random weights tie scores across queries: the box must be among the ties
        same = [e for e in entries if e[0] == det["label"] and abs(e[1] - det["score"]) < 1e-6]
        if family != "rt_detr":  # RT-DETR keeps only its top num_queries (query, class) pairs
            assert any(box == pytest.approx(det["box"], abs=0.01) for _, _, box in same), det


def test_sigmoid_heads_have_no_no_object_column(loaded_families):
    logits = torch.tensor([[[0.0, 1.0, 5.0]]])
    assert predicted_class(logits, 0, loaded_families["detr"]) == 1  # the last column is no-object
    assert predicted_class(logits, 0, loaded_families["rt_detr"]) == 2  # every column is a class


@pytest.mark.parametrize("family", FAMILIES)
def test_applicability_matrix_and_reasons(family, loaded_families):
    reasons = applicable(loaded_families[family])
    assert set(reasons) == set(METHODS) | {"mc_dropout"}
    assert {name for name, why in reasons.items() if why is None} == APPLIES[family]
    for name, why in reasons.items():
        assert why is None or (isinstance(why, str) and "\n" not in why and len(why) < 200)
        if why is None:
            require(loaded_families[family], name)
        else:
            with pytest.raises(P.ParamError, match=re.escape(why)):
                require(loaded_families[family], name)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_applicable_method_runs(family, loaded_families, rgb_image):
    loaded = loaded_families[family]
    x, query = loaded.pixel_values(rgb_image), 1
    with torch.no_grad():
        logits = loaded.model(pixel_values=x).logits
    ctx = context(loaded)
    for name, why in applicable(loaded).items():
        if why is not None or name == "mc_dropout":
            continue
        params = METHODS[name].validate({"steps": 4} if name == "ig" else {"masks": 100} if name == "drise" else {}, ctx)
        result = METHODS[name].compute(loaded, x, query, params)[name]
        assert result.heatmap.ndim == 2 and np.isfinite(result.heatmap).all(), name
        assert name == "gradcam" or np.abs(result.heatmap).sum() > 0, name  # Grad-CAM's ReLU may zero a tiny map
        if "target_value" in result.info and name != "drise":  # D-RISE: its own score. The class logit itself (sigmoid heads) / pre-softmax (DETR)
            c = predicted_class(logits, query, loaded)
            assert result.info["target_value"] == pytest.approx(float(logits[0, query, c]), rel=1e-4, abs=1e-5)
        if name in ("attention", "sampling_points"):  # softmax weights: the map is a distribution
            assert result.heatmap.sum() == pytest.approx(1.0, abs=1e-4) or result.heatmap.sum() < 1.0


@pytest.mark.parametrize("family", ["conditional_detr", "rt_detr", "d_fine"])
def test_cam_layers_are_backbone_convs(family, loaded_families):
    modules = dict(loaded_families[family].model.named_modules())
    layers = context(loaded_families[family])["layers"]
    assert layers and all("shortcut" not in name for name in layers)
    assert all(isinstance(modules[n], torch.nn.Conv2d) for n in layers[::2])  # last conv, stage output, ...


def test_splat_hand_computed():
    # a point on the centre of cell (1, 2) of a 3x4 grid puts all its weight there
    grid = splat(torch.tensor([[2.5 / 4, 1.5 / 3]]), torch.tensor([2.0]), 3, 4)
    assert grid[1, 2] == 2.0 and grid.sum() == 2.0
    # the middle of a 2x2 grid is equidistant from the 4 centres; a point outside adds nothing
    grid = splat(torch.tensor([[0.5, 0.5], [-1.0, 0.5]]), torch.tensor([1.0, 1.0]), 2, 2)
    assert torch.allclose(grid, torch.full((2, 2), 0.25, dtype=torch.float64))
    # a quarter of the way from centre (0, 0) to centre (0, 1)
    grid = splat(torch.tensor([[0.25 + 0.125, 0.25]]), torch.tensor([1.0]), 2, 2)
    assert torch.allclose(grid, torch.tensor([[0.75, 0.25], [0.0, 0.0]], dtype=torch.float64))


@pytest.mark.parametrize("family", ["deformable_detr", "d_fine"])
def test_sampling_points_are_the_ones_the_model_samples(family, family_dirs, rgb_image):
    """D-FINE's points are rebuilt from its offsets and reference boxes: they equal the locations its
    sampling function receives (recorded here on a private copy by wrapping that function)."""
    loaded = load_model(str(family_dirs[family]), device="cpu")
    attn = [layer.encoder_attn for layer in loaded.model.model.decoder.layers]
    seen = []
    if family == "d_fine":
        for a in attn:
            core = a.ms_deformable_attn_core
            a.ms_deformable_attn_core = lambda v, s, loc, w, *rest, core=core: seen.append((loc, w)) or core(v, s, loc, w, *rest)
    else:
        for a in attn:
            a.attn.register_forward_pre_hook(lambda m, args: seen.append((args[4].flatten(3, 4), args[5].flatten(3, 4))))
    with torch.no_grad(), sampling_records(loaded.model) as records:
        loaded.model(pixel_values=loaded.pixel_values(rgb_image))
    assert len(records) == len(seen) == 2
    for record, (locations, weights) in zip(records, seen):
        assert torch.allclose(record["points"], locations, atol=1e-6)
        assert torch.allclose(record["weights"], weights)
        assert torch.allclose(record["weights"].sum(-1), torch.ones(1))  # per head, over levels and points


def test_sampling_points_level_split(loaded_families, rgb_image):
    loaded = loaded_families["rt_detr"]
    method, x = METHODS["sampling_points"], loaded.pixel_values(rgb_image)
    maps = [method.compute(loaded, x, 2, method.validate({"level": lv}, context(loaded)))["sampling_points"]
            for lv in (-1, 0, 1, 2)]
    assert np.allclose(maps[0].heatmap, sum(m.heatmap for m in maps[1:]), atol=1e-6)
    assert sum(maps[0].info["level_weight"]) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("family", ["detr", "conditional_detr", "dab-detr", "deformable_detr"])
def test_mc_dropout_where_it_applies(family, loaded_families, rgb_image):
    """Batched samples equal the naive one-pass-at-a-time reference (same masks per seed and sample);
    at p = 0 every sample is the deterministic model: no spread, entropy of the score itself."""
    from core.models.mc_dropout import mc_dropout, mc_dropout_naive
    loaded = loaded_families[family]
    x = loaded.pixel_values(rgb_image)
    fast = mc_dropout(loaded, x, rgb_image.size, samples=4, p=0.3, chunk=3)
    naive = mc_dropout_naive(loaded, x, rgb_image.size, samples=4, p=0.3)
    for a, b in zip(fast["detections"], naive["detections"]):
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-5)
        assert a["box_mean"] == pytest.approx(b["box_mean"], abs=1e-3)
    assert any(d["score_std"] > 0 for d in fast["detections"])
    still = mc_dropout(loaded, x, rgb_image.size, samples=3, p=0.0)["detections"]
    dets = detect(loaded, rgb_image)
    for s, d in zip(still, dets):
        assert s["score_std"] == pytest.approx(0, abs=1e-6) and s["score_mean"] == pytest.approx(d["score"], abs=1e-5)
        assert s["mutual_information"] == pytest.approx(0, abs=1e-6)
        if family != "detr":  # the label's Bernoulli
            q = d["score"]
            assert s["entropy"] == pytest.approx(-q * np.log(q) - (1 - q) * np.log(1 - q), abs=1e-4)


def test_uncertainty_sigmoid_hand_computed():
    from core.models.mc_dropout import uncertainty_sigmoid
    probs = np.array([[[0.8, 0.1]], [[0.4, 0.6]]])  # T=2 samples, Q=1 slot, K=2 classes; label 0
    u = uncertainty_sigmoid(probs, np.array([0]))
    hb = lambda p: -p * np.log(p) - (1 - p) * np.log(1 - p)  # noqa: E731
    assert u["entropy"][0] == pytest.approx(hb(0.6))
    assert u["mutual_information"][0] == pytest.approx(hb(0.6) - (hb(0.8) + hb(0.4)) / 2)
    assert u["variation_ratio"][0] == pytest.approx(0.5) and u["top_labels"][:, 0].tolist() == [0, 1]


def test_mc_dropout_refused_when_trained_without_dropout(tmp_path):
    from core.models.mc_dropout import applies
    from tests.tiny import tiny_detr
    tiny_detr(dropout=0.0).save_pretrained(tmp_path)
    assert "rate 0" in applies(load_model(str(tmp_path), device="cpu"))


@pytest.mark.parametrize("family", ["rt_detr", "d_fine"])
def test_mc_dropout_refused_for_families_trained_without_dropout(family, loaded_families):
    from core.models.mc_dropout import applies
    assert "rate 0" in applies(loaded_families[family])


def test_timm_checkpoint_says_so(tmp_path):
    from transformers import ConditionalDetrConfig
    ConditionalDetrConfig(use_timm_backbone=True, backbone="resnet50").save_pretrained(tmp_path)
    with pytest.raises(ModelUnavailable, match="timm backbone"):
        load_model(str(tmp_path), device="cpu")


def test_cli_detect_json(family_dirs, loaded_families, tmp_path, rgb_image, capsys):
    image = tmp_path / "image.png"
    rgb_image.save(image)
    assert main(["detect", str(image), "--model", str(family_dirs["deformable_detr"]), "--threshold", "0",
                 "--json"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["detections"] == detect(loaded_families["deformable_detr"], rgb_image)
    run = subprocess.run([sys.executable, "-m", "app", "detect", str(image), "--model", str(family_dirs["rt_detr"]),
                          "--threshold", "0", "--json"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["detections"] == detect(loaded_families["rt_detr"], rgb_image)


def test_detr_preprocessing_bit_identical_to_before(rgb_image):
    """DETR's tensor is exactly what core.images.normalize gave before the families came."""
    from PIL import Image
    from core.images import normalize
    from core.models.loading import Preprocess
    pre = Preprocess(shortest_edge=64, longest_edge=128)
    assert torch.equal(pre(rgb_image), normalize(rgb_image.resize((85, 64), Image.BILINEAR))[None])


def test_missing_processor_config_uses_the_familys_defaults(tmp_path):
    import transformers as T
    from tests.tiny import family_config
    T.AutoModelForObjectDetection.from_config(family_config("rt_detr")).save_pretrained(tmp_path)
    pre = load_model(str(tmp_path), device="cpu").preprocess
    assert pre.fixed_size == (640, 640) and pre.mean == (0.0, 0.0, 0.0) and pre.std == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("family", ["conditional_detr", "rt_detr"])
def test_cli_explain_every_applicable_method_and_refuses_the_rest(family, family_dirs, tmp_path, rgb_image, capsys):
    image = tmp_path / "image.png"
    rgb_image.save(image)
    reasons = applicable(load_model(str(family_dirs[family]), device="cpu"))
    for name in METHODS:
        flags = ["--steps", "4"] if name == "ig" else []
        status = main(["explain", str(image), "--model", str(family_dirs[family]), "--query", "1", "--method", name,
                       "--json", *flags])
        out, err = capsys.readouterr()
        if reasons[name] is None:
            assert status == 0 and json.loads(out)["method"] == name, err
        else:  # exit 2, the one-line reason, no traceback
            assert status == 2 and err.strip() == f"error: {reasons[name]}" and not out


@pytest.mark.parametrize("family", ["detr", "rt_detr", "conditional_detr"])
def test_faithfulness_tracks_the_familys_own_confidence(family, loaded_families, rgb_image):
    """Deletion starts from the detection's confidence as its family scores it (softmax with no-object
    for DETR, per-class sigmoid for the others)."""
    from core.evaluation.faithfulness import faithfulness
    loaded = loaded_families[family]
    det = max(detect(loaded, rgb_image), key=lambda d: d["score"])
    x = loaded.pixel_values(rgb_image)
    result = faithfulness(loaded, x, det["index"], np.random.default_rng(0).random(x.shape[-2:]), steps=4)
    assert result["curves"]["deletion"]["slot"][0] == pytest.approx(det["score"], rel=1e-4)
