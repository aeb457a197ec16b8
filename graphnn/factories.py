"""Making tensors: ``tensor``, ``zeros``, ``arange``, ``randn``, ``cat``... as PyTorch's.

Every random factory draws from graphnn's one generator (graphnn.random), which
``graphnn.manual_seed`` also resets for initialisation, DataLoader shuffling and dropout, or
from a ``Generator`` passed as ``generator=``.
"""
from __future__ import annotations

import functools
import itertools
import math
from typing import Any, Sequence

import numpy as np
import sympy

from graphnn import dtypes, random, recording
from graphnn import pointwise as pw
from graphnn.eager import constant, is_grad_enabled
from graphnn.tensors import Tensor, _constant_of, _wrap, as_tensor

Generator = random.Generator


def _sizes(size: Sequence) -> tuple[int, ...]:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    out = []
    for d in size:
        if isinstance(d, Tensor):
            d = d.item()
        if not isinstance(d, (int, np.integer)) or isinstance(d, bool):
            raise TypeError(f"size must be a tuple of ints, but got an element of type {type(d).__name__}")
        if d < 0:
            raise RuntimeError(f"Trying to create tensor with negative dimension {d}: {list(size)}")
        out.append(int(d))
    return tuple(out)


def _make(array: np.ndarray, dtype: Any, requires_grad: bool = False, default: Any = None) -> Tensor:
    d = dtypes.as_dtype(dtype) if dtype is not None else (default or dtypes.get_default_dtype())
    t = Tensor(_constant_of(array, d))
    if requires_grad:
        t.requires_grad = True
    return t


def _check_device(device: Any) -> None:
    if device is not None:
        from graphnn.device import device as as_device

        as_device(device).check_tensor_placement()


def tensor(data: Any, dtype=None, device=None, requires_grad: bool = False, pin_memory: bool = False) -> Tensor:
    """A new tensor holding a copy of ``data`` (nested lists, numbers, arrays, tensors). Its dtype
    is torch's inference: the promotion of every element's own (Python floats the default float
    dtype, ints int64, numpy scalars, arrays and tensors theirs)."""
    _check_device(device)
    target = None if dtype is None else dtypes.as_dtype(dtype)
    if isinstance(data, Tensor):
        array, inferred = data.array.copy(), data.dtype
    elif isinstance(data, np.ndarray):
        array, inferred = np.array(data), dtypes.of_array(data)
    else:
        _check_nesting(data)
        leaves = list(_flat(data))
        inferred = _inferred_dtype(leaves)
        _check_range(leaves, target or inferred)
        # numbers are gathered as float64 (rounded once to their dtype) unless they stay integers
        integral = not inferred.is_floating_point and (target is None or target.kind in "iu")
        array = np.array(_plain(data), dtype=inferred.numpy if integral else np.float64)
    return _make(array, target, requires_grad, inferred)


_SEQUENCES = (list, tuple, range)


def _flat(data):
    """The elements of nested sequences (a tensor or an array is one element)."""
    if isinstance(data, _SEQUENCES):
        for v in data:
            yield from _flat(v)
    else:
        yield data


def _plain(data):
    """Nested lists of numbers and arrays: a tensor inside is one number, as torch reads it."""
    if isinstance(data, _SEQUENCES):
        return [_plain(v) for v in data]
    if isinstance(data, Tensor):
        if data.numel() != 1:
            raise ValueError("only one element tensors can be converted to Python scalars")
        return data.array.reshape(())
    return data


def _length(value) -> int | None:
    if isinstance(value, _SEQUENCES):
        return len(value)
    if isinstance(value, np.ndarray) and value.ndim > 0:
        return len(value)
    return None


def _check_nesting(data, depth: int = 0) -> None:
    """Nested sequences must be rectangular (torch's message names the first ragged one)."""
    if not isinstance(data, _SEQUENCES) or not data:
        return
    lengths = [_length(v) for v in data]
    for v, n in zip(data[1:], lengths[1:]):
        if (n is None) != (lengths[0] is None):  # a number where a sequence is expected, or the reverse
            raise TypeError(f"not a sequence: expected {'a number' if lengths[0] is None else 'a sequence'} at "
                            f"dim {depth + 1} like the first element, got {type(v).__name__}")
        if n != lengths[0]:
            raise ValueError(f"expected sequence of length {lengths[0]} at dim {depth + 1} (got {n})")
    for v in data:
        _check_nesting(v, depth + 1)


def _leaf_dtype(value) -> dtypes.dtype:
    if isinstance(value, (bool, np.bool_)):
        return dtypes.bool_
    if isinstance(value, Tensor):
        return value.dtype
    if isinstance(value, (np.ndarray, np.generic)) and np.asarray(value).dtype.kind in "biuf":
        return dtypes.of_array(np.asarray(value))
    if isinstance(value, int):
        return dtypes.int64
    if isinstance(value, float):
        return dtypes.get_default_dtype()
    if isinstance(value, (str, bytes)):
        raise TypeError(f"new(): invalid data type '{type(value).__name__}'")
    if isinstance(value, (complex, np.complexfloating)):
        raise TypeError("complex tensors are not supported by graphnn")
    raise RuntimeError(f"Could not infer dtype of {type(value).__name__}")


def _inferred_dtype(leaves: list) -> dtypes.dtype:
    found = None
    for v in leaves:
        d = _leaf_dtype(v)
        found = d if found is None else dtypes.promote_types(found, d)
    return found or dtypes.get_default_dtype()


def _check_range(leaves: list, target: dtypes.dtype) -> None:
    """Python numbers converted to an integer dtype must fit it (torch raises, not wraps)."""
    if target.is_floating_point or target is dtypes.bool_:
        return
    info = np.iinfo(target.numpy)
    for v in leaves:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if isinstance(v, int) and not -2**63 <= v < 2**63:
            raise ValueError("Overflow when unpacking long long")
        if not (math.isfinite(v) and info.min <= math.trunc(v) <= info.max):
            raise RuntimeError(f"value cannot be converted to type {target.name} without overflow")


def as_tensor_(data: Any, dtype=None, device=None) -> Tensor:
    """``torch.as_tensor``: the tensor itself or a tensor sharing a numpy array's memory when
    the dtype allows, else a copy."""
    _check_device(device)
    if isinstance(data, Tensor):
        return data if dtype is None else data.to(dtype)
    if isinstance(data, np.ndarray):
        return _make(data, dtype, default=dtypes.of_array(data))
    return tensor(data, dtype)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing ``array``'s memory (writes through either show in both)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(array).__name__})")
    d = dtypes.of_array(array)
    if d.numpy != array.dtype:
        raise TypeError(f"can't convert np.ndarray of type numpy.{array.dtype}. The only supported types are: "
                        "float64, float32, int64, int32, and bool.")
    return Tensor(constant(array, d.ir))


def _filled(size, value, dtype, requires_grad, default=None) -> Tensor:
    shape = _sizes(size)
    d = dtypes.as_dtype(dtype) if dtype is not None else (default or dtypes.get_default_dtype())
    return _make(np.full(shape, value, d.numpy), d, requires_grad)


def zeros(*size, dtype=None, device=None, requires_grad: bool = False, out=None) -> Tensor:
    _check_device(device)
    return _filled(size, 0, dtype, requires_grad)


def ones(*size, dtype=None, device=None, requires_grad: bool = False, out=None) -> Tensor:
    _check_device(device)
    return _filled(size, 1, dtype, requires_grad)


def empty(*size, dtype=None, device=None, requires_grad: bool = False, out=None) -> Tensor:
    """Like ``zeros`` (graphnn initialises what PyTorch leaves undefined)."""
    _check_device(device)
    return _filled(size, 0, dtype, requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A tensor of ``size`` (a sequence) filled with ``fill_value``, of its dtype by default."""
    _check_device(device)
    if not isinstance(size, (tuple, list)):
        raise TypeError(f"full(): argument 'size' (position 1) must be tuple of ints, not {type(size).__name__}")
    default = dtypes.scalar_dtype(fill_value) if dtype is None else None
    return _filled((tuple(size),), fill_value, dtype, requires_grad, default)


def _like(t: Tensor, value, dtype, requires_grad) -> Tensor:
    return _filled((tuple(t.shape),), value, dtype if dtype is not None else t.dtype, requires_grad)


def zeros_like(input: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _like(as_tensor(input), 0, dtype, requires_grad)


def ones_like(input: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _like(as_tensor(input), 1, dtype, requires_grad)


def empty_like(input: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _like(as_tensor(input), 0, dtype, requires_grad)


def full_like(input: Tensor, fill_value, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _like(as_tensor(input), fill_value, dtype, requires_grad)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """``arange(end)``, ``arange(start, end, step)``: int64 from ints, else the default float;
    the values torch's CPU kernel computes (see ``_arange_values``)."""
    _check_device(device)
    if end is None:
        start, end = 0, start
    values = [v.item() if isinstance(v, Tensor) else v for v in (start, end, step)]
    integral = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values)
    d = dtypes.as_dtype(dtype) if dtype is not None else (dtypes.int64 if integral else dtypes.get_default_dtype())
    if d is dtypes.bool_:
        raise NotImplementedError("\"arange_cpu\" not implemented for 'Bool'")
    if values[2] == 0:
        raise RuntimeError("step must be nonzero")
    first, last, by = (v if d.is_floating_point else math.trunc(v) for v in values)  # torch's accumulate type
    if by == 0 and d is dtypes.int64:
        raise ValueError("step must be nonzero")
    if (values[1] - values[0]) * by < 0:
        raise RuntimeError("upper bound and lower bound inconsistent with step sign")
    if d is dtypes.int64:
        count = -(-(last - first) // by)
    else:
        count = max(0, math.ceil((values[1] - values[0]) / values[2]))
    if not d.is_floating_point:
        return _make(first + np.arange(count, dtype=np.int64) * by, d, requires_grad)
    return _make(_arange_values(float(first), float(by), count, d.numpy), d, requires_grad)


def _fma(a, b, c) -> np.ndarray:
    """``a * b + c`` in float64 rounded once, as a fused multiply-add: the product's rounding
    error is recovered exactly (Dekker's split) and added back with the sum's (Knuth's TwoSum)."""
    a, b, c = (np.asarray(v, np.float64) for v in (a, b, c))
    product = a * b
    split = 134217729.0  # 2**27 + 1
    a_hi = a * split - (a * split - a)
    b_hi = b * split - (b * split - b)
    a_lo, b_lo = a - a_hi, b - b_hi
    product_error = ((a_hi * b_hi - product) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo
    total = product + c
    back = total - product
    sum_error = (product - (total - back)) + (c - back)
    return total + (sum_error + product_error)


def _arange_values(start: float, step: float, count: int, numpy_dtype) -> np.ndarray:
    """What torch's x86 CPU kernel computes for a float arange: ``start + i * step`` fused in
    double, except in its vectorised loop (runs of two 256-bit vectors), where each vector
    starts from ``start + p * step`` rounded to the dtype and adds ``k * step`` (fused) to it.
    Printing shows the difference (``-1.5 + 5 * 0.3`` is -5.55e-17 there, not 0)."""
    width = 32 // np.dtype(numpy_dtype).itemsize
    vectorised = count // (2 * width) * (2 * width)
    index = np.arange(count, dtype=np.float64)
    base = _fma(step, index - index % width, start).astype(numpy_dtype).astype(np.float64)
    out = _fma(index % width, step, base)
    out[vectorised:] = _fma(step, index[vectorised:], start)
    return out.astype(numpy_dtype)


def linspace(start, end, steps: int, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """``steps`` values from ``start`` to ``end``, computed as torch's CPU kernel does: in the
    dtype (double for integer dtypes), the first half stepping up from ``start`` and the second
    down from ``end``, each ``a + step * i`` fused (its rounding shows: the middle of
    linspace(-1, 1, 7) is -2.98e-08)."""
    _check_device(device)
    if steps < 0:
        raise RuntimeError("number of steps must be non-negative")
    d = dtypes.as_dtype(dtype) if dtype is not None else dtypes.get_default_dtype()
    if d is dtypes.bool_:
        raise NotImplementedError("\"linspace_cpu\" not implemented for 'Bool'")
    first, last = (v.item() if isinstance(v, Tensor) else v for v in (start, end))
    if not d.is_floating_point:
        first, last = math.trunc(first), math.trunc(last)
    work = d.numpy.type if d.is_floating_point else np.float64
    first, last = work(first), work(last)
    if steps == 1:
        return _make(np.array([first]), d, requires_grad)
    step = work((last - first) / work(steps - 1))
    index = np.arange(steps, dtype=np.float64)
    up = _fma(step, index, first).astype(work)
    down = _fma(-step, steps - 1 - index, last).astype(work)
    return _make(np.where(index < steps // 2, up, down), d, requires_grad)


def logspace(start, end, steps: int, base: float = 10.0, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _make(np.power(base, linspace(start, end, steps, dtype=dtypes.float64).array), dtype, requires_grad)


def eye(n: int, m: int | None = None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    _check_device(device)
    return _make(np.eye(n, n if m is None else m), dtype, requires_grad)


def _generator(generator) -> np.random.Generator:
    return random.generator() if generator is None else generator.numpy


def _floating(dtype, kernel: str):
    """The dtype of a continuous draw: a float one (torch has no kernel for the others)."""
    d = dtypes.as_dtype(dtype) if dtype is not None else dtypes.get_default_dtype()
    if not d.is_floating_point:
        raise NotImplementedError(f"\"{kernel}\" not implemented for '{dtypes.torch_type_name(d)}'")
    return d


def rand(*size, generator=None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Uniform [0, 1) draws."""
    _check_device(device)
    d = _floating(dtype, "check_uniform_bounds")
    return _make(_generator(generator).random(_sizes(size)), d, requires_grad)


def randn(*size, generator=None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Standard normal draws."""
    _check_device(device)
    d = _floating(dtype, "normal_kernel_cpu")
    return _make(_generator(generator).standard_normal(_sizes(size)), d, requires_grad)


def randint(low, high=None, size=None, generator=None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Integers in [low, high) (``randint(high, size)`` starts at 0), int64 by default."""
    _check_device(device)
    if size is None:
        low, high, size = 0, low, high
    if size is None:
        raise TypeError("randint() missing 1 required positional argument: 'size'")
    if high <= low:
        raise RuntimeError(f"random_ expects 'from' to be less than 'to', but got from={low} >= to={high}")
    return _make(_generator(generator).integers(low, high, _sizes((size,) if isinstance(size, int) else (tuple(size),))),
                 dtype, requires_grad, dtypes.int64)


def randperm(n: int, generator=None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A random permutation of 0..n-1 (int64)."""
    _check_device(device)
    return _make(_generator(generator).permutation(int(n)), dtype, requires_grad, dtypes.int64)


def rand_like(input: Tensor, dtype=None, generator=None) -> Tensor:
    return rand(*input.shape, generator=generator, dtype=dtype or input.dtype)


def randn_like(input: Tensor, dtype=None, generator=None) -> Tensor:
    return randn(*input.shape, generator=generator, dtype=dtype or input.dtype)


def normal(mean=0.0, std=1.0, size=None, generator=None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Normal draws: ``normal(mean, std, size)`` with numbers, or elementwise means and deviations
    given as tensors (broadcast together)."""
    _check_device(device)
    g = _generator(generator)
    if isinstance(mean, Tensor) or isinstance(std, Tensor):
        m = mean.array if isinstance(mean, Tensor) else mean
        s = std.array if isinstance(std, Tensor) else std
        shape = np.broadcast_shapes(np.shape(m), np.shape(s))
        if np.any(np.asarray(s) < 0):
            raise RuntimeError("normal expects all elements of std >= 0.0")
        source = mean if isinstance(mean, Tensor) else std
        d = _floating(dtype or source.dtype, "normal_kernel_cpu")
        return _make(m + s * g.standard_normal(shape), d, requires_grad)
    if size is None:
        raise TypeError("normal() with number mean and std needs a size")
    if std < 0:
        raise RuntimeError(f"normal expects std >= 0.0, but found std {std}")
    d = _floating(dtype, "normal_kernel_cpu")
    shape = _sizes((tuple(size),) if isinstance(size, (tuple, list)) else (size,))
    return _make(mean + std * g.standard_normal(shape), d, requires_grad)


def bernoulli(input: Tensor, p=None, generator=None) -> Tensor:
    probs = input.array if p is None else np.full(input.shape, p)
    return _make((_generator(generator).random(probs.shape) < probs).astype(np.float64), input.dtype)


def multinomial(input: Tensor, num_samples: int, replacement: bool = False, generator=None) -> Tensor:
    weights = np.asarray(input.array, np.float64)
    g = _generator(generator)
    rows = weights.reshape(-1, weights.shape[-1])
    picks = [g.choice(rows.shape[1], num_samples, replace=replacement, p=r / r.sum()) for r in rows]
    return _make(np.array(picks).reshape(weights.shape[:-1] + (num_samples,)), dtypes.int64)


# -- joining ------------------------------------------------------------------------------------------
def cat(tensors: Sequence, dim: int = 0, out=None) -> Tensor:
    """Join tensors along an existing dimension (dtypes promote as in arithmetic)."""
    tensors = [t if isinstance(t, Tensor) else as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("torch.cat(): expected a non-empty list of Tensors")
    in_graph = any(t._symbolic() or isinstance(t._node, recording.Recorded) for t in tensors) or \
        (is_grad_enabled() and any(t.requires_grad for t in tensors))
    # torch skips 1-D empty tensors in cat (legacy behaviour)
    kept = [t for t in tensors if not (t.ndim == 1 and t.shape[0] == 0)] or tensors[:1]
    rank = kept[0].ndim
    if rank == 0:
        raise RuntimeError("zero-dimensional tensor (at position 0) cannot be concatenated")
    d = _dim(dim, rank)
    for k, t in enumerate(kept):
        if t.ndim != rank:
            raise RuntimeError(f"Tensors must have same number of dimensions: got {rank} and {t.ndim}")
        for axis in range(rank):
            if axis != d and t.shape[axis] != kept[0].shape[axis]:
                raise RuntimeError(f"Sizes of tensors must match except in dimension {d}. Expected size "
                                   f"{kept[0].shape[axis]} but got size {t.shape[axis]} for tensor number {k} in the list.")
    common = kept[0].dtype
    for t in kept[1:]:
        common = dtypes.promote_types(common, t.dtype)
    if in_graph:
        return _graph_cat(kept, d, common, tensors)
    array = np.concatenate([t.array for t in kept], axis=d).astype(common.numpy, copy=False)
    return _wrap(constant(array, common.ir), tensors, "CatBackward0")


def _graph_cat(kept: list, d: int, common: dtypes.dtype, tensors: list) -> Tensor:
    """cat of symbolic or recorded tensors: each piece padded to the whole shape at its offset
    along ``d`` (a view), and the padded pieces added in one pointwise node, which fuses into one
    kernel reading each piece where it lies. Floats pad with -0.0, the one value whose addition
    leaves every float (-0.0 included) as it is; the gradient of each piece is a slice of the
    result's gradient."""
    from graphnn.tensors import _builder, _float32_only

    b = _builder(*kept)
    _float32_only(b, *kept)
    nodes = [as_tensor(t, b).node for t in kept]
    ir = "f32" if common.is_floating_point else common.ir
    nodes = [n if n.dtype == ir else b.pointwise(pw.to_bool if ir == "bool" else pw.cast, n, dtype=ir) for n in nodes]
    sizes = [n.shape[d] for n in nodes]
    offsets = itertools.accumulate(sizes[:-1], initial=0)
    placed = [(n, offset) for n, offset in zip(nodes, offsets) if n.shape[d] != 0] or [(nodes[0], 0)]
    shape = tuple(nodes[0].shape[:d]) + (sum(sizes),) + tuple(nodes[0].shape[d + 1:])
    fill = -0.0 if ir == "f32" else 0.0
    padded = [b.pad(n, tuple(offset if k == d else 0 for k in range(len(shape))), (1,) * len(shape), shape, fill)
              for n, offset in placed]
    while len(padded) > 1:  # pointwise ops take at most len(pw.X) arguments: groups of them, then their sum
        groups = [padded[k:k + len(pw.X)] for k in range(0, len(padded), len(pw.X))]
        padded = [g[0] if len(g) == 1 else b.pointwise(_joined(len(g), ir == "bool"), *g, dtype=ir) for g in groups]
    return _wrap(padded[0], tensors, "CatBackward0")


@functools.lru_cache(maxsize=None)
def _joined(count: int, logical: bool) -> pw.PointwiseFn:
    """The sum of ``count`` padded pieces (for bools: whether any is true)."""
    if logical:
        return pw.fn("cat", sympy.Piecewise((1, sympy.Or(*(sympy.Ne(x, 0) for x in pw.X[:count]))), (0, True)),
                     nargs=count)
    return pw.fn("cat", sympy.Add(*pw.X[:count]), nargs=count)


concat = concatenate = cat


def stack(tensors: Sequence, dim: int = 0, out=None) -> Tensor:
    """Join same-shaped tensors along a new dimension."""
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    for k, t in enumerate(tensors):
        if tuple(t.shape) != tuple(tensors[0].shape):
            raise RuntimeError(f"stack expects each tensor to be equal size, but got {list(tensors[0].shape)} at entry 0 "
                               f"and {list(t.shape)} at entry {k}")
    d = _dim(dim, tensors[0].ndim + 1)
    return _named(cat([t.unsqueeze(d) for t in tensors], d), "StackBackward0")


def _named(t: Tensor, name: str) -> Tensor:
    from graphnn.tensors import _named as rename

    return rename(t, name)


def _dim(dim: int, rank: int) -> int:
    if not -rank <= dim < rank:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-rank}, {rank - 1}], but got {dim})")
    return dim % rank


def where(condition: Tensor, input=None, other=None) -> Tensor:
    """Elements of ``input`` where ``condition`` holds, else of ``other``; with only a condition,
    the indices where it holds (a tuple of int64 tensors)."""
    condition = as_tensor(condition)
    if condition.dtype is not dtypes.bool_:
        raise RuntimeError("where expected condition to be a boolean tensor, but got a tensor with dtype "
                           + dtypes.torch_type_name(condition.dtype))
    if input is None and other is None:
        return tuple(Tensor(constant(i, "i64")) for i in np.nonzero(condition.array))
    from graphnn.eager import EAGER, cast
    from graphnn.tensors import _builder, _eager_node, _operand_dtype, where_node

    b = _builder(condition, input, other)
    if b is not EAGER:  # traced or recorded: the same op, in the graph
        return _wrap(where_node(b, condition, input, other), [input, other], "WhereBackward0")
    d = dtypes.result_type([_operand_dtype(input), _operand_dtype(other)])
    nodes = [cast(condition.node, "bool")] + [cast(_eager_node(v, d), d.ir) for v in (input, other)]
    return _wrap(EAGER.apply(pw.where, *nodes, dtype=d.ir), [input, other], "WhereBackward0")


def is_tensor(obj: Any) -> bool:
    return isinstance(obj, Tensor)


def numel(input: Tensor) -> int:
    return int(input.numel())
