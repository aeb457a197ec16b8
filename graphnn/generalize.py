"""One compiled program for every batch size of a recorded loop.

A tape records the concrete shapes of its iteration, so the last, smaller batch of an epoch
records a graph that differs from the others only in numbers: the leading dimension of its data
inputs, the shapes computed from them, and constants such as a mean's 1/(10 * batch). Given two
tapes alike but for their batch (``n`` and ``m``, the leading dimension of the first data input
whose size differs), ``generalize`` fits every number that differs as ``a*B + c`` (or its
reciprocal as that) with integer ``a`` and ``c``, ``B`` being the batch symbol of
graphnn.ir, and ``batch_graph`` rebuilds the tape's graph with those shapes and attributes.
That graph compiles once, as ``gn.compile``'s programs do, and runs for any batch whose tape
generalizes to the same entries.

The rules are strict: parameters and buffers keep their shapes; data inputs may differ only in
their leading dimension, all equal to the batch; anything else that differs and does not fit
(an attribute that is not a number, a number fitting no integer line) leaves the tapes apart,
compiled one by one as before. Nothing is guessed from a single tape.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Any

import sympy

from graphnn.ir import B, Graph, Node

LEAF_OPS = ("input", "param", "buffer", "hyper")


class Apart(Exception):
    """Two tapes that are not one graph at two batch sizes."""


def skeleton(signature: list) -> tuple:
    """The signature with its numbers left out: tapes that may generalize share it."""
    return tuple(_skeleton_entry(e) for e in signature)


def _skeleton_entry(entry: tuple) -> tuple:
    op, dtype, shape, fourth, fifth = entry
    if op in LEAF_OPS:
        return op, dtype, len(shape), fourth, fifth
    return op, dtype, len(shape), fourth, tuple((k, _skeleton_value(v)) for k, v in fifth)


def _skeleton_value(value: Any) -> Any:
    if isinstance(value, sympy.Basic):
        return _expr_skeleton(value)
    if isinstance(value, tuple):
        return tuple(_skeleton_value(v) for v in value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "#"
    return value


def _expr_skeleton(expr: sympy.Basic) -> Any:
    if expr.is_Number:
        return "#"
    if not expr.args:
        return expr
    return (expr.func.__name__, tuple(_expr_skeleton(a) for a in expr.args))


def batch_sizes(first: list, second: list) -> tuple[int, int]:
    """(n, m): the leading dimension of the first data input whose size differs."""
    for a, b in zip(first, second):
        if a[0] == "input" and a[2] and b[2] and a[2][0] != b[2][0]:
            return int(a[2][0]), int(b[2][0])
    raise Apart("no data input changed its leading dimension")


def generalize(first: list, second: list) -> tuple:
    """The entries of two alike signatures with every differing number written in B; raises
    Apart when they are not one graph at two batch sizes."""
    if len(first) != len(second):
        raise Apart("different lengths")
    n, m = batch_sizes(first, second)
    if n == m or min(n, m) < 1:
        raise Apart("no batch")
    fit = _Fit(n, m)
    return tuple(_entry(a, b, fit) for a, b in zip(first, second))


def _entry(a: tuple, b: tuple, fit: "_Fit") -> tuple:
    if a == b:
        return a
    op, dtype, shape, fourth, fifth = a
    if (op, dtype, len(shape), fourth) != (b[0], b[1], len(b[2]), b[3]):
        raise Apart(f"{op} entries differ beyond numbers")
    if op in LEAF_OPS:
        if op != "input" or fifth != b[4]:
            raise Apart(f"the {op} leaf {fourth} changed shape")
        if shape[1:] != b[2][1:] or (shape[0], b[2][0]) != (fit.n, fit.m):
            raise Apart(f"the input {fourth} differs in more than its batch")
        return op, dtype, (B,) + tuple(shape[1:]), fourth, fifth
    if len(fifth) != len(b[4]) or any(k1 != k2 for (k1, _), (k2, _) in zip(fifth, b[4])):
        raise Apart(f"{op} attributes differ")
    attrs = tuple((k, fit.value(v1, v2)) for (k, v1), (_, v2) in zip(fifth, b[4]))
    return op, dtype, tuple(fit.dim(d1, d2) for d1, d2 in zip(shape, b[2])), fourth, attrs


class _Fit:
    """Numbers of the two tapes as functions of the batch (n in the first, m in the second)."""

    def __init__(self, n: int, m: int) -> None:
        self.n, self.m = n, m

    def line(self, x1, x2) -> sympy.Expr | None:
        """a*B + c with integer a and c through (n, x1) and (m, x2), else None."""
        try:
            a = (Fraction(x1) - Fraction(x2)) / (self.n - self.m)
            c = Fraction(x1) - a * self.n
        except (TypeError, ValueError, OverflowError):
            return None
        if a.denominator != 1 or c.denominator != 1:
            return None
        return int(a) * B + int(c)

    def dim(self, d1, d2):
        if d1 == d2:
            return d1
        expr = self.line(int(d1), int(d2))
        if expr is None:
            raise Apart(f"dimension {d1} -> {d2} is not linear in the batch")
        return expr

    def number(self, x1: sympy.Number, x2: sympy.Number) -> sympy.Expr:
        """A constant of an expression: an integer line in B (a size folded into an expression),
        else ``p * B**i * (B - 1)**j`` with i and j in -1..1 and ``p`` fixed by the first tape (a
        mean's 1/(k*B), a variance's 1/(B - 1), BatchNorm's momentum * B/(B - 1)). Exact numbers
        must fit exactly, floats (a Python division in the user's code) to rounding."""
        exact = not (x1.is_Float or x2.is_Float)
        if exact and x1.is_Integer and x2.is_Integer:
            found = self.line(int(x1), int(x2))
            if found is not None:
                return found
        for i, j in _MONOMIALS:
            g1, g2 = _monomial(self.n, i, j), _monomial(self.m, i, j)
            if g1 is None or g2 is None:
                continue
            if exact:
                p = sympy.Rational(x1) / g1
                if p * g2 == x2:
                    return p * B**i * (B - 1)**j
            else:
                p = float(x1) / float(g1)
                if abs(p * float(g2) - float(x2)) <= 1e-12 * max(abs(float(x2)), 1e-300):
                    return sympy.Float(p) * B**i * (B - 1)**j
        raise Apart(f"the constant {x1} -> {x2} is not a function of the batch")

    def expr(self, e1: sympy.Basic, e2: sympy.Basic) -> sympy.Basic:
        if e1 == e2:
            return e1
        if e1.is_Number and e2.is_Number:
            return self.number(e1, e2)
        if e1.func != e2.func or len(e1.args) != len(e2.args) or not e1.args:
            raise Apart("expressions differ beyond numbers")
        return e1.func(*(self.expr(a, b) for a, b in zip(e1.args, e2.args)))

    def value(self, v1: Any, v2: Any) -> Any:
        if v1 == v2 and type(v1) is type(v2):
            return v1
        if isinstance(v1, sympy.Basic) and isinstance(v2, sympy.Basic):
            return self.expr(v1, v2)
        if isinstance(v1, tuple) and isinstance(v2, tuple) and len(v1) == len(v2):
            return tuple(self.value(a, b) for a, b in zip(v1, v2))
        if isinstance(v1, int) and isinstance(v2, int) and not isinstance(v1, bool):
            return self.dim(v1, v2)
        raise Apart(f"attribute {v1!r} -> {v2!r}")


_MONOMIALS = ((-1, 0), (0, -1), (1, 0), (0, 1), (1, -1), (-1, 1), (-1, -1), (1, 1))


def _monomial(b: int, i: int, j: int) -> sympy.Rational | None:
    """b**i * (b - 1)**j, None where it is 0 or undefined."""
    if b - 1 == 0 and j != 0:
        return None
    return sympy.Rational(b) ** i * sympy.Rational(b - 1) ** j


def batch_graph(graph: Graph, entries: tuple) -> tuple[Graph, dict]:
    """``graph`` (a tape's, its nodes in signature order) rebuilt with the shapes and attributes
    of the generalized ``entries``; also old node id -> new node."""
    if len(graph.nodes) != len(entries):
        raise Apart("the graph and its signature disagree")
    out, new = Graph(), {}
    for node, entry in zip(graph.nodes, entries):
        attrs = node.attrs
        if node.op not in LEAF_OPS:
            changed = dict(entry[4])
            attrs = {k: (list(changed[k]) if isinstance(v, list) else changed[k]) for k, v in node.attrs.items()}
        rebuilt = Node(node.op, tuple(new[i.id] for i in node.inputs), entry[2], node.dtype, attrs, node.path,
                       node.module)
        new[node.id] = out.add(rebuilt)
    out.updates = {name: new[n.id] for name, n in graph.updates.items()}
    out.checks, out.label_checks = list(graph.checks), list(graph.label_checks)
    out.index_checks, out.constants = list(graph.index_checks), dict(graph.constants)
    return out, new
