"""The functional twins of the layers and losses, decomposed into primitive ops while tracing.

Each function takes symbolic Tensors (or Parameters) and records primitives: ``linear`` is a
matmul and an add, ``log_softmax`` a detached max, a subtraction, exp, sum, log and a
subtraction, ``batch_norm`` mean/variance reductions and pointwise arithmetic.
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import sympy

from graphnn import dtypes, random, trace
from graphnn import pointwise as pw
from graphnn import tensor_reductions as _reductions
from graphnn.eager import EAGER, Concrete
from graphnn.ir import format_shape, numel
from graphnn.tensors import Tensor, _builder, _named, _wrap, as_tensor, unary


def _b(*xs):
    """The builder the operands call for: the tracer's, or the eager one outside tracing."""
    return _builder(*xs)


def _apply(fn: pw.PointwiseFn, *xs, grad: str | None = None) -> Tensor:
    if len(xs) == 1:
        return unary(xs[0], fn, grad)
    b = _b(*xs)
    return _wrap(b.apply(fn, *(as_tensor(x, b).node for x in xs)), xs, grad)


# defined beside the Tensor methods of the same names, which use them too
softmax, log_softmax, argmax = _reductions.softmax, _reductions.log_softmax, _reductions.argmax


# -- layers ---------------------------------------------------------------------------------
def linear(input, weight, bias=None) -> Tensor:
    """y = x W^T + b over the last axis of x."""
    b = _b(input, weight)
    x, w = as_tensor(input, b), as_tensor(weight, b)
    if x.dtype.kind != "f":
        raise b.error(f"Linear expected a float32 input, got {x.dtype.name} (convert it with .float())")
    if x.ndim == 0 or x.shape[-1] != w.shape[-1]:
        raise b.error(
            f"Linear expected input with last dimension {w.shape[-1]}, got input of shape {format_shape(x.shape)}"
        )
    lead = tuple(x.shape[:-1])
    flat = x if x.ndim == 2 else x.reshape(numel(lead), w.shape[-1])
    y = flat @ w.t()
    if bias is not None:
        y = y + as_tensor(bias, b)
    if x.ndim == 2:
        return _named(y, "AddmmBackward0" if bias is not None else "MmBackward0")
    return _named(y.reshape(*lead, w.shape[0]), "ViewBackward0")


def relu(input, inplace: bool = False) -> Tensor:
    return _apply(pw.relu, input, grad="ReluBackward0")


def tanh(input) -> Tensor:
    return _apply(pw.tanh, input, grad="TanhBackward0")


def sigmoid(input) -> Tensor:
    return _apply(pw.sigmoid, input, grad="SigmoidBackward0")


def silu(input, inplace: bool = False) -> Tensor:
    return _apply(pw.silu, input, grad="SiluBackward0")


def hardtanh(input, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> Tensor:
    return _apply(pw.hardtanh(min_val, max_val), input, grad="HardtanhBackward0")


def leaky_relu(input, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    return _apply(pw.leaky_relu(negative_slope), input, grad="LeakyReluBackward0")


def elu(input, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    return _apply(pw.elu(alpha), input, grad="EluBackward0")


def gelu(input, approximate: str = "none") -> Tensor:
    if approximate not in ("none", "tanh"):
        raise RuntimeError("approximate argument must be either none or tanh.")
    return _apply(pw.gelu(approximate), input, grad="GeluBackward0")


def softplus(input, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    return _apply(pw.softplus(beta, threshold), input, grad="SoftplusBackward0")


def dropout(input, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each element with probability p and scale the rest by 1/(1-p) (training only).

    The mask comes from the counter-based ``rand`` primitive keyed by the program's seed and
    step, so every call draws a fresh mask and a backward pass regenerates the same one.
    """
    _check_probability(p)
    x = as_tensor(input)
    return _dropped(x, p, training, tuple(x.shape))


def dropout2d(input, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each channel (input[n, c], a whole feature map) with probability p and scale the rest
    by 1/(1-p) (training only): one draw per (sample, channel), as ``dropout`` draws per element."""
    _check_probability(p)
    x = as_tensor(input)
    if x.ndim not in (3, 4):
        warnings.warn(f"dropout2d: Received a {x.ndim}-D input to dropout2d, which is deprecated and will result in "
                      "an error in a future release. To retain the behavior and silence this warning, please use "
                      "dropout instead. Note that dropout2d exists to provide channel-wise dropout on inputs with 2 "
                      "spatial dimensions, a channel dimension, and an optional batch dimension (i.e. 3D or 4D "
                      "inputs).", stacklevel=2)
    if x.ndim == 3:
        warnings.warn("dropout2d: Received a 3D input to dropout2d and assuming that channel-wise 1D dropout behavior "
                      "is desired - input is interpreted as shape (N, C, L), where C is the channel dim. This behavior "
                      "will change in a future release to interpret the input as one without a batch dimension, i.e. "
                      "shape (C, H, W). To maintain the 1D channel-wise dropout behavior, please switch to using "
                      "dropout1d instead.", stacklevel=2)
    if x.ndim < 2:
        raise RuntimeError("Feature dropout requires at least 2 dimensions in the input")
    return _dropped(x, p, training, tuple(x.shape[:2]) + (1,) * (x.ndim - 2))


def _check_probability(p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def _dropped(x: Tensor, p: float, training: bool, mask_shape: tuple) -> Tensor:
    """x times a keep mask of ``mask_shape`` (x's shape, or 1 along the axes one draw covers)."""
    if not training or p == 0.0:
        return x
    b = _b(x)
    if b is EAGER:  # a fresh mask from the global generator (graphnn.manual_seed)
        draws = random.generator().random(mask_shape, dtype=np.float32)
        u = as_tensor(draws, b).expand(*x.shape)
        return _wrap(b.pointwise(pw.dropout(p), x.node, u.node), [x], "MulBackward0")
    tracer = trace.current()
    seed, step = tracer.hyper("rng.seed", "i64"), tracer.hyper("rng.step", "i64")
    u = tracer.builder.expand(tracer.builder.rand(mask_shape, seed, step, tracer.next_stream()), tuple(x.shape))
    return Tensor(tracer.builder.pointwise(pw.dropout(p), x.node, u))


def batch_norm(
    input,
    running_mean,
    running_var,
    weight=None,
    bias=None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Normalise over every axis but the channel axis 1.

    Training uses the batch statistics (biased variance) and, when running statistics are
    given, records their update with the unbiased variance, as PyTorch does.
    """
    x = as_tensor(input)
    if x.ndim < 2:
        raise _b(x).error(f"BatchNorm expected an input of shape (N, C), (N, C, L) or (N, C, H, W), got {format_shape(x.shape)}")
    channels = x.shape[1]
    view = (1, channels) + (1,) * (x.ndim - 2)
    axes = (0,) + tuple(range(2, x.ndim))
    tracer = trace.current()
    if training or running_mean is None:
        count = numel(tuple(x.shape[a] for a in axes))
        tracer.builder.check(
            sympy.sympify(count) > 1,
            f"expected more than 1 value per channel when training, got input of shape {format_shape(x.shape)}",
        )
        mean = x.mean(axes, keepdim=True)
        centred = x - mean
        var = (centred * centred).mean(axes, keepdim=True)
        y = centred * (var + eps).rsqrt()
        if training and running_mean is not None:
            m = float(momentum)
            unbiased = sympy.sympify(count) / (sympy.sympify(count) - 1)
            new_mean = as_tensor(running_mean) * (1 - m) + mean.reshape(channels) * m
            new_var = as_tensor(running_var) * (1 - m) + Tensor(
                tracer.builder.pointwise(pw.scale(unbiased * sympy.Float(m)), var.reshape(channels).node)
            )
            tracer.update(running_mean, new_mean)
            tracer.update(running_var, new_var)
    else:
        rm = as_tensor(running_mean).reshape(*view)
        rv = as_tensor(running_var).reshape(*view)
        y = (x - rm) * (rv + eps).rsqrt()
    if weight is not None:
        y = y * as_tensor(weight).reshape(*view)
    if bias is not None:
        y = y + as_tensor(bias).reshape(*view)
    return _named(y, "NativeBatchNormBackward0")


def count_step(counter) -> None:
    """Record ``counter += 1`` for an int64 buffer (BatchNorm's num_batches_tracked)."""
    tracer = trace.current()
    old = tracer.buffer(counter)
    tracer.update(counter, Tensor(tracer.builder.pointwise(pw.scalar_op("add", 1), old, dtype="i64")))


# -- losses ---------------------------------------------------------------------------------
_REDUCTIONS = ("mean", "sum", "none")


def _legacy_reduction(size_average, reduce, reduction: str) -> str:
    """torch's reading of the deprecated ``size_average`` and ``reduce`` flags, when either is given."""
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    reduction = "mean" if size_average and reduce else ("sum" if reduce else "none")
    warnings.warn(f"size_average and reduce args will be deprecated, please use reduction='{reduction}' instead.",
                  stacklevel=3)
    return reduction


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")


def _reduce_loss(per_element: Tensor, reduction: str) -> Tensor:
    _check_reduction(reduction)
    if reduction == "mean":
        return per_element.mean()
    if reduction == "sum":
        return per_element.sum()
    return per_element


def _same_shape(x: Tensor, target: Tensor, loss: str) -> None:
    if x.shape != target.shape:
        raise _b(x, target).error(
            f"{loss} expected a target of the input's shape {format_shape(x.shape)}, got {format_shape(target.shape)}"
        )
    if target.dtype.kind not in "f":
        raise _b(x, target).error(f"{loss} expected a floating-point target, got {target.dtype}")


def mse_loss(input, target, reduction: str = "mean") -> Tensor:
    x, t = as_tensor(input), as_tensor(target)
    _same_shape(x, t, "mse_loss")
    return _named(_reduce_loss(_apply(pw.squared_error, x, t, grad="x"), reduction), "MseLossBackward0")


def l1_loss(input, target, reduction: str = "mean") -> Tensor:
    x, t = as_tensor(input), as_tensor(target)
    _same_shape(x, t, "l1_loss")
    return _reduce_loss(_apply(pw.absolute_error, x, t, grad="AbsBackward0"), reduction)


def binary_cross_entropy_with_logits(input, target, weight=None, reduction: str = "mean", pos_weight=None) -> Tensor:
    if weight is not None or pos_weight is not None:
        raise NotImplementedError("binary_cross_entropy_with_logits: weight and pos_weight are not supported yet")
    x, t = as_tensor(input), as_tensor(target)
    _same_shape(x, t, "binary_cross_entropy_with_logits")
    return _named(_reduce_loss(_apply(pw.bce_with_logits, x, t, grad="x"), reduction),
                  "BinaryCrossEntropyWithLogitsBackward0")


def _check_class_weight(x: Tensor, weight, prefix: str = "") -> None:
    classes = x.shape[0 if x.ndim == 1 else 1]
    if weight is not None and tuple(weight.shape) != (classes,):
        raise _b(x).error(f"{prefix}weight tensor should be defined either for all {classes} classes or no classes but "
                          f"got weight tensor of shape: {list(weight.shape)}")


def _check_class_targets(x: Tensor, t: Tensor) -> None:
    """torch's checks of class indices ``t`` against scores ``x`` of shape (C), (N, C) or
    (N, C, d1, ...): the target is (), (N) or (N, d1, ...), of int64."""
    b = _b(x, t)
    if x.ndim == 0:
        raise b.error("Expected 1 or more dimensions for the input (C), (N, C) or (N, C, d1, ...), got a 0-D input")
    if x.ndim > 1 and (t.ndim == 0 or t.shape[0] != x.shape[0]):
        raise b.error(f"Expected input batch_size ({x.shape[0]}) to match target batch_size "
                      f"({t.shape[0] if t.ndim else 0}).")
    if x.ndim <= 2 and t.ndim != x.ndim - 1:
        raise b.error(f"0D or 1D target tensor expected, multi-target not supported (got input of shape "
                      f"{format_shape(x.shape)} and target of shape {format_shape(t.shape)})")
    if x.ndim > 2 and tuple(t.shape) != (x.shape[0], *x.shape[2:]):
        raise b.error(f"Expected target size {format_shape((x.shape[0], *x.shape[2:])).replace(',', ', ')}, got "
                      f"{format_shape(t.shape).replace(',', ', ')}")
    if t.dtype is not dtypes.int64:
        raise b.error(f"expected target dtype to be Long or Byte, but got {dtypes.torch_type_name(t.dtype)}")


def _class_rows(x: Tensor) -> Tensor:
    """Scores (C), (N, C) or (N, C, d1, ...) as rows of classes, (M, C): one row per element
    that has a class index (the class axis moved last for more than two dimensions)."""
    if x.ndim == 1:
        return x.reshape(1, x.shape[0])
    if x.ndim > 2:
        x = x.permute(0, *range(2, x.ndim), 1)
    return x.reshape(numel(tuple(x.shape[:-1])), x.shape[-1])


def _label_source(t: Tensor):
    """The node whose values the class labels ``t`` are: ``t``'s own (eager, checked at once), or
    the input leaf it reshapes (traced, recorded: checked by the runtime before each call);
    None for labels computed inside the graph."""
    node = t.node
    if isinstance(node, Concrete):
        return node
    while node.op in ("reshape", "permute"):
        node = node.inputs[0]
    return node if node.op == "input" else None


def _picked(b, rows: Tensor, labels: Tensor, ignore_index: int) -> Tensor:
    """rows[i, labels[i]] for each row of (M, C) (0 where the label is ``ignore_index``), as a
    select against the class index: -inf in another class stays out (-inf * 0 would be NaN)."""
    wide = b.expand(labels.reshape(-1, 1).node, rows.shape)
    chosen = b.pointwise(pw.pick_label(ignore_index), rows.node, wide, b.iota(rows.shape, 1))
    return _wrap(chosen, [rows], "x").sum(1)


def _counted(b, rows: Tensor, labels: Tensor, weight, ignore_index: int) -> Tensor:
    """What each row counts for in a mean: its class's weight (1 without weights), 0 where its
    label is ``ignore_index``."""
    if weight is None:
        return Tensor(b.pointwise(pw.scalar_ne(ignore_index), labels.node, dtype=rows.node.dtype))
    w = as_tensor(weight, b)
    return _picked(b, Tensor(b.broadcast(w.node, rows.shape)), labels, ignore_index)


def _nll_name(ndim: int, reduction: str) -> str:
    if ndim <= 2:
        return "NllLossBackward0"
    return "NllLoss2DBackward0" if ndim == 4 or reduction != "none" else "ViewBackward0"


def nll_loss(input, target, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
             reduction: str = "mean") -> Tensor:
    """-weight[t] * input[t] for log-probabilities (C), (N, C) or (N, C, d1, ...) and class
    indices (), (N) or (N, d1, ...); the mean divides by the summed weights of the elements
    whose label is not ``ignore_index`` (NaN when all are ignored, as torch)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    b = _b(input, target)
    logp, t = as_tensor(input, b), as_tensor(target, b)
    _check_class_targets(logp, t)
    _check_class_weight(logp, weight)
    classes = logp.shape[0 if logp.ndim == 1 else 1]
    source = _label_source(t)
    if source is not None:  # checked now (eager), or by the runtime before each call
        b.check_labels(source, classes, ignore_index)
    rows, labels = _class_rows(logp), t.reshape(-1)
    loss = -_picked(b, rows, labels, ignore_index)
    counted = _counted(b, rows, labels, weight, ignore_index) if weight is not None or reduction == "mean" else None
    if weight is not None:
        loss = loss * counted
    name = _nll_name(logp.ndim, reduction)
    if reduction == "mean":
        return _named(loss.sum() / counted.sum(), name)
    if reduction == "sum":
        return _named(loss.sum(), name)
    return _named(loss.reshape(*t.shape), name)


def cross_entropy(input, target, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """log_softmax over the class axis (1, or 0 for an unbatched (C) input), then NLL of class
    indices or the cross-entropy with class probabilities (a float target of the input's
    shape); ``label_smoothing`` mixes in the uniform distribution as torch does."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    if label_smoothing > 1.0:
        raise RuntimeError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    b = _b(input, target)
    x, t = as_tensor(input, b), as_tensor(target, b)
    if x.ndim == 0:
        raise b.error("cross_entropy expected an input of shape (C), (N, C) or (N, C, d1, ...), got a 0-D input")
    class_dim = 0 if x.ndim == 1 else 1
    classes = x.shape[class_dim]
    logp = log_softmax(x, class_dim)
    if tuple(t.shape) == tuple(x.shape):
        return _probability_cross_entropy(logp, t, weight, ignore_index, reduction, label_smoothing, class_dim)
    loss = nll_loss(logp, t, weight, None, ignore_index, None, reduction)
    if label_smoothing <= 0.0:
        return loss
    # the uniform part: -sum over classes of (weighted) log-probabilities, 0 where ignored
    weighted = logp if weight is None else logp * as_tensor(weight, b).reshape(
        *(classes if k == class_dim else 1 for k in range(logp.ndim)))
    smooth = (-weighted.sum(class_dim)).masked_fill(t == ignore_index, 0.0)
    if reduction == "mean":
        smooth = smooth.sum() / _counted(b, _class_rows(logp), t.reshape(-1), weight, ignore_index).sum()
    elif reduction == "sum":
        smooth = smooth.sum()
    return _named(loss * (1 - label_smoothing) + smooth * (label_smoothing / classes), "AddBackward0")


def _probability_cross_entropy(logp: Tensor, t: Tensor, weight, ignore_index: int, reduction: str,
                               label_smoothing: float, class_dim: int) -> Tensor:
    """-sum(target * weight * logp) over classes, for class probabilities; the mean divides by
    the number of elements (all but the class axis)."""
    b = _b(logp, t)
    if t.dtype.kind != "f":
        raise RuntimeError(f"Expected floating point type for target with class probabilities, got "
                           f"{dtypes.torch_type_name(t.dtype)}")
    if ignore_index >= 0:
        raise RuntimeError("ignore_index is not supported for floating point target")
    _check_class_weight(logp, weight, "cross_entropy: ")
    classes = logp.shape[class_dim]
    if label_smoothing > 0.0:
        t = t * (1 - label_smoothing) + label_smoothing / classes
    product = logp * t
    if weight is not None:
        product = product * as_tensor(weight, b).reshape(*(classes if k == class_dim else 1 for k in range(logp.ndim)))
    if reduction == "none":
        return _named(-product.sum(class_dim), "NegBackward0")
    total = -product.sum()
    if reduction == "sum":
        return _named(total, "NegBackward0")
    count = numel(tuple(logp.shape)) / sympy.sympify(classes)
    return _named(_wrap(_b(total).pointwise(pw.fn("div", pw.x0 / count, nargs=1), total.node), [total], "x"),
                  "DivBackward1")


__all__ = [name for name, value in dict(globals()).items() if not name.startswith("_") and callable(value)
           and getattr(value, "__module__", None) in (__name__, _reductions.__name__)]

# convolution, pooling, padding, resizing and the normalisations over trailing axes live beside their
# Modules (graphnn/nn/conv.py, adaptive_pool.py, padding.py, upsampling.py, normalization.py)
from graphnn.nn.adaptive_pool import adaptive_avg_pool2d, adaptive_max_pool2d  # noqa: E402
from graphnn.nn.conv import avg_pool2d, conv2d, max_pool2d  # noqa: E402
from graphnn.nn.normalization import layer_norm, rms_norm  # noqa: E402
from graphnn.nn.padding import pad  # noqa: E402
from graphnn.nn.upsampling import interpolate  # noqa: E402

__all__ += ["conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d", "pad", "interpolate",
            "layer_norm", "rms_norm"]

# the embedding lookup is a gather, beside the Tensor's (graphnn/tensor_gather.py)
from graphnn.tensor_gather import embedding  # noqa: E402

__all__ += ["embedding"]


# -- attention ---------------------------------------------------------------------------------------
def causal_mask(target: int, source: int) -> Tensor:
    """(L, S) booleans, True where a query may attend (key position <= query position): the
    ``is_causal`` mask of scaled_dot_product_attention, a constant of the graph."""
    return as_tensor(np.tril(np.ones((target, source), dtype=bool)))


def masked_scores(mask: Any, allowed_when_true: bool, scores: Tensor) -> Tensor:
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
    factor = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
    if is_causal and attn_mask is not None:
        raise RuntimeError("_scaled_dot_product_attention: Explicit attn_mask should not be set when "
                           "is_causal=True")
    if dropout_p == 0.0:
        return _attention(query, key, value, attn_mask, factor, is_causal)
    scores = (query @ key.transpose(-2, -1)) * factor
    if is_causal:
        # (top-left aligned: every query sees the first key, so no row is fully masked)
        weights = masked_scores(causal_mask(int(query.shape[-2]), int(key.shape[-2])), True, scores).softmax(-1)
    elif attn_mask is not None:
        # torch's safe softmax: a query no key may attend gets zeros (and a zero gradient), not
        # NaN; its row's scores are replaced by zeros first, so no NaN reaches the backward
        scores = masked_scores(attn_mask, True, scores)
        blocked = scores.detach().amax(-1, keepdim=True) == float("-inf")
        weights = scores.masked_fill(blocked, 0.0).softmax(-1).masked_fill(blocked, 0.0)
    else:
        weights = scores.softmax(-1)
    if dropout_p > 0.0:
        weights = dropout(weights, dropout_p, training=True)
    return weights @ value


def _attention(query: Tensor, key: Tensor, value: Tensor, attn_mask, scale: float, is_causal: bool) -> Tensor:
    """scaled_dot_product_attention without dropout: one ``attention`` op, whose gradient needs
    no (..., L, S) probabilities (graphnn.attention_op)."""
    operands = [query, key, value]
    if attn_mask is not None:
        mask = as_tensor(attn_mask)
        if not mask.dtype.is_floating_point and str(mask.dtype) != "torch.bool":
            raise RuntimeError(f"Expected attn_mask dtype to be bool or float or to match query dtype, but got "
                               f"attn_mask.dtype: {str(mask.dtype).replace('torch.', '')}")
        operands.append(mask)
    b = _b(*operands)
    nodes = [as_tensor(x, b).node for x in operands]
    out = b.attention(nodes[0], nodes[1], nodes[2], nodes[3] if len(nodes) > 3 else None, scale, is_causal)
    return _wrap(out, operands, "UnsafeViewBackward0")


def _repeat_groups(query: Tensor, kv: Tensor) -> Tensor:
    """Grouped-query attention: each of the kv heads serves H_q / H_kv query heads."""
    heads, groups = query.shape[-3], kv.shape[-3]
    if heads % groups:
        raise RuntimeError(f"scaled_dot_product_attention: the number of query heads ({heads}) must be a multiple "
                           f"of the number of key/value heads ({groups})")
    return kv.repeat_interleave(heads // groups, dim=-3)


__all__ += ["scaled_dot_product_attention"]
