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
