"""Tensor operators and elementwise math: arithmetic, comparisons, logical ops, unary functions,
``clamp`` and ``matmul`` (a mixin of graphnn.tensor_methods.TensorMethods).

Each builds primitive Nodes through the builder its operands call for (graphnn.tensors.binary
and unary): recorded into the graph being traced, or evaluated at once.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from graphnn import dtypes
from graphnn import pointwise as pw
from graphnn.eager import EAGER, constant
from graphnn.ir import format_shape


T: Any = None
"""graphnn.tensors, set by it when it is loaded (it imports this module, through tensor_methods,
to define Tensor)."""


class ArithmeticMethods:
    """Operators, comparisons, logical ops and elementwise math of Tensor."""

    # -- arithmetic and comparisons -------------------------------------------------------------
    def __add__(self, other):
        return T.binary(self, other, "add")

    def __radd__(self, other):
        return T.binary(other, self, "add")

    def __sub__(self, other):
        return T.binary(self, other, "sub")

    def __rsub__(self, other):
        return T._named(T.binary(other, self, "sub"), "RsubBackward1")

    def __mul__(self, other):
        return T.binary(self, other, "mul")

    def __rmul__(self, other):
        return T.binary(other, self, "mul")

    def __truediv__(self, other):
        return T.binary(self, other, "div")

    def __rtruediv__(self, other):
        return T._named(T.binary(other, self, "div"), "MulBackward0")

    def __floordiv__(self, other):
        return T.binary(self, other, "floor_divide")

    def __rfloordiv__(self, other):
        return T.binary(other, self, "floor_divide")

    def __mod__(self, other):
        return T.binary(self, other, "remainder")

    def __rmod__(self, other):
        return T.binary(other, self, "remainder")

    def __pow__(self, other):
        # torch names the backward of each form apart: tensor ** number, tensor ** tensor
        out = T.binary(self, other, "pow")
        return T._named(out, "PowBackward1") if isinstance(other, T.Tensor) else out

    def __rpow__(self, other):
        return T._named(T.binary(other, self, "pow"), "PowBackward2")

    def __neg__(self):
        if T._builder(self) is EAGER and self.dtype is dtypes.bool_:
            raise RuntimeError("Negation, the `-` operator, on a bool tensor is not supported. "
                            "If you are trying to invert a mask, use the `~` or `logical_not()` operator instead.")
        return T.unary(self, pw.neg, "NegBackward0", floating=False)

    def __pos__(self):
        return self

    def __abs__(self):
        return self.abs()

    def __matmul__(self, other):
        return matmul(self, other)

    def __rmatmul__(self, other):
        return matmul(other, self)

    def __eq__(self, other):
        return T.binary(self, other, "eq")

    def __ne__(self, other):
        return T.binary(self, other, "ne")

    def __lt__(self, other):
        return T.binary(self, other, "lt")

    def __le__(self, other):
        return T.binary(self, other, "le")

    def __gt__(self, other):
        return T.binary(self, other, "gt")

    def __ge__(self, other):
        return T.binary(self, other, "ge")

    def _logical(self, other, name: str, symbol: str):
        if self.dtype is not dtypes.bool_ or (isinstance(other, T.Tensor) and other.dtype is not dtypes.bool_):
            raise TypeError(f"`{symbol}` on {self.dtype} tensors (bitwise arithmetic) is not supported by graphnn; "
                            "it works on bool tensors (masks)")
        return T.binary(self, other, name)

    def __and__(self, other):
        return self._logical(other, "logical_and", "&")

    __rand__ = __and__

    def __or__(self, other):
        return self._logical(other, "logical_or", "|")

    __ror__ = __or__

    def __xor__(self, other):
        return self._logical(other, "logical_xor", "^")

    __rxor__ = __xor__

    def __invert__(self):
        if self.dtype is not dtypes.bool_:
            raise TypeError(f"`~` on {self.dtype} tensors (bitwise not) is not supported by graphnn; it works on bool tensors")
        return self.logical_not()

    def add(self, other, alpha=1):
        return self + (other if alpha == 1 else other * alpha)

    def sub(self, other, alpha=1):
        return self - (other if alpha == 1 else other * alpha)

    def mul(self, other):
        return self * other

    def div(self, other, rounding_mode=None):
        if rounding_mode is None:
            return self / other
        if rounding_mode == "floor":
            return self // other
        raise NotImplementedError(f"div(rounding_mode={rounding_mode!r}) is not supported; use None or 'floor'")

    multiply, divide, subtract, true_divide = mul, div, sub, div

    def pow(self, exponent):
        return self**exponent

    def floor_divide(self, other):
        return self // other

    def remainder(self, other):
        return self % other

    def fmod(self, other):  # C's remainder: the sign of the dividend
        return self - (self / other).trunc() * other

    def matmul(self, other):
        return self @ other

    def mm(self, other):
        return self @ other

    def dot(self, other):
        return T._named((self * other).sum(), "DotBackward0")

    def maximum(self, other):
        return T.binary(self, other, "maximum")

    def minimum(self, other):
        return T.binary(self, other, "minimum")

    def eq(self, other):
        return self == other

    def ne(self, other):
        return self != other

    def lt(self, other):
        return self < other

    def le(self, other):
        return self <= other

    def gt(self, other):
        return self > other

    def ge(self, other):
        return self >= other

    greater, less, greater_equal, less_equal, not_equal = gt, lt, ge, le, ne

    def logical_and(self, other):
        return T.binary(self, other, "logical_and")

    def logical_or(self, other):
        return T.binary(self, other, "logical_or")

    def logical_xor(self, other):
        return T.binary(self, other, "logical_xor")

    def logical_not(self):
        b = T._builder(self)
        return T.Tensor(b.pointwise(pw.logical_not, T.as_tensor(self, b).node, dtype="bool"))

    def equal(self, other) -> bool:
        return tuple(self.shape) == tuple(other.shape) and bool((self == other).all())

    def allclose(self, other, rtol=1e-05, atol=1e-08, equal_nan=False) -> bool:
        return bool(np.allclose(self.array, T.as_tensor(other).array, rtol, atol, equal_nan))

    def isclose(self, other, rtol=1e-05, atol=1e-08, equal_nan=False):
        return T.Tensor(constant(np.isclose(self.array, T.as_tensor(other).array, rtol, atol, equal_nan), "bool"))

    # -- elementwise math ---------------------------------------------------------------------------
    def exp(self):
        return T.unary(self, pw.exp, "ExpBackward0")

    def log(self):
        return T.unary(self, pw.log, "LogBackward0")

    def log2(self):
        return T.unary(self, pw.log2, "Log2Backward0")

    def log10(self):
        return T.unary(self, pw.log10, "Log10Backward0")

    def log1p(self):
        return T.unary(self, pw.log1p_, "Log1PBackward0")

    def expm1(self):
        return T.unary(self, pw.expm1_, "Expm1Backward0")

    def erf(self):
        return T.unary(self, pw.erf, "ErfBackward0")

    def erfc(self):
        return T.unary(self, pw.erfc, "ErfcBackward0")

    def sqrt(self):
        return T.unary(self, pw.sqrt, "SqrtBackward0")

    def rsqrt(self):
        return T.unary(self, pw.rsqrt, "RsqrtBackward0")

    def sin(self):
        return T.unary(self, pw.sin, "SinBackward0")

    def cos(self):
        return T.unary(self, pw.cos, "CosBackward0")

    def tanh(self):
        return T.unary(self, pw.tanh, "TanhBackward0")

    def sigmoid(self):
        return T.unary(self, pw.sigmoid, "SigmoidBackward0")

    def reciprocal(self):
        return T.unary(self, pw.reciprocal, "ReciprocalBackward0")

    def relu(self):
        if self._is_bool():
            raise RuntimeError("Boolean inputs not supported for relu")
        return T.unary(self, pw.relu, "ReluBackward0", floating=False)

    def abs(self):
        self._no_bool_kernel("abs_cpu")
        return T.unary(self, pw.abs_, "AbsBackward0", floating=False)

    absolute = abs

    def neg(self):
        return -self

    negative = neg

    def sign(self):
        if self._is_bool():
            return self.clone()  # a bool is its own sign
        return T.unary(self, pw.sign, "SignBackward0", floating=False)

    # integers are their own floor, ceil, trunc and round (a copy, as torch returns)
    def floor(self):
        self._no_bool_kernel("floor_vml_cpu")
        return self.clone() if self._is_integral() else T.unary(self, pw.floor, "FloorBackward0")

    def ceil(self):
        self._no_bool_kernel("ceil_vml_cpu")
        return self.clone() if self._is_integral() else T.unary(self, pw.ceil, "CeilBackward0")

    def trunc(self):
        self._no_bool_kernel("trunc_cpu")
        if self._is_integral():
            return self.clone()
        return T.unary(self, pw.sign, None) * T.unary(self.abs(), pw.floor, "TruncBackward0")

    def round(self, decimals: int = 0):
        self._no_bool_kernel("round_cpu")
        if self._is_integral():
            return self.clone()
        return T.Tensor(constant(np.round(self.array, decimals), self._node.dtype))

    def _is_integral(self) -> bool:
        return not self._symbolic() and not self.dtype.is_floating_point

    def _is_bool(self) -> bool:
        return not self._symbolic() and self.dtype is dtypes.bool_

    def _no_bool_kernel(self, kernel: str) -> None:
        """torch has no kernel named ``kernel`` for bool tensors: raise its error."""
        if self._is_bool():
            raise NotImplementedError(f"\"{kernel}\" not implemented for 'Bool'")

    def square(self):
        return self * self if not self._symbolic() else T.Tensor(T._builder(self).pointwise(pw.pow_(2), self.node))

    def clamp(self, min=None, max=None):
        if min is None and max is None:
            raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
        if isinstance(min, T.Tensor) or isinstance(max, T.Tensor):
            out = self if min is None else self.maximum(min)
            return out if max is None else out.minimum(max)
        x = self
        if not self._symbolic():  # bounds promote as operands do: an int tensor clamped to 0.5 is float
            bounds = [b for b in (min, max) if b is not None]
            x = self.to(dtypes.result_type([(self.dtype, self.ndim)] + bounds))
        return T.unary(x, pw.clamp(min, max), "ClampBackward1", floating=False)

    clip = clamp

    def clamp_min(self, min):
        return self.clamp(min=min)

    def clamp_max(self, max):
        return self.clamp(max=max)

    def isnan(self):
        return self != self

    def isinf(self):
        return self.abs() == float("inf")

    def isfinite(self):
        return ~(self.isnan() | self.isinf())


def matmul(a, b):
    """torch.matmul: 1-D operands are promoted and the added axis removed; batch axes broadcast."""
    from graphnn.ops import broadcast_shapes

    builder = T._builder(a, b)
    a, b = T.as_tensor(a, builder), T.as_tensor(b, builder)
    if builder is EAGER:
        if a.dtype is not b.dtype:
            names = {"float32": "float", "float64": "double", "int64": "long int", "int32": "int", "bool": "bool"}
            raise RuntimeError(f"expected m1 and m2 to have the same dtype, but got: {names[a.dtype.name]} != "
                               f"{names[b.dtype.name]}")
    if a.ndim == 0 or b.ndim == 0:
        raise RuntimeError(f"both arguments to matmul need to be at least 1D, but they are {a.ndim}D and {b.ndim}D")
    squeeze_a, squeeze_b = a.ndim == 1, b.ndim == 1
    if squeeze_a and squeeze_b and a.shape[0] != b.shape[0]:
        raise RuntimeError(f"inconsistent tensor size, expected tensor [{a.shape[0]}] and src [{b.shape[0]}] to have "
                           f"the same number of elements, but got {a.shape[0]} and {b.shape[0]} elements respectively")
    grad = _matmul_grad_name(a, b)
    sources = [a, b]
    if squeeze_a:
        a = a.unsqueeze(0)
    if squeeze_b:
        b = b.unsqueeze(-1)
    if a.shape[-1] != b.shape[-2]:
        raise builder.error(
            f"mat1 and mat2 shapes cannot be multiplied ({format_shape(a.shape[-2:]).strip('[]').replace(',', 'x')} "
            f"and {format_shape(b.shape[-2:]).strip('[]').replace(',', 'x')})"
        )
    batch = broadcast_shapes(tuple(a.shape[:-2]), tuple(b.shape[:-2]), where=builder)
    an = builder.broadcast(a.node, batch + tuple(a.shape[-2:]))
    bn = builder.broadcast(b.node, batch + tuple(b.shape[-2:]))
    out = T._wrap(builder.matmul(an, bn), sources, grad)
    if squeeze_a:
        out = T._named(out.squeeze(-2), grad)
    if squeeze_b:
        out = T._named(out.squeeze(-1), grad)
    return out


def _matmul_grad_name(a, b) -> str:
    """The op torch's matmul ends with for these ranks: dot, mv, mm, a squeeze after mm for
    1-D @ 2-D; with batch axes a view of a folded mm or of bmm, except that 2-D @ batched, when
    the matrix requires grad, is computed transposed and made contiguous (a clone)."""
    ranks = (a.ndim, b.ndim)
    names = {(1, 1): "DotBackward0", (2, 1): "MvBackward0", (1, 2): "SqueezeBackward4", (2, 2): "MmBackward0"}
    if ranks in names:
        return names[ranks]
    return "CloneBackward0" if a.ndim == 2 and a.requires_grad else "UnsafeViewBackward0"
