"""Indexing tensors: ``x[i]``, ``x[:, 0]``, ``x[None, ..., ::2]``, ``x[mask]``, ``x[idx]`` and
assignment to them, with PyTorch's semantics.

A concrete tensor is indexed with numpy (basic indexing is a view sharing memory; integer and
boolean tensors index as numpy's advanced indexing, which PyTorch follows). A symbolic tensor (in
a traced forward) or a recorded one (for backward) is indexed in the graph: ints, slices (bounds
wrapped and clamped as PyTorch does), None, ``...`` and a list or 1-D tensor of evenly spaced
increasing ints (``x[:, [-1]]``, ``x[[0, 2, 4]]``) become one ``slice`` node and a reshape, so a
part costs no copy and its gradient is a ``pad``. Other integer index tensors are a gather
(graphnn.tensor_gather); a boolean mask of a recorded tensor goes through a 0/1 selection
matrix, and of a traced one is an error (masked_fill and torch.where keep shapes static).

An axis whose size is an expression of the batch size B is not clamped: its bounds are fixed
positions from the start (``x[:2]``) or from the end (``x[-1]``), and the program checks, before it
first runs with a batch size, that they fit.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import sympy

from graphnn import pointwise as pw
from graphnn import recording
from graphnn.eager import EAGER, constant, is_grad_enabled
from graphnn.errors import TraceError
from graphnn.ir import Dim, dim, format_dim
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
        raise TraceError("assigning to part of a tensor inside a traced forward, or of one recorded for backward, "
                         "is not supported: a graph has no storage to write; build the new value out of place "
                         "(torch.where, masked_fill, torch.cat)")
    return _numpy_index(index)


GATHER_LIMIT = 1 << 24
"""The largest (elements of x) * (elements picked) a recorded gather expresses as a selection
matrix; larger ones wait for a gather primitive."""


def _gather(x: "T.Tensor", parts: tuple, grad: str) -> "T.Tensor":
    """Any index of a recorded tensor as primitive ops: the positions it picks, found by indexing
    an array of element numbers with numpy, select x's elements through a 0/1 matrix (a matmul,
    whose gradient sends each picked element's gradient back to its place)."""
    positions = _torch_order(np.arange(int(np.prod(x.shape)), dtype=np.int64).reshape(tuple(x.shape)), parts)
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
        positions = _torch_order(np.arange(int(np.prod(x.shape)), dtype=np.int64).reshape(tuple(x.shape)),
                                 numpy_parts)
    except IndexError as error:
        raise IndexError(_message(error, tuple(x.shape), numpy_parts)) from None
    b = T._builder(x)
    flat = T._wrap(b.reshape(T.as_tensor(x, b).node, (int(np.prod(x.shape)),)), [x], "ViewBackward0")
    return T.tensor_gather.select(b, flat, T.Tensor(constant(np.asarray(positions), "i64")), 0, "index",
                                  "IndexBackward0")


def get(x: "T.Tensor", index: Any) -> "T.Tensor":
    """``x[index]``: a view for ints, slices, None and ``...``; a copy for index tensors and masks."""
    if x._symbolic() or isinstance(x._node, recording.Recorded) or (x.requires_grad and is_grad_enabled()):
        return _graph_get(x, index)
    parts = _numpy_index(index)
    array = x.array
    try:
        value = _torch_order(array, parts)
    except IndexError as error:
        raise IndexError(_message(error, array.shape, parts)) from None
    value = np.asarray(value) if not isinstance(value, np.ndarray) else value
    return T._wrap(constant(value, x._node.dtype), [x], _grad_name(parts, array.shape, isinstance(index, tuple)))


def _torch_order(array: np.ndarray, parts: tuple) -> np.ndarray:
    """``array[parts]`` as PyTorch indexes: ints select before integer index arrays apply, so with
    both an index array's axis stays where it is (numpy would move it first when an int and an
    array are apart: x[1, :, [0, 2]] is (3, 2) in PyTorch, (2, 3) in numpy)."""
    arrays = [p for p in parts if isinstance(p, np.ndarray)]
    ints = [p for p in parts if isinstance(p, int) and not isinstance(p, bool)]
    if not arrays or not ints or any(a.dtype == np.bool_ for a in arrays) or \
            any(isinstance(p, (bool, np.bool_)) for p in parts):
        return array[parts]
    kept = lambda p: p is None or p is Ellipsis or (isinstance(p, int) and not isinstance(p, bool))  # noqa: E731
    selected = array[tuple(p if kept(p) else slice(None) for p in parts)]
    return selected[tuple(slice(None) if p is None else p for p in parts if not (isinstance(p, int) and kept(p)))]


# -- indexing in the graph ---------------------------------------------------------------------------
def _graph_get(x: "T.Tensor", index: Any) -> "T.Tensor":
    """``x[index]`` for a symbolic or recorded tensor: one strided slice and a reshape (see the
    module docstring), or, for an index that is not a strided part, a gather."""
    b = T._builder(x)
    recorded = isinstance(b, recording.TapeBuilder)
    raw = index if isinstance(index, tuple) else (index,)
    # (a tensor without a value, computed in the traced forward, stays a tensor: it needs a gather)
    parts = tuple(p if isinstance(p, T.Tensor) and p._symbolic() else _index_part(p) for p in raw)
    arrays = [p for p in parts if isinstance(p, (np.ndarray, T.Tensor, bool, np.bool_))]
    plan = _strided_plan(x, parts, b) if len(arrays) <= 1 else None
    if plan is None:
        taken = _take(x, index)  # integer index tensors: a gather
        if taken is not None:
            return taken
        if not recorded:
            what = _describe(arrays)
            advice = ("its result's shape would depend on the values; use masked_fill or torch.where" if "mask" in what
                      else "use gather or index_select with an index tensor")
            raise TraceError(f"{b.where()}: indexing with {what} inside a traced forward is not supported: {advice}, "
                             "or index x.detach() outside the traced forward")
        numpy_parts = _numpy_index(index)
        return _gather(x, numpy_parts, _grad_name(numpy_parts, tuple(x.shape), isinstance(index, tuple)))
    start, step, sizes, shape = plan
    node = b.reshape(b.slice(T.as_tensor(x, b).node, start, step, sizes), shape)
    grad = _grad_name(parts, tuple(x.shape), isinstance(index, tuple)) if recorded else None
    return T._wrap(node, [x], grad)


def _describe(arrays: list) -> str:
    for p in arrays:
        if isinstance(p, T.Tensor):
            return f"{'a boolean mask' if p.dtype.name == 'bool' else 'an integer tensor'} computed in the forward"
        if isinstance(p, (bool, np.bool_)) or p.dtype == np.bool_:
            return "a boolean mask"
    if len(arrays) > 1:
        return "several index lists or tensors"
    return f"the integer list or tensor {arrays[0].tolist()!r}"


def _strided_plan(x: "T.Tensor", parts: tuple, b) -> tuple | None:
    """(start, step, size of the slice per axis of x, shape of the result) for an index of ints,
    slices, None, ``...`` and at most one list of evenly spaced increasing ints; None when the
    index needs a gather."""
    shape = tuple(x.shape)
    rank = len(shape)
    if sum(1 for p in parts if p is Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    consumed = sum(1 for p in parts if p is not None and p is not Ellipsis and not isinstance(p, (bool, np.bool_)))
    if consumed > rank:
        if rank == 0:
            raise IndexError("invalid index of a 0-dim tensor. Use `tensor.item()` in Python or `tensor.item<T>()` in "
                             "C++ to convert a 0-dim tensor to a number")
        raise IndexError(f"too many indices for tensor of dimension {rank}")
    start, step, sizes, out = [0] * rank, [1] * rank, list(shape), []
    axis = 0
    for p in parts:
        if p is None or (isinstance(p, (bool, np.bool_)) and p):
            out.append(1)
        elif isinstance(p, (bool, np.bool_, T.Tensor)):
            return None  # x[False] (empty along a new axis) and tensors computed in the forward: a gather
        elif p is Ellipsis:
            kept = rank - consumed
            out.extend(shape[axis:axis + kept])
            axis += kept
        elif isinstance(p, int):
            start[axis], sizes[axis] = _position(p, shape[axis], axis, b), 1
            axis += 1
        else:
            found = _range(p, shape[axis], axis, b) if isinstance(p, slice) else _progression(p, shape[axis], axis, b)
            if found is None:
                return None
            start[axis], sizes[axis], step[axis] = found
            out.append(sizes[axis])
            axis += 1
    out.extend(shape[axis:])
    return start, step, sizes, tuple(out)


def _fits(b, condition, what: str, axis: int, size: Dim) -> None:
    """A bound on an axis whose size depends on the batch: checked when the batch size is known
    (PyTorch clamps bounds to a size it knows; a graph for every batch size cannot)."""
    b.check(sympy.sympify(condition), f"indexing dimension {axis} of size {format_dim(size)} with {what} needs "
                                      f"{sympy.sympify(condition)}")


def _position(k: int, size: Dim, axis: int, b) -> Dim:
    """Where index ``k`` (negative from the end) of an axis of ``size`` lands."""
    if isinstance(size, int):
        if not -size <= k < size:
            raise IndexError(f"index {k} is out of bounds for dimension {axis} with size {size}")
        return k % size
    if k >= 0:
        _fits(b, size > k, str(k), axis, size)
        return k
    _fits(b, size >= -k, str(k), axis, size)
    return dim(size + k)


def _range(part: slice, size: Dim, axis: int, b) -> tuple:
    """(start, size, step) of ``part`` along an axis of ``size``: PyTorch's bounds, wrapped from the
    end and clamped. Along a size that depends on the batch, a bound stays a position from the
    start or from the end, checked to fit, and the slice's size follows: a whole number, or the
    size minus a whole number for a slice that keeps all but its ends (step 1)."""
    step = 1 if part.step is None else part.step
    if isinstance(size, int):
        return (*_clamped(part, size), step)
    text = f"[{'' if part.start is None else part.start}:{'' if part.stop is None else part.stop}" + \
        ("" if part.step is None else f":{part.step}") + "]"
    first = 0 if part.start is None else part.start
    stop = 0 if part.stop is None else part.stop
    from_end = (part.start is not None and first < 0, part.stop is None or stop < 0)
    if from_end == (False, False) or from_end == (True, True):
        count = len(range(first, stop, step))
        if count:
            needed = -first if from_end[0] else first + (count - 1) * step + 1
            _fits(b, size >= needed, text, axis, size)
        return (dim(size + first) if from_end[0] else first), count, step
    if from_end == (True, False) or step != 1:
        raise b.error(f"indexing dimension {axis} of size {format_dim(size)} with {text}: its size would change "
                      f"{'against' if from_end[0] else 'by a fraction of'} the batch size, which graphnn's shapes "
                      "cannot express; slice a fixed number of positions")
    _fits(b, size >= first - stop, text, axis, size)
    return first, dim(size + stop - first), 1


def _clamped(part: slice, size: int) -> tuple[int, int]:
    first, stop, step = part.indices(size)
    return first, len(range(first, stop, step))


def _progression(values: np.ndarray, size: Dim, axis: int, b) -> tuple | None:
    """(start, size, step) of a list of evenly spaced increasing ints (negative ones from the end)
    along an axis of ``size``; None for another list (a gather)."""
    if values.dtype == np.bool_ or values.ndim != 1:
        return None
    values = [int(v) for v in values]
    if isinstance(size, int):
        for v in values:
            if not -size <= v < size:
                raise IndexError(f"index {v} is out of bounds for dimension {axis} with size {size}")
        values = [v % size for v in values]
    elif values and min(values) < 0 <= max(values):
        return None  # positions from both ends: a step that depends on the batch size
    if not values:
        return 0, 0, 1
    step = values[1] - values[0] if len(values) > 1 else 1
    if step < 1 or any(b_ - a_ != step for a_, b_ in zip(values, values[1:])):
        return None
    if isinstance(size, int):
        return values[0], len(values), step
    if values[0] < 0:
        _fits(b, size >= -values[0], str(values), axis, size)
        return dim(size + values[0]), len(values), step
    _fits(b, size > values[-1], str(values), axis, size)
    return values[0], len(values), step


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
