"""Attention as one primitive: softmax(q k^T * scale + mask) v, with a gradient that never needs
the probabilities.

Three ops, all over (..., T, D) operands with the same leading dimensions:

- ``attention`` (q, k, v[, mask]) -> o, of shape (..., Tq, Dv);
- ``attention_lse`` (q, k[, mask]) -> (..., Tq, 1): the log of each row's sum of exp(scores),
  -inf for a row no key may be attended from;
- ``attention_grad`` (q, k, v[, mask], do, lse, delta), with ``wrt`` one of "q", "k", "v" -> that
  operand's gradient, where ``do`` is the output's gradient and ``delta`` = sum(do * o) per row.

Their attributes: ``scale`` (a float), ``causal`` (query i sees keys j <= i, aligned at the top
left as PyTorch's ``is_causal``) and ``mask``: "none", "bool" (the mask input is True where
attention is allowed) or "add" (it is added to the scores). The mask input has the scores' full
shape (a broadcast view costs nothing). A row no key may be attended from gets zeros and a zero
gradient (PyTorch's safe softmax).

Why a primitive. The gradient of softmax(s) v needs the probabilities P = exp(s - lse), and
the composition of matmuls and a softmax stores them, (..., Tq, Tk) floats, from the forward to
the backward. With lse and delta (one number per query) the backward recomputes P tile by tile
instead: dv = P^T do, dS = P * (do v^T - delta), dq = dS k * scale, dk = dS^T q * scale. That is
flash attention's backward, and the Triton backend runs these ops as such kernels
(``codegen.triton``). Backends without attention kernels (C, the plan interpreter) run
``expand``: the same meaning in the other primitives, in which simplify's common
subexpressions give the backward the forward's probabilities (on a CPU keeping them costs less
than computing them again). This module is the ops' one definition: the numpy meaning (the
reference interpreter and eager tensors run it), the gradient rule (autodiff), and the expansion.
"""
from __future__ import annotations

import numpy as np
import sympy

from graphnn import pointwise as pw
from graphnn.ir import Graph, Node

OPS = ("attention", "attention_lse", "attention_grad")
MASKS = ("none", "bool", "add")


def attrs_of(node: Node) -> dict:
    """The attributes every op of one attention shares (what its kernels need to agree on)."""
    return {k: node.attrs[k] for k in ("scale", "causal", "mask")}


def kernel_key(node: Node) -> tuple:
    """What attention ops one kernel computes together share: the forward's attention and lse
    (q, k and mask), the gradients of k and v (all their inputs)."""
    q, k, _, mask, _ = operands(node)
    attrs = tuple(sorted(attrs_of(node).items()))
    if node.op != "attention_grad":
        return ("forward", q.id, k.id, mask.id if mask is not None else None, attrs)
    role = "grad_q" if node.attrs["wrt"] == "q" else "grad_kv"
    return (role, tuple(i.id for i in node.inputs), attrs)


def operands(node: Node) -> tuple:
    """(q, k, v or None, mask or None, the rest) of an attention op's inputs."""
    inputs = list(node.inputs)
    q, k = inputs[:2]
    v = inputs[2] if node.op != "attention_lse" else None
    rest = inputs[2 if v is None else 3:]
    mask = rest.pop(0) if node.attrs["mask"] != "none" else None
    return q, k, v, mask, rest


# -- building ----------------------------------------------------------------------------------
def lse(b, q: Node, k: Node, mask: Node | None, attrs: dict) -> Node:
    return b.emit("attention_lse", (q, k) + ((mask,) if mask is not None else ()), q.shape[:-1] + (1,),
                  q.dtype, **attrs)


def grad(b, q: Node, k: Node, v: Node, mask: Node | None, do: Node, lse_: Node, delta: Node, attrs: dict,
         wrt: str) -> Node:
    shape = {"q": q.shape, "k": k.shape, "v": v.shape}[wrt]
    inputs = (q, k, v) + ((mask,) if mask is not None else ()) + (do, lse_, delta)
    return b.emit("attention_grad", inputs, shape, q.dtype, **attrs, wrt=wrt)


# -- the gradient rule ---------------------------------------------------------------------------
def gradient(b, node: Node, g: Node, needed: list) -> list:
    """attention's rule: q, k and v's gradients as attention_grad ops of (q, k, v, the output's
    gradient, lse, delta); an additive mask that needs one (a learned bias) gets the scores'
    gradient, which has the scores' shape: the primitives of ``expand`` compute it."""
    q, k, v, mask, _ = operands(node)
    attrs = attrs_of(node)
    row_lse = lse(b, q, k, mask, attrs)
    delta = b.reduce("sum", b.pointwise(pw.mul, g, node), (len(node.shape) - 1,))
    out = [(i, grad(b, q, k, v, mask, g, row_lse, delta, attrs, name))
           for i, name in enumerate("qkv") if needed[i]]
    if mask is not None and len(needed) > 3 and needed[3]:
        p = _probabilities(b, _scores(b, q, k, mask, attrs))[0]
        out.append((3, _scores_gradient(b, p, v, g, delta)))
    return out


def no_second_derivative(b, node: Node, g: Node, needed: list) -> list:
    raise NotImplementedError(f"{node.op} appears only in backward graphs; second derivatives of attention are "
                              "not supported")


# -- numpy meaning -------------------------------------------------------------------------------
def _numpy_scores(attrs: dict, q: np.ndarray, k: np.ndarray, mask) -> np.ndarray:
    s = np.matmul(np.asarray(q, np.float64), np.swapaxes(np.asarray(k, np.float64), -1, -2)) * attrs["scale"]
    tq, tk = s.shape[-2:]
    if attrs["causal"]:
        s = np.where(np.tril(np.ones((tq, tk), bool)), s, -np.inf)
    if attrs["mask"] == "bool":
        s = np.where(np.asarray(mask) != 0, s, -np.inf)
    elif attrs["mask"] == "add":
        s = s + np.asarray(mask, np.float64)
    return s


def _numpy_softmax(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, lse) of scores: rows of -inf give zeros and an lse of -inf."""
    with np.errstate(all="ignore"):
        top = s.max(-1, keepdims=True)
        shift = np.where(top == -np.inf, 0.0, top)
        e = np.exp(s - shift)
        total = e.sum(-1, keepdims=True)
        return np.where(total == 0, 0.0, e / total), shift + np.log(total)


def evaluate(node: Node, args: list, shape, dtype, batch) -> np.ndarray:
    """The value of one attention op from its inputs' values, in float64 (rounded once)."""
    attrs = node.attrs
    n = 2 if node.op == "attention_lse" else 3
    q, k = args[0], args[1]
    v = args[2] if n == 3 else None
    mask = args[n] if attrs["mask"] != "none" else None
    rest = args[n + (mask is not None):]
    s = _numpy_scores(attrs, q, k, mask)
    if node.op == "attention":
        p, _ = _numpy_softmax(s)
        return np.matmul(p, np.asarray(v, np.float64)).astype(dtype)
    if node.op == "attention_lse":
        return _numpy_softmax(s)[1].astype(dtype)
    do, row_lse, delta = (np.asarray(a, np.float64) for a in rest)
    with np.errstate(all="ignore"):
        p = np.where(row_lse == -np.inf, 0.0, np.exp(s - row_lse))
    if attrs["wrt"] == "v":
        return np.matmul(np.swapaxes(p, -1, -2), do).astype(dtype)
    ds = p * (np.matmul(do, np.swapaxes(np.asarray(v, np.float64), -1, -2)) - delta)
    other = np.asarray(k if attrs["wrt"] == "q" else q, np.float64)
    if attrs["wrt"] == "k":
        ds = np.swapaxes(ds, -1, -2)
    return (np.matmul(ds, other) * attrs["scale"]).astype(dtype)


# -- the same meaning in other primitives ----------------------------------------------------------
_masked = pw.fn("attention_mask", sympy.Piecewise((pw.X[0], sympy.Ne(pw.X[1], 0)), (-sympy.oo, True)), nargs=2)
_causal = pw.fn("causal_mask", sympy.Piecewise((pw.X[0], pw.X[2] <= pw.X[1]), (-sympy.oo, True)), nargs=3)
# the shift of a row of -inf (the largest float's negative: sympy takes its symbols as finite,
# so no comparison with -oo survives) makes exp(score - shift) 0 instead of NaN
_LOWEST = sympy.Float(-3.4028234663852886e38)
_shift = pw.fn("softmax_shift", sympy.Piecewise((pw.X[0], pw.X[0] >= _LOWEST), (_LOWEST, True)), nargs=1)
_exp_minus = pw.fn("exp_shifted", sympy.exp(pw.X[0] - pw.X[1]), nargs=2)
_normalized = pw.fn("softmax_div", sympy.Piecewise((0, sympy.Eq(pw.X[1], 0)), (pw.X[0] / pw.X[1], True)), nargs=2)
_log_sum = pw.fn("lse", pw.X[0] + sympy.log(pw.X[1]), nargs=2)
_scores_grad = pw.fn("softmax_grad", pw.X[0] * (pw.X[1] - pw.X[2]), nargs=3)


def _scores(b, q: Node, k: Node, mask: Node | None, attrs: dict) -> Node:
    s = b.pointwise(pw.scale(sympy.Float(attrs["scale"])), b.matmul(q, b.swap_last(k)))
    if attrs["causal"]:
        rank = len(s.shape)
        s = b.pointwise(_causal, s, b.iota(s.shape, rank - 2), b.iota(s.shape, rank - 1), dtype=s.dtype)
    if attrs["mask"] == "bool":
        s = b.pointwise(_masked, s, mask, dtype=s.dtype)
    elif attrs["mask"] == "add":
        s = b.pointwise(pw.add, s, mask)
    return s


def _probabilities(b, s: Node) -> tuple[Node, Node]:
    """(probabilities, lse) of scores, as ``_numpy_softmax``."""
    last = len(s.shape) - 1
    shift = b.pointwise(_shift, b.reduce("max", s, (last,)))
    e = b.pointwise(_exp_minus, s, b.expand(shift, s.shape))
    total = b.reduce("sum", e, (last,))
    return b.pointwise(_normalized, e, b.expand(total, s.shape)), b.pointwise(_log_sum, shift, total)


def _scores_gradient(b, p: Node, v: Node, do: Node, delta: Node) -> Node:
    dp = b.matmul(do, b.swap_last(v))
    return b.pointwise(_scores_grad, p, dp, b.expand(delta, dp.shape))


def _expansion(b, node: Node, inputs: tuple) -> Node:
    probe = Node(node.op, inputs, node.shape, node.dtype, node.attrs)
    q, k, v, mask, rest = operands(probe)
    attrs = node.attrs
    p, row_lse = _probabilities(b, _scores(b, q, k, mask, attrs))
    if node.op == "attention":
        return b.matmul(p, v)
    if node.op == "attention_lse":
        return row_lse
    do, _, delta = rest
    if attrs["wrt"] == "v":
        return b.matmul(b.swap_last(p), do)
    ds = _scores_gradient(b, p, v, do, delta)
    scale = pw.scale(sympy.Float(attrs["scale"]))
    if attrs["wrt"] == "q":
        return b.pointwise(scale, b.matmul(ds, k))
    return b.pointwise(scale, b.matmul(b.swap_last(ds), q))


def expand(graph: Graph) -> Graph:
    """``graph`` with every attention op replaced by its meaning in the other primitives (the
    graph itself when it has none). The backward's probabilities are built as the forward's are,
    so simplify's common subexpressions share them."""
    from graphnn.ops import Builder

    if not any(n.op in OPS for n in graph.nodes):
        return graph
    out = graph.variant({}, {})
    out.nodes, out._leaves = [], {}
    b = Builder(out)
    mapping: dict[int, Node] = {}
    for node in graph.nodes:
        inputs = tuple(mapping[i.id] for i in node.inputs)
        if node.op in OPS:
            b.path, b.module = node.path, node.module
            mapping[node.id] = _expansion(b, node, inputs)
            continue
        copy = node
        if any(new is not old for new, old in zip(inputs, node.inputs)):
            copy = Node(node.op, inputs, node.shape, node.dtype, node.attrs, node.path, node.module)
        mapping[node.id] = out.add(copy)
    out.outputs = {name: mapping[n.id] for name, n in graph.outputs.items()}
    out.updates = {name: mapping[n.id] for name, n in graph.updates.items()}
    out.placements = {name: mapping[n.id] for name, n in graph.placements.items() if n.id in mapping}
    return out
