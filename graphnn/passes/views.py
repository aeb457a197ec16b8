"""Movement ops as strided views: reshape, permute, expand, slice, pad and the sliding-window
gathers cost no kernel of their own.

A View says how to read a node's value from the storage of a ``base`` node: element (i_0..i_n)
sits at ``offset + sum(i_k * strides[k])`` of the base's contiguous storage. Reshapes are views
when the source is contiguous or only size-1 axes change; other reshapes need a copy. A slice
is an offset and multiplied strides.

``pad`` (a slice's transpose, and the pieces of a ``cat``) and the window gathers (``window``: the
patches a convolution or pool reads; ``unwindow``: where each input element sits in those
patches) are views with ``guards``: an element whose guarded index falls outside its axis
(padding, or a position no window covers) reads ``fill`` instead.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import sympy

from graphnn.ir import Dim, Node, dim


@dataclass(frozen=True)
class Guard:
    """One guarded source index: ``v = const + sum(i_k * coefs[k])`` must be a multiple of
    ``div`` with ``0 <= v / div < limit``. ``stride`` is what ``v / div`` adds to the address
    (0 when ``div`` is 1: the index is then part of the view's linear strides)."""

    coefs: tuple
    const: Dim
    div: int
    limit: Dim
    stride: Dim = 0


def always_holds(guard: Guard) -> bool:
    """Whether a guard with no loop-index terms (every axis it reads has size 1) passes for every
    batch size (one whose bounds depend on B is kept)."""
    v, limit = guard.const, guard.limit
    if any(guard.coefs) or not isinstance(v, int) or not isinstance(limit, int):
        return False
    return v >= 0 and v % guard.div == 0 and v // guard.div < limit


@dataclass(frozen=True)
class View:
    base: Node
    offset: Dim
    strides: tuple
    shape: tuple
    guards: tuple = ()
    fill: float = 0.0

    def per_axis(self, transform) -> "View":
        """The view with ``transform`` (a function of a per-axis tuple) applied to its strides and
        to every guard's coefficients: the common part of permute, expand and squeeze."""
        guards = tuple(replace(g, coefs=transform(g.coefs)) for g in self.guards)
        return replace(self, strides=transform(self.strides), guards=guards)


MOVEMENT = ("reshape", "permute", "expand", "slice", "pad", "window", "unwindow")


def contiguous_strides(shape: tuple) -> tuple:
    strides, step = [], 1
    for d in reversed(shape):
        strides.append(dim(step))
        step = step * d
    return tuple(reversed(strides))


def identity(node: Node) -> View:
    return View(node, 0, contiguous_strides(node.shape), node.shape)


def apply(view: View, node: Node) -> View | None:
    """The view of movement ``node`` applied to ``view``; None when it needs a copy (a reshape of
    a non-contiguous or guarded view, a pad of a view padded with another value, the windows of a
    padded or gathered value: one guard per axis cannot say both where a window reads and where
    the padding inside it lies)."""
    if node.op == "permute":
        perm = node.attrs["perm"]
        return replace(view.per_axis(lambda t: tuple(t[p] for p in perm)), shape=node.shape)
    if node.op == "expand":
        grown = [s != d for s, d in zip(view.shape, node.shape)]
        return replace(view.per_axis(lambda t: tuple(0 if g else x for g, x in zip(grown, t))), shape=node.shape)
    if node.op == "reshape":
        if view.guards:  # patches are gathered once into rows (a matmul operand reads plain strides)
            return None
        if _is_contiguous(view):
            return View(view.base, view.offset, contiguous_strides(node.shape), node.shape)
        kept = [k for k, d in enumerate(view.shape) if d != 1]
        if [d for d in node.shape if d != 1] == [view.shape[k] for k in kept]:
            it = iter(view.strides[k] for k in kept)
            return replace(view, strides=tuple(0 if d == 1 else next(it) for d in node.shape), shape=node.shape)
        strides = _reshaped_strides(view.shape, view.strides, node.shape)
        return None if strides is None else replace(view, strides=strides, shape=node.shape)
    if node.op == "slice":
        return _slice(view, node)
    if node.op == "pad":
        return _pad(view, node)
    if node.op in ("window", "unwindow"):
        if view.guards:
            return None
        return (_window if node.op == "window" else _unwindow)(view, node)
    raise ValueError(f"{node.op} is not a movement op")


def _slice(view: View, node: Node) -> View:
    """Element i reads the view at start + i*step: the offset moves to the start and each stride
    (and each guard's coefficient) is multiplied by its step."""
    start, step = node.attrs["start"], node.attrs["step"]
    offset = dim(view.offset + sum(a * s for a, s in zip(start, view.strides)))
    guards = tuple(replace(g, const=dim(g.const + sum(a * c for a, c in zip(start, g.coefs))),
                           coefs=tuple(dim(c * s) for c, s in zip(g.coefs, step))) for g in view.guards)
    return View(view.base, offset, tuple(dim(t * s) for t, s in zip(view.strides, step)), node.shape, guards, view.fill)


def _pad(view: View, node: Node) -> View | None:
    """Element j reads the view at i = (j - start) / step where that is a whole number inside the
    view's shape, else the fill. Along an axis with step 1, i is linear in j: the offset moves back
    by the start and a guard checks the range. With a larger step, i goes through a guard that
    divides (its stride carries the axis's stride). The view's own guards, over i, are rewritten
    over j: multiplied by the steps they divide by, so their indices stay whole numbers."""
    start, step, fill = node.attrs["start"], node.attrs["step"], node.attrs["fill"]
    if view.guards and (fill != view.fill or math.copysign(1, fill) != math.copysign(1, view.fill)):
        return None  # two fill values (0.0 and -0.0 among them) do not fit one view
    rank = len(node.shape)
    guards = [_over_padded(g, start, step) for g in view.guards]
    offset, strides = view.offset, list(view.strides)
    for axis, (a, s, inner, outer) in enumerate(zip(start, step, view.shape, node.shape)):
        if a == 0 and s == 1 and inner == outer:
            continue  # every position of this axis is read
        coefs = tuple(1 if k == axis else 0 for k in range(rank))
        if s == 1:
            offset = offset - a * strides[axis]
            guards.append(Guard(coefs, dim(-a), 1, inner))
        else:
            guards.append(Guard(coefs, dim(-a), s, inner, strides[axis]))
            strides[axis] = 0
    return View(view.base, dim(offset), tuple(strides), node.shape, tuple(guards), fill)


def _over_padded(g: Guard, start: tuple, step: tuple) -> Guard:
    """A guard over a view's indices i rewritten over a pad's indices j (i = (j - start) / step):
    scaled by the steps of the axes it reads, so its coefficients stay whole numbers."""
    scale = math.lcm(*(s for c, s in zip(g.coefs, step) if c != 0)) if any(g.coefs) else 1
    coefs = tuple(dim(c * scale // s) for c, s in zip(g.coefs, step))
    const = dim(g.const * scale - sum(c * a for c, a in zip(coefs, start)))
    return Guard(coefs, const, g.div * scale, g.limit, g.stride)


def _window(view: View, node: Node) -> View:
    """(N, C, *S) -> (N, *O, C, *K): element (n, o, c, k) reads x[n, c, o*stride - pad + k*dilation]."""
    a = node.attrs
    rank = len(a["kernel"])
    n_stride, c_stride, spatial = view.strides[0], view.strides[1], view.strides[2:]
    offset = view.offset
    guards = []
    for axis in range(rank):
        offset = offset - a["padding"][axis] * spatial[axis]
        if a["padding"][axis]:
            coefs = [0] * (2 + 2 * rank)
            coefs[1 + axis], coefs[2 + rank + axis] = a["stride"][axis], a["dilation"][axis]
            guards.append(Guard(tuple(coefs), -a["padding"][axis], 1, view.shape[2 + axis]))
    strides = ((n_stride,) + tuple(spatial[k] * a["stride"][k] for k in range(rank)) + (c_stride,)
               + tuple(spatial[k] * a["dilation"][k] for k in range(rank)))
    return View(view.base, offset, strides, node.shape, tuple(guards), a["fill"])


def _unwindow(view: View, node: Node) -> View:
    """(N, *O, C, *K) -> (N, C, *S, *K): element (n, c, s, k) reads g[n, (s + pad - k*dilation) / stride,
    c, k] where that is a whole number in range, 0 elsewhere (the transpose of ``window``)."""
    a = node.attrs
    rank = len(a["kernel"])
    strides = [view.strides[0], view.strides[1 + rank]] + [0] * rank + list(view.strides[2 + rank:])
    offset = view.offset
    guards = []
    for axis in range(rank):
        s_axis, k_axis = 2 + axis, 2 + rank + axis
        coefs = [0] * (2 + 2 * rank)
        coefs[s_axis], coefs[k_axis] = 1, -a["dilation"][axis]
        source_stride, windows = view.strides[1 + axis], view.shape[1 + axis]
        if a["stride"][axis] == 1:  # a linear index: only its range needs a guard
            strides[s_axis] = source_stride
            strides[k_axis] = strides[k_axis] - a["dilation"][axis] * source_stride
            offset = offset + a["padding"][axis] * source_stride
            guards.append(Guard(tuple(coefs), a["padding"][axis], 1, windows))
        else:
            guards.append(Guard(tuple(coefs), a["padding"][axis], a["stride"][axis], windows, source_stride))
    return View(view.base, dim(offset), tuple(dim(s) for s in strides), node.shape, tuple(guards), 0.0)


def _reshaped_strides(shape: tuple, strides: tuple, target: tuple) -> tuple | None:
    """The strides of ``target`` over the same elements as ``shape`` with ``strides`` (PyTorch's
    rule for ``view``): the axes of ``shape`` fall into runs that are contiguous among themselves,
    and each run is split or merged into target axes on its own; None when a target axis would
    span two runs (the reshape then needs a copy). A slice's part of each row, (B, T, 3C)[..., :C],
    viewed as heads (B, T, H, C/H) is one such."""
    if any(_same(d, 0) for d in shape):
        return None
    out = [0] * len(target)
    view_d = len(target) - 1
    base = strides[-1] if strides else 1
    run, viewed = 1, 1
    for d in range(len(shape) - 1, -1, -1):
        run = run * shape[d]
        if d == 0 or (not _same(shape[d - 1], 1) and not _same(strides[d - 1], run * base)):
            while view_d >= 0 and (not _same(viewed, run) or _same(target[view_d], 1)):
                out[view_d] = dim(viewed * base)
                viewed = viewed * target[view_d]
                view_d -= 1
            if not _same(viewed, run):
                return None
            if d > 0:
                base, run, viewed = strides[d - 1], 1, 1
    return tuple(out) if view_d == -1 else None


def _same(a, b) -> bool:
    """Whether two sizes or strides (ints or expressions of B) are equal."""
    return sympy.expand(sympy.sympify(a) - sympy.sympify(b)) == 0


def _is_contiguous(view: View) -> bool:
    if view.guards:
        return False
    expected = contiguous_strides(view.shape)
    return all(d == 1 or s == e for d, s, e in zip(view.shape, view.strides, expected))
