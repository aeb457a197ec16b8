"""The primitive op set, as a Builder that appends shape-checked Nodes to a Graph.

Primitives (and only these reach autodiff, the passes and the backends):

- leaves: ``input``, ``param``, ``buffer`` (persistent state), ``hyper`` (run-time scalar)
- ``pointwise``: a sympy expression (``graphnn.pointwise``) of inputs that all have the output's
  shape, or shape () (a scalar read everywhere)
- ``reduce``: sum or max over axes, keeping the reduced axes with size 1
- ``matmul``: (..., M, K) @ (..., K, N) with equal leading dimensions
- ``attention``: softmax(q k^T * scale + mask) v, and ``attention_lse`` and ``attention_grad``
  for its gradient, which never needs the probabilities (``graphnn.attention_op``)
- movement: ``reshape``, ``permute``, ``expand`` (size-1 axes to a larger size, same rank),
  ``slice`` (a strided part: per axis a start and a positive step) and ``pad`` (its transpose:
  the input placed at those positions of a larger shape, a fill elsewhere), ``window`` (the
  patches of a convolution or pool) and ``unwindow`` (its transpose)
- ``gather``: torch.gather along one axis (an embedding lookup, index_select, ``x[idx]``), and
  ``scatter_add``, its transpose (the gradient of a gather: values added at the indexed places)
- ``iota``: the index along one axis, as a constant (class labels become one-hot through it)
- ``rand``: counter-based uniform [0, 1) draws keyed by (seed, step, stream, element index)
- ``detach``: the identity that stops gradients (the max in a stable log-softmax)
"""
from __future__ import annotations

from typing import Sequence

import sympy

from graphnn import pointwise as pw
from graphnn.ir import B, Check, Graph, IndexCheck, LabelCheck, Node, Shape, dim, format_shape, numel


class ShapeError(ValueError, RuntimeError):
    """Shapes that do not fit an op, named with the Module path that produced the op. A
    RuntimeError as PyTorch raises for shape mismatches, and a ValueError as before."""


class Builder:
    """Appends primitive Nodes to a Graph, tagging each with the current Module path."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.path = ""
        self.module = ""
        self.routed: dict[int, tuple[Node, Node, Node]] = {}
        """Gradients of a max pool's patches that the window's own rule sends straight to its
        input (autodiff): id of the patches' gradient -> (the window, the key of each window's
        chosen element, the pooled result's cotangent)."""

    def where(self) -> str:
        if self.module:
            return f"{self.path or '<model>'} ({self.module})"
        return self.path or "<model>"

    def error(self, message: str) -> ShapeError:
        return ShapeError(f"{self.where()}: {message}")

    def emit(self, op: str, inputs: Sequence[Node], shape: Shape, dtype: str, /, **attrs) -> Node:
        node = Node(op, tuple(inputs), tuple(dim(d) for d in shape), dtype, attrs, self.path, self.module)
        return self.graph.add(node)

    # -- leaves -------------------------------------------------------------------------------
    def leaf(self, op: str, name: str, shape: Shape, dtype: str = "f32", /, **attrs) -> Node:
        existing = self.graph.leaf(name)
        if existing is not None:
            return existing
        node = Node(op, (), tuple(dim(d) for d in shape), dtype, dict(name=name, **attrs))
        return self.graph.add(node)

    # -- pointwise --------------------------------------------------------------------------
    def pointwise(self, fn: pw.PointwiseFn, *inputs: Node, dtype: str | None = None) -> Node:
        if len(inputs) != fn.nargs:
            raise TypeError(f"{fn.name} takes {fn.nargs} inputs, got {len(inputs)}")
        shapes = [i.shape for i in inputs if i.shape != ()]
        shape = shapes[0] if shapes else ()
        for s in shapes:
            if s != shape:
                raise self.error(
                    f"{fn.name} needs inputs of one shape, got {', '.join(format_shape(i.shape) for i in inputs)}"
                )
        if dtype is None:
            dtype = next((i.dtype for i in inputs if i.dtype in ("f32", "f64")), "f32")
        attrs = dict(name=fn.name, expr=fn.expr)
        if fn.grad_from_output:
            attrs["grad_from_output"] = fn.grad_from_output
        return self.emit("pointwise", inputs, shape, dtype, **attrs)

    def apply(self, fn: pw.PointwiseFn, *inputs: Node, dtype: str | None = None) -> Node:
        """Pointwise with numpy broadcasting made explicit by ``broadcast``."""
        shape = broadcast_shapes(*(i.shape for i in inputs), where=self)
        return self.pointwise(fn, *(self.broadcast(i, shape) for i in inputs), dtype=dtype)

    # -- reductions ---------------------------------------------------------------------------
    def reduce(self, kind: str, x: Node, axes: Sequence[int], ties: str = "split") -> Node:
        """Sum or max over ``axes``, keeping them with size 1.

        For max, ``ties`` says where the gradient goes when several elements equal the maximum:
        "split" shares it evenly (PyTorch's amax and max()), "first" gives it all to the first
        one in row-major order over the reduced axes (PyTorch's max(dim)), "pool" too but to the
        last NaN where there are several (PyTorch's max pooling).
        """
        axes = tuple(sorted(set(normalize_axis(a, len(x.shape), self) for a in axes)))
        shape = tuple(1 if k in axes else d for k, d in enumerate(x.shape))
        if shape == tuple(x.shape):
            # only axes of size 1: nothing is reduced, so no reduction is emitted (a pooling
            # window of one element is the identity it is)
            return x
        if kind == "max":
            return self.emit("reduce", (x,), shape, x.dtype, kind=kind, axes=axes, ties=ties)
        return self.emit("reduce", (x,), shape, x.dtype, kind=kind, axes=axes)

    def first_max(self, x: Node, axes, m: Node | None = None, last_nan: bool = False,
                  inside: Node | None = None) -> tuple[Node, Node]:
        """(mask, key): mask is 1 at the first maximum over ``axes`` (in row-major order; where
        there are NaNs, the first one, as PyTorch's max(dim) chooses, or the last one with
        ``last_nan``, as its max pooling does) and 0 elsewhere; key, with the axes kept at size
        1, is n - (flat index of that maximum), n the number of elements reduced (for a last
        NaN: n + 1 + its index). ``m``: the maximum, when it is already computed. ``inside``: 1
        where an element is real and 0 where it is a pooling window's padding, which never
        takes the gradient (a window of -inf sends it to its first element inside the input)."""
        axes = (axes,) if isinstance(axes, int) else tuple(axes)
        n = numel(tuple(x.shape[a] for a in axes))
        m = self.reduce("max", x, axes) if m is None else m
        # with last_nan a NaN's key comes from its own branch below, so the mask need not see NaNs
        at_max = self.pointwise(pw.eq if last_nan else pw.at_max, x, self.expand(m, x.shape), dtype="f32")
        index, step = None, 1
        for axis in reversed(axes):  # the flat index over the reduced axes, last axis fastest
            term = self.iota(x.shape, axis, "f32")
            if step != 1:
                term = self.pointwise(pw.scale(step), term)
            index = term if index is None else self.pointwise(pw.add, index, term)
            step = step * x.shape[axis]
        key_of, args = pw.x0 * (n - pw.x1), [at_max, index]
        if inside is not None:
            key_of, args = key_of * pw.X[len(args)], args + [inside]
        if last_nan:
            key_of, args = sympy.Piecewise((n + 1 + pw.x1, pw.isnan(pw.X[len(args)]) > 0), (key_of, True)), args + [x]
        reversed_index = self.pointwise(pw.fn("reverse_index", key_of), *args)
        key = self.reduce("max", reversed_index, axes)
        mask = self.pointwise(pw.eq, reversed_index, self.expand(key, x.shape), dtype="f32")
        return mask, key

    def first_argmax(self, x: Node, axis: int) -> Node:
        """The index (int64) of the first maximum along ``axis``, kept with size 1."""
        n = x.shape[axis]
        _, key = self.first_max(x, axis)
        return self.pointwise(pw.fn("argmax", n - pw.x0, nargs=1), key, dtype="i64")

    # -- matmul -----------------------------------------------------------------------------
    def matmul(self, a: Node, b: Node) -> Node:
        if len(a.shape) < 2 or len(b.shape) < 2 or a.shape[:-2] != b.shape[:-2] or a.shape[-1] != b.shape[-2]:
            raise self.error(
                f"matmul needs (..., M, K) @ (..., K, N), got {format_shape(a.shape)} @ {format_shape(b.shape)}"
            )
        return self.emit("matmul", (a, b), a.shape[:-1] + b.shape[-1:], a.dtype)

    def attention(self, q: Node, k: Node, v: Node, mask: Node | None, scale: float, causal: bool) -> Node:
        """softmax(q k^T * scale + mask) v over the last two axes (``graphnn.attention_op``): q
        (..., Tq, D), k (..., Tk, D), v (..., Tk, Dv) and a mask broadcastable to (..., Tq, Tk),
        boolean (True where attention is allowed) or added to the scores; leading dimensions
        broadcast. ``causal``: query i sees keys j <= i."""
        if len(q.shape) < 2 or len(k.shape) < 2 or len(v.shape) < 2 or q.shape[-1] != k.shape[-1] \
                or k.shape[-2] != v.shape[-2]:
            raise self.error(f"attention needs q (..., Tq, D), k (..., Tk, D) and v (..., Tk, Dv), got "
                             f"{format_shape(q.shape)}, {format_shape(k.shape)} and {format_shape(v.shape)}")
        scores = (q.shape[-2], k.shape[-2])
        shapes = [q.shape[:-2], k.shape[:-2], v.shape[:-2]] + ([mask.shape[:-2]] if mask is not None else [])
        lead = broadcast_shapes(*shapes, where=self)
        q, k, v = (self.broadcast(x, lead + x.shape[-2:]) for x in (q, k, v))
        kind = "none"
        if mask is not None:
            broadcast_shapes(mask.shape, lead + scores, where=self)
            mask = self.broadcast(mask, lead + scores)
            kind = "bool" if mask.dtype == "bool" else "add"
        inputs = (q, k, v) + ((mask,) if mask is not None else ())
        return self.emit("attention", inputs, lead + (q.shape[-2], v.shape[-1]), q.dtype, scale=float(scale),
                         causal=bool(causal), mask=kind)

    # -- movement ---------------------------------------------------------------------------
    def reshape(self, x: Node, shape: Shape) -> Node:
        shape = tuple(dim(d) for d in shape)
        if shape == x.shape:
            return x
        if sympy.expand(numel(shape) - numel(x.shape)) != 0:
            raise self.error(f"cannot reshape {format_shape(x.shape)} to {format_shape(shape)}")
        return self.emit("reshape", (x,), shape, x.dtype, shape=shape)

    def permute(self, x: Node, perm: Sequence[int]) -> Node:
        perm = tuple(normalize_axis(p, len(x.shape), self) for p in perm)
        if sorted(perm) != list(range(len(x.shape))):
            raise self.error(f"permute needs a permutation of {len(x.shape)} axes, got {perm}")
        if perm == tuple(range(len(perm))):
            return x
        return self.emit("permute", (x,), tuple(x.shape[p] for p in perm), x.dtype, perm=perm)

    def swap_last(self, x: Node) -> Node:
        """x with its last two axes swapped (a matrix's transpose, batched)."""
        perm = list(range(len(x.shape)))
        perm[-1], perm[-2] = perm[-2], perm[-1]
        return self.permute(x, perm)

    def expand(self, x: Node, shape: Shape) -> Node:
        shape = tuple(dim(d) for d in shape)
        if shape == x.shape:
            return x
        if len(shape) != len(x.shape) or any(s != d and s != 1 for s, d in zip(x.shape, shape)):
            raise self.error(f"cannot expand {format_shape(x.shape)} to {format_shape(shape)}")
        return self.emit("expand", (x,), shape, x.dtype, shape=shape)

    def broadcast(self, x: Node, shape: Shape) -> Node:
        """numpy broadcasting as reshape (new leading axes of size 1) then expand."""
        if x.shape == () or x.shape == tuple(shape):
            return x
        if len(x.shape) < len(shape):
            x = self.reshape(x, (1,) * (len(shape) - len(x.shape)) + tuple(x.shape))
        return self.expand(x, shape)

    # -- strided parts ------------------------------------------------------------------------
    def slice(self, x: Node, start: Sequence, step: Sequence[int], shape: Shape) -> Node:
        """The strided part of ``x`` of ``shape``: element i is x[start + i*step] along each axis.

        Bounds are the caller's (graphnn.indexing clamps and wraps them as PyTorch does): a start
        may be an expression of B (``x[-1]`` on the batch axis starts at B - 1), steps are whole
        numbers from 1, and every position read must lie inside ``x``."""
        start, step, shape = _strided(x, start, step, shape, shape, x.shape, "slice", self)
        if shape == tuple(x.shape) and not any(a != 0 for a in start):
            return x
        return self.emit("slice", (x,), shape, x.dtype, start=start, step=step)

    def pad(self, x: Node, start: Sequence, step: Sequence[int], shape: Shape, fill: float = 0.0) -> Node:
        """``x`` placed in a value of ``shape`` filled with ``fill``: element start + i*step along each
        axis is x[i]. The transpose of ``slice`` (its gradient), and how ``cat`` places its pieces.
        Integer and boolean values are padded with 0 (False) whatever the fill."""
        start, step, shape = _strided(x, start, step, shape, x.shape, shape, "pad", self)
        if shape == tuple(x.shape) and not any(a != 0 for a in start):
            return x
        return self.emit("pad", (x,), shape, x.dtype, start=start, step=step, fill=float(fill))

    # -- sliding windows (convolution and pooling) -------------------------------------------
    def window(self, x: Node, kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int],
               dilation: Sequence[int], fill: float = 0.0) -> Node:
        """The patches a convolution or pool reads: (N, C, *S) -> (N, *O, C, *K), element
        (n, o, c, k) = x[n, c, o*stride - padding + k*dilation], ``fill`` where that is padding."""
        rank = len(kernel)
        if len(x.shape) != 2 + rank:
            raise self.error(f"expected a {2 + rank}-D input (N, C, {', '.join('HWD'[:rank])}), got {format_shape(x.shape)}")
        windows = window_counts(x.shape[2:], kernel, stride, padding, dilation, self)
        shape = (x.shape[0], *windows, x.shape[1], *kernel)
        if (tuple(stride) == tuple(kernel) and not any(padding) and all(d == 1 for d in dilation)
                and all(s == o * k for s, o, k in zip(x.shape[2:], windows, kernel))):
            # windows that tile the input exactly are a reshape and a permute: views whose
            # gradients are views too (no unwindow)
            split = self.reshape(x, (x.shape[0], x.shape[1]) + tuple(d for o, k in zip(windows, kernel) for d in (o, k)))
            return self.permute(split, (0, *range(2, 2 + 2 * rank, 2), 1, *range(3, 3 + 2 * rank, 2)))
        attrs = dict(kernel=tuple(kernel), stride=tuple(stride), padding=tuple(padding), dilation=tuple(dilation))
        return self.emit("window", (x,), shape, x.dtype, **attrs, fill=float(fill))

    def unwindow(self, g: Node, spatial: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
                 padding: Sequence[int], dilation: Sequence[int]) -> Node:
        """The transpose of ``window`` before its sum: (N, *O, C, *K) -> (N, C, *S, *K), element
        (n, c, s, k) = g[n, (s + padding - k*dilation) / stride, c, k] where that is a window, else 0."""
        rank = len(kernel)
        shape = (g.shape[0], g.shape[1 + rank], *spatial, *kernel)
        attrs = dict(kernel=tuple(kernel), stride=tuple(stride), padding=tuple(padding), dilation=tuple(dilation))
        return self.emit("unwindow", (g,), shape, g.dtype, **attrs)

    # -- gathers ------------------------------------------------------------------------------
    def gather(self, x: Node, index: Node, axis: int) -> Node:
        """torch.gather, with x broadcast along its axes of size 1: the result has the index's
        shape and out[i..., j, k...] = x[i..., index[i..., j, k...], k...] (j along ``axis``, and
        position 0 on the other axes where x has size 1).

        The index is an int64 tensor of x's rank; on every other axis it is no larger than x
        (torch's rule) or x has size 1. That is the whole primitive: an index_select, an
        embedding lookup or ``x[idx]`` is one gather of x with size-1 axes added (a view) and the
        index expanded along x's other axes (a view of stride 0), see ``index_select``. So a
        kernel computes each element's address from its loop indices and one index it loads,
        the result comes out in the shape its consumer reads (which then computes it in its own
        kernel, instead of reading a stored copy through a reshape), and the gradient is one
        ``scatter_add`` into the table's own shape: an embedding's is (1, V, C), never (N, V, C).

        A negative index counts from the end (x[idx]'s meaning; torch.gather refuses it, which
        its front end checks); one outside [-n, n) reads 0, so no kernel reads outside x. The
        front ends check indices against torch's rules before a program runs (``check_index``)."""
        axis = normalize_axis(axis, len(x.shape), self)
        self._check_gather_shapes("gather", x.shape, index, axis)
        return self.emit("gather", (x, index), index.shape, x.dtype, axis=axis)

    def scatter_add(self, src: Node, index: Node, axis: int, shape: Shape) -> Node:
        """The transpose of ``gather``: zeros of ``shape`` with src[i..., j, k...] added at
        [i..., index[i..., j, k...], k...] (and at position 0 of the axes where ``shape`` has size
        1, which so sum the values along them). Repeated indices accumulate; a negative one
        counts from the end; one outside [-n, n) adds nothing. src has the index's shape."""
        shape = tuple(dim(d) for d in shape)
        axis = normalize_axis(axis, len(shape), self)
        if tuple(src.shape) != tuple(index.shape):
            raise self.error(f"scatter_add needs values of the index's shape {format_shape(index.shape)}, "
                             f"got {format_shape(src.shape)}")
        self._check_gather_shapes("scatter_add", shape, index, axis)
        return self.emit("scatter_add", (src, index), shape, src.dtype, axis=axis, shape=shape)

    def _check_gather_shapes(self, op: str, shape: Shape, index: Node, axis: int) -> None:
        if index.dtype != "i64":
            raise self.error(f"{op} needs an int64 index, got {index.dtype}")
        if not shape:
            raise self.error(f"{op} needs a tensor of at least one dimension, got a scalar")
        if len(index.shape) != len(shape):
            raise self.error(f"{op} needs an index of the same rank as the tensor {format_shape(shape)}, "
                             f"got {format_shape(index.shape)}")
        for k, (i, d) in enumerate(zip(index.shape, shape)):
            if k != axis and i != d and d != 1 and not (isinstance(i, int) and isinstance(d, int) and i <= d):
                raise self.error(f"{op} needs an index no larger than the tensor {format_shape(shape)} apart from "
                                 f"dimension {axis} and its dimensions of size 1, got an index of shape "
                                 f"{format_shape(index.shape)}")

    def index_select(self, x: Node, index: Node, axis: int) -> Node:
        """x's slices along ``axis`` at the positions ``index`` (any shape) holds, in the index's
        shape: x.shape[:axis] + index.shape + x.shape[axis + 1:]. One gather of x with size-1
        axes for the index's leading axes and the index expanded along x's other axes (an
        embedding is this on axis 0: the (1, ..., V, C) table and the (..., T, C) index)."""
        axis = normalize_axis(axis, len(x.shape), self)
        lead, rest = tuple(x.shape[:axis]), tuple(x.shape[axis + 1:])
        picks = tuple(index.shape) or (1,)  # a 0-d index picks one slice, without its axis
        table = self.reshape(x, lead + (1,) * (len(picks) - 1) + (x.shape[axis],) + rest)
        spread = self.reshape(index, (1,) * len(lead) + picks + (1,) * len(rest))
        picked = self.gather(table, self.expand(spread, lead + picks + rest), axis + len(picks) - 1)
        return picked if index.shape else self.reshape(picked, lead + rest)

    def check_index(self, index: Node, size: int, op: str, axis: int = 0) -> None:
        """Declare that ``index`` picks positions along an axis of ``size`` elements, by the rules
        of PyTorch's ``op`` (``IndexCheck``): where the index is a program input (or a view of
        one), the runtime checks every call's values before anything runs; a computed index is
        not checked (a kernel reads 0 for one out of range, and never outside the tensor)."""
        source = index_source(index)
        if source.op == "input" and isinstance(size, int):
            check = IndexCheck(source.attrs["name"], int(size), op, int(axis))
            if check not in self.graph.index_checks:
                self.graph.index_checks.append(check)

    # -- constants and randomness -----------------------------------------------------------
    def iota(self, shape: Shape, axis: int, dtype: str = "i64") -> Node:
        return self.emit("iota", (), shape, dtype, axis=axis)

    def rand(self, shape: Shape, seed: Node, step: Node, stream: int) -> Node:
        return self.emit("rand", (seed, step), shape, "f32", stream=stream)

    def detach(self, x: Node) -> Node:
        return self.emit("detach", (x,), x.shape, x.dtype)

    def check(self, condition, message: str) -> None:
        """Declare a condition on the batch size: an error now if it never holds, else a check
        the runtime makes before a program first runs with a batch size."""
        condition = sympy.sympify(condition)
        if condition is sympy.false:
            raise self.error(message)
        if condition is not sympy.true:
            self.graph.checks.append(Check(condition, f"{self.where()}: {message}"))

    def check_labels(self, labels: Node, classes: int, ignore_index: int) -> None:
        """Declare that the input ``labels`` holds class indices in [0, classes) (or
        ``ignore_index``): the runtime checks every call's labels before anything runs."""
        check = LabelCheck(labels.attrs["name"], int(classes), int(ignore_index))
        if check not in self.graph.label_checks:
            self.graph.label_checks.append(check)


def index_source(index: Node) -> Node:
    """The node an index's values come from: through reshapes, expands and permutes (which
    move values without changing them) to the node that computed or holds them."""
    while index.op in ("reshape", "expand", "permute"):
        index = index.inputs[0]
    return index


def _strided(x: Node, start: Sequence, step: Sequence[int], shape: Shape, part: Shape, whole: Shape, op: str,
             where: Builder) -> tuple:
    """``slice`` and ``pad``'s arguments normalised (dims, whole steps), checked: one per axis, steps
    from 1, and the positions start + i*step of ``part`` inside ``whole`` (where that can be known
    before the batch size is)."""
    start, shape = tuple(dim(a) for a in start), tuple(dim(d) for d in shape)
    step = tuple(int(s) for s in step)
    if not len(start) == len(step) == len(shape) == len(x.shape):
        raise where.error(f"{op} of a rank-{len(x.shape)} value needs {len(x.shape)} starts, steps and sizes, got "
                          f"{len(start)}, {len(step)} and {len(shape)}")
    if any(s < 1 for s in step):
        raise where.error(f"{op} takes steps of at least 1, got {step}")
    for axis, (a, s, n, size) in enumerate(zip(start, step, (dim(d) for d in part), (dim(d) for d in whole))):
        if n == 0:
            continue
        last = dim(a + (n - 1) * s)
        if sympy.sympify(a >= 0) is sympy.false or sympy.sympify(last < size) is sympy.false:
            raise where.error(f"{op} of dimension {axis} covers positions {a} to {last}, outside its size {size}")
    return start, step, shape


def window_counts(spatial: Sequence, kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int],
                  dilation: Sequence[int], where: Builder) -> tuple[int, ...]:
    """How many windows fit along each spatial axis (PyTorch's floor rule), or a clear error."""
    counts = []
    for axis, (size, k, s, p, d) in enumerate(zip(spatial, kernel, stride, padding, dilation)):
        if not isinstance(size, int):
            raise where.error(f"spatial dimensions must be fixed sizes, got {size} in dimension {axis + 2}")
        if min(k, s, d) < 1 or p < 0:
            raise where.error(f"kernel size, stride and dilation must be positive and padding non-negative, got "
                              f"kernel_size={tuple(kernel)}, stride={tuple(stride)}, padding={tuple(padding)}, "
                              f"dilation={tuple(dilation)}")
        span = d * (k - 1) + 1
        if size + 2 * p < span:
            raise where.error(f"kernel size {tuple(kernel)} (dilation {tuple(dilation)}) is larger than the padded "
                              f"input: dimension {axis + 2} has size {size} + 2*{p} padding, the kernel spans {span}")
        counts.append((size + 2 * p - span) // s + 1)
    return tuple(counts)


def normalize_axis(axis: int, rank: int, where: Builder | None = None) -> int:
    if not -max(rank, 1) <= axis < max(rank, 1):
        message = f"dimension {axis} is out of range for a tensor of rank {rank}"
        raise where.error(message) if where else ShapeError(message)
    return axis % max(rank, 1)


def broadcast_shapes(*shapes: Shape, where: Builder | None = None) -> Shape:
    """numpy/PyTorch broadcasting of shapes whose dimensions may be expressions of B."""
    rank = max(len(s) for s in shapes)
    out = []
    for k in range(rank):
        dims = {s[len(s) - rank + k] for s in shapes if len(s) - rank + k >= 0}
        dims.discard(1)
        if len(dims) > 1:
            message = "shapes " + " and ".join(format_shape(s) for s in shapes) + " do not broadcast"
            raise where.error(message) if where else ShapeError(message)
        out.append(dims.pop() if dims else 1)
    return tuple(out)


__all__ = ["Builder", "ShapeError", "broadcast_shapes", "normalize_axis", "B"]
