"""Attention relevance for DETR (Chefer et al., ICCV 2021, "Generic Attention-model Explainability
for Interpreting Bi-Modal and Encoder-Decoder Transformers").

The propagation is a set of pure functions over (A, dA) pairs, each [heads, T, S], so it can be
checked against hand-computed matrices; `compute_relevance` only collects those pairs from DETR.
"""
from __future__ import annotations

import torch

from core import params as P
from core.methods.attention import forward_with_attentions
from core.methods.explanation import Explanation, Progress
from core.methods.targets import predicted_class, target_score

PARAMS = (P.TARGET,)


def head_mean(A: torch.Tensor, dA: torch.Tensor) -> torch.Tensor:
    """Abar = mean over heads of relu(dA * A): [heads, T, S] -> [T, S]."""
    return (dA * A).clamp(min=0).mean(0)


def normalise(R: torch.Tensor) -> torch.Tensor:
    """Remove the identity, row-normalise, add the identity back (rows that sum to 0 stay 0)."""
    eye = torch.eye(R.shape[-1], dtype=R.dtype, device=R.device)
    R = R - eye
    sums = R.sum(-1, keepdim=True)
    return R / torch.where(sums == 0, torch.ones_like(sums), sums) + eye


def init_relevance(num_queries: int, num_tokens: int, dtype=torch.float32):
    """R_ii = I (image tokens), R_qq = I (queries), R_qi = 0."""
    return (torch.eye(num_tokens, dtype=dtype), torch.eye(num_queries, dtype=dtype),
            torch.zeros(num_queries, num_tokens, dtype=dtype))


def encoder_step(R_ii: torch.Tensor, Abar: torch.Tensor) -> torch.Tensor:
    return R_ii + Abar @ R_ii


def decoder_self_step(R_qq: torch.Tensor, R_qi: torch.Tensor, Abar: torch.Tensor):
    return R_qq + Abar @ R_qq, R_qi + Abar @ R_qi


def decoder_cross_step(R_qq: torch.Tensor, R_ii: torch.Tensor, R_qi: torch.Tensor, Abar: torch.Tensor) -> torch.Tensor:
    return R_qi + normalise(R_qq).T @ Abar @ normalise(R_ii)


def propagate(encoder: list, decoder: list) -> torch.Tensor:
    """R_qi [queries, tokens] from encoder [(A, dA), ...] and decoder [((A, dA) self, (A, dA) cross), ...].

    All encoder layers first (the decoder reads the final encoder output), then per decoder layer
    its self-attention and then its cross-attention.
    """
    num_queries, num_tokens = decoder[0][1][0].shape[-2:]
    dtype = decoder[0][1][0].dtype
    R_ii, R_qq, R_qi = (r.to(decoder[0][1][0].device) for r in init_relevance(num_queries, num_tokens, dtype))
    for A, dA in encoder:
        R_ii = encoder_step(R_ii, head_mean(A, dA))
    for (A_self, dA_self), (A_cross, dA_cross) in decoder:
        R_qq, R_qi = decoder_self_step(R_qq, R_qi, head_mean(A_self, dA_self))
        R_qi = decoder_cross_step(R_qq, R_ii, R_qi, head_mean(A_cross, dA_cross))
    return R_qi


def compute_relevance(loaded, pixel_values: torch.Tensor, query: int, params: dict,
                      progress: Progress | None = None) -> dict[str, Explanation]:
    """Row `query` of R_qi on the feature grid; one forward and one backward of the target score.

    Parameters are frozen, so the graph is rooted at a clone of the pixels that requires grad, and
    at zero decoder inputs that require grad: without them the first decoder self-attention
    (queries only) would not be in the graph and would get no gradient. DAB-DETR ignores given
    decoder inputs, so there that first self-attention adds nothing (its gradient counts as 0).
    """
    target = params.get("target", "class")
    config = loaded.model.config
    x = pixel_values.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        extra = {"decoder_inputs_embeds": decoder_queries(config, x)} if loaded.family.decoder_inputs else {}
        outputs, got = forward_with_attentions(loaded, x, **extra)
        class_index = predicted_class(outputs.logits.detach(), query, loaded)
        score = target_score(outputs, query, target, class_index)[0]
        grads = attention_grads(score, attention_list(got))
    if progress:
        progress(1, 1)
    return relevance_explanation(loaded, got, grads, query, target, class_index, score)


def decoder_queries(config, x: torch.Tensor) -> torch.Tensor:
    """Zero decoder inputs (DETR's own) that require grad, so the first decoder self-attention is in the graph."""
    return torch.zeros(1, config.num_queries, config.d_model, dtype=x.dtype, device=x.device, requires_grad=True)


def attention_grads(score: torch.Tensor, maps: list) -> list:
    """d score / d A for every map (None where A is not in the graph: DAB-DETR's first decoder
    self-attention sees only its learned queries, since DAB-DETR ignores given decoder inputs)."""
    live = iter(torch.autograd.grad(score, [A for A in maps if A.requires_grad], allow_unused=True))
    return [next(live) if A.requires_grad else None for A in maps]


def attention_list(got: dict) -> list:
    """Every attention map of a forward, in the order relevance_explanation expects its gradients."""
    return [*got["encoder"], *got["decoder"], *got["cross"]]


def relevance_explanation(loaded, got: dict, grads, query: int, target: str, class_index: int,
                          score: torch.Tensor) -> dict[str, Explanation]:
    """The relevance Explanation from a forward's `attention_maps` and the target's gradients of
    `attention_list(got)` (shared with core.methods.joint)."""
    maps = attention_list(got)
    pairs = [(A[0].detach(), torch.zeros_like(A[0]) if g is None else g[0]) for A, g in zip(maps, grads)]
    (h, w), n_enc, n_dec = got["grid"], len(got["encoder"]), len(got["cross"])
    decoder = list(zip(pairs[n_enc:n_enc + n_dec], pairs[n_enc + n_dec:]))
    R_qi = propagate(pairs[:n_enc], decoder)
    info = {"grid": [h, w], "target": target, "class_index": class_index, "target_value": float(score.detach()),
            "label": loaded.id2label.get(class_index, str(class_index)),
            "encoder_layers": n_enc, "decoder_layers": n_dec}
    return {"relevance": Explanation(R_qi[query].reshape(h, w).float().cpu().numpy(), info)}
