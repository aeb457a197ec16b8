"""Layer normalisation and RMS normalisation over the trailing axes: the Modules and their
functional forms, as compositions of reductions and pointwise ops.

Both follow the order in which PyTorch's CPU kernels compute, so results agree to float32
rounding: layer_norm takes the biased variance of the centred values and computes
``(x * rstd - mean * rstd) * weight + bias`` with ``rstd = 1 / sqrt(var + eps)``; rms_norm
computes ``x * rsqrt(mean(x * x) + eps) * weight``.
"""
from __future__ import annotations

import numbers
from typing import Sequence

import numpy as np

from graphnn import dtypes
from graphnn.ir import format_shape
from graphnn.nn import init
from graphnn.nn.module import Module, Parameter
from graphnn.tensors import Tensor, _builder, _named, as_tensor


def _as_shape(normalized_shape, name: str) -> tuple[int, ...]:
    """The functional forms take a sequence of ints (an int is torch's TypeError there)."""
    if isinstance(normalized_shape, numbers.Integral) or not isinstance(normalized_shape, Sequence):
        raise TypeError(f"{name}(): argument 'normalized_shape' (position 2) must be tuple of ints, not "
                        f"{type(normalized_shape).__name__}")
    return tuple(int(d) for d in normalized_shape)


def _normalized_axes(x: Tensor, shape: tuple, weight, bias, expected: str) -> tuple[int, ...]:
    """The trailing axes ``shape`` names, after torch's checks of the input, weight and bias."""
    b = _builder(x)
    if not shape:
        raise b.error("Expected normalized_shape to be at least 1-dimensional, i.e., containing at least one "
                      f"element, but got normalized_shape = {list(shape)}")
    for what, value in (("weight", weight), ("bias", bias)):
        if value is not None and tuple(value.shape) != shape:
            raise b.error(f"Expected {what} to be of same shape as normalized_shape, but got {what} of shape "
                          f"{list(value.shape)} and normalized_shape = {list(shape)}")
    n = len(shape)
    if x.ndim < n or tuple(x.shape[x.ndim - n:]) != shape:
        raise b.error(f"Given normalized_shape={list(shape)}, expected input with shape {expected}, but got input of "
                      f"size{format_shape(x.shape).replace(',', ', ')}")
    return tuple(range(x.ndim - n, x.ndim))


def _eager_dtype_check(x: Tensor, params: list, kernel: str, same_dtype: bool) -> None:
    """torch's errors for an input that is not floating point (and, for layer_norm, for
    parameters of another dtype than the input)."""
    given = [p for p in params if p is not None]
    if not x.dtype.is_floating_point:
        if given and same_dtype:
            raise RuntimeError("mixed dtype (CPU): all inputs must share same datatype.")
        raise NotImplementedError(f'"{kernel}" not implemented for \'{dtypes.torch_type_name(x.dtype)}\'')
    if same_dtype and any(not isinstance(p, Tensor) or p.dtype is not x.dtype for p in given):
        raise RuntimeError("mixed dtype (CPU): all inputs must share same datatype.")


def layer_norm(input, normalized_shape, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """Normalise over the trailing ``normalized_shape`` axes to mean 0 and (biased) variance 1,
    then scale by ``weight`` and shift by ``bias`` (each of that shape)."""
    shape = _as_shape(normalized_shape, "layer_norm")
    x = as_tensor(input)
    expected = "[*, " + ", ".join(str(d) for d in shape) + "]"
    axes = _normalized_axes(x, shape, weight, bias, expected)
    _eager_dtype_check(x, [weight, bias], "LayerNormKernelImpl", same_dtype=True)
    mean = x.mean(axes, keepdim=True)
    centred = x - mean
    rstd = ((centred * centred).mean(axes, keepdim=True) + eps).rsqrt()
    y = x * rstd - mean * rstd
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return _named(y, "NativeLayerNormBackward0")


def rms_norm(input, normalized_shape, weight=None, eps: float | None = None) -> Tensor:
    """Divide by the root mean square over the trailing ``normalized_shape`` axes (plus
    ``eps``, by default the machine epsilon of the input's dtype), then scale by ``weight``."""
    shape = _as_shape(normalized_shape, "rms_norm")
    x = as_tensor(input)
    expected = "[*" + ", ".join(str(d) for d in shape) + "]"
    axes = _normalized_axes(x, shape, weight, None, expected)
    _eager_dtype_check(x, [weight], "rms_norm", same_dtype=False)
    if eps is None:
        eps = float(np.finfo(np.float32 if x._symbolic() else x.dtype.numpy).eps)
    y = x * ((x * x).mean(axes, keepdim=True) + eps).rsqrt()
    if weight is not None:
        y = y * weight
    return _named(y, "MulBackward0")


def _affine(module: Module, normalized_shape, eps, elementwise_affine: bool, bias: bool | None) -> None:
    """The shape, eps and parameters LayerNorm and RMSNorm share, registered in PyTorch's order:
    ``weight`` (and ``bias`` unless it is None: RMSNorm has none) when ``elementwise_affine``."""
    if isinstance(normalized_shape, numbers.Integral):
        normalized_shape = (normalized_shape,)
    module.normalized_shape = tuple(int(d) for d in normalized_shape)
    module.eps, module.elementwise_affine = eps, elementwise_affine
    names = ("weight",) if bias is None else ("weight", "bias")
    for name in names:
        if elementwise_affine and (name == "weight" or bias):
            setattr(module, name, Parameter(np.empty(module.normalized_shape, np.float32)))
        else:
            module.register_parameter(name, None)


class LayerNorm(Module):
    """Layer normalisation over the trailing ``normalized_shape`` axes; ``weight`` starts at 1 and
    ``bias`` at 0, as in PyTorch."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True,
                 device=None, dtype=None) -> None:
        super().__init__()
        _affine(self, normalized_shape, eps, elementwise_affine, bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.elementwise_affine:
            init.ones_(self.weight)
            if self.bias is not None:
                init.zeros_(self.bias)

    def forward(self, input):
        return layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
                f"bias={self.bias is not None}")


class RMSNorm(Module):
    """RMS normalisation over the trailing ``normalized_shape`` axes; ``weight`` starts at 1.
    ``eps=None`` uses the machine epsilon of the input's dtype, as PyTorch."""

    def __init__(self, normalized_shape, eps: float | None = None, elementwise_affine: bool = True,
                 device=None, dtype=None) -> None:
        super().__init__()
        _affine(self, normalized_shape, eps, elementwise_affine, None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.elementwise_affine:
            init.ones_(self.weight)

    def forward(self, input):
        return rms_norm(input, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
