"""The CAM family, DETR's attention and attention relevance of one detection from ONE forward and
ONE backward, where all explain the same scalar (the class logit of the query).

Each method alone runs its own pass (core/methods/gradcam.py, attention.py, relevance.py); a
comparison asks for all three, and this serves them together: the CAM layers and every attention
map are captured in the same forward, and one `autograd.grad` of the class logit gives the CAM
gradients and the attention gradients that relevance propagates. The results are the methods' own
(same helpers, same numbers; tests/test_compare.py checks it).
"""
from __future__ import annotations

import torch

from core.memory import release_free_memory
from core.methods.attention import attention_explanation, attention_maps
from core.methods.explanation import Explanation, Progress
from core.methods.gradcam import cam_explanations, forward_and_capture, resolve_layers
from core.methods.relevance import attention_list, decoder_queries, relevance_explanation
from core.methods.targets import predicted_class, target_score


def compute_joint(loaded, pixel_values: torch.Tensor, query: int, cam: dict, attention: dict | None = None,
                  relevance: dict | None = None, progress: Progress | None = None) -> dict[str, Explanation]:
    """method -> Explanation: every VARIANTS map (cam params, target "class"), and "attention" and
    "relevance" (target "class") where their params are given (None: left out). The CAM layers'
    leaf roots the graph, so the attention maps after it get their gradients."""
    for params in (cam, relevance):
        if params is not None and (params.get("target") or "class") != "class":
            raise ValueError("the joint pass explains the class logit only")
    model = loaded.model
    layer_of = resolve_layers(model, cam.get("layer"))
    layers = list(dict.fromkeys(layer_of.values()))
    kwargs = {"decoder_inputs_embeds": decoder_queries(model.config, pixel_values)} if relevance is not None else {}
    with torch.enable_grad():
        with attention_maps(model) as got:
            outputs, captured, grid = forward_and_capture(model, pixel_values, layers, **kwargs)
        if progress:
            progress(1, 2)
        class_index = predicted_class(outputs.logits.detach(), query, loaded)
        score = target_score(outputs, query, "class", class_index)[0]
        maps = attention_list(got) if relevance is not None else []
        grads = torch.autograd.grad(score, [captured[n] for n in layers] + maps, allow_unused=True)
    release_free_memory()  # the backward's freed heap, before the maps' large float64 copies (core/memory.py)

    if progress:
        progress(2, 2)
    out = cam_explanations(model, captured, dict(zip(layers, grads)), grid, layer_of,
                           {"target": "class", "target_value": float(score.detach()), "class_index": class_index,
                            "query": int(query)})
    if attention is not None:
        out.update(attention_explanation(loaded, outputs.logits.detach(), got, query, attention))
    if relevance is not None:
        out.update(relevance_explanation(loaded, got, grads[len(layers):], query, "class", class_index, score))
    return out

