"""Parts of tensors and masks over them: ``narrow``, ``select``, ``split``, ``chunk``, ``unbind``
and ``masked_fill`` (a mixin of graphnn.tensor_methods.TensorMethods; ``tril`` and ``triu`` are
graphnn.tensor_methods').

Each works on concrete, symbolic and recorded tensors alike, with PyTorch's results and errors:
the parts are indexing (graphnn.indexing: numpy views sharing memory for a concrete tensor,
``slice`` nodes in a graph), the masks pointwise nodes built through the builder the operands
call for (eager ones evaluated at once).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from graphnn import dtypes
from graphnn import pointwise as pw
from graphnn.eager import EAGER, cast, constant
from graphnn.indexing import wrap_dim
from graphnn.ir import format_dim

T: Any = None
"""graphnn.tensors, set by it when it is loaded (it imports this module, through tensor_methods,
to define Tensor)."""


def _whole(value: Any) -> int:
    """An int argument, given as an int or a one-element integer tensor."""
    return int(value.item()) if isinstance(value, T.Tensor) else int(value)


def _fixed_size(x: Any, d: int, what: str, b) -> int:
    """The size of dimension ``d``, which must not depend on the batch size: the number or the
    sizes of ``what``'s pieces would."""
    size = x.shape[d]
    if not isinstance(size, int):
        raise b.error(f"{what} of dimension {d}, whose size {format_dim(size)} depends on the batch size: the number "
                      "or the sizes of its pieces would too, which a graph for every batch size cannot have; "
                      f"{what} a dimension of fixed size")
    return size


def _along(d: int, part: Any) -> tuple:
    """An index taking ``part`` along dimension ``d`` and every position of the dimensions before."""
    return (slice(None),) * d + (part,)


class SlicingMethods:
    """Parts of a tensor along one dimension, and the masks (see the module docstring)."""

    def narrow(self, dim: int, start, length: int):
        """Positions [start, start + length) of dimension ``dim`` (a view)."""
        b = T._builder(self)
        d = wrap_dim(dim, self.ndim, b)
        start, length = _whole(start), _whole(length)
        size = self.shape[d]
        if length < 0:
            raise RuntimeError("narrow(): length must be non-negative.")
        if isinstance(size, int):
            if not -size <= start <= size:
                raise IndexError(f"start out of range (expected to be in range of [{-size}, {size}], but got {start})")
            start = start + size if start < 0 else start
            if start + length > size:
                raise RuntimeError(f"start ({start}) + length ({length}) exceeds dimension size ({size}).")
            return T._named(self[_along(d, slice(start, start + length))], "SliceBackward0")
        if start < 0 and start + length > 0:  # from the end, past the end
            raise RuntimeError(f"start ({format_dim(size + start)}) + length ({length}) exceeds dimension size "
                               f"({format_dim(size)}).")
        stop = start + length if start >= 0 or start + length < 0 else None
        return T._named(self[_along(d, slice(start, stop))], "SliceBackward0")

    def select(self, dim: int, index):
        """The slice at ``index`` of dimension ``dim``, without that dimension (a view)."""
        if self.ndim == 0:
            raise IndexError("select() cannot be applied to a 0-dim tensor.")
        d = wrap_dim(dim, self.ndim, T._builder(self))
        index, size = _whole(index), self.shape[d]
        if isinstance(size, int) and not -size <= index < size:
            raise IndexError(f"select(): index {index} out of range for tensor of size {list(self.shape)} at "
                             f"dimension {d}")
        return T._named(self[_along(d, index)], "SelectBackward0")

    def split(self, split_size, dim: int = 0):
        """Pieces along ``dim``: of ``split_size`` each (the last one smaller), or of the sizes listed."""
        b = T._builder(self)
        d = wrap_dim(dim, self.ndim, b)
        size = _fixed_size(self, d, "split", b)
        if isinstance(split_size, (list, tuple)):
            sizes, grad = [_whole(s) for s in split_size], "SplitWithSizesBackward0"
            if any(s < 0 for s in sizes):
                raise RuntimeError(f"split_with_sizes expects split_sizes have only non-negative entries, but got "
                                   f"split_sizes={sizes}")
            if sum(sizes) != size:
                raise RuntimeError(f"split_with_sizes expects split_sizes to sum exactly to {size} (input tensor's size "
                                   f"at dimension {d}), but got split_sizes={sizes}")
        else:
            step, grad = _whole(split_size), "SplitBackward0"
            if step < 0:
                raise RuntimeError(f"split expects split_size be non-negative, but got split_size={step}")
            if step == 0 and size != 0:
                raise RuntimeError(f"split_size can only be 0 if dimension size is 0, but got dimension size of {size}")
            sizes = [min(step, size - s) for s in range(0, size, step)] if size else [0]
        starts = np.cumsum([0] + sizes[:-1])
        return tuple(T._named(self[_along(d, slice(int(s), int(s) + n))], grad) for s, n in zip(starts, sizes))

    def chunk(self, chunks: int, dim: int = 0):
        """At most ``chunks`` pieces along ``dim``, of ceil(size / chunks) each (the last one smaller)."""
        chunks = _whole(chunks)
        if chunks <= 0:
            raise RuntimeError(f"chunk expects `chunks` to be greater than 0, got: {chunks}")
        b = T._builder(self)
        d = wrap_dim(dim, self.ndim, b)
        size = _fixed_size(self, d, "chunk", b)
        return self.split(-(-size // chunks), d)

    def unbind(self, dim: int = 0):
        """Every slice of dimension ``dim``, without that dimension."""
        b = T._builder(self)
        d = wrap_dim(dim, self.ndim, b)
        return tuple(T._named(self[_along(d, k)], "UnbindBackward0") for k in range(_fixed_size(self, d, "unbind", b)))

    # -- masks ------------------------------------------------------------------------------------
    def masked_fill(self, mask, value):
        """``value`` where ``mask`` (a bool tensor broadcast with this one) holds, this tensor's
        elements elsewhere; the result has this tensor's dtype."""
        b = T._builder(self, mask, value)
        m = T.as_tensor(mask, b)
        if m.dtype is not dtypes.bool_:
            raise RuntimeError(f"masked_fill_ only supports boolean masks, but got mask with dtype {_c_name(m.dtype)}")
        if isinstance(value, T.Tensor) and value.ndim != 0:
            raise RuntimeError(f"masked_fill_ only supports a 0-dimensional value tensor, but got tensor with "
                               f"{value.ndim} dimension(s).")
        grad = "MaskedFillBackward1" if isinstance(value, T.Tensor) else "MaskedFillBackward0"
        d = self.dtype
        if not isinstance(value, T.Tensor):
            _check_fits(value, d)
        if b is not EAGER:  # in this tensor's dtype: a number is converted as torch converts it
            if not isinstance(value, T.Tensor) and not d.is_floating_point:
                value = bool(value) if d is dtypes.bool_ else int(value)
            ir = "f32" if d.is_floating_point else d.ir
            return T._wrap(T.where_node(b, m, value, self, ir), [self, value], grad)
        if isinstance(value, T.Tensor):
            filler = cast(value.node, d.ir)
        else:
            filler = constant(np.asarray(value).astype(d.numpy), d.ir)
        node = EAGER.apply(pw.where, cast(m.node, "bool"), filler, self.node, dtype=d.ir)
        return T._wrap(node, [self, value], grad)


def _c_name(d: dtypes.dtype) -> str:
    """The C type name torch's mask messages use."""
    return {"float32": "float", "float64": "double", "int64": "long int", "int32": "int", "bool": "bool"}[d.name]


def _check_fits(value: Any, d: dtypes.dtype) -> None:
    """A number written into an integer tensor must be finite and in its range (torch raises)."""
    if d.is_floating_point or d is dtypes.bool_ or isinstance(value, (bool, np.bool_)):
        return
    info = np.iinfo(d.numpy)
    if not (np.isfinite(value) and info.min <= value <= info.max):
        raise RuntimeError(f"value cannot be converted to type {np.dtype(d.numpy).name}_t without overflow")
