"""Train the bundled demo DETR from scratch on procedural scenes (CPU-feasible, CUDA when present).

The model is the stock `DetrForObjectDetection` with transformers' own small ResNet backbone, so
the result loads through the same `from_pretrained` path as `facebook/detr-resnet-50`.

Two things the stock class does not do for training from scratch (both measured necessary):
- its backbone wrapper freezes every ResNet parameter whose name lacks "stage.1/2/3" (the HF
  ResNet names them "stages.N"), so nothing in the backbone would train: we unfreeze it;
- its frozen batch-norm is an identity at initialisation: we train with real BatchNorm2d and fold
  the learned statistics back into the frozen batch-norm before saving.
And DETR's own initialisation (queries N(0,1), xavier linears, kaiming convs) instead of the
library's std-0.02 default, which left the class loss stuck at the class prior.
"""
from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import DetrConfig, DetrForObjectDetection, ResNetConfig
from transformers.models.detr.modeling_detr import DetrFrozenBatchNorm2d

from core.models.detection import postprocess
from core.models.loading import Preprocess
from core.evaluation.metrics import COCO_IOUS, duplicates_and_false_positives, mean_average_precision
from core.demo.scenes import CLASSES, SCENE_SIZES, SCENE_VERSION, make_scene
from core.params import THRESHOLD

HELD_OUT_SEED = 1_000_000  # evaluation seeds start here; training never reaches them
FEATURE_STAGES = ("stage1", "stage2", "stage3")  # the demo backbone's stages (strides 4, 8, 16)


def demo_config() -> DetrConfig:
    backbone = ResNetConfig(layer_type="basic", embedding_size=32, hidden_sizes=[32, 64, 128], depths=[1, 1, 1],
                            out_features=["stage3"])
    return DetrConfig(
        use_timm_backbone=False, use_pretrained_backbone=False, backbone_config=backbone,
        num_queries=12, d_model=128, encoder_layers=2, decoder_layers=3, encoder_ffn_dim=256, decoder_ffn_dim=256,
        encoder_attention_heads=4, decoder_attention_heads=4, dropout=0.1, auxiliary_loss=True,
        id2label=dict(enumerate(CLASSES)), label2id={c: i for i, c in enumerate(CLASSES)},
    )


def _swap_batchnorm(module: nn.Module, to_trainable: bool) -> None:
    """Frozen batch-norm <-> BatchNorm2d, copying statistics and affine parameters exactly."""
    for name, child in module.named_children():
        if to_trainable and isinstance(child, DetrFrozenBatchNorm2d):
            new = nn.BatchNorm2d(child.weight.numel())
        elif not to_trainable and isinstance(child, nn.BatchNorm2d):
            new = DetrFrozenBatchNorm2d(child.num_features)
        else:
            _swap_batchnorm(child, to_trainable)
            continue
        with torch.no_grad():
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(new, key).copy_(getattr(child, key))
        setattr(module, name, new.to(child.weight.device))


def _detr_init(model: DetrForObjectDetection) -> None:
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and (".encoder." in name or ".decoder." in name):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    nn.init.normal_(model.model.query_position_embeddings.weight)


def with_features_from(model: DetrForObjectDetection, stage: str) -> DetrForObjectDetection:
    """The same model reading its backbone's `stage` (transformers' `out_features`; "stage2" halves the
    stride of the demo's "stage3" to 8): every weight kept but the input projection, whose input
    channels change, new with DETR's init."""
    config = copy.deepcopy(model.config)
    names = config.backbone_config.stage_names
    config.backbone_config.out_features, config.backbone_config.out_indices = [stage], [names.index(stage)]
    new = DetrForObjectDetection(config)
    kept = {k: v for k, v in model.state_dict().items() if not k.startswith("model.input_projection.")}
    missing, unexpected = new.load_state_dict(kept, strict=False)
    assert not unexpected and {k.rsplit(".", 1)[0] for k in missing} == {"model.input_projection"}, missing
    nn.init.kaiming_normal_(new.model.input_projection.weight, mode="fan_out", nonlinearity="relu")
    nn.init.zeros_(new.model.input_projection.bias)
    return new


def new_demo_model(resume: Path | None = None, feature_stage: str | None = None,
                   trainable_batchnorm: bool = True) -> DetrForObjectDetection:
    """A fresh demo DETR with DETR's init, or one resumed from a saved directory, ready to train;
    reading the backbone's `feature_stage` where given (`with_features_from`); with the backbone's
    batch-norm frozen at its statistics unless `trainable_batchnorm`."""
    if resume:
        model = DetrForObjectDetection.from_pretrained(resume)
    else:
        model = DetrForObjectDetection(demo_config())
        _detr_init(model)
    if feature_stage and model.config.backbone_config.out_features != [feature_stage]:
        model = with_features_from(model, feature_stage)
    if trainable_batchnorm:
        _swap_batchnorm(model.model.backbone, to_trainable=True)
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def scene_batch(seeds, device, version: int = SCENE_VERSION, side: int | None = None) -> tuple[torch.Tensor, list[dict]]:
    """Scenes as a batch made by the app's own pre-processing at `side` px (default: the scene size),
    with their targets (boxes are relative, so they do not change)."""
    side = side or SCENE_SIZES[version]
    preprocess = Preprocess(shortest_edge=side, longest_edge=4 * side)
    images, labels = [], []
    for s in seeds:
        image, truth = make_scene(int(s), version=version)
        images.append(preprocess(image)[0])
        boxes = torch.tensor([t["box"] for t in truth], dtype=torch.float32) / SCENE_SIZES[version]
        cxcywh = torch.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2,
                              boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], dim=1)
        labels.append({"class_labels": torch.tensor([CLASSES.index(t["label"]) for t in truth], device=device),
                       "boxes": cxcywh.to(device)})
    return torch.stack(images).to(device), labels


@torch.no_grad()
def evaluate(model, count: int, seed: int, device, batch: int = 50, version: int = SCENE_VERSION,
             threshold: float = THRESHOLD.default, side: int | None = None) -> dict:
    """mAP@0.5 and mAP@[.5:.95] over `count` scenes starting at `seed` (every query kept), and the
    duplicates and false positives at `threshold` in % of true objects."""
    model.eval()
    preds, truths, size = [], [], SCENE_SIZES[version]
    for start in range(0, count, batch):
        seeds = range(seed + start, seed + min(count, start + batch))
        pixels, _ = scene_batch(seeds, device, version, side)
        out = model(pixel_values=pixels)
        for i, s in enumerate(seeds):
            dets = postprocess(out.logits[i], out.pred_boxes[i], (size, size), model.config.id2label)
            preds.append(dets)
            truths.append(make_scene(s, version=version)[1])
    return {"map50": mean_average_precision(preds, truths, CLASSES, (0.5,)),
            "map": mean_average_precision(preds, truths, CLASSES, COCO_IOUS),
            **duplicates_and_false_positives(preds, truths, threshold)}


def save_demo(model: DetrForObjectDetection, out: Path, size: int = SCENE_SIZES[SCENE_VERSION]) -> None:
    """Fold batch-norm into the stock frozen batch-norm and write a `from_pretrained` directory."""
    import copy
    from core.images import write_preprocessor_config

    frozen = copy.deepcopy(model).cpu().eval()
    _swap_batchnorm(frozen.model.backbone, to_trainable=False)
    frozen.save_pretrained(out)
    write_preprocessor_config(out, shortest_edge=size, longest_edge=4 * size)


def lr_factor(step: int, steps: int, warmup: int) -> float:
    """The learning rate's factor before optimiser step `step` (0-based): linear warm-up over `warmup`
    steps (none at 0), times a cosine decay to 0 at `steps`."""
    return min(1.0, (step + 1) / max(warmup, 1)) * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))


def train(out: Path, steps: int, batch: int = 32, lr: float = 2e-4, warmup: int = 100, eval_every: int = 500,
          eval_scenes: int = 200, device: str | None = None, resume: Path | None = None, first_seed: int = 0,
          scene_version: int = SCENE_VERSION, eos_coefficient: float | None = None,
          giou_coefficient: int | None = None, feature_stage: str | None = None, input_size: int | None = None,
          no_dropout: bool = False, log=print) -> dict:
    """Train for `steps` (cosine schedule with warm-up); scene seeds first_seed, first_seed + 1, ...
    (all below HELD_OUT_SEED) of `scene_version`, at that version's size: the model is resolution-
    agnostic (sine position embeddings), so a model resumed from another version's size adapts.
    Evaluates and saves to `out` every `eval_every` steps. `eos_coefficient` and `giou_coefficient`
    replace the config's no-object weight and generalised-IoU loss weight (the loss reads them from
    the config, and the saved model keeps them; the matching cost keeps its own giou_cost).
    `feature_stage` makes the transformer read another backbone stage (`with_features_from`).
    `input_size` is the model's input side (scenes are resized to it; the saved pre-processing
    config resizes every image to it): a finer feature grid without new weights.
    `no_dropout` trains the model as it is served: dropout off and the backbone's batch-norm frozen.
    As a last stage it made boxes precise (the model trained with dropout placed them ~0.6 px right
    of the truth, in training scenes too); the config keeps its dropout rate, which MC-Dropout reads."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    side = input_size or SCENE_SIZES[scene_version]
    torch.manual_seed(0)
    model = new_demo_model(resume, feature_stage, trainable_batchnorm=not no_dropout).to(device)
    if eos_coefficient is not None:
        model.config.eos_coefficient = eos_coefficient
    if giou_coefficient is not None:
        model.config.giou_loss_coefficient = giou_coefficient
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps, warmup))
    log(f"demo DETR: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, {steps} steps on {device}, "
        f"scenes v{scene_version} ({SCENE_SIZES[scene_version]} px, input {side} px), no-object weight {model.config.eos_coefficient}, "
        f"GIoU loss weight {model.config.giou_loss_coefficient}, features of "
        f"{model.config.backbone_config.out_features[0]}" + (", dropout off and batch-norm frozen" if no_dropout else ""))
    history, t0 = [], time.time()
    for step in range(1, steps + 1):
        model.train(not no_dropout)
        first = first_seed + (step - 1) * batch
        assert first + batch <= HELD_OUT_SEED, "training seeds must stay below the held-out range"
        pixels, labels = scene_batch(range(first, first + batch), device, scene_version, side)
        loss = model(pixel_values=pixels, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        opt.step()
        sched.step()
        if step % 50 == 0:
            log(f"step {step} loss {loss.item():.3f} lr {sched.get_last_lr()[0]:.2e} {time.time() - t0:.0f}s")
        if step % eval_every == 0 or step == steps:
            scores = evaluate(model, eval_scenes, HELD_OUT_SEED + 500_000, device, version=scene_version, side=side)
            history.append({"step": step, "seconds": round(time.time() - t0), **scores})
            log(f"step {step} held-out mAP@0.5 {scores['map50']:.3f} mAP@[.5:.95] {scores['map']:.3f} "
                f"duplicates {scores['duplicates_pct']:.1f}% false positives {scores['false_positives_pct']:.1f}%")
            save_demo(model, out, side)
            (out / "training_log.json").write_text(json.dumps(history, indent=1))
    return history[-1]
