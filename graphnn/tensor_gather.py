"""Reading a tensor at positions an integer tensor holds: ``gather``, ``index_select`` and
``take_along_dim`` (a mixin of graphnn.tensor_methods.TensorMethods), and what ``x[idx]``
(graphnn.indexing) and ``F.embedding`` share with them: one ``gather`` primitive, whose gradient
is a ``scatter_add``.

Indices follow PyTorch's rules and raise its errors: ``gather`` and ``take_along_dim`` take
[0, n) (a RuntimeError), ``index_select`` and ``embedding`` [0, n) (an IndexError, "index out of
range in self"), ``x[idx]`` [-n, n). Values known now are checked now; a traced program input
is checked on every call before anything runs (``Builder.check_index``).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from graphnn import dtypes
from graphnn import pointwise as pw
from graphnn.eager import EAGER, cast
from graphnn.indexing import wrap_dim

T: Any = None
"""graphnn.tensors, set by it when it is loaded (it imports this module, through tensor_methods,
to define Tensor)."""


class GatherMethods:
    """Tensor's gathers along one dimension."""

    def gather(self, dim: int, index, *, sparse_grad: bool = False):
        """out[i][j][k] = self[index[i][j][k]][j][k] for ``dim`` 0 (and so on): the index no larger
        than self on the other dimensions, its values in [0, self.size(dim))."""
        if sparse_grad:
            raise NotImplementedError("gather: sparse_grad=True is not supported; graphnn computes dense gradients")
        index = as_index(index, "gather(): Expected dtype int32/int64 for index")
        x = self
        if x.ndim == 0 and index.ndim <= 1:  # a number: as the one element of a vector
            out = x.reshape(1).gather(0, index.reshape(-1))
            return out.reshape(tuple(index.shape))
        if index.ndim != x.ndim:
            raise RuntimeError("Index tensor must have the same number of dimensions as input tensor")
        b = T._builder(x, index)
        d = wrap_dim(dim, x.ndim, b)
        for k, (i, n) in enumerate(zip(index.shape, x.shape)):
            if k != d and isinstance(i, int) and isinstance(n, int) and i > n:
                raise RuntimeError(f"Size does not match at dimension {k} expected index {list(index.shape)} to be no "
                                   f"larger than self {list(x.shape)} apart from dimension {d}")
        return select(b, x, index, d, "gather", "GatherBackward0", gather=True)

    def index_select(self, dim: int, index):
        """The slices of self along ``dim`` at the positions of the vector ``index``."""
        index = as_index(index, "index_select(): Expected dtype int32 or int64 for index")
        if index.ndim > 1:
            raise IndexError("index_select(): Index is supposed to be a vector")
        x = self if self.ndim else self.reshape(1)
        b = T._builder(x, index)
        d = wrap_dim(dim, self.ndim, b)
        out = select(b, x, index.reshape(-1), d, "index_select", "IndexSelectBackward0")
        return out if self.ndim else out.reshape(())

    def take_along_dim(self, indices, dim: int | None = None):
        """``gather`` after broadcasting self and ``indices`` to one shape apart from ``dim``;
        with no ``dim``, of the flattened self at the flattened indices."""
        if not isinstance(indices, T.Tensor) or indices.dtype is not dtypes.int64:
            got = dtypes.torch_type_name(indices.dtype) if isinstance(indices, T.Tensor) else type(indices).__name__
            raise RuntimeError(f"torch.take_along_dim(): dtype of indices should be Long but got {got}")
        if dim is None:
            return self.reshape(-1).gather(0, indices.reshape(-1))
        if indices.ndim != self.ndim:
            raise RuntimeError(f"torch.take_along_dim(): input and indices should have the same number of dimensions, "
                               f"but got {self.ndim} dimensions for input, and {indices.ndim} dimensions for indices")
        b = T._builder(self, indices)
        d = wrap_dim(dim, self.ndim, b)
        shape = list(_broadcast(self.shape, indices.shape, d))
        x = self.expand(*(self.shape[d] if k == d else n for k, n in enumerate(shape)))
        index = indices.expand(*(indices.shape[d] if k == d else n for k, n in enumerate(shape)))
        return x.gather(d, index)


def as_index(index: Any, message: str):
    """``index`` (a tensor, array or list of integers) as an int64 tensor; ``message`` is
    PyTorch's error for an index of another dtype."""
    if not isinstance(index, T.Tensor):
        array = np.asarray(index)
        if array.dtype.kind not in "iu":
            raise RuntimeError(message)
        index = T.Tensor(T._constant_of(array, dtypes.int64))
    if index.dtype not in (dtypes.int64, dtypes.int32):
        raise RuntimeError(message)
    if index.dtype is dtypes.int32:  # only a tensor with a value has int32 (graphs take int64)
        index = T.Tensor(cast(index.node, "i64"))
    return index


def select(b, x, index, axis: int, op: str, grad: str, gather: bool = False):
    """x's slices along ``axis`` at the positions ``index`` (any shape) holds, in its place:
    x.shape[:axis] + index.shape + x.shape[axis + 1:] (with ``gather``, torch.gather's meaning
    instead: the index has x's rank); the index checked by ``op``'s rules."""
    x, index = T.as_tensor(x, b), T.as_tensor(index, b)
    T._float32_only(b, x)
    b.check_index(index.node, x.shape[axis], op, axis)
    picked = (b.gather if gather else b.index_select)(x.node, index.node, axis)
    return T._wrap(picked, [x], grad)


def _broadcast(a: tuple, b: tuple, skip: int) -> tuple:
    """The broadcast of two shapes of one rank, dimension ``skip`` left out (kept as 1)."""
    out = []
    for k, (m, n) in enumerate(zip(a, b)):
        if k == skip:
            out.append(1)
        elif m == n or n == 1:
            out.append(m)
        elif m == 1:
            out.append(n)
        else:
            raise RuntimeError(f"The size of tensor a ({m}) must match the size of tensor b ({n}) at non-singleton "
                               f"dimension {k}")
    return tuple(out)


def embedding(input, weight, padding_idx: int | None = None, max_norm: float | None = None, norm_type: float = 2.0,
              scale_grad_by_freq: bool = False, sparse: bool = False):
    """The rows of ``weight`` (num_embeddings, embedding_dim) at the indices ``input`` holds, in
    input's shape plus embedding_dim: one gather. The row ``padding_idx`` gets no gradient."""
    refuse_embedding_options(max_norm, scale_grad_by_freq, sparse)
    if not isinstance(input, T.Tensor) or input.dtype not in (dtypes.int64, dtypes.int32):
        got = dtypes.tensor_type_name(input.dtype) if isinstance(input, T.Tensor) else type(input).__name__
        raise RuntimeError("Expected tensor for argument #1 'indices' to have one of the following scalar types: "
                           f"Long, Int; but got {got} instead (while checking arguments for embedding)")
    if weight.ndim != 2:
        raise RuntimeError("'weight' must be 2-D")
    rows = weight.shape[0]
    if padding_idx is not None:
        if not -rows <= padding_idx < rows:
            raise AssertionError("Padding_idx must be within num_embeddings")
        padding_idx = padding_idx % rows
    index = as_index(input, "")
    b = T._builder(index, weight)
    out = select(b, weight, index, 0, "embedding", "EmbeddingBackward0")
    if padding_idx is not None and b is not EAGER:
        keys = b.expand(b.reshape(T.as_tensor(index, b).node, tuple(index.shape) + (1,)), tuple(out.shape))
        out = T._wrap(b.pointwise(pw.padding_row(padding_idx), out.node, keys, b.detach(out.node)), [out], "x")
    return T._named(out, "EmbeddingBackward0")


def refuse_embedding_options(max_norm: float | None, scale_grad_by_freq: bool, sparse: bool) -> None:
    """NotImplementedError for the embedding options graphnn does not implement."""
    if max_norm is not None:
        raise NotImplementedError("embedding: max_norm (renormalising the rows looked up, in place) is not supported")
    if scale_grad_by_freq:
        raise NotImplementedError("embedding: scale_grad_by_freq is not supported")
    if sparse:
        raise NotImplementedError("embedding: sparse gradients are not supported; graphnn computes the dense "
                                  "gradient of the table (sparse=False)")
