"""The plan interpreter: runs a KernelPlan kernel by kernel with numpy.

It executes exactly what a code generator is given (the fused kernels, their loads, guards,
random draws, prologues, cores, epilogues and stores, and the memory plan's arena offsets) and
nothing else, so fusion and memory planning are tested apart from any code generator: a plan
that fuses wrongly, or places two live values at overlapping arena offsets, gives other numbers
than the reference interpreter of the Graph (runtime/reference.py).

Each kernel is evaluated over its whole loop domain at once: a load is a gather at the indices
its strides (and guards, and a loaded index) give, an assignment is its sympy expression on
those arrays, a reduction or matmul accumulates in float64 and rounds to float32 (as the
reference does), a store is a scatter (an adding one for a scatter kernel). Every arena buffer
is a view of one float32 array at its planned offset, which the binding fills with NaN before
each call: a value read before it is written, or overwritten while still live, shows up in the
results.
"""
from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np
import sympy

from graphnn.ir import evaluate_dim
from graphnn.scan_op import LOOP_T
from graphnn.passes.memory import MemoryPlan
from graphnn.passes.plan import Kernel, KernelPlan, Load, Store
from graphnn.pointwise import NUMPY_FUNCTIONS
from runtime.binding import NUMPY_DTYPES, check_array, classify, output_arrays
from graphnn.evaluate import philox4x32


def run(plan: KernelPlan, memory: MemoryPlan, batch: int, arrays: dict[str, np.ndarray], arena: np.ndarray) -> None:
    """Run every kernel of ``plan`` in order at a batch size. ``arrays`` maps each non-arena
    buffer to its (C-contiguous) array, which kernels read and write in place; arena buffers
    are views of ``arena`` (float32) at ``memory``'s offsets."""
    buffers = {name: array.reshape(-1) for name, array in arrays.items()}
    for name, offset in memory.offsets.items():
        spec = plan.buffers[name]
        start, size = evaluate_dim(offset, batch), evaluate_dim(spec.size, batch)
        dtype = NUMPY_DTYPES[spec.dtype]
        width = np.dtype(dtype).itemsize // 4
        region = arena[start:start + width * size]
        if region.size != width * size:
            raise ValueError(f"arena buffer {name} at {start} + {width * size} lies past the arena ({arena.size})")
        buffers[name] = region.view(dtype)
    with np.errstate(all="ignore"):  # Piecewise evaluates every branch; the unused ones may overflow
        for kernel in plan.kernels:
            _KERNELS[kernel.kind](kernel, buffers, batch)


@functools.lru_cache(maxsize=None)
def _value(d, batch: int) -> int:
    """An int, or an expression of B at a batch size (memoised: plans repeat a few expressions)."""
    return evaluate_dim(d, batch) if not isinstance(d, int) else d


class _Domain:
    """A loop nest's index arrays, each shaped to broadcast along its own axis."""

    def __init__(self, dims: tuple, batch: int) -> None:
        self.dims, self.batch = dims, batch
        self.index = [np.arange(d, dtype=np.int64).reshape([-1 if j == k else 1 for j in range(len(dims))])
                      for k, d in enumerate(dims)]

    def linear(self, offset, coefs: tuple) -> np.ndarray:
        """``offset + sum(i_k * coefs[k])``, broadcast over the axes it depends on."""
        total = np.asarray(_value(offset, self.batch), np.int64).reshape((1,) * len(self.dims))
        for k, c in enumerate(coefs):
            c = _value(c, self.batch)
            if c:
                total = total + self.index[k] * c
        return total


def _indirect(indirect, env: dict, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """(the positions an index load gives, negative ones counted from the end; where they lie
    inside their axis)."""
    size = _value(indirect.size, batch)
    position = np.asarray(env[indirect.index], np.int64)
    position = np.where(position < 0, position + size, position)
    return position, (position >= 0) & (position < size)


def _loads(kernel: Kernel, buffers: dict, domain: _Domain) -> dict:
    """Every load of a kernel in order (a gather's read after the index load it uses)."""
    env = {"B": domain.batch}
    for load in kernel.loads:
        env[load.name] = _load(load, buffers, domain, env)
    return env


def _load(load: Load, buffers: dict, domain: _Domain, env: dict | None = None) -> np.ndarray:
    index = domain.linear(load.offset, load.strides)
    if load.indirect is not None:  # a gather: the index completes the address; 0 outside its axis
        flat = buffers[load.source]
        position, inside = _indirect(load.indirect, env, domain.batch)
        index, inside = np.broadcast_arrays(index + position * _value(load.indirect.stride, domain.batch), inside)
        return np.where(inside, flat[np.where(inside, index, 0)], 0).astype(flat.dtype, copy=False)
    if load.source == "index":
        return index.astype(NUMPY_DTYPES[load.dtype])
    if load.source == "rand":
        (seed_buffer, seed_offset), (step_buffer, step_offset) = load.key
        seed = int(buffers[seed_buffer][_value(seed_offset, domain.batch)])
        step = int(buffers[step_buffer][_value(step_offset, domain.batch)])
        words = philox4x32((index.astype(np.uint64), np.uint64(load.stream), np.uint64(step & 0xFFFFFFFF),
                            np.uint64((step >> 32) & 0xFFFFFFFF)), (seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF))
        return ((words[0] >> np.uint64(8)).astype(np.float64) * 2.0**-24).astype(np.float32)
    flat = buffers[load.source]
    if not load.guards:
        return flat[index]
    inside = np.ones((1,) * len(domain.dims), bool)
    for g in load.guards:  # a window read: outside any guarded axis, the load is the fill
        v = domain.linear(g.const, g.coefs)
        limit = _value(g.limit, domain.batch)
        if g.div == 1:
            inside = inside & (v >= 0) & (v < limit)
        else:
            inside = inside & (v >= 0) & (v < limit * g.div) & (v % g.div == 0)
            index = index + (v // g.div) * _value(g.stride, domain.batch)
    index, inside = np.broadcast_arrays(index, inside)
    return np.where(inside, flat[np.where(inside, index, 0)], load.fill).astype(flat.dtype, copy=False)


@functools.lru_cache(maxsize=None)
def _function(expr: sympy.Expr):
    """(argument names, numpy function) of an assignment's expression."""
    expr = expr.evalf() if expr.has(sympy.pi) else expr
    symbols = sorted(expr.free_symbols, key=lambda s: s.name)
    return tuple(s.name for s in symbols), sympy.lambdify(symbols, expr, modules=[NUMPY_FUNCTIONS, "numpy"])


def _assign(assign, env: dict) -> np.ndarray:
    """An assignment's value, its arrays broadcast to one shape first (numpy's ``select``, which
    Piecewise becomes, needs that); the batch size stays a Python int, as in the reference."""
    names, function = _function(assign.expr)
    arrays = [n for n in names if n != "B"]
    values = dict(zip(arrays, np.broadcast_arrays(*(env[n] for n in arrays))), B=env["B"])
    return np.asarray(function(*(values[n] for n in names))).astype(NUMPY_DTYPES[assign.dtype], copy=False)


def _store(store: Store, env: dict, buffers: dict, domain: _Domain) -> None:
    index = domain.linear(store.offset, store.strides)
    if store.indirect is None:
        index, value = np.broadcast_arrays(index, env[store.value])
        buffers[store.buffer][index] = value
        return
    # a scatter's add: at the place the index completes, where it lies inside its axis
    position, inside = _indirect(store.indirect, env, domain.batch)
    index = index + position * _value(store.indirect.stride, domain.batch)
    index, value, inside = np.broadcast_arrays(index, env[store.value], inside)
    np.add.at(buffers[store.buffer], index[inside], value[inside])


def _pointwise(kernel: Kernel, buffers: dict, batch: int) -> None:
    domain = _Domain(tuple(_value(d, batch) for d in kernel.domain), batch)
    env = _loads(kernel, buffers, domain)
    for a in kernel.body:
        env[a.name] = _assign(a, env)
    for s in kernel.stores:
        _store(s, env, buffers, domain)


def _scatter(kernel: Kernel, buffers: dict, batch: int) -> None:
    """Zero the targets, then add every value at its place (a pointwise loop whose store adds)."""
    for buffer, offset, size in kernel.cleared:
        start = _value(offset, batch)
        buffers[buffer][start:start + _value(size, batch)] = 0
    _pointwise(kernel, buffers, batch)


def _reduce(kernel: Kernel, buffers: dict, batch: int) -> None:
    """Prologue over the whole domain, the reduction over ``axes`` (kept as size-1 axes, where
    the epilogue's loads and stores have stride 0), then the epilogue over the kept positions."""
    domain = _Domain(tuple(_value(d, batch) for d in kernel.domain), batch)
    env = _loads(kernel, buffers, domain)
    for a in kernel.body:
        if a.stage == "prologue":
            env[a.name] = _assign(a, env)
    value = np.broadcast_to(env[kernel.reduce_value], domain.dims)
    if kernel.reduce_op == "sum":  # in float64, rounded once, like the reference and the C backend
        acc = np.sum(value, axis=tuple(kernel.axes), keepdims=True, dtype=np.float64)
    else:
        acc = np.max(value, axis=tuple(kernel.axes), keepdims=True)
    env["acc"] = acc.astype(np.float32)
    for a in kernel.body:
        if a.stage == "epilogue":
            env[a.name] = _assign(a, env)
    for s in kernel.stores:
        _store(s, env, buffers, domain)


def _operand(load: Load, buffers: dict, dims: tuple, batch: int) -> np.ndarray:
    """A matmul operand over its whole ``dims`` (an axis of stride 0, a broadcast state or a
    contraction over a broadcast axis, loads as size 1 and is repeated)."""
    return np.broadcast_to(_load(load, buffers, _Domain(dims, batch)), dims)


def _matmul(kernel: Kernel, buffers: dict, batch: int) -> None:
    """The product over (batch..., M, N) from the operands gathered as (batch..., M, K) and
    (batch..., K, N), accumulated in float64; then the epilogue on it."""
    dims = tuple(_value(d, batch) for d in kernel.domain)
    k = _value(kernel.k, batch)
    a = _operand(kernel.a, buffers, dims[:-1] + (k,), batch)
    b = _operand(kernel.b, buffers, dims[:-2] + (k, dims[-1]), batch)
    domain = _Domain(dims, batch)
    env = _loads(kernel, buffers, domain)
    env["acc"] = np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(np.float32)
    for a in kernel.body:
        env[a.name] = _assign(a, env)
    for s in kernel.stores:
        _store(s, env, buffers, domain)


def _loop(kernel: Kernel, buffers: dict, batch: int) -> None:
    """A scan's kernels once per position, the loop counter bound in their addresses."""
    for t in range(_value(kernel.domain[0], batch)):
        for inner in kernel.kernels:
            bound = _at_position(inner, t)
            _KERNELS[bound.kind](bound, buffers, batch)


def _at_position(kernel: Kernel, t: int) -> Kernel:
    """``kernel`` with the loop counter LOOP_T replaced by ``t`` in its addresses."""
    def at(access):
        if access is None or isinstance(access.offset, int):
            return access
        return replace(access, offset=sympy.sympify(access.offset).subs(LOOP_T, t))

    return replace(kernel, loads=[at(l) for l in kernel.loads], stores=[at(s) for s in kernel.stores],
                   a=at(kernel.a), b=at(kernel.b), operands={k: at(v) for k, v in kernel.operands.items()},
                   cleared=tuple((b, sympy.sympify(o).subs(LOOP_T, t), n) for b, o, n in kernel.cleared))


_KERNELS = {"pointwise": _pointwise, "reduce": _reduce, "matmul": _matmul, "scatter": _scatter, "loop": _loop}


class Binding:
    """One entry point's plan with its arrays: persistent ones bound from the plan's buffer
    table, outputs and the arena sized per batch size. Before each call the arena and the
    outputs are filled with NaN, so anything a kernel reads that no kernel of this call wrote
    (or that another value overwrote) is visible."""

    def __init__(self, plan: KernelPlan, memory: MemoryPlan, getters: dict) -> None:
        self.plan, self.memory = plan, memory
        self.inputs, self.fixed, self.arrays, self.outputs = classify(plan, getters)
        self.batch = None
        self.arena = np.zeros(0, np.float32)
        self.results: dict[str, np.ndarray] = {}
        self.flat_outputs: list = []

    def __call__(self, batch: int, inputs: list, copy: bool) -> dict:
        names = self.plan.arguments
        arrays = {}
        for slot, getter, dtype in self.fixed + self.arrays:
            array = getter()
            check_array(array, dtype, "plan")
            arrays[names[slot]] = array
        for slot, position in self.inputs:
            arrays[names[slot]] = inputs[position]
        if batch != self.batch:
            self.results, self.flat_outputs = {}, []
            for slot, name, array, shaped in output_arrays(self.outputs, batch):
                self.results[name] = shaped
                self.flat_outputs.append((names[slot], array))
            self.arena = np.zeros(evaluate_dim(self.memory.size, batch), np.float32)
            self.batch = batch
        self.arena.fill(np.nan)
        for name, array in self.flat_outputs:
            array.fill(np.nan if array.dtype.kind == "f" else 0)
            arrays[name] = array
        run(self.plan, self.memory, batch, arrays, self.arena)
        if not copy:
            return self.results
        return {name: array.copy() for name, array in self.results.items()}
