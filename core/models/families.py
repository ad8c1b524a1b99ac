"""What differs between the DETR-family detectors, in one table: one `Family` per config.model_type.

- Head: DETR (and Table Transformer) score with a softmax over the classes plus a no-object class;
  Conditional DETR, DAB-DETR, Deformable DETR, RT-DETR and D-FINE score every class with its own
  sigmoid (focal loss), with no no-object column (what each model's
  `post_process_object_detection` does in transformers 5.24).
- Decoder attention: "dense" decoders (DETR, Conditional DETR, DAB-DETR) attend to every image
  token, so their cross-attention is a map; "deformable" decoders (Deformable DETR, RT-DETR,
  D-FINE) sample a few points per head and level instead.
- Where the attention modules sit (dense families), and whether the model accepts zero decoder
  inputs as a gradient leaf (`decoder_inputs_embeds`; DAB-DETR ignores it).
Pre-processing is not here: each model's own image processor says it (core.models.loading).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    name: str                       # what a person reads
    no_object: bool                 # softmax with a no-object last class (else: sigmoid per class)
    attention: str                  # "dense" | "deformable"
    hub_ids: tuple[str, ...] = ()   # checkpoints people use (README's support matrix)
    decoder_self: str = "self_attn"          # dense: decoder layer -> its self-attention module
    decoder_cross: str = "encoder_attn"      # dense: decoder layer -> its cross-attention module
    decoder_inputs: bool = True              # dense: forward accepts `decoder_inputs_embeds`
    output_attentions: bool = False          # dense: attention modules return weights only when asked
    dfine_points: bool = False               # deformable: D-FINE's own sampling-point rule


FAMILIES: dict[str, Family] = {
    "detr": Family("DETR", True, "dense", ("facebook/detr-resnet-50", "facebook/detr-resnet-101")),
    "table-transformer": Family("Table Transformer", True, "dense",
                                ("microsoft/table-transformer-detection",)),
    "conditional_detr": Family("Conditional DETR", False, "dense", ("microsoft/conditional-detr-resnet-50",)),
    "dab-detr": Family("DAB-DETR", False, "dense", ("IDEA-Research/dab-detr-resnet-50",),
                       decoder_self="self_attn.self_attn", decoder_cross="cross_attn.cross_attn",
                       decoder_inputs=False, output_attentions=True),
    "deformable_detr": Family("Deformable DETR", False, "deformable",
                              ("SenseTime/deformable-detr", "SenseTime/deformable-detr-with-box-refine")),
    "rt_detr": Family("RT-DETR", False, "deformable", ("PekingU/rtdetr_r50vd", "PekingU/rtdetr_r101vd")),
    "d_fine": Family("D-FINE", False, "deformable", ("ustc-community/dfine-small-coco",
                                                     "ustc-community/dfine-large-coco"), dfine_points=True),
}

# Hub repositories with a checkpoint variant built on transformers' own ResNet (no timm).
NO_TIMM_REVISIONS = {"facebook/detr-resnet-50": "no_timm", "facebook/detr-resnet-101": "no_timm"}


class UnsupportedModel(ValueError):
    """A detector whose family the dashboard does not know; the message names the supported ones."""


def family_of(model_or_config) -> Family:
    config = getattr(model_or_config, "config", model_or_config)
    family = FAMILIES.get(getattr(config, "model_type", None))
    if family is None:
        names = ", ".join(f.name for f in FAMILIES.values())
        raise UnsupportedModel(f"Model type {getattr(config, 'model_type', '?')!r} is not supported; "
                               f"supported families: {names}.")
    return family
