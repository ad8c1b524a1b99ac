"""A dense-attention detector's own per-detection map: the decoder cross-attention of the
detection's query slot (DETR, Conditional DETR, DAB-DETR; core.models.families says where the
attention modules sit)."""
from __future__ import annotations

import threading
from contextlib import contextmanager

import torch

from core import params as P
from core.methods.explanation import Explanation, Progress
from core.methods.targets import predicted_class
from core.models.families import family_of

PARAMS = (P.Param("decoder_layer", "int", -1, "Decoder layer whose cross-attention is shown (-1: the last).",
                   label="Decoder layer", min=-1, max_from="max_decoder_layer"),)


@contextmanager
def attention_maps(model):
    """Yields a dict that this thread's forward fills: "grid", (h, w) of the feature map the
    transformer reads, and the attention weights [B, heads, T, S] of every layer, in order:
    "encoder" (self), "decoder" (self) and "cross" (decoder cross-attention).

    Own hooks, removed on exit, that record only this thread (the model is shared). They catch
    the very tensors `output_attentions=True` returns, graph included, without transformers'
    capture hooks, which it installs on the model for good on first use.
    """
    me, got = threading.get_ident(), {"encoder": [], "decoder": [], "cross": []}

    def keep(key):
        def hook(module, args, output):
            if threading.get_ident() != me:
                return
            if key == "grid":
                got["grid"] = tuple(output.shape[-2:])
            elif output[1] is None:
                raise RuntimeError("no attention weights: load the model with attn_implementation='eager'")
            else:
                got[key].append(output[1])
        return hook

    inner, family = model.model, family_of(model)
    modules = ([(inner.input_projection, "grid")] + [(layer.self_attn, "encoder") for layer in inner.encoder.layers]
               + [(layer.get_submodule(path), key) for layer in inner.decoder.layers
                  for path, key in ((family.decoder_self, "decoder"), (family.decoder_cross, "cross"))])
    handles = [m.register_forward_hook(keep(key)) for m, key in modules]
    try:
        yield got
    finally:
        for handle in handles:
            handle.remove()


def forward_with_attentions(loaded, pixel_values: torch.Tensor, **kwargs):
    """One forward; returns (outputs, maps) with maps as `attention_maps` fills them."""
    if loaded.family.output_attentions:  # DAB-DETR computes the weights always, returns them only when asked
        kwargs["output_attentions"] = True
    with attention_maps(loaded.model) as maps:
        outputs = loaded.model(pixel_values=pixel_values, **kwargs)
    return outputs, maps


def compute_attention(loaded, pixel_values: torch.Tensor, query: int, params: dict,
                      progress: Progress | None = None) -> dict[str, Explanation]:
    """Cross-attention of `query` over the image tokens in one decoder layer (default the last),
    heads averaged, on the backbone's feature grid. Rows are softmax weights: the map sums to 1."""
    with torch.no_grad():
        outputs, maps = forward_with_attentions(loaded, pixel_values)
    if progress:
        progress(1, 1)
    return attention_explanation(loaded, outputs.logits, maps, query, params)


def attention_explanation(loaded, logits: torch.Tensor, maps: dict, query: int, params: dict) -> dict[str, Explanation]:
    """The attention Explanation from a forward's `attention_maps` (shared with core.methods.joint)."""
    layer = int(params.get("decoder_layer", -1))
    (h, w), cross = maps["grid"], maps["cross"][layer][0].detach()  # [heads, queries, h*w]
    heatmap = cross[:, query].mean(0).reshape(h, w)
    class_index = predicted_class(logits, query, loaded)
    info = {"grid": [h, w], "layer": layer % len(maps["cross"]), "heads": int(cross.shape[0]),
            "class_index": class_index, "label": loaded.id2label.get(class_index, str(class_index))}
    return {"attention": Explanation(heatmap.float().cpu().numpy(), info)}
