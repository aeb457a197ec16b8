"""Attention as compositions of primitives: ``F.scaled_dot_product_attention`` and the
multi-head attention forward of ``nn.MultiheadAttention``.

Scores are a batched matmul of two activations (``q @ k.transpose(-2, -1)``), masks are additive
biases or ``masked_fill`` with -inf, and the probabilities a softmax over the last axis, so
autodiff, fusion and every backend see only matmul, reduce, pointwise and movement ops. Heads are
split batch-first, (N, L, E) -> (N, H, L, E/H), whatever layout the caller uses, so the batch
symbol stays the leading axis of every intermediate.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphnn.nn import functional as F
from graphnn.tensors import Tensor, as_tensor


def causal_mask(target: int, source: int) -> Tensor:
    """(L, S) booleans, True where a query may attend (key position <= query position): the
    ``is_causal`` mask of scaled_dot_product_attention, a constant of the graph."""
    return as_tensor(np.tril(np.ones((target, source), dtype=bool)))


def _as_bias(mask: Any, allowed_when_true: bool, scores: Tensor) -> Tensor:
    """``scores`` with ``mask`` applied: a boolean mask sets the disallowed places to -inf (True
    allows in scaled_dot_product_attention and disallows in MultiheadAttention), a float mask is
    added."""
    mask = as_tensor(mask)
    if mask.dtype.is_floating_point:
        return scores + mask
    if str(mask.dtype) != "torch.bool":
        raise RuntimeError(f"Expected attn_mask dtype to be bool or float or to match query dtype, but got "
                           f"attn_mask.dtype: {str(mask.dtype).replace('torch.', '')}")
    return scores.masked_fill(mask.logical_not() if allowed_when_true else mask, float("-inf"))


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p: float = 0.0, is_causal: bool = False,
                                 scale: float | None = None, enable_gqa: bool = False) -> Tensor:
    """softmax(q k^T * scale + mask) v over the last two axes, batched over any leading ones
    (PyTorch's reference definition; a boolean ``attn_mask`` is True where attention is allowed)."""
    query, key, value = as_tensor(query), as_tensor(key), as_tensor(value)
    if query.dim() < 2 or key.dim() < 2 or value.dim() < 2:
        raise RuntimeError("scaled_dot_product_attention: query, key and value must be at least 2-D, got "
                           f"{query.dim()}-D, {key.dim()}-D and {value.dim()}-D")
    if query.shape[-1] != key.shape[-1]:
        raise RuntimeError(f"scaled_dot_product_attention: query and key need the same embedding size, got "
                           f"{query.shape[-1]} and {key.shape[-1]}")
    if key.shape[-2] != value.shape[-2]:
        raise RuntimeError(f"scaled_dot_product_attention: key and value need the same sequence length, got "
                           f"{key.shape[-2]} and {value.shape[-2]}")
    if enable_gqa:
        key, value = _repeat_groups(query, key), _repeat_groups(query, value)
    target, source = query.shape[-2], key.shape[-2]
    factor = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
    scores = (query @ key.transpose(-2, -1)) * factor
    if is_causal:
        if attn_mask is not None:
            raise RuntimeError("_scaled_dot_product_attention: Explicit attn_mask should not be set when "
                               "is_causal=True")
        attn_mask = causal_mask(int(target), int(source))
    if attn_mask is not None and not is_causal:
        # torch's safe softmax: a query no key may attend gets zeros (and a zero gradient), not
        # NaN; its row's scores are replaced by zeros first, so no NaN reaches the backward
        scores = _as_bias(attn_mask, True, scores)
        blocked = scores.detach().amax(-1, keepdim=True) == float("-inf")
        weights = scores.masked_fill(blocked, 0.0).softmax(-1).masked_fill(blocked, 0.0)
    else:
        if attn_mask is not None:
            scores = _as_bias(attn_mask, True, scores)
        weights = scores.softmax(-1)
    if dropout_p > 0.0:
        weights = F.dropout(weights, dropout_p, training=True)
    return weights @ value


def _repeat_groups(query: Tensor, kv: Tensor) -> Tensor:
    """Grouped-query attention: each of the kv heads serves H_q / H_kv query heads."""
    heads, groups = query.shape[-3], kv.shape[-3]
    if heads % groups:
        raise RuntimeError(f"scaled_dot_product_attention: the number of query heads ({heads}) must be a multiple "
                           f"of the number of key/value heads ({groups})")
    return kv.repeat_interleave(heads // groups, dim=-3)


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
    scores = (q * math.sqrt(1.0 / head_dim)) @ k.transpose(-2, -1)  # (N, H, L, S)
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
        scores = _as_bias(mask, False, scores)
    if key_padding_mask is not None:
        padding = as_tensor(key_padding_mask)
        if tuple(padding.shape) != (n, source) and not unbatched:
            raise AssertionError(f"expecting key_padding_mask shape of {(n, source)}, but got {tuple(padding.shape)}")
        scores = _as_bias(padding.reshape(n, 1, 1, source), False, scores)
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
