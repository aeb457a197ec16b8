"""The methods of Tensor, written once for symbolic and concrete tensors (graphnn.tensors).

Each builds primitive Nodes through the builder its operands call for: recorded into the graph
being traced, or evaluated at once. ``T`` is graphnn.tensors, which imports this module to define
Tensor and then sets ``T``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import sympy

from graphnn import dtypes, guard, recording, trace
from graphnn import pointwise as pw
from graphnn.eager import EAGER, Concrete, cast, constant
from graphnn.errors import ShapeError, TraceError
from graphnn.ir import dim, numel
from graphnn.indexing import wrap_dim
from graphnn.tensor_gather import GatherMethods
from graphnn.tensor_math import ArithmeticMethods
from graphnn.tensor_reductions import ReductionMethods
from graphnn.tensor_slicing import SlicingMethods


class TensorMethods(ArithmeticMethods, ReductionMethods, GatherMethods, SlicingMethods):
    """Movement, conversions, shape and value access, on top of the operators and math
    (graphnn.tensor_math), the reductions (graphnn.tensor_reductions), the gathers
    (graphnn.tensor_gather) and the parts and masks (graphnn.tensor_slicing)."""

    # -- movement --------------------------------------------------------------------------------
    def reshape(self, *shape):
        b = T._builder(self)
        x = T.as_tensor(self, b)
        shape = _shape_args(shape)
        return T._wrap(b.reshape(x.node, _infer_shape(x, shape, b)), [self], "ViewBackward0")

    def view(self, *shape):
        """The same values in another shape, sharing memory; as torch, an error where the
        strides cannot express it without a copy (use reshape). ``view(dtype)`` reinterprets the
        bytes."""
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer, tuple, list, sympy.Basic)):
            return self._view_dtype(dtypes.as_dtype(shape[0]))
        out = self.reshape(*shape)
        if isinstance(out._node, Concrete) and not np.may_share_memory(out.array, self.array) and self.numel() > 0:
            raise RuntimeError("view size is not compatible with input tensor's size and stride (at least one "
                               "dimension spans across two contiguous subspaces). Use .reshape(...) instead.")
        return out

    def _view_dtype(self, d):
        if self._symbolic():
            raise TraceError(f"view({d}) inside a traced forward is not supported")
        if d is self.dtype:
            return T._wrap(constant(self.array.view(), d.ir), [self], "AliasBackward0")
        if self.requires_grad:
            raise RuntimeError(f"Tensor.view(dtype) is not differentiable from {self.dtype} to {d}")
        try:
            return T.Tensor(constant(self.array.view(d.numpy), d.ir))
        except ValueError:
            names = dtypes.torch_type_name(self.dtype), dtypes.torch_type_name(d)
            raise RuntimeError(f"self.size(-1) must be divisible by {d.itemsize // self.dtype.itemsize} to view "
                               f"{names[0]} as {names[1]} (different element sizes), but got "
                               f"{self.shape[-1] if self.ndim else 1}") from None

    def view_as(self, other):
        return self.view(*other.shape)

    def reshape_as(self, other):
        return self.reshape(*other.shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1):
        rank = self.ndim
        if rank == 0:
            return self.reshape(1)
        b = T._builder(self)
        s, e = wrap_dim(start_dim, rank, b), wrap_dim(end_dim, rank, b)
        if s > e:
            raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
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
        dims = tuple(wrap_dim(d, self.ndim, b) for d in dims)
        return T._wrap(b.permute(x.node, dims), [self], "PermuteBackward0")

    def transpose(self, dim0: int, dim1: int):
        rank = self.ndim
        perm = list(range(rank))
        a, c = wrap_dim(dim0, rank, T._builder(self)), wrap_dim(dim1, rank, T._builder(self))
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
        d = wrap_dim(dim, self.ndim + 1, T._builder(self))
        shape = tuple(self.shape)
        return T._named(self.reshape(*(shape[:d] + (1,) + shape[d:])), "UnsqueezeBackward0")

    def squeeze(self, dim=None):
        shape = tuple(self.shape)
        if dim is None:
            new = tuple(d for d in shape if d != 1)
        else:
            dims = (dim,) if isinstance(dim, (int, np.integer)) else dim
            axes = {wrap_dim(a, len(shape), T._builder(self)) for a in dims}
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

    def repeat_interleave(self, repeats, dim=None, *, output_size=None):
        """Each element repeated ``repeats`` times along ``dim`` (of the flattened tensor without
        one). An int count is an expand and a reshape, in every state; a tensor of counts (one per
        element) needs values."""
        if isinstance(repeats, T.Tensor) and repeats.numel() != 1:
            T.value_only(self, "repeat_interleave with a tensor of counts")
            counts = repeats.array.astype(np.int64)
            axis = None if dim is None else wrap_dim(int(dim), self.ndim)
            return T.Tensor(constant(np.repeat(self.array, counts, axis=axis), self._node.dtype))
        count = int(repeats.item() if isinstance(repeats, T.Tensor) else repeats)
        if count < 0:
            raise RuntimeError("repeats can not be negative")
        x = self.flatten() if dim is None else self
        axis = 0 if dim is None else wrap_dim(int(dim), max(x.ndim, 1))
        if x.ndim == 0:
            x = x.reshape(1)
        shape = list(x.shape)
        return x.unsqueeze(axis + 1).expand(*shape[:axis + 1], count, *shape[axis + 1:]).flatten(axis, axis + 1)

    def expand_as(self, other):
        return self.expand(*other.shape)

    def repeat(self, *sizes):
        sizes = _shape_args(sizes)
        T.value_only(self, "repeat")
        return T.Tensor(constant(np.tile(self.array, sizes), self._node.dtype))

    def tril(self, diagonal: int = 0):
        """The elements on and below the ``diagonal``-th diagonal of the last two axes, 0 above."""
        return _triangle(self, diagonal, False)

    def triu(self, diagonal: int = 0):
        """The elements on and above the ``diagonal``-th diagonal of the last two axes, 0 below."""
        return _triangle(self, diagonal, True)

    def contiguous(self, memory_format=None):
        if isinstance(self._node, recording.Recorded) and self._node.op == "permute":
            return self.clone()  # torch copies a permuted tensor into contiguous memory
        if self._symbolic():
            return self
        if self.array.flags.c_contiguous:
            return self
        return self.clone()

    def is_contiguous(self, memory_format=None) -> bool:
        return self._symbolic() or bool(self.array.flags.c_contiguous)

    @property
    def data(self):
        """The values as a tensor that does not require grad, sharing this one's memory."""
        return self.detach()

    @data.setter
    def data(self, value) -> None:
        self._node = T.as_tensor(value).node

    def detach(self):
        """The same values without gradient: sharing memory (a tensor with a value), or a
        detach node (a symbolic or recorded one)."""
        node = self._node
        if isinstance(node, Concrete):
            return T.Tensor(node)
        known = self._tape.values.get(node.id) if self._tape is not None else None
        if known is not None:  # a recorded value already computed: that value, as torch's detach shares it
            return T.Tensor(constant(known, node.dtype))
        b = T._builder(self)
        return T.Tensor(b.detach(T.as_tensor(self, b).node))

    def detach_(self):
        if self._requires_grad:
            guard.changed()  # (as the requires_grad setter)
        self.grad_fn, self._requires_grad = None, False
        return self

    def clone(self, memory_format=None):
        b = T._builder(self)
        if b is EAGER:
            return T._wrap(constant(self.array.copy(), self._node.dtype), [self], "CloneBackward0")
        if isinstance(b, recording.TapeBuilder):  # a recorded copy: an identity node
            return T._wrap(b.pointwise(pw.identity, T.as_tensor(self, b).node), [self], "CloneBackward0")
        return self

    def requires_grad_(self, requires_grad: bool = True):
        self.requires_grad = requires_grad
        return self

    def retain_grad(self) -> None:
        pass

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        """Accumulate the gradient of this (recorded) tensor into ``.grad`` of every leaf that
        requires grad (graphnn.recording)."""
        if create_graph or inputs is not None:
            raise NotImplementedError("backward(create_graph=True) and backward(inputs=...) are not supported yet")
        recording.backward(self, gradient, retain_graph)

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
        if T._builder(self) is not EAGER:  # traced, recorded, or a leaf whose gradient must flow
            if target.ir not in ("f32", "i64", "bool"):
                raise TraceError(f"converting a traced or recorded tensor to {target} is not supported; graphs "
                                 "compute in float32, int64 and bool")
            b = T._builder(self)
            fn = pw.to_bool if target is dtypes.bool_ else pw.cast
            return T._wrap(b.pointwise(fn, T.as_tensor(self, b).node, dtype=target.ir), [self], "ToCopyBackward0")
        return T._wrap(cast(self.node, target.ir), [self], "ToCopyBackward0")

    def type(self, dtype=None):
        """The legacy type name ("torch.FloatTensor"), or a conversion to ``dtype`` (a dtype or
        such a name)."""
        if dtype is None:
            return dtypes.tensor_type_name(self.dtype)
        if isinstance(dtype, str):
            dtype = next((d for d in dtypes.DTYPES if dtypes.tensor_type_name(d) == dtype), dtype)
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
        return self.shape[wrap_dim(dim, self.ndim, T._builder(self))]

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
        if self._symbolic() and not (self._tape is not None and trace.active() is not self._tape):
            self._no_value(what)
        return self.array

    def item(self):
        tape, node = self._tape, self._node
        # a recorded value computed already (a loop's loss read after its step): no run to wait for
        array = tape.values.get(node.id) if tape is not None and recording.pending() is None else None
        if array is None or trace.active() is not None:
            array = self._value(".item()")
        if array.size != 1:
            raise RuntimeError(f"a Tensor with {array.size} elements cannot be converted to Scalar")
        return array.item()

    def tolist(self):
        return self._value(".tolist()").tolist()

    def numpy(self, force: bool = False) -> np.ndarray:
        array = self._value(".numpy()")
        if self.requires_grad and not force:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() instead.")
        return array

    def __array__(self, dtype=None, copy=None):
        array = self._value("converting to a numpy array")
        if self.requires_grad:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() instead.")
        if dtype is not None and np.dtype(dtype) != array.dtype:
            return array.astype(dtype)
        return array.copy() if copy else array  # numpy trusts __array__ to honour copy=True

    def __bool__(self):
        array = self._value("Python control flow (`if`, `while`, `and`/`or`, bool())")
        if array.size != 1:
            raise RuntimeError(f"Boolean value of Tensor with {'no values' if array.size == 0 else 'more than one value'} "
                               "is ambiguous")
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
            raise ValueError("only one element tensors can be converted to Python scalars")
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


# -- helpers shared by methods and nn.functional -----------------------------------------------
def _triangle(x, diagonal: int, upper: bool):
    """tril/triu as one select against the row and column indices (iota), for a tensor in any state."""
    name = "triu" if upper else "tril"
    if x.ndim < 2:
        raise RuntimeError(f"{name}: input tensor must have at least 2 dimensions")
    b = T._builder(x)
    t = T.as_tensor(x, b)
    shape, rank = tuple(t.shape), t.ndim
    rows, cols = b.iota(shape, rank - 2), b.iota(shape, rank - 1)
    out = b.pointwise(pw.triangle(int(diagonal), upper), t.node, rows, cols, dtype=t.node.dtype)
    return T._wrap(out, [x], "TriuBackward0" if upper else "TrilBackward0")


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


T: Any = None
"""graphnn.tensors, which defines Tensor on these methods and so sets this when it is loaded
(it is told rather than imported: the two would import each other)."""
