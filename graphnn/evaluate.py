"""Each primitive op evaluated with numpy: the executable definition of the op set.

``evaluate(node, args)`` computes one Node from its inputs' values. The reference interpreter
(runtime/reference.py) runs whole graphs with it, and eager tensors (graphnn.tensor) run each op
they apply with it, so an eager result, the reference and every compiled backend follow one
definition. Sums and products accumulate in float64 (integers in int64) and round once.
"""
from __future__ import annotations

import itertools
from typing import Callable

import numpy as np

from graphnn import attention_op, scan_op
from graphnn.ir import Node, evaluate_dim, evaluate_shape
from graphnn.pointwise import numpy_function

NUMPY_DTYPES = {"f32": np.float32, "f64": np.float64, "i64": np.int64, "i32": np.int32, "bool": np.bool_}
"""The numpy dtype of each graph dtype (i32 exists for eager tensors only; programs take i64)."""


def evaluate(node: Node, args: list, batch: int | None = None, precision: type = np.float32) -> np.ndarray:
    """The value of ``node`` (not a leaf) from its inputs' values; ``batch`` binds B, float
    results are computed in ``precision`` (float64 for gradient checks)."""
    shape = evaluate_shape(node.shape, batch)
    return EVALUATORS[node.op](node, args, shape, dtype_of(node, precision), batch)


def dtype_of(node: Node, precision: type = np.float32) -> type:
    return precision if node.dtype == "f32" else NUMPY_DTYPES[node.dtype]


def _accumulator(dtype: type) -> type:
    return np.float64 if np.dtype(dtype).kind == "f" else np.int64


def _pointwise(node, args, shape, dtype, batch):
    fn = numpy_function(node.attrs["expr"], len(args))
    # a 0-d operand (a number) meets shaped ones: numpy.select, which Piecewise prints as,
    # needs its conditions in one shape
    args = [np.broadcast_to(a, shape) if np.ndim(a) == 0 and len(shape) else a for a in args]
    value = fn(*args, batch, None)
    return np.broadcast_to(np.asarray(value), shape).astype(dtype)


def _reduce(node, args, shape, dtype, batch):
    # sums accumulate in float64 (rounded once at the end), so the oracle is at least as
    # accurate as any float32 backend: a float32 sum's rounding can push a statistic across an
    # activation's kink and send the reference down another path than the backends it checks
    if node.attrs["kind"] == "sum":
        return np.sum(args[0], axis=node.attrs["axes"], keepdims=True, dtype=_accumulator(dtype)).astype(dtype)
    return np.max(args[0], axis=node.attrs["axes"], keepdims=True).astype(dtype, copy=False)


def _matmul(node, args, shape, dtype, batch):
    """Products accumulated in float64 (integers in int64), as sums are."""
    a, b = (np.asarray(x, _accumulator(dtype)) for x in args)
    return np.matmul(a, b).astype(dtype)


def _iota(node, args, shape, dtype, batch):
    axis = node.attrs["axis"]
    index = np.arange(shape[axis], dtype=dtype).reshape([-1 if k == axis else 1 for k in range(len(shape))])
    return np.broadcast_to(index, shape)


def _rand(node, args, shape, dtype, batch):
    seed, step = (int(np.asarray(a)) for a in args)
    return philox_uniform(int(np.prod(shape)), seed, step, node.attrs["stream"]).reshape(shape).astype(dtype)


def _window(node, args, shape, dtype, batch):
    """Patches by slicing the padded input once per kernel offset."""
    x, a = args[0], node.attrs
    rank = len(a["kernel"])
    pads = [(0, 0), (0, 0)] + [(p, p) for p in a["padding"]]
    padded = np.pad(x, pads, constant_values=a["fill"])
    windows = shape[1:1 + rank]
    out = np.empty(x.shape[:2] + tuple(a["kernel"]) + windows, dtype)  # (N, C, *K, *O)
    for k in itertools.product(*(range(n) for n in a["kernel"])):
        picks = tuple(slice(k[i] * a["dilation"][i], k[i] * a["dilation"][i] + (windows[i] - 1) * a["stride"][i] + 1,
                            a["stride"][i]) for i in range(rank))
        out[(slice(None), slice(None)) + k] = padded[(slice(None), slice(None)) + picks]
    return out.transpose(0, *range(2 + rank, 2 + 2 * rank), 1, *range(2, 2 + rank))


def _unwindow(node, args, shape, dtype, batch):
    """Each patch position written back to the input position it read (0 where none did)."""
    g, a = args[0], node.attrs
    rank = len(a["kernel"])
    spatial, windows = shape[2:2 + rank], g.shape[1:1 + rank]
    by_kernel = g.transpose(0, 1 + rank, *range(2 + rank, 2 + 2 * rank), *range(1, 1 + rank))  # (N, C, *K, *O)
    out = np.zeros(shape[:2] + tuple(a["kernel"]) + spatial, dtype)  # (N, C, *K, *S)
    for k in itertools.product(*(range(n) for n in a["kernel"])):
        sources, targets = [], []
        for i in range(rank):
            o = np.arange(windows[i])
            s = o * a["stride"][i] - a["padding"][i] + k[i] * a["dilation"][i]
            inside = (s >= 0) & (s < spatial[i])
            sources.append(o[inside])
            targets.append(s[inside])
        out[(slice(None), slice(None)) + k][(Ellipsis,) + np.ix_(*targets)] = \
            by_kernel[(slice(None), slice(None)) + k][(Ellipsis,) + np.ix_(*sources)]
    return out.transpose(0, 1, *range(2 + rank, 2 + 2 * rank), *range(2, 2 + rank))


def _places(index: np.ndarray, shape: tuple, axis: int) -> tuple[tuple, np.ndarray]:
    """(where each index element points in a tensor of ``shape``: the index itself along the
    axis, negative ones counted from the end, position 0 on the other axes where the tensor has
    size 1 and the element's own position on the rest; where the index lies inside its axis)."""
    index = np.asarray(index, np.int64)
    size = shape[axis]
    wrapped = np.where(index < 0, index + size, index)
    inside = (wrapped >= 0) & (wrapped < size)
    places = []
    for k, position in enumerate(np.indices(index.shape, sparse=True)):
        place = np.where(inside, wrapped, 0) if k == axis else position * 0 if shape[k] == 1 else position
        places.append(np.broadcast_to(place, index.shape))
    return tuple(places), inside


def _gather(node, args, shape, dtype, batch):
    """torch.gather along the axis, x broadcast along its axes of size 1; an index outside
    [-n, n) reads 0 (as the kernels do)."""
    x = np.asarray(args[0])
    if x.shape[node.attrs["axis"]] == 0:
        return np.zeros(shape, dtype)
    places, inside = _places(args[1], x.shape, node.attrs["axis"])
    return np.where(inside, x[places], 0).astype(dtype)


def _scatter_add(node, args, shape, dtype, batch):
    """Zeros with each value added at its place (in float64, rounded once); an index outside
    [-n, n) adds nothing."""
    places, inside = _places(args[1], shape, node.attrs["axis"])
    out = np.zeros(shape, _accumulator(dtype))
    np.add.at(out, tuple(p[inside] for p in places), np.broadcast_to(args[0], inside.shape)[inside])
    return out.astype(dtype)


def check_indices(values: np.ndarray, check, what: str = "") -> None:
    """Raise PyTorch's error for the first element of ``values`` outside the range an
    ``IndexCheck`` allows (``what`` names the input, for a program's callers)."""
    values = np.asarray(values)
    if values.size == 0 or (values.min() >= check.low and values.max() < check.size):
        return
    bad = (values < check.low) | (values >= check.size)
    where = tuple(int(i) for i in np.argwhere(bad)[0])
    value = int(values[where])
    place = f" (at {where if len(where) != 1 else where[0]} of {what})" if what else ""
    if check.op in ("embedding", "index_select"):
        raise IndexError(f"index out of range in self: index {value} is not in [0, {check.size}){place}")
    message = f"index {value} is out of bounds for dimension {check.axis} with size {check.size}{place}"
    raise (IndexError if check.op == "index" else RuntimeError)(message)


def _positions(node, part_shape: tuple, batch) -> tuple:
    """The numpy index of the positions start + i*step (i < the part's size) along each axis."""
    starts = (evaluate_dim(a, batch) for a in node.attrs["start"])
    return tuple(slice(a, a + n * s, s) if n else slice(0, 0) for a, s, n in zip(starts, node.attrs["step"], part_shape))


def _slice(node, args, shape, dtype, batch):
    return args[0][_positions(node, shape, batch)]


def _pad(node, args, shape, dtype, batch):
    """The input written at its positions of a value of the fill."""
    x = np.asarray(args[0])
    out = np.full(shape, node.attrs["fill"], dtype) if np.dtype(dtype).kind == "f" else np.zeros(shape, dtype)
    out[_positions(node, x.shape, batch)] = x
    return out


EVALUATORS: dict[str, Callable] = {
    **{op: attention_op.evaluate for op in attention_op.OPS},
    "scan": lambda node, args, shape, dtype, batch: scan_op.evaluate(node, args, shape, dtype, batch, evaluate),
    "gather": _gather,
    "scatter_add": _scatter_add,
    "window": _window,
    "unwindow": _unwindow,
    "slice": _slice,
    "pad": _pad,
    "pointwise": _pointwise,
    "reduce": _reduce,
    "matmul": _matmul,
    "reshape": lambda node, args, shape, dtype, batch: np.reshape(args[0], shape),
    "permute": lambda node, args, shape, dtype, batch: np.transpose(args[0], node.attrs["perm"]),
    "expand": lambda node, args, shape, dtype, batch: np.broadcast_to(args[0], shape),
    "detach": lambda node, args, shape, dtype, batch: args[0],
    "iota": _iota,
    "rand": _rand,
}


# -- counter-based random numbers ----------------------------------------------------------------
_MASK = np.uint64(0xFFFFFFFF)
_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)


def philox4x32(counter: tuple, key: tuple, rounds: int = 10) -> tuple:
    """Philox-4x32 (Salmon et al., SC'11) on uint64 arrays holding 32-bit words."""
    c0, c1, c2, c3 = (np.asarray(c, np.uint64) & _MASK for c in counter)
    k0, k1 = (np.uint64(k) & _MASK for k in key)
    for _ in range(rounds):
        p0, p1 = _M0 * c0, _M1 * c2
        c0, c1, c2, c3 = ((p1 >> np.uint64(32)) ^ c1 ^ k0) & _MASK, p1 & _MASK, ((p0 >> np.uint64(32)) ^ c3 ^ k1) & _MASK, p0 & _MASK
        k0, k1 = (k0 + _W0) & _MASK, (k1 + _W1) & _MASK
    return c0, c1, c2, c3


def philox_uniform(count: int, seed: int, step: int, stream: int) -> np.ndarray:
    """``count`` uniform [0, 1) floats: element i is word 0 of Philox-4x32-10 with counter
    (i, stream, step low word, step high word) and key (seed low word, seed high word), its top
    24 bits scaled by 2**-24."""
    index = np.arange(count, dtype=np.uint64)
    words = philox4x32((index, np.uint64(stream), np.uint64(step & 0xFFFFFFFF), np.uint64(step >> 32)),
                       (seed & 0xFFFFFFFF, seed >> 32))
    return (words[0] >> np.uint64(8)).astype(np.float64) * 2.0**-24
