"""The numpy reference backend: a straightforward interpreter of a Graph.

It is the executable specification every native backend is tested against, so it favours
obviousness over speed: one numpy call per node, float32 by default and float64 on request (for
gradient checks against finite differences).
"""
from __future__ import annotations

import itertools
from typing import Callable, Mapping

import numpy as np

from graphnn.ir import Graph, Node, evaluate_shape
from graphnn.pointwise import numpy_function

FLOAT = ("f32", "f64")


def run(graph: Graph, feeds: Mapping[str, np.ndarray], batch: int, precision: type = np.float32):
    """Evaluate every output and update of ``graph``.

    ``feeds`` maps each leaf's name to its value; ``batch`` binds the symbol B. Returns the pair
    (outputs, updates) of name -> new array; nothing in ``feeds`` is modified.
    """
    env: dict[int, np.ndarray] = {}
    with np.errstate(all="ignore"):  # Piecewise evaluates every branch; the unused ones may overflow
        for node in graph.live_nodes():
            env[node.id] = _evaluate(node, env, feeds, batch, precision)
    outputs = {name: env[n.id] for name, n in graph.outputs.items()}
    updates = {name: env[n.id] for name, n in graph.updates.items()}
    return outputs, updates


def _dtype(node: Node, precision: type) -> type:
    return precision if node.dtype in FLOAT else {"i64": np.int64, "bool": np.bool_}[node.dtype]


def _evaluate(node: Node, env: dict, feeds: Mapping, batch: int, precision: type) -> np.ndarray:
    args = [env[i.id] for i in node.inputs]
    shape = evaluate_shape(node.shape, batch)
    dtype = _dtype(node, precision)
    if node.op in ("input", "param", "buffer", "hyper"):
        value = np.asarray(feeds[node.attrs["name"]])
        if value.shape != shape:
            raise ValueError(f"leaf {node.ref} expects shape {shape}, got {value.shape}")
        return value.astype(dtype, copy=False)
    return EVALUATORS[node.op](node, args, shape, dtype, batch)


def _pointwise(node, args, shape, dtype, batch):
    fn = numpy_function(node.attrs["expr"], len(args))
    value = fn(*args, batch, None)
    return np.broadcast_to(np.asarray(value), shape).astype(dtype)


def _reduce(node, args, shape, dtype, batch):
    # sums accumulate in float64 (rounded once at the end), so the oracle is at least as
    # accurate as any float32 backend: a float32 sum's rounding can push a statistic across an
    # activation's kink and send the reference down another path than the backends it checks
    if node.attrs["kind"] == "sum":
        return np.sum(args[0], axis=node.attrs["axes"], keepdims=True, dtype=np.float64).astype(dtype)
    return np.max(args[0], axis=node.attrs["axes"], keepdims=True).astype(dtype, copy=False)


def _matmul(node, args, shape, dtype, batch):
    """Products accumulated in float64, as sums are."""
    a, b = (np.asarray(x, np.float64) for x in args)
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


EVALUATORS: dict[str, Callable] = {
    "window": _window,
    "unwindow": _unwindow,
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
