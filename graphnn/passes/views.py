"""Movement ops as strided views: reshape, permute and expand cost no kernel of their own.

A View says how to read a node's value from the storage of a ``base`` node: element (i_0..i_n)
sits at ``offset + sum(i_k * strides[k])`` of the base's contiguous storage. Reshapes are views
when the source is contiguous or only size-1 axes change; other reshapes need a copy.
"""
from __future__ import annotations

from dataclasses import dataclass

from graphnn.ir import Dim, Node, dim


@dataclass(frozen=True)
class View:
    base: Node
    offset: Dim
    strides: tuple
    shape: tuple


MOVEMENT = ("reshape", "permute", "expand")


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
        return View(view.base, view.offset, tuple(view.strides[p] for p in perm), node.shape)
    if node.op == "expand":
        strides = tuple(0 if s != d else st for s, d, st in zip(view.shape, node.shape, view.strides))
        return View(view.base, view.offset, strides, node.shape)
    if node.op == "reshape":
        if _is_contiguous(view):
            return View(view.base, view.offset, contiguous_strides(node.shape), node.shape)
        squeezed = [(d, s) for d, s in zip(view.shape, view.strides) if d != 1]
        if [d for d in node.shape if d != 1] == [d for d, _ in squeezed]:
            it = iter(s for _, s in squeezed)
            return View(view.base, view.offset, tuple(0 if d == 1 else next(it) for d in node.shape), node.shape)
        return None
    raise ValueError(f"{node.op} is not a movement op")


def _is_contiguous(view: View) -> bool:
    expected = contiguous_strides(view.shape)
    return all(d == 1 or s == e for d, s, e in zip(view.shape, view.strides, expected))
