"""Indexing concrete tensors: ``x[i]``, ``x[:, 0]``, ``x[None, ..., ::2]``, ``x[mask]``, ``x[idx]``
and assignment to them, with PyTorch's semantics (basic indexing is a view sharing memory,
integer and boolean tensors index as numpy's advanced indexing, which PyTorch follows). Integer
index tensors of a tensor in a graph (traced, recorded, or requiring grad) are a gather
(graphnn.tensor_gather); inside a traced forward, other indexing is not supported yet.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np
import sympy

from graphnn import pointwise as pw
from graphnn import recording
from graphnn.eager import EAGER, constant, is_grad_enabled
from graphnn.errors import TraceError
from graphnn.ops import normalize_axis

T: Any = None
"""graphnn.tensors, set by it when it is loaded (it imports this module for Tensor's indexing)."""


def wrap_dim(dim: int, rank: int, builder=None) -> int:
    """``dim`` (negative from the end) as an index in [0, rank): torch's IndexError outside
    [-rank, rank) (a 0-d tensor takes -1 and 0); while tracing, the builder's error naming the
    traced line."""
    if builder is not None and builder is not EAGER:
        return normalize_axis(dim, rank, builder)
    size = max(rank, 1)
    if not -size <= dim < size:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-size}, {size - 1}], but got {dim})")
    return dim % size


def _index_part(part: Any) -> Any:
    if isinstance(part, T.Tensor):
        array = part.array
        if array.dtype.kind == "f":
            raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
        if array.ndim == 0 and array.dtype.kind in "iu":
            return int(array)  # torch selects with a 0-d integer tensor as with an int (a view)
        return array
    if isinstance(part, slice):
        if part.step is not None and int(part.step) == 0:
            raise ValueError("slice step cannot be zero")
        if part.step is not None and int(part.step) < 0:
            raise ValueError("step must be greater than zero")
        return slice(*(None if v is None else int(v) for v in (part.start, part.stop, part.step)))
    if isinstance(part, np.ndarray):
        if part.dtype.kind not in "iub":
            raise IndexError("arrays used as indices must be of integer or boolean type")
        return part
    if isinstance(part, (list, tuple)):
        array = np.asarray([p.item() if isinstance(p, T.Tensor) else p for p in part])
        if array.dtype.kind == "f":
            raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
        return array
    if isinstance(part, (bool, np.bool_)) or part is None or part is Ellipsis:
        return part
    if isinstance(part, (int, np.integer)):
        return int(part)
    if isinstance(part, (str, bytes)):  # torch tries to make a tensor of it
        raise TypeError(f"new(): invalid data type '{type(part).__name__}'")
    raise IndexError(f"only integers, slices (`:`), ellipsis (`...`), None and long or bool tensors are valid "
                     f"indices, got {type(part).__name__}")


def _numpy_index(index: Any) -> Any:
    parts = index if isinstance(index, tuple) else (index,)
    return tuple(_index_part(p) for p in parts)


def _grad_name(parts: tuple, shape: tuple, in_tuple: bool) -> str:
    """The op torch's indexing ends with, which names the result's grad_fn. Index arrays and
    masks are applied last (IndexBackward0); before them each part in turn: an int selects, None
    unsqueezes, a slice slices (except, in a tuple index, one keeping a whole dimension, which
    torch skips). An alias when nothing applied."""
    if any(isinstance(p, (np.ndarray, bool, np.bool_)) for p in parts):
        return "IndexBackward0"
    consumed = sum(1 for p in parts if p is not None and p is not Ellipsis)
    axis, name = 0, None
    for p in parts:
        if p is None:
            name = "UnsqueezeBackward0"
        elif p is Ellipsis:
            axis += len(shape) - consumed
        elif isinstance(p, slice):
            if not (in_tuple and p.indices(shape[axis]) == (0, shape[axis], 1)):
                name = "SliceBackward0"
            axis += 1
        else:
            name, axis = "SelectBackward0", axis + 1
    return name or "AliasBackward0"


def _checked(x: "T.Tensor", index: Any) -> tuple:
    if x._symbolic():
        raise TraceError("indexing and slicing tensors inside a traced forward are not supported yet")
    return _numpy_index(index)


def _select(x: "T.Tensor", index: Any):
    """``x[k]`` or ``x[:, ..., k]`` (full slices, then one int) as primitive ops, for a tensor the
    result of which is recorded for backward: a mask along the axis summed over it (the gradient
    goes to the selected slice). None for other indices."""
    parts = index if isinstance(index, tuple) else (index,)
    *lead, last = parts
    if not isinstance(last, (int, np.integer)) or isinstance(last, bool) or \
            any(not (isinstance(p, slice) and p == slice(None)) for p in lead) or len(parts) > x.ndim:
        return None
    axis = len(lead)
    size = x.shape[axis]
    if not -size <= last < size:
        raise IndexError(f"index {last} is out of bounds for dimension {axis} with size {size}")
    b = T._builder(x)
    node = T.as_tensor(x, b).node
    position = b.iota(tuple(node.shape), axis, "i64")
    picked = b.pointwise(_selection(int(last) % size), node, position)
    summed = b.reduce("sum", picked, (axis,))
    shape = tuple(d for k, d in enumerate(node.shape) if k != axis)
    return T._wrap(b.reshape(summed, shape), [x], "SelectBackward0")


@functools.lru_cache(maxsize=None)
def _selection(k: int) -> pw.PointwiseFn:
    """x0 where the position x1 along the axis is ``k``, else 0."""
    return pw.fn("select", sympy.Piecewise((pw.x0, sympy.Eq(pw.x1, k)), (0, True)))


GATHER_LIMIT = 1 << 24
"""The largest (elements of x) * (elements picked) a recorded gather expresses as a selection
matrix; larger ones wait for a gather primitive."""


def _gather(x: "T.Tensor", parts: tuple, grad: str) -> "T.Tensor":
    """Any index of a recorded tensor as primitive ops: the positions it picks, found by indexing
    an array of element numbers with numpy, select x's elements through a 0/1 matrix (a matmul,
    whose gradient sends each picked element's gradient back to its place)."""
    positions = np.arange(int(np.prod(x.shape)), dtype=np.int64).reshape(tuple(x.shape))[parts]
    positions = np.asarray(positions)
    count, picked = int(np.prod(x.shape)), max(positions.size, 1)
    if count * picked > GATHER_LIMIT:
        raise TraceError(f"indexing a recorded tensor of {count} elements for {positions.size} of them is too large "
                         "for graphnn's recorded gather so far; index x.detach() if no gradient is needed")
    b = T._builder(x)
    flat = b.reshape(T.as_tensor(x, b).node, (1, count))
    wanted = T.as_tensor(T.Tensor(constant(positions.reshape(1, -1), "i64")), b).node
    rows = b.iota((count, positions.size), 0, "i64")
    selection = b.apply(pw.eq, rows, b.broadcast(wanted, (count, positions.size)), dtype="f32")
    out = b.reshape(b.matmul(flat, selection), positions.shape)
    return T._wrap(out, [x], grad)


def _integer_parts(index: Any) -> tuple | None:
    """The parts of an index that holds an integer tensor (or array or list), with each such part
    an int64 Tensor; None when it holds none (a bool mask is not one)."""
    parts = index if isinstance(index, tuple) else (index,)
    found, out = False, []
    for part in parts:
        if isinstance(part, (list, tuple)):
            part = _index_part(part)  # numbers or one-element tensors: an array
        if isinstance(part, (T.Tensor, np.ndarray)) and part.dtype.kind in "iu" and \
                not (isinstance(part, T.Tensor) and part.ndim == 0):  # (a 0-d tensor selects, as an int)
            part, found = T.tensor_gather.as_index(part, ""), True
        out.append(part)
    return tuple(out) if found else None


def _take(x: "T.Tensor", index: Any) -> "T.Tensor | None":
    """``x[idx]`` with integer index tensors, for a tensor whose result is a graph node (traced,
    recorded, or requiring grad): ``x[idx]``, ``x[:, idx]``, ``x[..., idx, :]`` (one index tensor
    after full slices) is one gather of x along that axis (negative indices count from the end,
    others out of range raise torch's IndexError); other combinations of a recorded tensor
    gather its flattened elements at the positions numpy's indexing finds. None for indices
    without an integer tensor, and for tensors with values that need no graph."""
    parts = _integer_parts(index)
    if parts is None or not (x._symbolic() or isinstance(x._node, recording.Recorded)
                             or (x.requires_grad and is_grad_enabled())):
        return None
    for k, part in enumerate(parts):  # (``in`` would compare tensors elementwise)
        if part is Ellipsis:
            parts = parts[:k] + (slice(None),) * (x.ndim - len(parts) + 1) + parts[k + 1:]
            break
    tensors = [k for k, p in enumerate(parts) if isinstance(p, T.Tensor)]
    whole = all(isinstance(p, slice) and p == slice(None) for k, p in enumerate(parts) if k != tensors[0])
    if len(tensors) == 1 and whole and len(parts) <= x.ndim:
        axis = tensors[0]
        b = T._builder(x, parts[axis])
        return T.tensor_gather.select(b, x, parts[axis], axis, "index", "IndexBackward0")
    if x._symbolic():
        raise TraceError("inside a traced forward, integer index tensors are supported one at a time after full "
                         "slices (x[idx], x[:, idx]); use index_select or gather")
    numpy_parts = _numpy_index(tuple(p.array if isinstance(p, T.Tensor) else p for p in parts))
    try:
        positions = np.arange(int(np.prod(x.shape)), dtype=np.int64).reshape(tuple(x.shape))[numpy_parts]
    except IndexError as error:
        raise IndexError(_message(error, tuple(x.shape), numpy_parts)) from None
    b = T._builder(x)
    flat = T._wrap(b.reshape(T.as_tensor(x, b).node, (int(np.prod(x.shape)),)), [x], "ViewBackward0")
    return T.tensor_gather.select(b, flat, T.Tensor(constant(np.asarray(positions), "i64")), 0, "index",
                                  "IndexBackward0")


def get(x: "T.Tensor", index: Any) -> "T.Tensor":
    """``x[index]``: a view for ints, slices, None and ``...``; a copy for index tensors and masks."""
    taken = _take(x, index)
    if taken is not None:
        return taken
    if isinstance(x._node, recording.Recorded) or (x.requires_grad and is_grad_enabled()):
        selected = _select(x, index)
        if selected is None:
            parts = _numpy_index(index)
            selected = _gather(x, parts, _grad_name(parts, tuple(x.shape), isinstance(index, tuple)))
        return selected
    parts = _checked(x, index)
    array = x.array
    try:
        value = array[parts]
    except IndexError as error:
        raise IndexError(_message(error, array.shape, parts)) from None
    value = np.asarray(value) if not isinstance(value, np.ndarray) else value
    return T._wrap(constant(value, x._node.dtype), [x], _grad_name(parts, array.shape, isinstance(index, tuple)))


def put(x: "T.Tensor", index: Any, value: Any) -> None:
    """``x[index] = value``, in place: ``value`` (a number or a tensor broadcast to the selection)
    converted to x's dtype."""
    parts = _checked(x, index)
    if x.requires_grad and x.is_leaf and is_grad_enabled():
        raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation.")
    recording.before_write(x.array)  # recorded work that read these values gets them first
    array = x.array
    source = value.array if isinstance(value, T.Tensor) else np.asarray(value)
    try:
        with np.errstate(all="ignore"):
            array[parts] = source.astype(array.dtype, copy=False)
    except IndexError as error:
        raise IndexError(_message(error, array.shape, parts)) from None
    except ValueError as error:
        raise RuntimeError(f"shape mismatch: value tensor of shape {list(source.shape)} cannot be broadcast to "
                           f"the indexed result ({error})") from None


def _message(error: IndexError, shape: tuple, parts: tuple) -> str:
    """torch's words for numpy's indexing error."""
    if not shape:
        return "invalid index of a 0-dim tensor. Use `tensor.item()` in Python or `tensor.item<T>()` in C++ to " \
               "convert a 0-dim tensor to a number"
    for axis, part in enumerate(p for p in parts if p is not None and p is not Ellipsis):
        if isinstance(part, int) and axis < len(shape) and not -shape[axis] <= part < shape[axis]:
            return f"index {part} is out of bounds for dimension {axis} with size {shape[axis]}"
        if isinstance(part, np.ndarray) and part.dtype == np.bool_ and part.shape != shape[axis:axis + part.ndim]:
            return (f"The shape of the mask {list(part.shape)} at index {axis} does not match the shape of the "
                    f"indexed tensor {list(shape)} at index {axis}")
    if sum(1 for p in parts if p is not None and p is not Ellipsis) > len(shape):
        return f"too many indices for tensor of dimension {len(shape)}"
    return str(error).replace(" for axis ", " for dimension ")
