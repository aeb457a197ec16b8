"""Movement ops as strided views: reshape, permute, expand and the sliding-window gathers cost
no kernel of their own.

A View says how to read a node's value from the storage of a ``base`` node: element (i_0..i_n)
sits at ``offset + sum(i_k * strides[k])`` of the base's contiguous storage. Reshapes are views
when the source is contiguous or only size-1 axes change; other reshapes need a copy.

The window gathers (``window``: the patches a convolution or pool reads; ``unwindow``: where
each input element sits in those patches) are views with ``guards``: an element whose guarded
index falls outside its axis (padding, or a position no window covers) reads ``fill`` instead.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from graphnn.ir import Dim, Node, dim


@dataclass(frozen=True)
class Guard:
    """One guarded source index: ``v = const + sum(i_k * coefs[k])`` must be a multiple of
    ``div`` with ``0 <= v / div < limit``. ``stride`` is what ``v / div`` adds to the address
    (0 when ``div`` is 1: the index is then part of the view's linear strides)."""

    coefs: tuple
    const: int
    div: int
    limit: int
    stride: Dim = 0


def always_holds(guard: Guard) -> bool:
    """Whether a guard with no loop-index terms (every axis it reads has size 1) passes."""
    v = guard.const
    return not any(guard.coefs) and v >= 0 and v % guard.div == 0 and v // guard.div < guard.limit


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


MOVEMENT = ("reshape", "permute", "expand", "window", "unwindow")


def contiguous_strides(shape: tuple) -> tuple:
    strides, step = [], 1
    for d in reversed(shape):
        strides.append(dim(step))
        step = step * d
    return tuple(reversed(strides))


def identity(node: Node) -> View:
    return View(node, 0, contiguous_strides(node.shape), node.shape)


def apply(view: View, node: Node) -> View | None:
    """The view of movement ``node`` applied to ``view``; None when a reshape needs a copy."""
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
        return None
    if node.op in ("window", "unwindow"):
        if view.guards:
            raise NotImplementedError(f"a {node.op} of a padded or gathered value is not supported by the fusion pass")
        return (_window if node.op == "window" else _unwindow)(view, node)
    raise ValueError(f"{node.op} is not a movement op")


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


def _is_contiguous(view: View) -> bool:
    if view.guards:
        return False
    expected = contiguous_strides(view.shape)
    return all(d == 1 or s == e for d, s, e in zip(view.shape, view.strides, expected))
