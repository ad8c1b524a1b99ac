"""Tiny config-built DETRs for tests: seconds to build, same classes and code paths as the real one."""
from __future__ import annotations

import torch
from transformers import DetrConfig, DetrForObjectDetection, ResNetConfig

from core.demo.train import _detr_init


def tiny_config(num_labels: int = 3, queries: int = 5, dropout: float = 0.1) -> DetrConfig:
    backbone = ResNetConfig(layer_type="basic", embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                            out_features=["stage2"])
    return DetrConfig(
        use_timm_backbone=False, use_pretrained_backbone=False, backbone_config=backbone, num_queries=queries,
        d_model=16, encoder_layers=1, decoder_layers=1, encoder_ffn_dim=32, decoder_ffn_dim=32,
        encoder_attention_heads=2, decoder_attention_heads=2, dropout=dropout,
        id2label={i: f"class{i}" for i in range(num_labels)}, label2id={f"class{i}": i for i in range(num_labels)},
    )


def tiny_detr(seed: int = 0, **kwargs) -> DetrForObjectDetection:
    """A randomly initialised tiny DETR (DETR's own init, so outputs and gradients are not degenerate)."""
    torch.manual_seed(seed)
    config = tiny_config(**kwargs)
    config._attn_implementation = "eager"
    model = DetrForObjectDetection(config)
    _detr_init(model)
    return model.eval()


# ---- one tiny random-weight model per DETR family (tests/test_families.py, bench --model DIR) ----------

def _labels(num_labels: int) -> dict:
    id2label = {i: f"class{i}" for i in range(num_labels)}
    return {"id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}


def family_config(family: str, num_labels: int = 3, queries: int = 5, width: int = 16):
    """A tiny config of `family` (a config.model_type in core.models.families): 2 decoder layers
    (a 1-layer Deformable DETR fails on weight tying in transformers 5.24), transformers' own
    backbones (no timm)."""
    import transformers as T
    from transformers import ResNetConfig

    def resnet(out, cls=ResNetConfig):
        return cls(layer_type="basic", embedding_size=8, hidden_sizes=[8, width, width, width][:len(out) + 1],
                   depths=[1] * (len(out) + 1), out_features=list(out))

    dense = dict(use_timm_backbone=False, use_pretrained_backbone=False, num_queries=queries, encoder_layers=1,
                 decoder_layers=2, encoder_ffn_dim=2 * width, decoder_ffn_dim=2 * width, encoder_attention_heads=2,
                 decoder_attention_heads=2, dropout=0.1, **_labels(num_labels))
    dfine_like = dict(encoder_hidden_dim=width, encoder_in_channels=[width] * 3, d_model=width,
                      decoder_in_channels=[width] * 3, encoder_ffn_dim=2 * width, decoder_ffn_dim=2 * width,
                      encoder_attention_heads=2, decoder_attention_heads=2, decoder_layers=2, num_queries=queries,
                      decoder_n_points=2, num_denoising=0, **_labels(num_labels))
    if family == "detr":
        return tiny_config(num_labels, queries)
    if family == "conditional_detr":
        return T.ConditionalDetrConfig(backbone_config=resnet(["stage1"]), d_model=width, **dense)
    if family == "dab-detr":
        return T.DabDetrConfig(backbone_config=resnet(["stage1"]), hidden_size=width, **dense)
    if family == "deformable_detr":  # GroupNorm(32, d_model): d_model a multiple of 32
        return T.DeformableDetrConfig(backbone_config=resnet(["stage1", "stage2"]), d_model=32, num_feature_levels=2,
                                      encoder_n_points=2, decoder_n_points=2, **dense)
    if family == "rt_detr":
        return T.RTDetrConfig(backbone_config=resnet(["stage1", "stage2", "stage3"], T.RTDetrResNetConfig),
                              **dfine_like)
    if family == "d_fine":
        hgnet = T.HGNetV2Config(embedding_size=8, depths=[1] * 4, hidden_sizes=[width] * 4, stem_channels=[3, 8, 8],
                                stage_in_channels=[8, width, width, width], stage_mid_channels=[8] * 4,
                                stage_out_channels=[width] * 4, stage_num_blocks=[1] * 4,
                                stage_numb_of_layers=[2] * 4, out_features=["stage2", "stage3", "stage4"])
        return T.DFineConfig(backbone_config=hgnet, lqe_hidden_dim=8, dropout=0.0, **dfine_like)
    raise ValueError(family)


def save_family(family: str, path, image_size: int = 64, seed: int = 0, **kwargs):
    """A tiny random-weight `family` model and its image processor, written with save_pretrained:
    DETR-style processors resize the shortest side to `image_size`; RT-DETR's and D-FINE's resize to
    a fixed `image_size` square and do not normalise (as the real checkpoints)."""
    import transformers as T
    torch.manual_seed(seed)
    config = family_config(family, **kwargs)
    model = T.AutoModelForObjectDetection.from_config(config).eval()
    if family == "detr":
        _detr_init(model)
    model.save_pretrained(path)
    processor_class = {"rt_detr": T.RTDetrImageProcessorPil, "d_fine": T.RTDetrImageProcessorPil,
                       "deformable_detr": T.DeformableDetrImageProcessorPil,
                       "conditional_detr": T.ConditionalDetrImageProcessorPil,
                       "dab-detr": T.ConditionalDetrImageProcessorPil}.get(family, T.DetrImageProcessorPil)
    if family in ("rt_detr", "d_fine"):
        processor = processor_class(size={"height": image_size, "width": image_size})
    else:
        processor = processor_class(size={"shortest_edge": image_size, "longest_edge": 2 * image_size})
    processor.save_pretrained(path)
    return path
