"""Tensor reductions: sum, mean, var/std, max/min with indices, argmax, all/any, and the
softmax composites nn.functional shares (a mixin of graphnn.tensor_methods.TensorMethods)."""
from __future__ import annotations

from typing import Any

import numpy as np
import sympy

from graphnn import dtypes
from graphnn import pointwise as pw
from graphnn.eager import EAGER, constant
from graphnn.errors import TraceError
from graphnn.ir import numel
from graphnn.indexing import wrap_dim


T: Any = None
"""graphnn.tensors, set by it when it is loaded (it imports this module, through tensor_methods,
to define Tensor)."""


class ReductionMethods:
    """Reductions of Tensor (each over all elements, or over ``dim`` keeping it with ``keepdim``)."""

    def softmax(self, dim, dtype=None):
        return softmax(self, _int_dim(dim, "softmax"), dtype=dtype)

    def log_softmax(self, dim, dtype=None):
        return log_softmax(self, _int_dim(dim, "log_softmax"), dtype=dtype)

    # -- reductions ---------------------------------------------------------------------------------
    def sum(self, dim=None, keepdim: bool = False, dtype=None):
        x = self if dtype is None else self.to(dtype)
        if not x.dtype.is_floating_point and x.dtype is not dtypes.int64:
            x = x.to(dtypes.int64)  # torch sums bools and ints in int64
        return T._named(reduce(x, "sum", dim, keepdim), "SumBackward0" if dim is None else "SumBackward1")

    def mean(self, dim=None, keepdim: bool = False, dtype=None):
        x = self if dtype is None else self.to(dtype)
        if not x._symbolic() and not x.dtype.is_floating_point:
            raise RuntimeError("mean(): could not infer output dtype. Input dtype must be either a floating point "
                               f"or complex dtype. Got: {dtypes.torch_type_name(x.dtype)}")
        axes = _axes(x, dim)
        count = numel(tuple(x.shape[a] for a in axes))
        total = reduce(x, "sum", dim, keepdim)
        if count == 0:
            out = total / 0.0  # the mean of nothing: 0 / 0, NaN
        else:
            b = T._builder(total)
            out = T._wrap(b.pointwise(pw.scale(1 / sympy.sympify(count)), total.node), [total], "x")
        return T._named(out, "MeanBackward0" if dim is None else "MeanBackward1")

    def var(self, dim=None, unbiased: bool | None = None, keepdim: bool = False, *, correction=None):
        correction = (1 if unbiased is None or unbiased else 0) if correction is None else correction
        if not self._symbolic() and not self.dtype.is_floating_point:
            raise RuntimeError("std and var only support floating point and complex dtypes; got "
                               + dtypes.torch_type_name(self.dtype))
        axes = _axes(self, dim)
        count = numel(tuple(self.shape[a] for a in axes))
        centred = self - self.mean(axes, keepdim=True)
        total = (centred * centred).sum(axes, keepdim=keepdim)
        return T._named(total / max(count - correction, 0) if isinstance(count, int) else total / (count - correction),
                        "VarBackward0")

    def std(self, dim=None, unbiased: bool | None = None, keepdim: bool = False, *, correction=None):
        return T._named(self.var(dim, unbiased, keepdim, correction=correction).sqrt(), "StdBackward0")

    def prod(self, dim=None, keepdim: bool = False):
        if self._symbolic():
            raise TraceError("prod is not supported inside a traced forward yet")
        T.value_only(self, "prod")
        values = np.prod(self.array, axis=dim, keepdims=keepdim)
        d = self.dtype if self.dtype.is_floating_point else dtypes.int64
        return T.Tensor(constant(np.asarray(values, d.numpy), d.ir))

    def amax(self, dim=None, keepdim: bool = False):
        dim = None if dim == () else dim
        _nonempty(self, dim, "amax")
        return T._named(reduce(self, "max", dim, keepdim), "AmaxBackward0")

    def amin(self, dim=None, keepdim: bool = False):
        dim = None if dim == () else dim
        _nonempty(self, dim, "amin")
        return T._named(_reversed(reduce(_reversed(self), "max", dim, keepdim)), "AminBackward0")

    def max(self, dim=None, keepdim: bool = False):
        """The maximum; with ``dim`` (values, indices) like PyTorch, the gradient and the index
        going to the first maximum (NaN counting as the greatest); with a tensor, the
        elementwise maximum."""
        if isinstance(dim, T.Tensor):
            return self.maximum(dim)
        if dim is None:
            _nonempty(self, None, "max")
            return T._named(reduce(self, "max", None, False), "MaxBackward1")
        _nonempty(self, _one_dim(dim, "max"), "max")
        values = T._named(reduce(self, "max", int(dim), keepdim, ties="first"), "MaxBackward0")
        return T.MaxResult(values, _first_argmax(self, dim, keepdim))

    def min(self, dim=None, keepdim: bool = False):
        """The minimum, as ``max``: the maximum of the order-reversed tensor, reversed back."""
        if isinstance(dim, T.Tensor):
            return self.minimum(dim)
        if dim is None:
            _nonempty(self, None, "min")
            return T._named(_reversed(reduce(_reversed(self), "max", None, False)), "MinBackward1")
        _nonempty(self, _one_dim(dim, "min"), "min")
        values = _reversed(reduce(_reversed(self), "max", int(dim), keepdim, ties="first"))
        return T.MinResult(T._named(values, "MinBackward0"), _first_argmax(_reversed(self), dim, keepdim))

    def argmax(self, dim=None, keepdim: bool = False):
        return argmax(self, dim, keepdim)

    def argmin(self, dim=None, keepdim: bool = False):
        _no_bool(self, "argmin")
        _nonempty(self, dim, "argmin", IndexError)
        return _first_argmax(_reversed(self), dim, keepdim)

    def all(self, dim=None, keepdim: bool = False):
        """Whether every element (along ``dim``) is nonzero: True for none."""
        zeros = (self == 0).sum(dim, keepdim) if dim is not None else (self == 0).sum()
        return zeros == 0

    def any(self, dim=None, keepdim: bool = False):
        """Whether some element (along ``dim``) is nonzero: False for none."""
        nonzeros = (self != 0).sum(dim, keepdim) if dim is not None else (self != 0).sum()
        return nonzeros > 0

    def count_nonzero(self, dim=None):
        return (self != 0).sum(dim)

    def norm(self, p=2, dim=None, keepdim: bool = False):
        if p == 2 or p == "fro":
            return T._named((self * self).sum(dim, keepdim).sqrt(), "LinalgVectorNormBackward0")
        if p == 1:
            return self.abs().sum(dim, keepdim)
        raise NotImplementedError(f"norm(p={p!r}) is not supported; use p=2 or p=1")




    def topk(self, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):
        """The ``k`` largest (smallest with ``largest=False``) elements along ``dim`` and their
        indices, largest first (of a tensor with values: sampling and evaluation code's use)."""
        array = _values_of(self, "topk")
        axis = wrap_dim(int(dim), self.ndim)
        if not 0 <= int(k) <= (array.shape[axis] if array.ndim else 1):
            raise RuntimeError("selected index k out of range")
        values, indices = _ordered(array, axis, largest)
        take = np.arange(int(k))
        return T.TopkResult(*_pair(self, np.take(values, take, axis), np.take(indices, take, axis), array.ndim))

    def sort(self, dim: int = -1, descending: bool = False, stable: bool = False):
        """The values along ``dim`` in order and the indices they came from (a stable sort)."""
        array = _values_of(self, "sort")
        values, indices = _ordered(array, wrap_dim(int(dim), self.ndim), descending)
        return T.SortResult(*_pair(self, values, indices, array.ndim))

    def argsort(self, dim: int = -1, descending: bool = False, stable: bool = False):
        return self.sort(dim, descending, stable).indices


def _ordered(array: np.ndarray, axis: int, descending: bool) -> tuple:
    """(values, indices) of ``array`` sorted stably along ``axis``, NaN counting as the largest
    value as in torch (a 0-d array as one element)."""
    work = array.reshape(1) if array.ndim == 0 else array
    key = work.astype(np.int64) if work.dtype.kind == "b" else work
    nan = np.isnan(key) if key.dtype.kind == "f" else np.zeros(key.shape, bool)
    key = np.where(nan, 0, key)
    order = np.argsort(-key if descending else key, axis=axis, kind="stable")
    if nan.any():  # then NaNs first (descending) or last, keeping that order among the rest
        flags = np.take_along_axis(nan, order, axis)
        order = np.take_along_axis(order, np.argsort(~flags if descending else flags, axis=axis, kind="stable"), axis)
    return np.take_along_axis(work, order, axis), order


def _pair(x, values: np.ndarray, indices: np.ndarray, ndim: int) -> tuple:
    if ndim == 0:
        values, indices = values.reshape(()), indices.reshape(())
    return T.Tensor(constant(values, x._node.dtype)), T.Tensor(constant(indices.astype(np.int64), "i64"))


def _values_of(x, name: str) -> np.ndarray:
    """The values of a tensor an order-based method (topk, sort) reads; those have no gradient in
    graphnn yet, so a tensor that is traced or requires grad is refused with what to do."""
    if x._symbolic() or x.requires_grad:
        raise TraceError(f"{name}() of a tensor that is traced or requires grad is not supported yet; call it on "
                         f"x.detach()")
    return x.array


def _axes(x, dim) -> tuple:
    rank = x.ndim
    if dim is None:
        return tuple(range(rank))
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    return tuple(sorted({wrap_dim(int(d), rank, T._builder(x)) for d in dims}))


def _one_dim(dim, name: str) -> int:
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
        raise TypeError(f"{name}() received an invalid combination of arguments - got ({type(dim).__name__}), but "
                        "expected one of: (), (Tensor other), (int dim, bool keepdim = False)")
    return int(dim)


def _int_dim(dim, name: str) -> int:
    """The method forms take the dim as an int (the functional forms also take None)."""
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
        raise TypeError(f"{name}(): argument 'dim' must be int, not {type(dim).__name__}")
    return int(dim)


def _nonempty(x, dim, name: str, whole_error: type = RuntimeError) -> None:
    """A maximum (or minimum) needs elements: torch's errors for an empty tensor or dim."""
    if x._symbolic() or x.ndim == 0:
        return
    if dim is None and x.numel() == 0:
        raise whole_error(f"{name}(): Expected reduction dim to be specified for input.numel() == 0. Specify the "
                          "reduction dim with the 'dim' argument.")
    for axis in _axes(x, dim) if dim is not None else ():
        if x.shape[axis] == 0:
            raise IndexError(f"{name}(): Expected reduction dim {axis} to have non-zero size.")


def _no_bool(x, name: str) -> None:
    if not x._symbolic() and x.dtype is dtypes.bool_:
        raise RuntimeError(f"{name}(): does not support bool input")


def _reversed(x):
    """``x`` with its order reversed (a minimum is the maximum of it): negated, or for bools
    inverted (a bool cannot be negated)."""
    return ~x if not x._symbolic() and x.dtype is dtypes.bool_ else -x


def reduce(x, kind: str, dim, keepdim: bool, ties: str = "split"):
    """Sum or max of ``x`` over ``dim`` (all axes when None), keeping them with ``keepdim``."""
    b = T._builder(x)
    t = T.as_tensor(x, b)
    axes = _axes(t, dim)
    if t.ndim == 0:
        return t.clone() if b is EAGER else t
    out = T._wrap(b.reduce(kind, t.node, axes, ties=ties), [x], "x")
    if keepdim:
        return out
    return T._wrap(b.reshape(out.node, tuple(d for k, d in enumerate(t.shape) if k not in axes)), [out], "x")


# -- composites the Tensor methods and nn.functional share -----------------------------------
def _softmax_dim(x, dim):
    if dim is None:  # PyTorch's legacy implicit choice
        return 0 if x.ndim in (0, 1, 3) else 1
    return dim


def _shifted(x, dim):
    # the max only stabilises; no gradient flows through it (it cancels mathematically)
    return x - x.amax(dim, keepdim=True).detach()


def _floating(x, dim, dtype, kernel: str):
    """The input softmax computes on: converted to ``dtype`` first when given (as torch's
    ``dtype=``); a tensor of integers or bools is torch's error without it."""
    if dtype is not None:
        return x.to(dtype)
    if not x._symbolic() and not x.dtype.is_floating_point:
        last = x.ndim == 0 or wrap_dim(dim, x.ndim, T._builder(x)) == x.ndim - 1
        raise NotImplementedError(f'"{kernel}_{"lastdim_" if last else ""}kernel_impl" not implemented for '
                                  f"'{dtypes.torch_type_name(x.dtype)}'")
    return x


def softmax(input, dim=None, _stacklevel: int = 3, dtype=None):
    """exp(x - max) / sum(exp(x - max)) along ``dim`` (any axis): -inf entries get probability 0,
    and a row that is all -inf is NaN, as in torch."""
    x = T.as_tensor(input)
    d = _softmax_dim(x, dim)
    x = _floating(x, d, dtype, "softmax")
    e = _shifted(x, d).exp()
    return T._named(e / e.sum(d, keepdim=True), "SoftmaxBackward0")


def log_softmax(input, dim=None, _stacklevel: int = 3, dtype=None):
    x = T.as_tensor(input)
    d = _softmax_dim(x, dim)
    x = _floating(x, d, dtype, "log_softmax")
    s = _shifted(x, d)
    return T._named(s - s.exp().sum(d, keepdim=True).log(), "LogSoftmaxBackward0")


def argmax(input, dim=None, keepdim: bool = False):
    """The index of the first maximum along ``dim`` (of the flattened tensor when None; NaN
    counts as the greatest)."""
    x = T.as_tensor(input)
    _no_bool(x, "argmax")
    _nonempty(x, dim, "argmax", IndexError)
    return _first_argmax(x, dim, keepdim)


def _first_argmax(x, dim, keepdim: bool):
    if dim is None:
        x, dim = x.reshape(-1), 0
        keepdim = False
    if x.ndim == 0:
        _axes(x, dim)  # a 0-d tensor still checks its dim
        return T.Tensor(constant(np.zeros((), np.int64), "i64"))
    b = T._builder(x)
    if b is EAGER and x.dtype is dtypes.bool_:
        x = x.to(dtypes.int64)
    axis = _axes(x, dim)[0]
    index = T.Tensor(b.first_argmax(T.as_tensor(x, b).node, axis))
    return index if keepdim else index.squeeze(axis)
