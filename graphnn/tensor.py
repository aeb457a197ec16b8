"""The symbolic Tensor that a Module's forward sees while it is traced.

Every method and operator appends primitive Nodes to the graph being recorded. Shapes hold ints
and the batch symbol ``B``: ``x.shape[0]`` and ``x.size(0)`` return ``B``, and ``reshape``/``view``
accept it. Anything that needs a tensor's value in Python (``if x.sum() > 0``, ``float(x)``)
raises a ``TraceError`` explaining why a static graph cannot follow it.
"""
from __future__ import annotations

from collections import namedtuple
from typing import Any, Sequence

import numpy as np
import sympy

from graphnn import pointwise as pw
from graphnn import trace
from graphnn.errors import ShapeError, TraceError
from graphnn.ir import Node, dim, format_shape, numel
from graphnn.ops import normalize_axis

MaxResult = namedtuple("MaxResult", ["values", "indices"])

_NUMPY_DTYPES = {"f32": np.dtype(np.float32), "f64": np.dtype(np.float64), "i64": np.dtype(np.int64), "bool": np.dtype(bool)}


class Size(tuple):
    """A shape: a tuple of ints and expressions of the batch symbol ``B``."""

    def __repr__(self) -> str:
        return "Size(" + format_shape(self) + ")"

    def numel(self):
        return numel(self)


def as_tensor(value: Any) -> "Tensor":
    """A Tensor for a Tensor, a Parameter (its graph leaf) or a buffer array being traced."""
    if isinstance(value, Tensor):
        return value
    to_tensor = getattr(value, "_traced", None)
    if to_tensor is not None:
        return to_tensor()
    if isinstance(value, np.ndarray):
        return Tensor(trace.current().buffer(value))
    raise TypeError(f"expected a Tensor, got {type(value).__name__}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


class TensorOps:
    """Operators and methods shared by Tensor and Parameter (which traces to its graph leaf)."""

    def _traced(self) -> "Tensor":  # pragma: no cover - overridden
        raise NotImplementedError

    # -- arithmetic -------------------------------------------------------------------------
    def _binary(self, other: Any, name: str, reverse: bool = False) -> "Tensor":
        x = self._traced()
        b = trace.current().builder
        if _is_number(other):
            return Tensor(b.pointwise(pw.scalar_op(name, other, reverse), x.node))
        y = as_tensor(other)
        fn = {"add": pw.add, "sub": pw.sub, "mul": pw.mul, "div": pw.div}.get(name)
        if fn is None:
            raise TraceError(f"{b.where()}: a tensor exponent is not supported; use a Python number")
        a, c = (y, x) if reverse else (x, y)
        return Tensor(b.apply(fn, a.node, c.node))

    def __add__(self, other):
        return self._binary(other, "add")

    def __radd__(self, other):
        return self._binary(other, "add", reverse=True)

    def __sub__(self, other):
        return self._binary(other, "sub")

    def __rsub__(self, other):
        return self._binary(other, "sub", reverse=True)

    def __mul__(self, other):
        return self._binary(other, "mul")

    def __rmul__(self, other):
        return self._binary(other, "mul", reverse=True)

    def __truediv__(self, other):
        return self._binary(other, "div")

    def __rtruediv__(self, other):
        return self._binary(other, "div", reverse=True)

    def __pow__(self, other):
        return self._binary(other, "pow")

    def __rpow__(self, other):
        return self._binary(other, "pow", reverse=True)

    def __neg__(self):
        return self._unary(pw.neg)

    def __pos__(self):
        return self._traced()

    def __matmul__(self, other):
        return matmul(self._traced(), as_tensor(other))

    def __rmatmul__(self, other):
        return matmul(as_tensor(other), self._traced())

    def matmul(self, other):
        return self @ other

    def add(self, other):
        return self + other

    def sub(self, other):
        return self - other

    def mul(self, other):
        return self * other

    def div(self, other):
        return self / other

    def pow(self, exponent):
        return self**exponent

    # -- unary math ---------------------------------------------------------------------------
    def _unary(self, fn: pw.PointwiseFn) -> "Tensor":
        return Tensor(trace.current().builder.pointwise(fn, self._traced().node))

    def exp(self):
        return self._unary(pw.exp)

    def log(self):
        return self._unary(pw.log)

    def tanh(self):
        return self._unary(pw.tanh)

    def sigmoid(self):
        return self._unary(pw.sigmoid)

    def relu(self):
        return self._unary(pw.relu)

    def abs(self):
        return self._unary(pw.abs_)

    def sqrt(self):
        return self._unary(pw.sqrt)

    def rsqrt(self):
        return self._unary(pw.rsqrt)

    def neg(self):
        return self._unary(pw.neg)

    def square(self):
        return self._unary(pw.pow_(2))

    def clamp(self, min: float | None = None, max: float | None = None):
        return self._unary(pw.clamp(min, max))

    # -- reductions ---------------------------------------------------------------------------
    def sum(self, dim=None, keepdim: bool = False):
        return reduce(self._traced(), "sum", dim, keepdim)

    def mean(self, dim=None, keepdim: bool = False):
        x = self._traced()
        axes = _axes(x, dim)
        count = numel(tuple(x.shape[a] for a in axes))
        total = reduce(x, "sum", dim, keepdim)
        return Tensor(trace.current().builder.pointwise(pw.scale(1 / sympy.sympify(count)), total.node))

    def amax(self, dim=None, keepdim: bool = False):
        return reduce(self._traced(), "max", dim, keepdim)

    def max(self, dim=None, keepdim: bool = False):
        """The maximum; with ``dim``, (values, indices) like PyTorch, the gradient going to the
        first maximum."""
        if dim is None:
            return self.amax()
        if not isinstance(dim, int):
            raise TypeError(f"max(dim) takes one int dimension, got {dim!r}; use amax for several")
        return MaxResult(reduce(self._traced(), "max", dim, keepdim, ties="first"), self.argmax(dim, keepdim))

    def argmax(self, dim=None, keepdim: bool = False):
        return argmax(self._traced(), dim, keepdim)

    def softmax(self, dim):
        return softmax(self._traced(), dim)

    def log_softmax(self, dim):
        return log_softmax(self._traced(), dim)

    # -- movement ---------------------------------------------------------------------------
    def reshape(self, *shape):
        x = self._traced()
        shape = _shape_args(shape)
        return Tensor(trace.current().builder.reshape(x.node, _infer_shape(x, shape)))

    view = reshape

    def flatten(self, start_dim: int = 0, end_dim: int = -1):
        x = self._traced()
        rank = len(x.shape)
        if rank == 0:
            return x.reshape(1)
        s, e = normalize_axis(start_dim, rank), normalize_axis(end_dim, rank)
        if s > e:
            raise ShapeError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
        shape = x.shape[:s] + (numel(x.shape[s : e + 1]),) + x.shape[e + 1 :]
        return x.reshape(*shape)

    def permute(self, *dims):
        x = self._traced()
        return Tensor(trace.current().builder.permute(x.node, _shape_args(dims)))

    def transpose(self, dim0: int, dim1: int):
        x = self._traced()
        rank = len(x.shape)
        perm = list(range(rank))
        a, b = normalize_axis(dim0, rank), normalize_axis(dim1, rank)
        perm[a], perm[b] = perm[b], perm[a]
        return x.permute(*perm)

    def t(self):
        x = self._traced()
        if len(x.shape) > 2:
            raise ShapeError(f"t() expects a tensor with <= 2 dimensions, got {len(x.shape)}; use transpose")
        return x if len(x.shape) < 2 else x.transpose(0, 1)

    @property
    def T(self):
        x = self._traced()
        return x.permute(*reversed(range(len(x.shape))))

    def unsqueeze(self, dim: int):
        x = self._traced()
        rank = len(x.shape)
        d = normalize_axis(dim, rank + 1)
        return x.reshape(*(x.shape[:d] + (1,) + x.shape[d:]))

    def squeeze(self, dim=None):
        x = self._traced()
        if dim is None:
            shape = tuple(d for d in x.shape if d != 1)
        else:
            axes = {normalize_axis(a, len(x.shape)) for a in ((dim,) if isinstance(dim, int) else dim)}
            shape = tuple(d for k, d in enumerate(x.shape) if not (k in axes and d == 1))
        return x.reshape(*shape)

    def expand(self, *sizes):
        x = self._traced()
        sizes = _shape_args(sizes)
        if len(sizes) < len(x.shape):
            raise ShapeError(f"expand: the number of sizes ({len(sizes)}) is smaller than the rank {len(x.shape)}")
        lead = len(sizes) - len(x.shape)
        shape = tuple(
            (x.shape[k - lead] if s == -1 else dim(s)) if k >= lead else dim(s) for k, s in enumerate(sizes)
        )
        return Tensor(trace.current().builder.broadcast(x.node, shape))

    def expand_as(self, other):
        return self.expand(*as_tensor(other).shape)

    def detach(self):
        return Tensor(trace.current().builder.detach(self._traced().node))

    # -- values a static graph cannot give ---------------------------------------------------
    def _no_value(self, what: str):
        b = trace.active().builder if trace.active() else None
        where = f"{b.where()}: " if b else ""
        raise TraceError(
            f"{where}{what} needs the value of a tensor, but graphnn records a static graph from symbolic "
            "tensors whose values are not known while tracing. Python control flow on tensor values "
            "cannot be compiled; compute both branches and select with arithmetic, or move the decision "
            "out of forward."
        )

    def __bool__(self):
        self._no_value("Python control flow (`if`, `while`, `and`/`or`, bool())")

    def __float__(self):
        self._no_value("float()")

    def __int__(self):
        self._no_value("int()")

    def __index__(self):
        self._no_value("using a tensor as an index")

    def item(self):
        self._no_value(".item()")

    def tolist(self):
        self._no_value(".tolist()")

    def numpy(self):
        self._no_value(".numpy()")

    def __array__(self, *args, **kwargs):
        self._no_value("converting to a numpy array")

    def __iter__(self):
        self._no_value("iterating over a tensor")

    def __len__(self):
        self._no_value("len() (use x.shape[0] or x.size(0) for the symbolic batch size)")

    def __getitem__(self, index):
        raise TraceError("indexing and slicing tensors inside a traced forward are not supported yet")

    # comparisons would need boolean tensors and a `where` op; until then say so instead of
    # silently comparing Python objects
    def _no_compare(self, other):
        self._no_value("comparing tensors")

    __lt__ = __le__ = __gt__ = __ge__ = _no_compare


class Tensor(TensorOps):
    """A symbolic tensor: a Node of the graph being traced."""

    __hash__ = object.__hash__

    def __init__(self, node: Node) -> None:
        self.node = node

    def _traced(self) -> "Tensor":
        return self

    @property
    def shape(self) -> Size:
        return Size(self.node.shape)

    def size(self, dim: int | None = None):
        if dim is None:
            return self.shape
        return self.node.shape[normalize_axis(dim, len(self.node.shape))]

    def dim(self) -> int:
        return len(self.node.shape)

    @property
    def ndim(self) -> int:
        return len(self.node.shape)

    def numel(self):
        return numel(self.node.shape)

    @property
    def dtype(self) -> np.dtype:
        return _NUMPY_DTYPES[self.node.dtype]

    def __repr__(self) -> str:
        path = f", path={self.node.path!r}" if self.node.path else ""
        return f"Tensor({self.node.ref}:{self.node.type_str()}{path})"


# -- helpers shared by methods and nn.functional -----------------------------------------------
def _shape_args(args: Sequence) -> tuple:
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        return tuple(args[0])
    return tuple(args)


def _infer_shape(x: Tensor, shape: tuple) -> tuple:
    """Resolve one -1 in a reshape target from the element count (symbolic in B)."""
    if sum(1 for d in shape if isinstance(d, int) and d == -1) > 1:
        raise ShapeError(f"reshape: only one dimension can be -1, got {tuple(shape)}")
    if not any(isinstance(d, int) and d == -1 for d in shape):
        return tuple(dim(d) for d in shape)
    known = numel(tuple(d for d in shape if not (isinstance(d, int) and d == -1)))
    missing = sympy.cancel(sympy.sympify(numel(x.shape)) / sympy.sympify(known))
    if not (missing.is_Integer or (missing.is_polynomial() and not missing.is_Rational)):
        raise trace.current().builder.error(
            f"cannot reshape {format_shape(x.shape)} to {tuple(shape)}: {numel(x.shape)} elements do not divide evenly"
        )
    return tuple(dim(missing) if isinstance(d, int) and d == -1 else dim(d) for d in shape)


def _axes(x: Tensor, dim) -> tuple:
    rank = len(x.shape)
    if dim is None:
        return tuple(range(rank))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    return tuple(sorted({normalize_axis(d, rank, trace.current().builder) for d in dims}))


def reduce(x: Tensor, kind: str, dim, keepdim: bool, ties: str = "split") -> Tensor:
    axes = _axes(x, dim)
    b = trace.current().builder
    out = Tensor(b.reduce(kind, x.node, axes, ties=ties))
    if keepdim:
        return out
    return Tensor(b.reshape(out.node, tuple(d for k, d in enumerate(x.shape) if k not in axes)))


# -- composites the Tensor methods and nn.functional share -----------------------------------
def _softmax_dim(x: Tensor, dim):
    if dim is None:  # PyTorch's legacy implicit choice
        return 0 if x.ndim in (0, 1, 3) else 1
    return dim


def _shifted(x: Tensor, dim) -> Tensor:
    # the max only stabilises; no gradient flows through it (it cancels mathematically)
    return x - x.amax(dim, keepdim=True).detach()


def softmax(input, dim=None) -> Tensor:
    x = as_tensor(input)
    e = _shifted(x, _softmax_dim(x, dim)).exp()
    return e / e.sum(_softmax_dim(x, dim), keepdim=True)


def log_softmax(input, dim=None) -> Tensor:
    x = as_tensor(input)
    d = _softmax_dim(x, dim)
    s = _shifted(x, d)
    return s - s.exp().sum(d, keepdim=True).log()


def argmax(input, dim=None, keepdim: bool = False) -> Tensor:
    """The index of the first maximum along ``dim`` (of the flattened tensor when None)."""
    x = as_tensor(input)
    if dim is None:
        x, dim = x.reshape(-1), 0
    axis = _axes(x, dim)[0]
    index = Tensor(trace.current().builder.first_argmax(x.node, axis))
    return index if keepdim else index.squeeze(axis)


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """torch.matmul: 1-D operands are promoted and the added axis removed; batch axes broadcast."""
    from graphnn.ops import broadcast_shapes

    builder = trace.current().builder
    if a.ndim == 0 or b.ndim == 0:
        raise builder.error("matmul needs tensors with at least one dimension")
    squeeze_a, squeeze_b = a.ndim == 1, b.ndim == 1
    if squeeze_a:
        a = a.unsqueeze(0)
    if squeeze_b:
        b = b.unsqueeze(-1)
    if a.shape[-1] != b.shape[-2]:
        raise builder.error(
            f"matmul shapes do not fit: {format_shape(a.shape)} @ {format_shape(b.shape)} "
            f"({a.shape[-1]} != {b.shape[-2]})"
        )
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2], where=builder)
    a = Tensor(builder.broadcast(a.node, batch + tuple(a.shape[-2:])))
    b = Tensor(builder.broadcast(b.node, batch + tuple(b.shape[-2:])))
    out = Tensor(builder.matmul(a.node, b.node))
    if squeeze_a:
        out = out.squeeze(-2)
    if squeeze_b:
        out = out.squeeze(-1)
    return out
