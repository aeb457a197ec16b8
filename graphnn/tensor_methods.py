"""The methods of Tensor, written once for symbolic and concrete tensors (graphnn.tensors).

Each builds primitive Nodes through the builder its operands call for: recorded into the graph
being traced, or evaluated at once. ``T`` is graphnn.tensors, imported at the end of this module
because it imports this one to define Tensor.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import sympy

from graphnn import dtypes, trace
from graphnn import pointwise as pw
from graphnn.eager import EAGER, cast, constant, is_grad_enabled
from graphnn.errors import ShapeError, TraceError
from graphnn.ir import dim, format_shape, numel
from graphnn.ops import normalize_axis


class TensorMethods:
    """Operators, math, reductions, movement, conversions and value access (see the module)."""

    # -- arithmetic and comparisons -------------------------------------------------------------
    def __add__(self, other):
        return T.binary(self, other, "add")

    def __radd__(self, other):
        return T.binary(other, self, "add")

    def __sub__(self, other):
        return T.binary(self, other, "sub")

    def __rsub__(self, other):
        return T._named(T.binary(other, self, "sub"), "RsubBackward1")

    def __mul__(self, other):
        return T.binary(self, other, "mul")

    def __rmul__(self, other):
        return T.binary(other, self, "mul")

    def __truediv__(self, other):
        return T.binary(self, other, "div")

    def __rtruediv__(self, other):
        return T._named(T.binary(other, self, "div"), "MulBackward0")

    def __floordiv__(self, other):
        return T.binary(self, other, "floor_divide")

    def __rfloordiv__(self, other):
        return T.binary(other, self, "floor_divide")

    def __mod__(self, other):
        return T.binary(self, other, "remainder")

    def __rmod__(self, other):
        return T.binary(other, self, "remainder")

    def __pow__(self, other):
        return T.binary(self, other, "pow")

    def __rpow__(self, other):
        return T.binary(other, self, "pow")

    def __neg__(self):
        if T._builder(self) is EAGER and self.dtype is dtypes.bool_:
            raise TypeError("Negation, the `-` operator, on a bool tensor is not supported. "
                            "If you are trying to invert a mask, use the `~` or `logical_not()` operator instead.")
        return T.unary(self, pw.neg, "NegBackward0", floating=False)

    def __pos__(self):
        return self

    def __abs__(self):
        return self.abs()

    def __matmul__(self, other):
        return matmul(self, other)

    def __rmatmul__(self, other):
        return matmul(other, self)

    def __eq__(self, other):
        return T.binary(self, other, "eq")

    def __ne__(self, other):
        return T.binary(self, other, "ne")

    def __lt__(self, other):
        return T.binary(self, other, "lt")

    def __le__(self, other):
        return T.binary(self, other, "le")

    def __gt__(self, other):
        return T.binary(self, other, "gt")

    def __ge__(self, other):
        return T.binary(self, other, "ge")

    def _logical(self, other, name: str, symbol: str):
        if self.dtype is not dtypes.bool_ or (isinstance(other, T.Tensor) and other.dtype is not dtypes.bool_):
            raise TypeError(f"`{symbol}` on {self.dtype} tensors (bitwise arithmetic) is not supported by graphnn; "
                            "it works on bool tensors (masks)")
        return T.binary(self, other, name)

    def __and__(self, other):
        return self._logical(other, "logical_and", "&")

    __rand__ = __and__

    def __or__(self, other):
        return self._logical(other, "logical_or", "|")

    __ror__ = __or__

    def __xor__(self, other):
        return self._logical(other, "logical_xor", "^")

    __rxor__ = __xor__

    def __invert__(self):
        if self.dtype is not dtypes.bool_:
            raise TypeError(f"`~` on {self.dtype} tensors (bitwise not) is not supported by graphnn; it works on bool tensors")
        return self.logical_not()

    def add(self, other, alpha=1):
        return self + (other if alpha == 1 else other * alpha)

    def sub(self, other, alpha=1):
        return self - (other if alpha == 1 else other * alpha)

    def mul(self, other):
        return self * other

    def div(self, other, rounding_mode=None):
        if rounding_mode is None:
            return self / other
        if rounding_mode == "floor":
            return self // other
        raise NotImplementedError(f"div(rounding_mode={rounding_mode!r}) is not supported; use None or 'floor'")

    multiply, divide, subtract, true_divide = mul, div, sub, div

    def pow(self, exponent):
        return self**exponent

    def floor_divide(self, other):
        return self // other

    def remainder(self, other):
        return self % other

    def fmod(self, other):  # C's remainder: the sign of the dividend
        return self - (self / other).trunc() * other

    def matmul(self, other):
        return self @ other

    def mm(self, other):
        return self @ other

    def dot(self, other):
        return T._named((self * other).sum(), "DotBackward0")

    def maximum(self, other):
        return T.binary(self, other, "maximum")

    def minimum(self, other):
        return T.binary(self, other, "minimum")

    def eq(self, other):
        return self == other

    def ne(self, other):
        return self != other

    def lt(self, other):
        return self < other

    def le(self, other):
        return self <= other

    def gt(self, other):
        return self > other

    def ge(self, other):
        return self >= other

    greater, less, greater_equal, less_equal, not_equal = gt, lt, ge, le, ne

    def logical_and(self, other):
        return T.binary(self, other, "logical_and")

    def logical_or(self, other):
        return T.binary(self, other, "logical_or")

    def logical_xor(self, other):
        return T.binary(self, other, "logical_xor")

    def logical_not(self):
        b = T._builder(self)
        return T.Tensor(b.pointwise(pw.logical_not, T.as_tensor(self, b).node, dtype="bool"))

    def equal(self, other) -> bool:
        return tuple(self.shape) == tuple(other.shape) and bool((self == other).all())

    def allclose(self, other, rtol=1e-05, atol=1e-08, equal_nan=False) -> bool:
        return bool(np.allclose(self.array, T.as_tensor(other).array, rtol, atol, equal_nan))

    def isclose(self, other, rtol=1e-05, atol=1e-08, equal_nan=False):
        return T.Tensor(constant(np.isclose(self.array, T.as_tensor(other).array, rtol, atol, equal_nan), "bool"))

    # -- elementwise math ---------------------------------------------------------------------------
    def exp(self):
        return T.unary(self, pw.exp, "ExpBackward0")

    def log(self):
        return T.unary(self, pw.log, "LogBackward0")

    def log2(self):
        return T.unary(self, pw.log2, "Log2Backward0")

    def log10(self):
        return T.unary(self, pw.log10, "Log10Backward0")

    def log1p(self):
        return T.unary(self, pw.log1p_, "Log1PBackward0")

    def expm1(self):
        return T.unary(self, pw.expm1_, "Expm1Backward0")

    def sqrt(self):
        return T.unary(self, pw.sqrt, "SqrtBackward0")

    def rsqrt(self):
        return T.unary(self, pw.rsqrt, "RsqrtBackward0")

    def sin(self):
        return T.unary(self, pw.sin, "SinBackward0")

    def cos(self):
        return T.unary(self, pw.cos, "CosBackward0")

    def tanh(self):
        return T.unary(self, pw.tanh, "TanhBackward0")

    def sigmoid(self):
        return T.unary(self, pw.sigmoid, "SigmoidBackward0")

    def reciprocal(self):
        return T.unary(self, pw.reciprocal, "ReciprocalBackward0")

    def relu(self):
        return T.unary(self, pw.relu, "ReluBackward0", floating=False)

    def abs(self):
        return T.unary(self, pw.abs_, "AbsBackward0", floating=False)

    absolute = abs

    def neg(self):
        return -self

    negative = neg

    def sign(self):
        return T.unary(self, pw.sign, "SignBackward0", floating=False)

    def floor(self):
        return self if self._is_integral() else T.unary(self, pw.floor, "FloorBackward0")

    def ceil(self):
        return self if self._is_integral() else T.unary(self, pw.ceil, "CeilBackward0")

    def trunc(self):
        return self if self._is_integral() else T.unary(self, pw.sign, None) * T.unary(self.abs(), pw.floor, "TruncBackward0")

    def round(self, decimals: int = 0):
        if self._is_integral():
            return self
        return T.Tensor(constant(np.round(self.array, decimals), self._node.dtype))

    def _is_integral(self) -> bool:
        return not self._symbolic() and not self.dtype.is_floating_point

    def square(self):
        return self * self if not self._symbolic() else T.Tensor(T._builder(self).pointwise(pw.pow_(2), self.node))

    def clamp(self, min=None, max=None):
        if min is None and max is None:
            raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
        if isinstance(min, T.Tensor) or isinstance(max, T.Tensor):
            out = self if min is None else self.maximum(min)
            return out if max is None else out.minimum(max)
        return T.unary(self, pw.clamp(min, max), "ClampBackward1", floating=False)

    clip = clamp

    def clamp_min(self, min):
        return self.clamp(min=min)

    def clamp_max(self, max):
        return self.clamp(max=max)

    def isnan(self):
        return self != self

    def isinf(self):
        return self.abs() == float("inf")

    def isfinite(self):
        return ~(self.isnan() | self.isinf())

    def softmax(self, dim):
        return softmax(self, dim)

    def log_softmax(self, dim):
        return log_softmax(self, dim)

    # -- reductions ---------------------------------------------------------------------------------
    def sum(self, dim=None, keepdim: bool = False, dtype=None):
        x = self if dtype is None else self.to(dtype)
        if not x._symbolic() and not x.dtype.is_floating_point:
            x = x.to(dtypes.int64)  # torch sums bools and ints in int64
        return T._named(reduce(x, "sum", dim, keepdim), "SumBackward0" if dim is None else "SumBackward1")

    def mean(self, dim=None, keepdim: bool = False, dtype=None):
        x = self if dtype is None else self.to(dtype)
        if not x._symbolic() and not x.dtype.is_floating_point:
            raise RuntimeError("mean(): could not infer output dtype. Input dtype must be either a floating point "
                               f"or complex dtype. Got: {_torch_type_name(x.dtype)}")
        axes = _axes(x, dim)
        count = numel(tuple(x.shape[a] for a in axes))
        total = reduce(x, "sum", dim, keepdim)
        b = T._builder(total)
        out = T._wrap(b.pointwise(pw.scale(1 / sympy.sympify(count)), total.node), [total], "x")
        return T._named(out, "MeanBackward0" if dim is None else "MeanBackward1")

    def var(self, dim=None, unbiased: bool | None = None, keepdim: bool = False, *, correction=None):
        correction = (1 if unbiased is None or unbiased else 0) if correction is None else correction
        if not self._symbolic() and not self.dtype.is_floating_point:
            raise RuntimeError(f"std and var only support floating point and complex dtypes; got {_torch_type_name(self.dtype)}")
        axes = _axes(self, dim)
        count = numel(tuple(self.shape[a] for a in axes))
        centred = self - self.mean(axes, keepdim=True)
        total = (centred * centred).sum(axes, keepdim=keepdim)
        return T._named(total / max(count - correction, 0) if isinstance(count, int) else total / (count - correction),
                        "VarBackward0")

    def std(self, dim=None, unbiased: bool | None = None, keepdim: bool = False, *, correction=None):
        return T._named(self.var(dim, unbiased, keepdim, correction=correction).sqrt(), "StdBackward0")

    def prod(self, dim=None, keepdim: bool = False):
        if self._symbolic():
            raise TraceError("prod is not supported inside a traced forward yet")
        values = np.prod(self.array, axis=dim, keepdims=keepdim)
        d = self.dtype if self.dtype.is_floating_point else dtypes.int64
        return T.Tensor(constant(np.asarray(values, d.numpy), d.ir))

    def amax(self, dim=None, keepdim: bool = False):
        return T._named(reduce(self, "max", dim if dim != () else None, keepdim), "AmaxBackward0")

    def amin(self, dim=None, keepdim: bool = False):
        return T._named(-(-self).amax(dim, keepdim), "AminBackward0")

    def max(self, dim=None, keepdim: bool = False):
        """The maximum; with ``dim`` (values, indices) like PyTorch, the gradient and the index
        going to the first maximum; with a tensor, the elementwise maximum."""
        if isinstance(dim, T.Tensor):
            return self.maximum(dim)
        if dim is None:
            return T._named(reduce(self, "max", None, False), "MaxBackward1")
        if not isinstance(dim, (int, np.integer)):
            raise TypeError(f"max(dim) takes one int dimension, got {dim!r}; use amax for several")
        values = T._named(reduce(self, "max", int(dim), keepdim, ties="first"), "MaxBackward0")
        return T.MaxResult(values, self.argmax(dim, keepdim))

    def min(self, dim=None, keepdim: bool = False):
        if isinstance(dim, T.Tensor):
            return self.minimum(dim)
        if dim is None:
            return T._named(-(reduce(-self, "max", None, False)), "MinBackward1")
        values = T._named(-(reduce(-self, "max", int(dim), keepdim, ties="first")), "MinBackward0")
        return T.MinResult(values, self.argmin(dim, keepdim))

    def argmax(self, dim=None, keepdim: bool = False):
        return argmax(self, dim, keepdim)

    def argmin(self, dim=None, keepdim: bool = False):
        if self.dtype is dtypes.bool_:
            return argmax(~self, dim, keepdim)
        return argmax(-self, dim, keepdim)

    def all(self, dim=None, keepdim: bool = False):
        return (self == 0).logical_not().to(dtypes.int64).min(dim, keepdim)[0].to(dtypes.bool_) if dim is not None \
            else T.Tensor(constant(np.asarray(bool(np.all(self.array))), "bool"))

    def any(self, dim=None, keepdim: bool = False):
        return (self != 0).to(dtypes.int64).amax(dim, keepdim).to(dtypes.bool_) if dim is not None \
            else T.Tensor(constant(np.asarray(bool(np.any(self.array))), "bool"))

    def count_nonzero(self, dim=None):
        return (self != 0).sum(dim)

    def norm(self, p=2, dim=None, keepdim: bool = False):
        if p == 2 or p == "fro":
            return T._named((self * self).sum(dim, keepdim).sqrt(), "LinalgVectorNormBackward0")
        if p == 1:
            return self.abs().sum(dim, keepdim)
        raise NotImplementedError(f"norm(p={p!r}) is not supported; use p=2 or p=1")

    # -- movement --------------------------------------------------------------------------------
    def reshape(self, *shape):
        b = T._builder(self)
        x = T.as_tensor(self, b)
        shape = _shape_args(shape)
        return T._wrap(b.reshape(x.node, _infer_shape(x, shape, b)), [self], "ViewBackward0")

    def view(self, *shape):
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer, tuple, list, sympy.Basic)):
            return self.to(shape[0])  # view(dtype)
        return self.reshape(*shape)

    def view_as(self, other):
        return self.reshape(*other.shape)

    def reshape_as(self, other):
        return self.reshape(*other.shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1):
        rank = self.ndim
        if rank == 0:
            return self.reshape(1)
        s, e = normalize_axis(start_dim, rank), normalize_axis(end_dim, rank)
        if s > e:
            raise ShapeError(f"flatten() has invalid args: start_dim cannot come after end_dim")
        shape = tuple(self.shape)
        return self.reshape(*(shape[:s] + (numel(shape[s: e + 1]),) + shape[e + 1:]))

    def ravel(self):
        return self.reshape(-1)

    def permute(self, *dims):
        b = T._builder(self)
        x = T.as_tensor(self, b)
        dims = _shape_args(dims)
        if len(dims) != self.ndim:
            raise ShapeError(f"permute(sparse_coo): number of dimensions in the tensor input does not match the "
                             f"length of the desired ordering of dimensions i.e. input.dim() = {self.ndim} is not "
                             f"equal to len(dims) = {len(dims)}")
        return T._wrap(b.permute(x.node, dims), [self], "PermuteBackward0")

    def transpose(self, dim0: int, dim1: int):
        rank = self.ndim
        perm = list(range(rank))
        a, c = normalize_axis(dim0, rank), normalize_axis(dim1, rank)
        perm[a], perm[c] = perm[c], perm[a]
        return T._named(self.permute(*perm), "TransposeBackward0")

    swapaxes = transpose

    def t(self):
        if self.ndim > 2:
            raise ShapeError(f"t() expects a tensor with <= 2 dimensions, but self is {self.ndim}D")
        return self if self.ndim < 2 else T._named(self.transpose(0, 1), "TBackward0")

    @property
    def T(self):
        return self.permute(*reversed(range(self.ndim)))

    @property
    def mT(self):
        return self.transpose(-2, -1)

    def unsqueeze(self, dim: int):
        d = normalize_axis(dim, self.ndim + 1)
        shape = tuple(self.shape)
        return T._named(self.reshape(*(shape[:d] + (1,) + shape[d:])), "UnsqueezeBackward0")

    def squeeze(self, dim=None):
        shape = tuple(self.shape)
        if dim is None:
            new = tuple(d for d in shape if d != 1)
        else:
            axes = {normalize_axis(a, len(shape)) for a in ((dim,) if isinstance(dim, (int, np.integer)) else dim)}
            new = tuple(d for k, d in enumerate(shape) if not (k in axes and d == 1))
        return T._named(self.reshape(*new), "SqueezeBackward0" if dim is None else "SqueezeBackward1")

    def expand(self, *sizes):
        b = T._builder(self)
        x = T.as_tensor(self, b)
        sizes = _shape_args(sizes)
        shape = tuple(x.shape)
        if len(sizes) < len(shape):
            raise ShapeError(f"expand(torch.FloatTensor{{{list(shape)}}}, size={list(sizes)}): the number of sizes "
                             f"provided ({len(sizes)}) must be greater or equal to the number of dimensions in the "
                             f"tensor ({len(shape)})")
        lead = len(sizes) - len(shape)
        target = tuple((shape[k - lead] if s == -1 else dim(s)) if k >= lead else dim(s) for k, s in enumerate(sizes))
        return T._wrap(b.broadcast(x.node, target), [self], "ExpandBackward0")

    def expand_as(self, other):
        return self.expand(*other.shape)

    def repeat(self, *sizes):
        sizes = _shape_args(sizes)
        return T.Tensor(constant(np.tile(self.array, sizes), self._node.dtype))

    def contiguous(self, memory_format=None):
        if self._symbolic():
            return self
        return self if self.array.flags.c_contiguous else T.Tensor(constant(np.ascontiguousarray(self.array), self._node.dtype))

    def is_contiguous(self, memory_format=None) -> bool:
        return self._symbolic() or bool(self.array.flags.c_contiguous)

    def chunk(self, chunks: int, dim: int = 0):
        size = self.shape[dim]
        step = -(-size // chunks)
        return self.split(step, dim)

    def split(self, split_size, dim: int = 0):
        size = self.shape[dim]
        d = normalize_axis(dim, self.ndim)
        sizes = list(split_size) if isinstance(split_size, (list, tuple)) else \
            [min(split_size, size - s) for s in range(0, size, split_size)]
        out, start = [], 0
        for n in sizes:
            out.append(self[(slice(None),) * d + (slice(start, start + n),)])
            start += n
        return tuple(out)

    def unbind(self, dim: int = 0):
        d = normalize_axis(dim, self.ndim)
        return tuple(self[(slice(None),) * d + (k,)] for k in range(self.shape[d]))

    def detach(self):
        b = T._builder(self)
        if b is EAGER:
            return T.Tensor(T.as_tensor(self, b).node)
        return T.Tensor(b.detach(T.as_tensor(self, b).node))

    def detach_(self):
        self.grad_fn, self._requires_grad = None, False
        return self

    def clone(self, memory_format=None):
        if self._symbolic():
            return self
        return T._wrap(constant(self.array.copy(), self._node.dtype), [self], "CloneBackward0")

    def requires_grad_(self, requires_grad: bool = True):
        self.requires_grad = requires_grad
        return self

    def retain_grad(self) -> None:
        pass

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        raise NotImplementedError(
            "loss.backward() on graphnn tensors is not supported yet; train with graphnn.compile(model, loss_fn, "
            "optimizer).step(x, y), which computes the gradient and the update in one compiled call")

    # -- conversions ------------------------------------------------------------------------------
    def to(self, *args, **kwargs):
        """``to(dtype)``, ``to(device)``, ``to(device, dtype)``, ``to(other)``: a tensor of that dtype
        (itself when nothing changes); devices other than the CPU are checked (graphnn.device)."""
        from graphnn.device import device as as_device

        target = kwargs.get("dtype")
        for a in list(args) + [kwargs.get("device")]:
            if a is None or isinstance(a, bool):
                continue
            if isinstance(a, T.Tensor):
                target = a.dtype
            elif isinstance(a, dtypes.dtype) or a in (float, int, bool):
                target = dtypes.as_dtype(a)
            else:
                as_device(a).check_tensor_placement()
        if target is None or dtypes.as_dtype(target) is self.dtype:
            return self
        target = dtypes.as_dtype(target)
        if self._symbolic():
            raise TraceError(f"converting a traced tensor to {target} is not supported inside forward")
        return T._wrap(cast(self.node, target.ir), [self], "ToCopyBackward0")

    def type(self, dtype=None):
        if dtype is None:
            return "torch." + _tensor_type_name(self.dtype)
        if isinstance(dtype, str) and dtype.startswith("torch.") and dtype.endswith("Tensor"):
            dtype = {v: k for k, v in _TYPE_NAMES.items()}.get(dtype[len("torch."):])
        return self.to(dtypes.as_dtype(dtype))

    def type_as(self, other):
        return self.to(other.dtype)

    def float(self):
        return self.to(dtypes.float32)

    def double(self):
        return self.to(dtypes.float64)

    def long(self):
        return self.to(dtypes.int64)

    def int(self):
        return self.to(dtypes.int32)

    def bool(self):
        return self.to(dtypes.bool_)

    def half(self):
        raise TypeError("float16 tensors are not supported by graphnn; use float() (float32)")

    def cpu(self):
        return self

    def cuda(self, device=None, non_blocking: bool = False):
        from graphnn.device import device as as_device

        as_device("cuda" if device is None else device).check_tensor_placement()
        return self

    @property
    def device(self):
        from graphnn.device import CPU

        return CPU

    @property
    def is_cuda(self) -> bool:
        return False

    def is_floating_point(self) -> bool:
        return self.dtype.is_floating_point

    def element_size(self) -> int:
        return self.dtype.itemsize

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return self.dtype.itemsize * int(self.numel())

    # -- shape ------------------------------------------------------------------------------------
    def size(self, dim: int | None = None):
        if dim is None:
            return self.shape
        return self.shape[normalize_axis(dim, self.ndim)]

    def dim(self) -> int:
        return len(self.shape)

    ndimension = dim

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def numel(self):
        return numel(tuple(self.shape))

    nelement = numel

    # -- values -------------------------------------------------------------------------------------
    def _no_value(self, what: str):
        b = trace.active().builder if trace.active() else None
        where = f"{b.where()}: " if b else ""
        raise TraceError(
            f"{where}{what} needs the value of a tensor, but graphnn records a static graph from symbolic "
            "tensors whose values are not known while tracing. Python control flow on tensor values "
            "cannot be compiled; compute both branches and select with arithmetic, or move the decision "
            "out of forward."
        )

    def _value(self, what: str) -> np.ndarray:
        if self._symbolic():
            self._no_value(what)
        return self.array

    def item(self):
        array = self._value(".item()")
        if array.size != 1:
            raise RuntimeError(f"a Tensor with {array.size} elements cannot be converted to Scalar")
        return array.reshape(()).item()

    def tolist(self):
        return self._value(".tolist()").tolist()

    def numpy(self, force: bool = False) -> np.ndarray:
        array = self._value(".numpy()")
        if self.requires_grad and not force:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() instead.")
        return array

    def __array__(self, dtype=None, copy=None):
        array = self._value("converting to a numpy array")
        return array if dtype is None else array.astype(dtype)

    def __bool__(self):
        array = self._value("Python control flow (`if`, `while`, `and`/`or`, bool())")
        if array.size != 1:
            raise RuntimeError(f"Boolean value of Tensor with more than one value is ambiguous")
        return bool(array.reshape(()))

    def __float__(self):
        return float(self._scalar("float()"))

    def __int__(self):
        return int(self._scalar("int()"))

    def __index__(self):
        array = self._value("using a tensor as an index")
        if array.size != 1 or array.dtype.kind not in "iub":
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(array.reshape(()))

    def _scalar(self, what: str):
        array = self._value(what)
        if array.size != 1:
            raise ValueError(f"only one element tensors can be converted to Python scalars")
        return array.reshape(()).item()

    def __len__(self):
        if self._symbolic():
            self._no_value("len() (use x.shape[0] or x.size(0) for the symbolic batch size)")
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self):
        if self._symbolic():
            self._no_value("iterating over a tensor")
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return iter(self.unbind(0))

    def __contains__(self, element) -> bool:
        return bool((self == element).any())

    def __getitem__(self, index):
        from graphnn.indexing import get

        return get(self, index)

    def __setitem__(self, index, value) -> None:
        from graphnn.indexing import put

        put(self, index, value)


_TYPE_NAMES = {"float32": "FloatTensor", "float64": "DoubleTensor", "int64": "LongTensor", "int32": "IntTensor",
               "bool": "BoolTensor"}


def _tensor_type_name(d: dtypes.dtype) -> str:
    return _TYPE_NAMES[d.name]


def _torch_type_name(d: dtypes.dtype) -> str:
    return {"float32": "Float", "float64": "Double", "int64": "Long", "int32": "Int", "bool": "Bool"}[d.name]


# -- helpers shared by methods and nn.functional -----------------------------------------------
def _shape_args(args) -> tuple:
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        return tuple(args[0])
    return tuple(args)


def _infer_shape(x, shape: tuple, b) -> tuple:
    """Resolve one -1 in a reshape target from the element count (symbolic in B)."""
    shape = tuple(int(d) if isinstance(d, (np.integer,)) else (d.item() if isinstance(d, T.Tensor) else d) for d in shape)
    if sum(1 for d in shape if isinstance(d, int) and d == -1) > 1:
        raise ShapeError("only one dimension can be inferred")
    if not any(isinstance(d, int) and d == -1 for d in shape):
        return tuple(dim(d) for d in shape)
    known = numel(tuple(d for d in shape if not (isinstance(d, int) and d == -1)))
    if known == 0:
        raise ShapeError(f"cannot reshape tensor of {numel(tuple(x.shape))} elements into shape {list(shape)} because "
                         "the unspecified dimension size -1 can be any value and is ambiguous")
    missing = sympy.cancel(sympy.sympify(numel(tuple(x.shape))) / sympy.sympify(known))
    if not (missing.is_Integer or (missing.is_polynomial() and not missing.is_Rational)):
        message = f"shape '{list(shape)}' is invalid for input of size {numel(tuple(x.shape))}"
        raise b.error(message)
    return tuple(dim(missing) if isinstance(d, int) and d == -1 else dim(d) for d in shape)


def _axes(x, dim) -> tuple:
    rank = x.ndim
    if dim is None:
        return tuple(range(rank))
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    b = T._builder(x)
    return tuple(sorted({normalize_axis(int(d), rank, b if b is not EAGER else None) for d in dims}))


def reduce(x, kind: str, dim, keepdim: bool, ties: str = "split"):
    b = T._builder(x)
    t = T.as_tensor(x, b)
    if t.ndim == 0:
        return t.clone() if b is EAGER else t
    axes = _axes(t, dim)
    if b is EAGER and any(t.shape[a] == 0 for a in axes) and kind == "max":
        raise RuntimeError("max(): Expected reduction dim to be specified for input.numel() == 0. Specify the "
                           "reduction dim with the 'dim' argument.")
    out = T._wrap(b.reduce(kind, t.node, axes, ties=ties), [x], "x")
    if keepdim:
        return out
    return T._wrap(b.reshape(out.node, tuple(d for k, d in enumerate(t.shape) if k not in axes)), [out], "x")


# -- composites the Tensor methods and nn.functional share -----------------------------------
def _softmax_dim(x, dim):
    if dim is None:  # PyTorch's legacy implicit choice
        return 0 if x.ndim in (0, 1, 3) else 1
    return dim


def _shifted(x, dim):
    # the max only stabilises; no gradient flows through it (it cancels mathematically)
    return x - x.amax(dim, keepdim=True).detach()


def _floating(x):
    return x if x._symbolic() or x.dtype.is_floating_point else x.float()


def softmax(input, dim=None, dtype=None):
    x = _floating(T.as_tensor(input))
    e = _shifted(x, _softmax_dim(x, dim)).exp()
    return T._named(e / e.sum(_softmax_dim(x, dim), keepdim=True), "SoftmaxBackward0")


def log_softmax(input, dim=None, dtype=None):
    x = _floating(T.as_tensor(input))
    d = _softmax_dim(x, dim)
    s = _shifted(x, d)
    return T._named(s - s.exp().sum(d, keepdim=True).log(), "LogSoftmaxBackward0")


def argmax(input, dim=None, keepdim: bool = False):
    """The index of the first maximum along ``dim`` (of the flattened tensor when None)."""
    x = T.as_tensor(input)
    if dim is None:
        x, dim = x.reshape(-1), 0
        keepdim = False
    if x.ndim == 0:
        return T.Tensor(constant(np.zeros((), np.int64), "i64"))
    b = T._builder(x)
    if b is EAGER and x.dtype is dtypes.bool_:
        x = x.to(dtypes.int64)
    axis = _axes(x, dim)[0]
    index = T.Tensor(b.first_argmax(T.as_tensor(x, b).node, axis))
    return index if keepdim else index.squeeze(axis)


def matmul(a, b):
    """torch.matmul: 1-D operands are promoted and the added axis removed; batch axes broadcast."""
    from graphnn.ops import broadcast_shapes

    builder = T._builder(a, b)
    a, b = T.as_tensor(a, builder), T.as_tensor(b, builder)
    if builder is EAGER:
        common = dtypes.promote_types(a.dtype, b.dtype)
        if a.dtype is not b.dtype:
            raise RuntimeError(f"expected m1 and m2 to have the same dtype, but got: {_full_name(a.dtype)} != "
                               f"{_full_name(b.dtype)}")
        del common
    if a.ndim == 0 or b.ndim == 0:
        raise RuntimeError(f"both arguments to matmul need to be at least 1D, but they are {a.ndim}D and {b.ndim}D")
    squeeze_a, squeeze_b = a.ndim == 1, b.ndim == 1
    grad = "DotBackward0" if squeeze_a and squeeze_b else ("MvBackward0" if squeeze_b and a.ndim == 2 else "MmBackward0")
    sources = [a, b]
    if squeeze_a:
        a = a.unsqueeze(0)
    if squeeze_b:
        b = b.unsqueeze(-1)
    if a.shape[-1] != b.shape[-2]:
        raise builder.error(
            f"mat1 and mat2 shapes cannot be multiplied ({format_shape(a.shape[-2:]).strip('[]').replace(',', 'x')} "
            f"and {format_shape(b.shape[-2:]).strip('[]').replace(',', 'x')})"
        )
    batch = broadcast_shapes(tuple(a.shape[:-2]), tuple(b.shape[:-2]), where=builder)
    an = builder.broadcast(a.node, batch + tuple(a.shape[-2:]))
    bn = builder.broadcast(b.node, batch + tuple(b.shape[-2:]))
    out = T._wrap(builder.matmul(an, bn), sources, grad if not batch else "BmmBackward0")
    if squeeze_a:
        out = T._named(out.squeeze(-2), grad)
    if squeeze_b:
        out = T._named(out.squeeze(-1), grad)
    return out


def _full_name(d: dtypes.dtype) -> str:
    return _torch_type_name(d)


import graphnn.tensors as T  # noqa: E402  (see the module docstring)
