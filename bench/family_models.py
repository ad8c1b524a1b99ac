"""Write one random-weight model per DETR family, at its real architecture (each config's
defaults: ResNet-50 for DETR, Conditional/DAB/Deformable DETR and RT-DETR's ResNet-50-vd, HGNetV2
for D-FINE; transformers' own backbones, no timm), with its image processor, for
`python -m bench.detection --model DIR`: costs of real-sized models without downloading weights.

  python -m bench.family_models OUT_DIR [--families detr,rt_detr,...]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import transformers as T

CONFIGS = {
    "detr": lambda: T.DetrConfig(use_timm_backbone=False, use_pretrained_backbone=False),
    "conditional_detr": lambda: T.ConditionalDetrConfig(use_timm_backbone=False, use_pretrained_backbone=False),
    "dab-detr": lambda: T.DabDetrConfig(use_timm_backbone=False, use_pretrained_backbone=False),
    "deformable_detr": lambda: T.DeformableDetrConfig(use_timm_backbone=False, use_pretrained_backbone=False),
    "rt_detr": lambda: T.RTDetrConfig(),
    "d_fine": lambda: T.DFineConfig(),
}
PROCESSORS = {"detr": T.DetrImageProcessorPil, "conditional_detr": T.ConditionalDetrImageProcessorPil,
              "dab-detr": T.ConditionalDetrImageProcessorPil, "deformable_detr": T.DeformableDetrImageProcessorPil,
              "rt_detr": T.RTDetrImageProcessorPil, "d_fine": T.RTDetrImageProcessorPil}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out")
    parser.add_argument("--families", default=",".join(CONFIGS))
    args = parser.parse_args()
    torch.manual_seed(0)
    for family in args.families.split(","):
        out = Path(args.out) / family
        T.AutoModelForObjectDetection.from_config(CONFIGS[family]()).eval().save_pretrained(out)
        PROCESSORS[family]().save_pretrained(out)
        print(out)


if __name__ == "__main__":
    main()
