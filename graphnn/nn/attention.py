"""The multi-head attention forward of ``nn.MultiheadAttention``, a composition of primitives
as ``F.scaled_dot_product_attention`` (graphnn.nn.functional) is.

Scores are a batched matmul of two activations (``q @ k.transpose(-2, -1)``), masks are additive
biases or ``masked_fill`` with -inf, and the probabilities a softmax over the last axis, so
autodiff, fusion and every backend see only matmul, reduce, pointwise and movement ops. Heads are
split batch-first, (N, L, E) -> (N, H, L, E/H), whatever layout the caller uses, so the batch
symbol stays the leading axis of every intermediate.
"""
from __future__ import annotations

import math
from typing import Any

from graphnn.factories import cat, where, zeros_like
from graphnn.nn import functional as F
from graphnn.tensors import Tensor, as_tensor


def _check_mask(mask: Tensor, shapes: tuple, name: str) -> None:
    if tuple(mask.shape) not in shapes:
        wanted = " or ".join(str(tuple(int(d) if not hasattr(d, "free_symbols") else d for d in s)) for s in shapes)
        raise RuntimeError(f"The shape of the 2D {name} is {tuple(mask.shape)}, but should be {wanted}."
                           if mask.dim() == 2 else
                           f"The shape of the 3D {name} is {tuple(mask.shape)}, but should be {wanted}.")


def multi_head_attention_forward(module: Any, query, key, value, key_padding_mask=None, need_weights: bool = True,
                                 attn_mask=None, average_attn_weights: bool = True, is_causal: bool = False):
    """The forward of ``nn.MultiheadAttention`` (see there) on batch-first (N, L, E) inputs, or
    unbatched (L, E) ones: (output, weights or None)."""
    unbatched = query.dim() == 2
    if unbatched:
        query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
        if key_padding_mask is not None:
            key_padding_mask = as_tensor(key_padding_mask).unsqueeze(0)
    elif query.dim() != 3:
        raise AssertionError(f"query should be unbatched 2D or batched 3D tensor but received {query.dim()}-D "
                             "query tensor")
    n, target, embed = query.shape
    source = key.shape[1]
    heads, head_dim = module.num_heads, module.head_dim
    if embed != module.embed_dim:
        raise AssertionError(f"was expecting embedding dimension of {module.embed_dim}, but got {embed}")
    if is_causal and attn_mask is None:
        raise RuntimeError("Need attn_mask if specifying the is_causal hint. You may use the Transformer module "
                           "method `generate_square_subsequent_mask` to create this mask.")
    q, k, v = _projections(module, query, key, value)

    def heads_first(x, length):  # (N, L, E) -> (N, H, L, E/H)
        return x.reshape(n, length, heads, head_dim).permute(0, 2, 1, 3)

    q, k, v = heads_first(q, target), heads_first(k, source), heads_first(v, source)
    masks = []  # (N, H, L, S)-broadcastable, True or -inf where attention is not allowed
    if attn_mask is not None:
        mask = as_tensor(attn_mask)
        if mask.dim() == 2:
            _check_mask(mask, ((target, source),), "attn_mask")
        elif mask.dim() == 3:
            if unbatched:
                _check_mask(mask, ((heads, target, source),), "attn_mask")
            else:
                _check_mask(mask, ((n * heads, target, source),), "attn_mask")
                mask = mask.reshape(n, heads, target, source)
        else:
            raise RuntimeError(f"attn_mask's dimension {mask.dim()} is not supported")
        masks.append(mask)
    if key_padding_mask is not None:
        padding = as_tensor(key_padding_mask)
        if tuple(padding.shape) != (n, source) and not unbatched:
            raise AssertionError(f"expecting key_padding_mask shape of {(n, source)}, but got {tuple(padding.shape)}")
        masks.append(padding.reshape(n, 1, 1, source))
    if module.bias_k is not None:  # one more key and value, which every query may attend
        k = cat([k, module.bias_k.expand(k.shape[0], 1, -1).reshape(k.shape[0], 1, heads, head_dim)
                 .permute(0, 2, 1, 3)], 2)
        v = cat([v, module.bias_v.expand(v.shape[0], 1, -1).reshape(v.shape[0], 1, heads, head_dim)
                 .permute(0, 2, 1, 3)], 2)
        masks = [_one_more_key(m) for m in masks]
    if module.add_zero_attn:  # and a key and value of zeros
        k = cat([k, zeros_like(k[:, :, :1])], 2)
        v = cat([v, zeros_like(v[:, :, :1])], 2)
        masks = [_one_more_key(m) for m in masks]
    dropout = module.dropout if module.training else 0.0
    if not need_weights and dropout == 0.0:
        # PyTorch computes this case with scaled_dot_product_attention: a query whose keys are
        # all masked gets zeros (with the weights asked for, NaN)
        out = F._attention(q, k, v, _allowed(masks), math.sqrt(1.0 / head_dim), False)
        out = module.out_proj(out.permute(0, 2, 1, 3).reshape(n, target, embed))
        return (out.squeeze(0) if unbatched else out), None
    scores = (q * math.sqrt(1.0 / head_dim)) @ k.transpose(-2, -1)  # (N, H, L, S)
    for mask in masks:
        scores = F.masked_scores(mask, False, scores)
    weights = scores.softmax(-1)
    if module.dropout > 0.0 and module.training:
        weights = F.dropout(weights, module.dropout, training=True)
    out = (weights @ v).permute(0, 2, 1, 3).reshape(n, target, embed)
    out = module.out_proj(out)
    if unbatched:
        out = out.squeeze(0)
    if not need_weights:
        return out, None
    if average_attn_weights:
        weights = weights.mean(1)
    return out, (weights.squeeze(0) if unbatched else weights)


def _one_more_key(mask: Tensor) -> Tensor:
    """A mask with a column for one more key, which it allows (False, or 0 added)."""
    return cat([mask, zeros_like(mask[..., :1])], -1)


def _allowed(masks: list) -> Tensor | None:
    """MultiheadAttention's masks (True or an added -inf where attention is not allowed) as one
    mask of scaled_dot_product_attention's meaning: boolean ones as True where allowed, added
    ones summed (a boolean one among them as -inf)."""
    if not masks:
        return None
    if all(not m.dtype.is_floating_point for m in masks):
        allowed = masks[0].logical_not()
        for m in masks[1:]:
            allowed = allowed & m.logical_not()
        return allowed
    total = None
    for m in masks:
        if not m.dtype.is_floating_point:
            m = where(m, float("-inf"), 0.0)
        total = m if total is None else total + m
    return total


def _projections(module: Any, query: Tensor, key: Tensor, value: Tensor) -> tuple:
    """q, k and v: one matmul against the packed in_proj_weight when query, key and value are the
    same tensor (self-attention), else one per input (with separate weights when kdim or vdim
    differ from embed_dim)."""
    bias = module.in_proj_bias
    biases = (None, None, None) if bias is None else bias.chunk(3)
    if module._qkv_same_embed_dim:
        if query is key and key is value:
            return tuple(F.linear(query, module.in_proj_weight, bias).chunk(3, -1))
        weights = module.in_proj_weight.chunk(3)
    else:
        weights = (module.q_proj_weight, module.k_proj_weight, module.v_proj_weight)
    return tuple(F.linear(x, w, b) for x, w, b in zip((query, key, value), weights, biases))
