"""The convolutional stages of a detector's transformers backbone, found by structure, not by name.

Every DETR-family model in transformers wraps a backbone that carries `stage_names` and
`out_features` (transformers' backbone API) and keeps its stages in `encoder.stages`: ResNet
(DETR, Conditional/DAB/Deformable DETR), ResNet-vd (RT-DETR), HGNetV2 (D-FINE). Its position in
the model differs (`model.backbone.model`, `model.backbone.conv_encoder.model`), so it is looked up.
"""
from __future__ import annotations

from torch import nn


class NoConvBackbone(ValueError):
    """The model has no transformers conv backbone with stages (e.g. a timm or ViT backbone)."""


def find_backbone(model: nn.Module) -> tuple[str, nn.Module]:
    """(module name, module) of the first module with `stage_names`, `out_features` and `encoder.stages`."""
    for name, module in model.named_modules():
        stages = getattr(getattr(module, "encoder", None), "stages", None)
        if hasattr(module, "stage_names") and hasattr(module, "out_features") and isinstance(stages, nn.ModuleList):
            return name, module
    raise NoConvBackbone(f"{type(model).__name__} has no convolutional backbone with stages")


def stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, stage) of the backbone stages that feed the detector (up to its last `out_features` stage)."""
    name, backbone = find_backbone(model)
    used = max(backbone.stage_names.index(f) for f in backbone.out_features)  # "stem" is index 0
    return [(f"{name}.encoder.stages.{i}", stage) for i, stage in enumerate(backbone.encoder.stages) if i < used]


def last_conv(stage: nn.Module) -> str:
    """Name (relative to the stage) of the stage's last Conv2d on the main path (not a shortcut)."""
    convs = [name for name, m in stage.named_modules() if isinstance(m, nn.Conv2d) and "shortcut" not in name]
    if not convs:
        raise NoConvBackbone("a backbone stage without convolutions")
    return convs[-1]
