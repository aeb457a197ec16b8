"""Graph simplification: dead code, common subexpressions, algebraic no-ops, constant folding.

Runs after autodiff, so forward and backward share their common subexpressions. The result is
a new, compact Graph holding only what the outputs and updates need.
"""
from __future__ import annotations

import sympy

from graphnn import pointwise as pw
from graphnn.ir import Graph, Node


def simplify(graph: Graph) -> Graph:
    """A new Graph computing the same outputs and updates with fewer nodes, numbered from 0 in
    order (so the same model always gives the same names in generated code)."""
    out = Graph()
    out.checks, out.label_checks = list(graph.checks), list(graph.label_checks)
    out.constants = dict(graph.constants)
    out.index_checks = list(graph.index_checks)
    mapping: dict[int, Node] = {}
    seen: dict[tuple, Node] = {}
    live = graph.live_nodes()
    uses: dict[int, int] = {}
    for node in live:
        for i in node.inputs:
            uses[i.id] = uses.get(i.id, 0) + 1
    for node in live:
        inputs = tuple(mapping[i.id] for i in node.inputs)
        if _transposed_matmul(node, uses):
            # (a @ b)^T = b^T @ a^T: the result comes out in the layout it is used in
            a, b = inputs[0].inputs
            inputs = (_swap(out, b, node), _swap(out, a, node))
            copy = out.add(Node("matmul", inputs, node.shape, node.dtype, {}, node.path, node.module, len(out.nodes)))
            mapping[node.id] = copy
            continue
        replacement = _no_op(node, inputs)
        if replacement is not None:
            mapping[node.id] = replacement
            continue
        op, attrs = node.op, dict(node.attrs)
        if op in ("reshape", "expand", "permute", "slice") and _constant(inputs[0]):
            # a moved constant is the constant at the new shape
            op, attrs, inputs = "pointwise", {"name": "constant", "expr": inputs[0].attrs["expr"]}, ()
        if op == "pointwise":
            attrs["expr"], inputs = _fold_constants(attrs["expr"], inputs)
        elif op == "reshape" and inputs[0].op == "reshape":  # reshape of reshape: one reshape
            inputs = inputs[0].inputs
        key = (op, tuple(i.id for i in inputs), node.shape, node.dtype, _attrs_key(attrs))
        if key in seen:
            mapping[node.id] = seen[key]
            continue
        copy = Node(op, inputs, node.shape, node.dtype, attrs, node.path, node.module, len(out.nodes))
        seen[key] = mapping[node.id] = out.add(copy)
    out.outputs = {name: mapping[n.id] for name, n in graph.outputs.items()}
    out.updates = {name: mapping[n.id] for name, n in graph.updates.items()}
    out.nodes = out.live_nodes()  # folding may have orphaned constants
    for name in out.updates:  # a state leaf that is only written (never read) names where to write
        leaf = graph.leaf(name)
        if leaf is not None and out.leaf(name) is None:
            out.add(Node(leaf.op, (), leaf.shape, leaf.dtype, dict(leaf.attrs), leaf.path, leaf.module, len(out.nodes)))
    out.placements = {name: mapping[n.id] for name, n in graph.placements.items() if n.id in mapping}
    return out



def _transposed_matmul(node: Node, uses: dict) -> bool:
    """A permute swapping the last two axes of a matmul that nothing else reads."""
    if node.op != "permute" or node.inputs[0].op != "matmul" or uses.get(node.inputs[0].id, 0) != 1:
        return False
    perm = node.attrs["perm"]
    rank = len(perm)
    return rank >= 2 and perm == tuple(range(rank - 2)) + (rank - 1, rank - 2)


def _swap(graph: Graph, x: Node, like: Node) -> Node:
    """x with its last two axes swapped (a permute that cancels a permute returns its input)."""
    perm = like.attrs["perm"]
    if x.op == "permute" and x.attrs["perm"] == perm:
        return x.inputs[0]
    shape = x.shape[:-2] + (x.shape[-1], x.shape[-2])
    return graph.add(Node("permute", (x,), shape, x.dtype, {"perm": perm}, x.path, x.module, len(graph.nodes)))


def _no_op(node: Node, inputs: tuple) -> Node | None:
    """The input itself when the node does nothing (autodiff is done, so detach is one too)."""
    if node.op == "detach":
        return inputs[0]
    if node.op in ("reshape", "expand") and inputs[0].shape == node.shape:
        return inputs[0]
    if node.op == "permute" and node.attrs["perm"] == tuple(range(len(node.shape))):
        return inputs[0]
    if (node.op == "pointwise" and node.attrs["expr"] == pw.X[0] and len(inputs) == 1
            and inputs[0].shape == node.shape and inputs[0].dtype == node.dtype):
        return inputs[0]
    return None


def _fold_constants(expr: sympy.Expr, inputs: tuple) -> tuple[sympy.Expr, tuple]:
    """Substitute inputs that are constant expressions (no arguments) into ``expr``."""
    if not any(_constant(i) for i in inputs):
        return expr, inputs
    kept, substitution = [], {}
    for k, i in enumerate(inputs):
        if _constant(i):
            substitution[pw.X[k]] = i.attrs["expr"]
        else:
            substitution[pw.X[k]] = pw.X[len(kept)]
            kept.append(i)
    return expr.xreplace(substitution), tuple(kept)


def _constant(node: Node) -> bool:
    return node.op == "pointwise" and not node.inputs


def _attrs_key(attrs: dict) -> tuple:
    return tuple(sorted(attrs.items()))
