"""The graph IR: Nodes of primitive ops with symbolic shapes, and the Graph that holds them.

A dimension is an int or a sympy expression of the batch symbol ``B``. A Graph is a list of
Nodes in topological order plus named leaves (inputs, parameters, persistent buffers, runtime
scalars), named outputs, the new values of persistent state (``updates``) and the run-time
checks its inputs must pass. Nodes are values: once built, nothing changes them, so graphs
derived from one another (the gradient graph from the traced one, each entry point from those)
share them and each compiler stage returns a new Graph instead of editing its input. This
module imports nothing of graphnn's.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Union

import sympy

B = sympy.Symbol("B", integer=True, positive=True)
"""The batch size: the leading dimension of every input, bound when a program is called."""

Dim = Union[int, sympy.Expr]
Shape = tuple  # tuple[Dim, ...]

LEAF_OPS = ("input", "param", "buffer", "hyper")
"""Ops whose value comes from outside the graph: user inputs (and targets), parameters,
persistent buffers (BatchNorm statistics, momentum) and run-time scalars (learning rate, seeds)."""

DTYPES = ("f32", "f64", "i64", "bool")


def dim(value: Any) -> Dim:
    """Normalise a dimension: sympy integers become ints, expressions stay symbolic."""
    if isinstance(value, sympy.Basic):
        value = sympy.sympify(value)
        if value.is_Integer:
            return int(value)
        return value
    return int(value)


def numel(shape: Shape) -> Dim:
    """The number of elements of a shape, as an int or an expression of B."""
    total: Dim = 1
    for d in shape:
        total = total * d
    return dim(total)


def format_dim(d: Dim) -> str:
    return str(d).replace(" ", "")


def format_shape(shape: Shape) -> str:
    return "[" + ",".join(format_dim(d) for d in shape) + "]"


def evaluate_dim(d: Dim, batch: int) -> int:
    """The concrete size of a dimension for a given batch size."""
    if isinstance(d, int):
        return d
    return int(d.subs(B, batch))


def evaluate_shape(shape: Shape, batch: int) -> tuple[int, ...]:
    return tuple(evaluate_dim(d, batch) for d in shape)


_ids = itertools.count()


@dataclass(eq=False)
class Node:
    """One value of the graph: the primitive ``op`` applied to ``inputs``.

    ``attrs`` holds the op's static arguments (axes, shapes, a pointwise expression, a leaf's
    name); ``path`` and ``module`` name the Module that produced it, for errors and dumps.
    Nothing changes a Node once it is built, ``attrs`` included: graphs share their nodes (not
    frozen only because a frozen dataclass is three times slower to construct).
    """

    op: str
    inputs: tuple
    shape: Shape
    dtype: str
    attrs: dict = field(default_factory=dict)
    path: str = ""
    module: str = ""
    id: int = field(default_factory=lambda: next(_ids))

    @property
    def name(self) -> str:
        if self.op in LEAF_OPS:
            return self.attrs["name"]
        return str(self.id)

    @property
    def ref(self) -> str:
        return "%" + self.name

    def type_str(self) -> str:
        return self.dtype + format_shape(self.shape)

    def __repr__(self) -> str:
        return f"<Node {self.ref}:{self.type_str()} = {self.op}>"


@dataclass(frozen=True)
class Check:
    """A condition on the batch size that the runtime verifies before running a program."""

    condition: sympy.Basic
    message: str


@dataclass(frozen=True)
class LabelCheck:
    """Class labels the runtime verifies on every call, before running a program: each element
    of the integer input named ``input`` is in [0, classes) or equals ``ignore_index``."""

    input: str
    classes: int
    ignore_index: int

    def __str__(self) -> str:
        return f"%{self.input} in [0,{self.classes}) (ignore_index {self.ignore_index})"


@dataclass(frozen=True)
class IndexCheck:
    """Indices the runtime verifies on every call, before running a program: each element of
    the integer input named ``input`` picks one of the ``size`` positions along ``axis`` of the
    tensor it indexes. ``op`` is the PyTorch operation, which says the valid range (``x[idx]``,
    op "index", counts negative indices from the end; the others take [0, size)) and which of
    PyTorch's errors a bad index raises."""

    input: str
    size: int
    op: str
    axis: int = 0

    @property
    def low(self) -> int:
        return -self.size if self.op == "index" else 0

    def __str__(self) -> str:
        return f"%{self.input} in [{self.low},{self.size}) ({self.op} along axis {self.axis})"


class Graph:
    """A static computation graph: Nodes in topological order with named leaves and results."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.outputs: dict[str, Node] = {}
        self.updates: dict[str, Node] = {}
        self.checks: list[Check] = []
        self.label_checks: list[LabelCheck] = []
        self.index_checks: list[IndexCheck] = []
        self.placements: dict[str, Node] = {}
        """Values a backend should store in a named slot of a shared buffer (a parameter's gradient
        in the flat gradient buffer); they do not keep a value alive by themselves."""
        self.constants: dict[str, Any] = {}
        """The arrays of ``buffer`` leaves that hold values the forward made itself (a mask built
        with torch.tril, class weights): read like model buffers, owned by the graph."""
        self._leaves: dict[str, Node] = {}

    # -- building -----------------------------------------------------------------------
    def add(self, node: Node) -> Node:
        if node.op in LEAF_OPS:
            name = node.attrs["name"]
            if name in self._leaves:
                raise ValueError(f"graph already has a leaf named {name!r}")
            self._leaves[name] = node
        self.nodes.append(node)
        return node

    def leaf(self, name: str) -> Node | None:
        return self._leaves.get(name)

    def leaves(self, op: str) -> list[Node]:
        """The leaves of one kind ("input", "param", "buffer", "hyper") in creation order."""
        return [n for n in self._leaves.values() if n.op == op]

    @property
    def inputs(self) -> list[Node]:
        return self.leaves("input")

    @property
    def params(self) -> list[Node]:
        return self.leaves("param")

    # -- reading ------------------------------------------------------------------------
    def live_nodes(self) -> list[Node]:
        """The nodes that outputs and updates depend on, in topological order."""
        live: set[int] = set()
        stack = list(self.outputs.values()) + list(self.updates.values())
        while stack:
            n = stack.pop()
            if n.id in live:
                continue
            live.add(n.id)
            stack.extend(n.inputs)
        return [n for n in self.nodes if n.id in live]

    def copy(self) -> "Graph":
        """A new Graph with the same nodes, leaves, results and checks; adding to either leaves
        the other as it was. Nodes are shared (they never change), so this costs a list copy."""
        return self.variant(self.outputs, self.updates)

    def variant(self, outputs: dict, updates: dict) -> "Graph":
        """A new Graph with these nodes, leaves, checks and placements and other outputs and
        updates (the inference, loss, gradient and train-step programs of one trace). Nodes are
        shared; the lists and tables are its own, so nodes or leaves added to it stay out of
        this graph."""
        other = Graph()
        other.nodes, other._leaves = list(self.nodes), dict(self._leaves)
        other.checks, other.label_checks = list(self.checks), list(self.label_checks)
        other.index_checks = list(self.index_checks)
        other.outputs, other.updates = dict(outputs), dict(updates)
        other.placements = dict(self.placements)
        other.constants = dict(self.constants)
        return other

    def __str__(self) -> str:
        live = self.live_nodes()
        names = {n.id: (n.ref if n.op in LEAF_OPS else f"%{k}") for k, n in enumerate(n for n in live if n.op not in LEAF_OPS)}
        names.update({n.id: n.ref for n in live if n.op in LEAF_OPS})
        lines = [f"{n.op} {n.ref}:{n.type_str()}" for kind in LEAF_OPS for n in live if n.op == kind]
        lines += [format_node(n, names) for n in live if n.op not in LEAF_OPS]
        lines += [f"output {name} = {names[n.id]}" for name, n in self.outputs.items()]
        lines += [f"update {name} <- {names[n.id]}" for name, n in self.updates.items()]
        lines += [f"check {c.condition}" for c in self.checks]
        lines += [f"check {c}" for c in self.label_checks]
        lines += [f"check {c}" for c in self.index_checks]
        return "\n".join(lines)


_SELF_DESCRIBING = {"add", "sub", "mul", "div", "neg", "exp", "log", "sqrt", "rsqrt", "abs", "relu", "tanh", "sigmoid", "silu", "eq", "squared_error", "absolute_error", "bce_with_logits"}


def format_node(n: Node, names: dict | None = None) -> str:
    """One line in a jaxpr-like grammar: ``%12:f32[B,300] = matmul %x %w   # path (Module)``."""
    names = names or {}
    op = n.op
    if op == "pointwise":
        op = n.attrs["name"]
        if op not in _SELF_DESCRIBING or (op in ("add", "sub", "mul", "div") and len(n.inputs) != 2):
            op += f"[{str(n.attrs['expr']).replace(' ', '')}]"
    args = " ".join(names.get(i.id, i.ref) for i in n.inputs)
    ref = names.get(n.id, n.ref)
    extra = {k: v for k, v in n.attrs.items() if k not in ("expr", "name", "grad_from_output")}
    text = f"{ref}:{n.type_str()} = {op}"
    if extra:
        text += "{" + ", ".join(f"{k}={format_attr(v)}" for k, v in extra.items()) + "}"
    if args:
        text += " " + args
    if n.path or n.module:
        text = f"{text:<60}  # {n.path or '<model>'} ({n.module})" if n.module else f"{text:<60}  # {n.path}"
    return text


def format_attr(v: Any) -> str:
    """An op's static argument as the graph prints it: tuples of dims without spaces."""
    if isinstance(v, tuple):
        return "(" + ",".join(format_dim(x) if isinstance(x, sympy.Basic) else str(x) for x in v) + ")"
    return str(v)
