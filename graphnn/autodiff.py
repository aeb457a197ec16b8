"""Reverse-mode differentiation as a graph transform: one rule per primitive.

``gradients`` walks the forward Graph backwards from a scalar and returns a new Graph: the
forward's nodes followed by the gradient Nodes, so the backward goes through the same passes and
backends as the forward. The forward Graph is left as it was.
Pointwise rules come from ``sympy.diff`` of the op's definition (``graphnn.pointwise``).
"""
from __future__ import annotations

from typing import Callable

import sympy

from graphnn import attention_op, scan_op
from graphnn import pointwise as pw
from graphnn.ir import Graph, Node
from graphnn.ops import Builder

NO_GRADIENT = ("iota", "rand", "detach", "input", "param", "buffer", "hyper")

one = pw.fn("one", sympy.Integer(1), nargs=0)


def gradients(graph: Graph, loss: Node, wrt: list[Node]) -> tuple[Graph, dict[int, Node]]:
    """(a new Graph holding ``graph`` and the backward, d loss / d node for each node of ``wrt``
    that the loss depends on, keyed by node id). ``graph`` itself is not changed."""
    if loss.shape != ():
        raise ValueError(f"gradients need a scalar loss, got shape {loss.shape}")
    out = graph.copy()
    b = Builder(out)
    b.path, b.module = loss.path, loss.module
    return out, backward(b, graph.nodes, {loss.id: lambda: b.pointwise(one)}, wrt)


def backward(b: Builder, nodes: list[Node], seeds: dict, wrt: list[Node]) -> dict[int, Node]:
    """The reverse sweep over ``nodes`` (a graph's, in topological order) appending to ``b``: the
    gradient reaching each node of ``wrt`` (by node id) from the cotangents of ``seeds`` (node id
    -> a function that makes the seed's cotangent node, called only for a node some node of
    ``wrt`` depends through)."""
    wanted = {n.id for n in wrt}
    needs = _needs_gradient(nodes, wanted)
    grads: dict[int, Node] = {i: make() for i, make in seeds.items() if i in needs}
    if not grads:
        return {}
    last = max(k for k, n in enumerate(nodes) if n.id in grads)
    for node in reversed(nodes[: last + 1]):
        g = grads.get(node.id)
        if g is None or node.op in NO_GRADIENT:
            continue
        b.path, b.module = node.path, (node.module + " backward") if node.module else "backward"
        for index, contribution in RULES[node.op](b, node, g, [i.id in needs for i in node.inputs]):
            source = node.inputs[index]
            previous = grads.get(source.id)
            grads[source.id] = contribution if previous is None else b.pointwise(pw.add, previous, contribution)
    return {n.id: grads[n.id] for n in wrt if n.id in grads}


def _needs_gradient(nodes: list[Node], wanted: set[int]) -> set[int]:
    needs = set()
    for n in nodes:
        if n.id in wanted or (
            n.op not in NO_GRADIENT and n.dtype in ("f32", "f64") and any(i.id in needs for i in n.inputs)
        ):
            needs.add(n.id)
    return needs


def differentiate_step(body: Graph) -> tuple[Graph, scan_op.Vjp]:
    """A scan step's vector-Jacobian product (graphnn.scan_op), and ``body`` with the residuals
    it needs added as outputs ``r0``, ``r1``, ...: the values computed in the step that the
    product reads (a value that is already a carry or a result is read from there; leaves,
    constants and views of them are read or recomputed)."""
    graph = body.copy()
    b = Builder(graph)
    outputs = [(name, node) for name, node in body.outputs.items() if name[0] in "cy"]
    seeds = {name: b.leaf("input", f"ct_{name}", node.shape) for name, node in outputs}
    wrt = [leaf for kind in "scw" for leaf in scan_op.leaves(body, kind)]
    grads = backward(b, body.nodes, {node.id: (lambda seed=seeds[name]: seed) for name, node in outputs}, wrt)
    forward = {n.id for n in body.nodes}
    needed = {}
    for node in graph.nodes:
        if node.id not in forward:
            for source in node.inputs:
                if source.id in forward and not scan_op.recomputed(source):
                    needed.setdefault(source.id, source)
    stored = {node.id: name for name, node in outputs}
    residuals, extended = {}, body.variant(dict(body.outputs), dict(body.updates))
    for node in needed.values():
        if node.id in stored:
            residuals[node.id] = stored[node.id]
        else:
            name = f"r{sum(1 for n in extended.outputs if n[0] == 'r')}"
            extended.outputs[name] = node
            residuals[node.id] = name
    by_name = {leaf.id: leaf.attrs["name"] for leaf in wrt}
    return extended, scan_op.Vjp(graph, seeds, {by_name[i]: g for i, g in grads.items()}, residuals)


# -- rules: (builder, node, incoming gradient, which inputs need one) -> [(input index, grad)] ----
Rule = Callable[[Builder, Node, Node, list], list]


def _pointwise(b: Builder, node: Node, g: Node, needed: list) -> list:
    fn = pw.PointwiseFn(node.attrs["name"], node.attrs["expr"], len(node.inputs), node.attrs.get("grad_from_output", ()))
    out = []
    for i, source in enumerate(node.inputs):
        if not needed[i]:
            continue
        vjp = pw.vjp_expr(fn, i)
        if vjp == 0:  # comparisons: no gradient flows through a condition
            continue
        grad = _pointwise_from(b, f"{fn.name}_grad" + (str(i) if fn.nargs > 1 else ""), vjp, g, node)
        if source.shape == () and node.shape != ():
            grad = b.reshape(b.reduce("sum", grad, range(len(node.shape))), ())
        out.append((i, grad))
    return out


def _pointwise_from(b: Builder, name: str, expr: sympy.Expr, g: Node, node: Node) -> Node:
    """A pointwise node for ``expr`` over g (G), the node's inputs (x_k) and its output (y)."""
    sources = [(pw.G, g)] + [(pw.X[k], n) for k, n in enumerate(node.inputs)] + [(pw.Y, node)]
    used = [(s, n) for s, n in sources if s in expr.free_symbols]
    if expr == pw.G:
        return g
    renamed = expr.xreplace({s: pw.X[j] for j, (s, _) in enumerate(used)})
    return b.pointwise(pw.fn(name, renamed, nargs=len(used)), *(n for _, n in used), dtype=g.dtype)


def _reduce(b: Builder, node: Node, g: Node, needed: list) -> list:
    x = node.inputs[0]
    wide = b.expand(g, x.shape)
    if node.attrs["kind"] == "sum":
        return [(0, wide)]
    if node.attrs.get("ties") in ("first", "pool"):
        pool = node.attrs["ties"] == "pool"
        mask, key = b.first_max(x, node.attrs["axes"], node, last_nan=pool, inside=_inside(b, x) if pool else None)
        grad = b.pointwise(pw.mul, mask, wide)
        window = _pooled_window(x, node.attrs["axes"]) if pool else None
        if window is not None:
            b.routed[grad.id] = (window, key, g)
        return [(0, grad)]
    # ties share the gradient evenly (PyTorch's amax)
    at_max = b.pointwise(pw.eq, x, b.expand(node, x.shape), dtype=g.dtype)
    count = b.expand(b.reduce("sum", at_max, node.attrs["axes"]), x.shape)
    share = pw.fn("max_grad", pw.X[0] * pw.X[1] / pw.X[2])
    return [(0, b.pointwise(share, at_max, wide, count))]


def _pooled_window(patches: Node, axes) -> Node | None:
    """The window a max pool reduces, when ``patches`` are its channel-major view (N, C, *O, *K)
    reduced over the kernel axes (conv.py's pooling), else None."""
    if patches.op != "permute" or patches.inputs[0].op != "window":
        return None
    window = patches.inputs[0]
    rank = len(window.attrs["kernel"])
    channel_major = (0, rank + 1, *range(1, rank + 1), *range(rank + 2, 2 * rank + 2))
    if tuple(patches.attrs["perm"]) != channel_major or tuple(axes) != tuple(range(rank + 2, 2 * rank + 2)):
        return None
    return window


def _routed_pool_gradient(b: Builder, node: Node, g: Node) -> Node | None:
    """A max pool's gradient added straight to the element each window chose, or None where
    ``g`` is not the gradient of a max pool over this window alone.

    The reduce's rule gives the patches a gradient that is nonzero only at each window's chosen
    element (the first maximum, or the last NaN); its transpose through the window
    (``unwindow`` and a sum over the kernel axes) then visits every (input element, kernel
    position) pair, with a divisibility test per pair where the stride exceeds 1, and reads a
    patch-sized array made for it. Here each window's chosen element is found from the key the
    reduce's rule computed (n - flat kernel index, or n + 1 + index for a NaN) and the pooled
    cotangent is added there: one ``scatter_add`` over the pooled positions. Windows overlap
    (stride under the kernel size), so an element chosen by several windows sums their
    gradients, in the order of the windows, as PyTorch's max pool backward adds them."""
    patches = g.inputs[0] if g.op == "permute" else None
    if patches is None or patches.id not in b.routed or b.routed[patches.id][0] is not node:
        return None
    _, key, cotangent = b.routed[patches.id]
    a, x = node.attrs, node.inputs[0]
    rank = len(a["kernel"])
    n, c, spatial = x.shape[0], x.shape[1], tuple(x.shape[2:])
    pooled = tuple(key.shape[2:2 + rank])
    k, count = pw.x0, 1
    for size in a["kernel"]:
        count *= size
    # the flat kernel index of the chosen element, then its position along each kernel axis
    flat = sympy.Piecewise((k - count - 1, k > count), (count - k, True))
    offsets, rest = [], flat
    for axis in reversed(range(rank)):
        size = a["kernel"][axis]
        # rest is a whole number: half a step above it keeps the quotient off an integer, where a
        # division printed as a product with a rounded reciprocal could land just under one
        quotient = sympy.floor((rest + sympy.Rational(1, 2)) / size)
        offsets.insert(0, rest - size * quotient if axis else rest)
        rest = quotient
    # its flat position in the (H, W) plane of the input, from the window's position (iotas)
    position, plane = sympy.Integer(0), 1
    for axis in reversed(range(rank)):
        along = pw.X[1 + axis] * a["stride"][axis] - a["padding"][axis] + offsets[axis] * a["dilation"][axis]
        position += along * plane
        plane *= spatial[axis]
    shape = (n, c, *pooled)
    iotas = [b.iota(shape, 2 + axis, "f32") for axis in range(rank)]
    index = b.pointwise(pw.fn("pool_source", position, nargs=1 + rank), b.reshape(key, shape), *iotas, dtype="i64")
    windows = 1
    for size in pooled:
        windows *= size
    flat_shape = (n, c, windows)
    added = b.scatter_add(b.reshape(cotangent, flat_shape), b.reshape(index, flat_shape), 2, (n, c, plane))
    return b.reshape(added, x.shape)


def _inside(b: Builder, patches: Node) -> Node | None:
    """1 where a padded window reads the input and 0 where it reads padding (None: no padding);
    the patches may be read through a permute (pooling reads them channel-major)."""
    window = patches.inputs[0] if patches.op == "permute" else patches
    if window.op != "window" or not any(window.attrs["padding"]):
        return None
    source = window.inputs[0]
    ones = b.expand(b.reshape(b.pointwise(one), (1,) * len(source.shape)), source.shape)
    a = window.attrs
    inside = b.window(ones, a["kernel"], a["stride"], a["padding"], a["dilation"], fill=0.0)
    return b.permute(inside, patches.attrs["perm"]) if patches.op == "permute" else inside


def _matmul(b: Builder, node: Node, g: Node, needed: list) -> list:
    a, w = node.inputs
    out = []
    if needed[0]:
        out.append((0, b.matmul(g, b.swap_last(w))))
    if needed[1]:
        out.append((1, b.matmul(b.swap_last(a), g)))
    return out


def _reshape(b: Builder, node: Node, g: Node, needed: list) -> list:
    return [(0, b.reshape(g, node.inputs[0].shape))]


def _permute(b: Builder, node: Node, g: Node, needed: list) -> list:
    perm = node.attrs["perm"]
    inverse = [perm.index(k) for k in range(len(perm))]
    return [(0, b.permute(g, inverse))]


def _expand(b: Builder, node: Node, g: Node, needed: list) -> list:
    x = node.inputs[0]
    axes = [k for k, (s, d) in enumerate(zip(x.shape, node.shape)) if s == 1 and d != 1]
    return [(0, b.reduce("sum", g, axes))]


def _slice(b: Builder, node: Node, g: Node, needed: list) -> list:
    """The gradient goes back to the positions the slice read, zero elsewhere."""
    return [(0, b.pad(g, node.attrs["start"], node.attrs["step"], node.inputs[0].shape))]


def _pad(b: Builder, node: Node, g: Node, needed: list) -> list:
    """The input's gradient is read back from its positions (the fill's is dropped)."""
    return [(0, b.slice(g, node.attrs["start"], node.attrs["step"], node.inputs[0].shape))]


def _window(b: Builder, node: Node, g: Node, needed: list) -> list:
    """Each input element gets the sum of the gradients of the patch positions that read it."""
    routed = _routed_pool_gradient(b, node, g)
    if routed is not None:
        return [(0, routed)]
    x, a = node.inputs[0], node.attrs
    rank = len(a["kernel"])
    spread = b.unwindow(g, x.shape[2:], a["kernel"], a["stride"], a["padding"], a["dilation"])
    summed = b.reduce("sum", spread, range(2 + rank, 2 + 2 * rank))
    return [(0, b.reshape(summed, x.shape))]


def _gather(b: Builder, node: Node, g: Node, needed: list) -> list:
    """Each gathered element's gradient goes back to the place it was read from, summed where
    an index repeats (the index itself, integers, gets none)."""
    x, index = node.inputs
    return [(0, b.scatter_add(g, index, node.attrs["axis"], x.shape))]


def _scatter_add(b: Builder, node: Node, g: Node, needed: list) -> list:
    """Each added value's gradient is the gradient at the place it was added to."""
    return [(0, b.gather(g, node.inputs[1], node.attrs["axis"]))]


def _unwindow(b: Builder, node: Node, g: Node, needed: list) -> list:
    raise NotImplementedError("unwindow appears only in backward graphs; second derivatives of convolutions "
                              "and pooling are not supported")


RULES: dict[str, Rule] = {
    "attention": attention_op.gradient,
    "scan": scan_op.gradient,
    "attention_lse": attention_op.no_second_derivative,
    "attention_grad": attention_op.no_second_derivative,
    "gather": _gather,
    "scatter_add": _scatter_add,
    "window": _window,
    "unwindow": _unwindow,
    "slice": _slice,
    "pad": _pad,
    "pointwise": _pointwise,
    "reduce": _reduce,
    "matmul": _matmul,
    "reshape": _reshape,
    "permute": _permute,
    "expand": _expand,
}


def with_gradients(graph: Graph, named_params: dict) -> tuple[Graph, dict]:
    """(a new Graph: the traced ``graph`` and the backward of its loss, parameter name -> d loss /
    d parameter node in it) for the parameters that require grad; ``graph`` is not changed."""
    wrt = [n for n in graph.params if named_params[n.name].requires_grad]
    backward, grads = gradients(graph, graph.outputs["loss"], wrt)
    by_id = {n.id: n.name for n in wrt}
    return backward, {by_id[i]: g for i, g in grads.items()}
