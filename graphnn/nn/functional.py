"""The functional twins of the layers and losses, decomposed into primitive ops while tracing.

Each function takes symbolic Tensors (or Parameters) and records primitives: ``linear`` is a
matmul and an add, ``log_softmax`` a detached max, a subtraction, exp, sum, log and a
subtraction, ``batch_norm`` mean/variance reductions and pointwise arithmetic.
"""
from __future__ import annotations

import sympy

import numpy as np

from graphnn import pointwise as pw
from graphnn import random, trace
from graphnn import tensor_reductions as _reductions
from graphnn.eager import EAGER
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
    return _apply(pw.gelu(approximate), input, grad="GeluBackward0")


def softplus(input, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    return _apply(pw.softplus(beta, threshold), input, grad="SoftplusBackward0")


def dropout(input, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each element with probability p and scale the rest by 1/(1-p) (training only).

    The mask comes from the counter-based ``rand`` primitive keyed by the program's seed and
    step, so every call draws a fresh mask and a backward pass regenerates the same one.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    x = as_tensor(input)
    if not training or p == 0.0:
        return x
    b = _b(x)
    if b is EAGER:  # a fresh mask from the global generator (graphnn.manual_seed)
        draws = random.generator().random(tuple(x.shape), dtype=np.float32)
        u = as_tensor(draws, b)
        return _wrap(b.pointwise(pw.dropout(p), x.node, u.node), [x], "MulBackward0")
    tracer = trace.current()
    seed, step = tracer.hyper("rng.seed", "i64"), tracer.hyper("rng.step", "i64")
    u = Tensor(tracer.builder.rand(x.shape, seed, step, tracer.next_stream()))
    return Tensor(tracer.builder.pointwise(pw.dropout(p), x.node, u.node))


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


def _reduce_loss(per_element: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return per_element.mean()
    if reduction == "sum":
        return per_element.sum()
    if reduction == "none":
        return per_element
    raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


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


def nll_loss(input, target, weight=None, ignore_index: int = -100, reduction: str = "mean") -> Tensor:
    """-log p[target] averaged over the samples whose label is not ``ignore_index``."""
    if weight is not None:
        raise NotImplementedError("nll_loss: class weights are not supported yet")
    b = _b(input, target)
    logp, t = as_tensor(input, b), as_tensor(target, b)
    if logp.ndim != 2:
        raise b.error(f"nll_loss expected input of shape (N, C), got {format_shape(logp.shape)}")
    if t.dtype.kind not in "iu":
        raise b.error(f"nll_loss expected class indices of an integer dtype as target, got {t.dtype}")
    if t.shape != logp.shape[:1]:
        raise b.error(
            f"nll_loss expected a target of shape {format_shape(logp.shape[:1])} (one class index per sample), "
            f"got {format_shape(t.shape)}"
        )
    classes = logp.shape[1]
    if t.node.op in ("input", "constant"):  # the runtime checks the labels against this before running
        b.check_labels(t.node, classes, ignore_index)
    # a select, not a product with a one-hot mask: -inf in another class stays out of the sum
    # (-inf * 0 would be NaN), and a sample labelled ignore_index picks nothing
    labels, classes_iota = b.expand(t.reshape(-1, 1).node, logp.shape), b.iota(logp.shape, 1)
    picked = -_wrap(b.pointwise(pw.pick_label(ignore_index), logp.node, labels, classes_iota), [logp], "x").sum(1)
    if reduction == "mean":
        valid = Tensor(b.pointwise(pw.scalar_ne(ignore_index), t.node, dtype="f32"))
        return _named(picked.sum() / valid.sum(), "NllLossBackward0")
    return _named(_reduce_loss(picked, reduction), "NllLossBackward0")


def cross_entropy(
    input, target, weight=None, ignore_index: int = -100, reduction: str = "mean", label_smoothing: float = 0.0
) -> Tensor:
    """log_softmax over classes then NLL; targets are class indices or class probabilities."""
    if label_smoothing:
        raise NotImplementedError("cross_entropy: label_smoothing is not supported yet")
    x, t = as_tensor(input), as_tensor(target)
    if x.ndim != 2:
        raise _b(x).error(f"cross_entropy expected input of shape (N, C), got {format_shape(x.shape)}")
    logp = log_softmax(x, 1)
    if t.dtype.kind == "f":
        if weight is not None:
            raise NotImplementedError("cross_entropy: class weights are not supported yet")
        if t.shape != x.shape:
            raise _b(x, t).error(
                f"cross_entropy expected class indices of shape {format_shape(x.shape[:1])} or class "
                f"probabilities of shape {format_shape(x.shape)}, got a float target of shape {format_shape(t.shape)}"
            )
        per_sample = -(logp * t).sum(1)
        return _reduce_loss(per_sample, reduction)
    return nll_loss(logp, t, weight, ignore_index, reduction)


__all__ = [name for name in dir() if not name.startswith("_") and name not in ("sympy", "annotations", "Tensor")]

# convolution and pooling live beside their Modules (graphnn/nn/conv.py)
from graphnn.nn.conv import avg_pool2d, conv2d, max_pool2d  # noqa: E402

__all__ += ["conv2d", "max_pool2d", "avg_pool2d"]


from graphnn.nn.attention import scaled_dot_product_attention  # noqa: E402  (it composes the functions above)

__all__ += ["scaled_dot_product_attention"]
