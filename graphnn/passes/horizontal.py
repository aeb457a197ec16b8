"""Horizontal fusion: pointwise kernels that apply the same body to adjacent slices of shared
buffers become one loop over the union of the slices.

This is how the optimizer update over every parameter becomes one kernel over the flat
parameter, gradient and momentum buffers: each parameter's update reads and writes its slice at
the same offsets, and the slices of consecutive parameters touch.
"""
from __future__ import annotations

import sympy

from graphnn.ir import B, numel
from graphnn.passes.plan import Assign, Kernel, Load, Store
from graphnn.passes.views import contiguous_strides


def merge(kernels: list[Kernel], buffers: dict) -> list[Kernel]:
    """``kernels`` with runs of mergeable pointwise kernels replaced by one kernel each.
    ``buffers`` (name -> Buffer) tells scalars (run-time scalars, buffers of size 1) from slices of
    larger buffers."""
    scalars = {name for name, b in buffers.items() if b.size == 1 or b.kind == "hyper"}
    out: list[Kernel] = []
    pending: dict[tuple, list[int]] = {}
    for kernel in kernels:
        signature = _signature(kernel, scalars)
        if signature is None:
            out.append(kernel)
            continue
        pending.setdefault(signature, []).append(len(out))
        out.append(kernel)
    for positions in pending.values():
        if len(positions) > 1:
            _merge_run(out, positions, scalars)
    return [k for k in out if k is not None]


def _signature(kernel: Kernel, scalars: set):
    """What two kernels must share to be merged, or None if this one cannot be."""
    if kernel.kind != "pointwise" or not kernel.domain:
        return None
    dense = tuple(0 if d == 1 else s for d, s in zip(kernel.domain, contiguous_strides(kernel.domain)))
    loads = []
    for load in kernel.loads:
        if load.guards or load.indirect:
            return None
        if load.source in scalars:
            loads.append(("scalar", load.source, load.offset))
        elif tuple(load.strides) == dense and load.source not in ("index", "rand"):
            loads.append(("slice", load.source))
        else:
            return None
    if any(tuple(s.strides) != dense or s.buffer in scalars for s in kernel.stores):
        return None
    names = {l.name: f"v{k}" for k, l in enumerate(kernel.loads)}
    names.update({a.name: f"t{k}" for k, a in enumerate(kernel.body)})
    rename = {sympy.Symbol(old, real=True): sympy.Symbol(new, real=True) for old, new in names.items()}
    body = tuple((str(a.expr.xreplace(rename)), a.dtype) for a in kernel.body)
    stores = tuple((s.buffer, names.get(s.value, s.value), s.dtype) for s in kernel.stores)
    return tuple(loads), body, stores


def _offsets(kernel: Kernel, scalars: set) -> list[tuple[str, object]]:
    """(buffer, offset) of every slice the kernel reads and writes, in order (a buffer read at
    two offsets appears twice)."""
    return ([(l.source, l.offset) for l in kernel.loads if l.source not in scalars] +
            [(s.buffer, s.offset) for s in kernel.stores])


def _merge_run(kernels: list, positions: list[int], scalars: set) -> None:
    """Merge, in place, the kernels at ``positions`` whose slices are adjacent in every buffer,
    when moving them to the last one's position crosses no kernel that touches their buffers."""
    chosen = sorted(positions, key=lambda p: [float(sympy.sympify(o).subs(B, 1)) for _, o in _offsets(kernels[p], scalars)])
    runs, run = [], [chosen[0]]
    for p in chosen[1:]:
        previous = kernels[run[-1]]
        size = numel(previous.domain)
        ends = [(b, sympy.sympify(o + size)) for b, o in _offsets(previous, scalars)]
        starts = [(b, sympy.sympify(o)) for b, o in _offsets(kernels[p], scalars)]
        if [b for b, _ in ends] == [b for b, _ in starts] and all(
                sympy.expand(e - s) == 0 for (_, e), (_, s) in zip(ends, starts)):
            run.append(p)
        else:
            runs.append(run)
            run = [p]
    runs.append(run)
    for run in runs:
        if len(run) > 1 and _movable(kernels, run, scalars):
            last = max(run)
            kernels[last] = _merged([kernels[p] for p in run], kernels[last].name, scalars)
            for p in run:
                if p != last:
                    kernels[p] = None


def _movable(kernels: list, run: list[int], scalars: set) -> bool:
    touched = set()
    for p in run:
        touched |= {l.source for l in kernels[p].loads if l.source not in scalars}
        touched |= {s.buffer for s in kernels[p].stores}
    for q in range(min(run), max(run)):
        other = kernels[q]
        if q in run or other is None:
            continue
        if set(other.buffers()) & touched:
            return False
    return True


def _merged(run: list[Kernel], name: str, scalars: set) -> Kernel:
    first = run[0]
    size = sympy.sympify(0)
    for k in run:
        size = size + numel(k.domain)
    size = int(size) if sympy.sympify(size).is_Integer else size
    loads = [Load(l.name, l.source, l.offset, (0,) if l.source in scalars else (1,), l.dtype) for l in first.loads]
    stores = [Store(s.buffer, s.value, s.offset, (1,), s.dtype) for s in first.stores]
    body = [Assign(a.name, a.expr, a.dtype, a.stage, a.comment) for a in first.body]
    merged = Kernel(name, "pointwise", (size,), loads, body, stores)
    merged.sources = [source for k in run for source in k.sources]
    return merged
