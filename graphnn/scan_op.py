"""The time loop as one primitive: ``scan``, a step (a body Graph) repeated over the positions of
a sequence, carrying state from one position to the next.

A scan node's inputs are its sequences (each (T, ...), read one position at a time), the initial
values of its carries and its loop-invariant operands (weights). Its body Graph has one input
leaf per sequence (``s0``, ``s1``, ...: the slice at the current position), per carry (``c0``,
...: the value before the step) and per invariant operand (``w0``, ...), and outputs the carries
after the step (``c0``, ...), per-position results (``y0``, ...) and residuals (``r0``, ...: the
values the step's gradient needs, stored so the backward does not compute them again).

The node's value is one float32 array of T + 1 *slots*. A slot holds every output of one step,
each flattened, one after another (the ``blocks``: name, offset in the slot, shape). A forward
scan reads its initial carries from slot 0 and writes the step at position p into slot p + 1; a
``reverse`` scan (positions T - 1 down to 0) starts from slot T and writes position p into slot
p. Either way the per-position results are slots in position order (``results``), the step at
position p reads its carries from the slot the previous step wrote, and the final carries are the
last slot written. Nothing reads the other blocks of the initial slot (the reference fills them
with zeros; compiled code leaves them unwritten).

Why one node. Unrolled, a sequence of length T is T copies of the step in the traced graph, the
gradient graph, the fused plan and the generated code: compile time and code size grow with T.
A scan keeps one step: the backends run its kernels in a loop over positions (the C backend as a
``for`` loop in the entry point, the plan interpreter and the Triton launcher as loops on the
host), with the position ``LOOP_T`` in the addresses of the sequence slices and slots.

The gradient (``gradient``) is a reverse scan whose body is the step's vector-Jacobian product:
it carries the gradients of the carries back through the positions and yields each position's
sequence gradient. The gradient of a loop-invariant operand is a sum over positions: rather than
accumulating it in the loop (a (4H, H) weight gradient per step for an LSTM), the backward scan
yields the per-position values it is made from, and one product over all positions at once
follows the loop (for x W^T: dW = sum_p g_p^T x_p = G^T X over the T * N rows of all positions).
This module is the op's one definition: building (``scan``), its numpy meaning (``evaluate``),
its gradient and the layout the backends share.
"""
from __future__ import annotations

import hashlib
from typing import Callable, Sequence

import numpy as np
import sympy

from graphnn import pointwise as pw
from graphnn.ir import LEAF_OPS, Graph, Node, dim, evaluate_dim, evaluate_shape, numel

LOOP_T = sympy.Symbol("loop_t", integer=True, nonnegative=True)
"""The loop counter of a scan's kernels (0 .. T - 1), in addresses of a body's plan."""

MOVEMENT = ("reshape", "permute", "expand", "slice", "pad")


class Body:
    """A scan's step: its Graph (see the module docstring) and, when the scan is differentiable,
    its vector-Jacobian product (``vjp``), built once. Compared, hashed and printed by the
    structure of its graph, so two traces of one model give equal scans (and one cache key)."""

    def __init__(self, graph: Graph, vjp: "Vjp | None" = None) -> None:
        self.graph, self.vjp = graph, vjp
        self.text = str(graph)
        self.digest = hashlib.sha1(self.text.encode()).hexdigest()[:12]

    def __eq__(self, other) -> bool:
        return isinstance(other, Body) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"body#{self.digest}"

    __str__ = __repr__

    def leaves(self, kind: str) -> list[Node]:
        """The body's input leaves of one kind ("s", "c" or "w"), in order."""
        return leaves(self.graph, kind)


class Vjp:
    """A step's vector-Jacobian product, in a Graph that holds the step: ``seeds`` are input
    leaves holding the cotangents of the step's carries and results (by output name), ``grads``
    the gradient of each input leaf (by leaf name) that has one."""

    def __init__(self, graph: Graph, seeds: dict, grads: dict, residuals: dict) -> None:
        self.graph, self.seeds, self.grads = graph, seeds, grads
        self.residuals = residuals
        """forward node id -> the output name that stores it (a residual block, or a carry or
        result that is the same value)."""


# -- building (the step's vector-Jacobian product: graphnn.autodiff.differentiate_step) ---------------
def recomputed(node: Node) -> bool:
    """Whether the backward computes ``node`` again rather than reading it from the forward: a
    leaf, a constant, a view of those."""
    if node.op in LEAF_OPS or (node.op == "pointwise" and not node.inputs):
        return True
    return node.op in MOVEMENT and all(recomputed(i) for i in node.inputs)


def leaves(graph: Graph, kind: str) -> list[Node]:
    found = []
    while graph.leaf(f"{kind}{len(found)}") is not None:
        found.append(graph.leaf(f"{kind}{len(found)}"))
    return found


def layout(graph: Graph) -> tuple[tuple, sympy.Expr]:
    """(the blocks of a slot: (output name, offset, shape) in output order; the slot's size)."""
    blocks, offset = [], dim(0)
    for name, node in graph.outputs.items():
        blocks.append((name, offset, tuple(node.shape)))
        offset = dim(offset + numel(node.shape))
    return tuple(blocks), offset


def scan(b, body: Body, seqs: Sequence[Node], inits: Sequence[Node], consts: Sequence[Node],
         reverse: bool = False) -> Node:
    """A scan node on builder ``b`` (see the module docstring): ``seqs`` of shape (T, ...) whose
    slices match the body's sequence leaves, ``inits`` its carries, ``consts`` its invariant
    operands, each of the shape the body's leaf has."""
    graph = body.graph
    if not seqs:
        raise ValueError("a scan needs at least one sequence (its length is the sequence's)")
    length = seqs[0].shape[0]
    for kind, given in (("s", [s.shape[1:] for s in seqs]), ("c", [i.shape for i in inits]),
                        ("w", [c.shape for c in consts])):
        expected = [leaf.shape for leaf in body.leaves(kind)]
        if [tuple(s) for s in given] != [tuple(s) for s in expected]:
            raise b.error(f"scan: the body's {kind}-leaves have shapes {expected}, got {given}")
    if any(s.shape[0] != length for s in seqs):
        raise b.error(f"scan: sequences of different lengths {[s.shape[0] for s in seqs]}")
    if any(n.dtype != "f32" for n in list(seqs) + list(inits) + list(consts)):
        raise b.error("scan: every sequence, carry and operand must be float32")
    blocks, width = layout(graph)
    return b.emit("scan", tuple(seqs) + tuple(inits) + tuple(consts), (dim(length + 1), width), "f32", body=body,
                  length=int(length), reverse=bool(reverse), counts=(len(seqs), len(inits), len(consts)),
                  blocks=blocks)


def slots(node: Node) -> tuple[int, int, int]:
    """(the slot of the initial carries, the first slot of the carries read in position order,
    the first slot of the results in position order)."""
    return (node.attrs["length"], 1, 0) if node.attrs["reverse"] else (0, 0, 1)


def block(node: Node, name: str) -> tuple:
    return next(entry for entry in node.attrs["blocks"] if entry[0] == name)


def stacked(b, node: Node, name: str, first: int, layout: Node | None = None) -> Node:
    """Block ``name`` of T slots from slot ``first``, as (T, *shape), of scan ``node`` (or of a
    value laid out as scan ``layout``: its cotangent)."""
    layout = layout or node
    _, offset, shape = block(layout, name)
    length = layout.attrs["length"]
    part = b.slice(node, (first, offset), (1, 1), (length, numel(shape)))
    return b.reshape(part, (length,) + tuple(shape))


def results(b, node: Node) -> tuple[dict, dict]:
    """({result or carry name: its values at every position, (T, *shape), in position order},
    {carry name: its final value})."""
    init, _, first = slots(node)
    last = 0 if node.attrs["reverse"] else node.attrs["length"]
    every, final = {}, {}
    for name, offset, shape in node.attrs["blocks"]:
        if name[0] in "cy":
            every[name] = stacked(b, node, name, first)
        if name[0] == "c":
            final[name] = b.reshape(b.slice(node, (last, offset), (1, 1), (1, numel(shape))), shape)
    return every, final


def split(node: Node, inputs: Sequence) -> tuple[list, list, list]:
    """A scan's inputs (or anything in their order) as (sequences, initial carries, operands)."""
    s, c, _ = node.attrs["counts"]
    inputs = list(inputs)
    return inputs[:s], inputs[s:s + c], inputs[s + c:]


# -- the numpy meaning ------------------------------------------------------------------------------
def evaluate(node: Node, args: list, shape: tuple, dtype: type, batch, evaluate_node: Callable) -> np.ndarray:
    """The scan's value from its inputs' (``evaluate_node(node, args, batch, precision)``
    evaluates one node of the body: graphnn.evaluate's)."""
    graph, length, reverse = node.attrs["body"].graph, node.attrs["length"], node.attrs["reverse"]
    seqs, inits, consts = split(node, args)
    out = np.zeros(shape, dtype)
    init, carried, first = slots(node)
    where = {name: (evaluate_dim(offset, batch), evaluate_shape(s, batch)) for name, offset, s in node.attrs["blocks"]}
    for j, value in enumerate(inits):
        offset, s = where[f"c{j}"]
        out[init, offset:offset + int(np.prod(s))] = np.reshape(value, -1)
    live = graph.live_nodes()
    for step in range(length):
        p = length - 1 - step if reverse else step
        env: dict[int, np.ndarray] = {}
        for node_ in live:
            if node_.op in LEAF_OPS:
                name = node_.attrs["name"]
                kind, k = name[0], int(name[1:])
                if kind == "s":
                    value = seqs[k][p]
                elif kind == "w":
                    value = consts[k]
                else:
                    offset, s = where[name]
                    value = out[carried + p, offset:offset + int(np.prod(s))].reshape(s)
                env[node_.id] = np.asarray(value, dtype)
            else:
                env[node_.id] = evaluate_node(node_, [env[i.id] for i in node_.inputs], batch, dtype)
        for name, result in graph.outputs.items():
            offset, s = where[name]
            out[first + p, offset:offset + int(np.prod(s))] = np.reshape(env[result.id], -1)
    return out


# -- the gradient ---------------------------------------------------------------------------------
def gradient(b, node: Node, g: Node, needed: list) -> list:
    """The scan's vector-Jacobian product: a reverse scan over the step's (see the module
    docstring), then the sums over positions of the invariant operands' gradients."""
    from graphnn.ops import Builder

    body: Body = node.attrs["body"]
    vjp = body.vjp
    if vjp is None:
        raise NotImplementedError(f"{b.where()}: this scan was built without its gradient (second derivatives "
                                  "of a time loop are not supported)")
    length, reverse = node.attrs["length"], node.attrs["reverse"]
    seqs, inits, consts = split(node, node.inputs)
    need_seq, need_init, need_const = split(node, needed)
    init_slot, carried, first = slots(node)
    width = node.shape[1]
    out_slots = b.slice(node, (first, 0), (1, 1), (length, width))
    in_slots = b.slice(node, (carried, 0), (1, 1), (length, width))
    # the cotangent of each block that has one, at every position (a block no consumer read, a
    # residual's, is zero: the step gets a constant instead of a sequence of zeros)
    covered = _covered(g)
    ct_blocks = {name: stacked(b, g, name, first, node) for name, offset, shape in node.attrs["blocks"]
                 if covered is None or any(_at(lo) < _at(offset + numel(shape)) and _at(offset) < _at(hi)
                                           for lo, hi in covered)}

    # which per-position values the sums over positions read (each operand gradient's terms)
    probe = Builder(Graph())
    requests: dict[int, Node] = {}

    def request(n: Node) -> Node:
        requests.setdefault(n.id, n)
        return probe.leaf("input", f"probe{n.id}", (length,) + tuple(n.shape), n.dtype)

    for k, wanted in enumerate(need_const):
        if wanted and f"w{k}" in vjp.grads:
            summed(probe, vjp.grads[f"w{k}"], request, length)
    sequence_values = {leaf.id for kind in "sc" for leaf in leaves(body.graph, kind)} | set(vjp.residuals)
    exports = [n for i, n in requests.items() if i not in sequence_values]

    # the reverse scan's step
    step = Graph()
    sb = Builder(step)
    sb.path, sb.module = node.path, (node.module + " backward") if node.module else "backward"
    leaf_seqs = [sb.leaf("input", f"s{i}", s.shape[1:]) for i, s in enumerate(seqs)]
    fin, fout = (sb.leaf("input", f"s{len(seqs) + k}", (width,)) for k in range(2))
    ct = {name: sb.leaf("input", f"s{len(seqs) + 2 + k}", block(node, name)[2]) for k, name in enumerate(ct_blocks)}
    carries = [sb.leaf("input", f"c{j}", i.shape) for j, i in enumerate(inits)]
    leaf_consts = [sb.leaf("input", f"w{k}", c.shape) for k, c in enumerate(consts)]

    def part(slot: Node, name: str) -> Node:
        _, offset, shape = block(node, name)
        return sb.reshape(sb.slice(slot, (offset,), (1,), (numel(shape),)), shape)

    mapping: dict[int, Node] = {}
    for kind, made in (("s", leaf_seqs), ("w", leaf_consts)):
        for leaf, new in zip(leaves(body.graph, kind), made):
            mapping[leaf.id] = new
    for j, leaf in enumerate(leaves(body.graph, "c")):
        mapping[leaf.id] = part(fin, f"c{j}")
    for node_id, name in vjp.residuals.items():
        mapping[node_id] = part(fout, name)
    for name, seed in vjp.seeds.items():
        mapping[seed.id] = ct[name] if name in ct else _zeros(sb, seed.shape)
        if name[0] == "c":
            mapping[seed.id] = sb.pointwise(pw.add, mapping[seed.id], carries[int(name[1:])])

    def copy(n: Node) -> Node:
        if n.id not in mapping:
            mapping[n.id] = sb.emit(n.op, [copy(i) for i in n.inputs], n.shape, n.dtype, **n.attrs)
        return mapping[n.id]

    for j, leaf in enumerate(leaves(body.graph, "c")):
        grad = vjp.grads.get(leaf.name)
        step.outputs[f"c{j}"] = copy(grad) if grad is not None else _zeros(sb, leaf.shape)
    yielded = {f"s{i}": vjp.grads[f"s{i}"] for i, wanted in enumerate(need_seq) if wanted and f"s{i}" in vjp.grads}
    yielded.update({n.id: n for n in exports if all(n is not other for other in yielded.values())})
    names = {key: f"y{k}" for k, key in enumerate(yielded)}
    for key, n in yielded.items():
        step.outputs[names[key]] = copy(n)
    names.update({n.id: names[key] for key, n in yielded.items()})  # an export that is a sequence's gradient
    back = scan(b, Body(step), list(seqs) + [in_slots, out_slots] + list(ct_blocks.values()),
                [_zeros(b, i.shape) for i in inits], list(consts), reverse=not reverse)
    every, final = results(b, back)

    # the gradients of the scan's inputs
    grads = []
    for i, wanted in enumerate(need_seq):
        if wanted and f"s{i}" in names:
            grads.append((i, every[names[f"s{i}"]]))
    for j, wanted in enumerate(need_init):
        if wanted:
            _, offset, shape = block(node, f"c{j}")
            direct = b.reshape(b.slice(g, (init_slot, offset), (1, 1), (1, numel(shape))), shape)
            grads.append((len(seqs) + j, b.pointwise(pw.add, final[f"c{j}"], direct)))

    def sequence(n: Node) -> Node:
        """A per-position value of the forward step, at every position: (T, *shape)."""
        if n.id in names:
            return every[names[n.id]]
        if n.id in vjp.residuals:
            return stacked(b, node, vjp.residuals[n.id], first)
        leaf = n.attrs["name"]
        if leaf[0] == "s":
            return seqs[int(leaf[1:])]
        return stacked(b, node, leaf, carried)

    for k, wanted in enumerate(need_const):
        if wanted and f"w{k}" in vjp.grads:
            grads.append((len(seqs) + len(inits) + k, summed(b, vjp.grads[f"w{k}"], sequence, length)))
    return grads


def _covered(g: Node) -> list | None:
    """The column ranges [lo, hi) of a slot that cotangent ``g`` can be non-zero in: the parts
    that the pads of its sum place (the gradients of the slices ``results`` takes); None when
    it is made otherwise."""
    if g.op == "pad":
        return [(g.attrs["start"][1], g.attrs["start"][1] + g.inputs[0].shape[1])]
    if g.op == "pointwise" and g.attrs["expr"] == pw.add.expr and len(g.inputs) == 2:
        parts = [_covered(i) for i in g.inputs]
        return None if None in parts else parts[0] + parts[1]
    return None


def _at(size) -> int:
    """A position in a slot at a batch size (block boundaries keep their order at every size)."""
    return evaluate_dim(dim(size), 1009)


def _zeros(b, shape: tuple) -> Node:
    return b.emit("pointwise", (), shape, "f32", name="constant", expr=sympy.Integer(0))


def summed(b, n: Node, sequence: Callable[[Node], Node], length: int) -> Node:
    """The sum over all positions of the step's value ``n``, built on ``b`` from ``sequence(m)``,
    the values of step nodes m at every position ((T, *shape)). Sums go through additions, views
    and sums over axes; a product of two per-position matrices becomes one product over the rows
    of every position (sum_p a_p b_p = [a_0 ... a_T-1] [b_0; ...; b_T-1])."""
    if n.op == "pointwise" and n.attrs["expr"] == pw.add.expr and len(n.inputs) == 2:
        return b.pointwise(pw.add, *(summed(b, i, sequence, length) for i in n.inputs))
    if n.op == "reshape":
        return b.reshape(summed(b, n.inputs[0], sequence, length), n.shape)
    if n.op == "permute":
        return b.permute(summed(b, n.inputs[0], sequence, length), n.attrs["perm"])
    if n.op == "matmul" and len(n.shape) == 2:
        left, right = n.inputs
        return b.matmul(_columns(b, left, sequence, length), _rows(b, right, sequence, length))
    if n.op == "reduce" and n.attrs["kind"] == "sum":
        x = sequence(n.inputs[0])
        total = b.reduce("sum", x, (0,) + tuple(a + 1 for a in n.attrs["axes"]))
        return b.reshape(total, n.shape)
    return b.reshape(b.reduce("sum", sequence(n), (0,)), n.shape)


def _rows(b, x: Node, sequence, length: int) -> Node:
    """A per-position (K, N) matrix at every position, stacked as (T * K, N)."""
    k, n = x.shape
    return b.reshape(sequence(x), (length * k, n))


def _columns(b, x: Node, sequence, length: int) -> Node:
    """A per-position (M, K) matrix at every position, side by side as (M, T * K)."""
    m, k = x.shape
    if x.op == "permute" and x.attrs["perm"] == (1, 0):  # the transpose of a (K, M) value
        return b.swap_last(b.reshape(sequence(x.inputs[0]), (length * k, m)))
    return b.reshape(b.permute(sequence(x), (1, 0, 2)), (m, length * k))
