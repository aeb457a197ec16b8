"""The Tensor users' code sees: symbolic while a forward is traced, concrete everywhere else.

One type, two states here (the recorded state, for ``loss.backward()``, builds on them):

- symbolic: a Node of the graph being traced. Shapes hold ints and the batch symbol ``B``;
  anything that needs a value in Python (``if x.sum() > 0``, ``float(x)``) raises a TraceError
  explaining why a static graph cannot follow it.
- concrete: a ``Concrete`` node holding a numpy array (float32 by default). Every operation
  builds the same primitive Nodes it records while tracing, through the eager builder, which
  evaluates each one with the op set's numpy definition (graphnn.evaluate): eager and compiled
  results follow one definition.

Each method is written once for both states: ``_builder`` picks the tracer's builder when an
operand is symbolic and the eager one otherwise. dtypes promote as PyTorch's do
(graphnn.dtypes); the graph code of traced forwards keeps computing in float32.
"""
from __future__ import annotations

import sys
import weakref
from collections import namedtuple
from typing import Any, Iterable, Sequence

import numpy as np

from graphnn import dtypes, flat, guard, recording, trace
from graphnn import pointwise as pw
from graphnn.eager import EAGER, Concrete, GradFn, cast, constant, is_grad_enabled
from graphnn.errors import TraceError
from graphnn.ir import Node, numel
from graphnn.ops import Builder
from graphnn.recording import Recorded


class Size(tuple):
    """A shape: a tuple of ints (and, while tracing, expressions of the batch symbol ``B``)."""

    def __repr__(self) -> str:
        return "torch.Size([" + ", ".join(str(d) for d in self) + "])"

    def numel(self):
        return numel(self)

    def __getitem__(self, index):
        item = tuple.__getitem__(self, index)
        return Size(item) if isinstance(index, slice) else item  # a slice of a shape is a shape

    def __add__(self, other):
        return Size(tuple.__add__(self, tuple(other)))


class _ReturnType(tuple):
    def __repr__(self) -> str:
        fields = ",\n".join(f"{name}={value!r}" for name, value in zip(self._fields, self))
        return f"torch.return_types.{self._name}(\n{fields})"


def _return_type(name: str):
    base = namedtuple(name, ["values", "indices"])
    return type(name, (_ReturnType, base), {"_name": name, "__slots__": ()})


MaxResult = _return_type("max")
MinResult = _return_type("min")
TopkResult = _return_type("topk")
SortResult = _return_type("sort")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, bool, np.integer, np.floating, np.bool_))


# -- which builder, and each operand as a node of it --------------------------------------------
def _builder(*values: Any) -> Builder:
    """Where an operation goes: the tracer's builder when an operand is symbolic (or a buffer
    array being traced); the tape's when an operand is recorded, or requires grad while grad mode
    is on (graphnn.recording); otherwise the eager one."""
    tracer = trace.active()
    if tracer is not None:
        for v in values:
            if isinstance(v, Tensor) and v._symbolic():
                return tracer.builder
            if isinstance(v, np.ndarray) and (id(v) in tracer.buffer_names or isinstance(tracer, recording.Tape)):
                return tracer.builder  # a model buffer (a tape names the buffers it meets)
    grad, found = None, None
    for v in values:
        if isinstance(v, Tensor):
            tape = v.__dict__.get("_tape")
            if tape is not None and v._node.id not in tape.freed:  # (a freed node is read as its value)
                if found is not None and tape is not found:
                    raise TraceError("this operation combines tensors recorded in two separate graphs: one whose "
                                     "values were read before a module call started the other; read values "
                                     "after computing the loss, or use .detach() on the one whose gradient "
                                     "is not needed")
                found = tape
            elif v._requires_grad:
                grad = True
    if found is not None:
        return found.builder
    if grad and is_grad_enabled():
        return recording.current().builder
    return EAGER


def current_builder() -> Builder:
    """The builder errors are reported through: the tracer's while tracing, else the eager one."""
    tracer = trace.active()
    return tracer.builder if tracer is not None else EAGER


def as_tensor(value: Any, builder: Builder | None = None) -> "Tensor":
    """``value`` as a Tensor whose node ``builder`` can use: a symbolic Tensor itself, a
    Parameter as its graph leaf (while traced) or its value, a buffer array as its leaf, data
    (arrays, numbers, lists) as a concrete tensor."""
    b = _builder(value) if builder is None else builder
    if isinstance(value, Tensor):
        if b is EAGER:
            return value
        owner = getattr(b, "tape", None) or trace.current()
        if isinstance(value, Parameter):
            return Tensor(owner.param(value))
        tape = value.__dict__.get("_tape")
        if tape is not None and tape is not owner:  # freed by a backward: its value (torch would refuse
            # a backward through it, which nothing here can then ask for)
            return Tensor(owner.concrete(Tensor(constant(value.array, value._node.dtype))))
        if value._symbolic():
            return value
        return Tensor(owner.concrete(value))
    if b is not EAGER and isinstance(value, np.ndarray):
        return Tensor((getattr(b, "tape", None) or trace.current()).buffer(value))
    if b is not EAGER and not _is_number(value):
        owner = getattr(b, "tape", None) or trace.current()
        return Tensor(owner.concrete(Tensor(_constant_of(value))))
    return Tensor(_constant_of(value))


def _constant_of(data: Any, dtype: dtypes.dtype | None = None) -> Concrete:
    """A Concrete node holding ``data`` (copied from lists and numbers, shared from float32 and
    int64 arrays of the right dtype)."""
    if isinstance(data, Tensor):
        array = data.array
    else:
        array = np.asarray(data)
        if array.dtype == object:
            raise TypeError(f"can't build a tensor from {type(data).__name__} holding {type(array.flat[0]).__name__}")
    if dtype is None:
        if array.dtype.kind == "f" and not isinstance(data, np.ndarray):
            dtype = dtypes.get_default_dtype()  # Python floats take the default dtype
        else:
            dtype = dtypes.of_array(array)
    if array.dtype != dtype.numpy:
        with np.errstate(all="ignore"):
            array = array.astype(dtype.numpy)
    return constant(array, dtype.ir)


def _scalar_node(value: Any, d: dtypes.dtype) -> Concrete:
    return constant(np.asarray(value, d.numpy), d.ir)


def _wrap(node: Node, sources: Sequence, grad: str | None = None, builder: Builder | None = None) -> "Tensor":
    """A result Tensor; an eager one requires grad (named by ``grad``, PyTorch's backward node)
    when grad mode is on and a source requires grad."""
    out = Tensor(node)
    if isinstance(node, Recorded):
        if out._requires_grad and grad is not None:
            out.grad_fn = GradFn(grad)
    elif grad is not None and isinstance(node, Concrete) and is_grad_enabled():
        if any(isinstance(s, Tensor) and s.requires_grad for s in sources):
            out._requires_grad = True
            out.grad_fn = GradFn(grad)
    return out


def _named(t: "Tensor", grad: str) -> "Tensor":
    """Rename the grad_fn of a composite's result to the one op PyTorch computes it with."""
    if t.grad_fn is not None:
        t.grad_fn = GradFn(grad)
    return t


_RECORDED_GRADS = {"pointwise": "PointwiseBackward0", "reduce": "SumBackward1", "matmul": "MmBackward0",
                   "reshape": "ViewBackward0", "permute": "PermuteBackward0", "expand": "ExpandBackward0",
                   "gather": "GatherBackward0"}
"""grad_fn names of recorded results that no method named (PyTorch's name is set where known)."""

_BINARY = {"add": (pw.add, "AddBackward0"), "sub": (pw.sub, "SubBackward0"), "mul": (pw.mul, "MulBackward0"),
           "div": (pw.div, "DivBackward0"), "pow": (pw.power, "PowBackward0"),
           "floor_divide": (pw.floor_divide, "NotImplemented"), "remainder": (pw.remainder, "RemainderBackward0"),
           "maximum": (pw.maximum, "MaximumBackward0"), "minimum": (pw.minimum, "MinimumBackward0"),
           "eq": (pw.eq, None), "ne": (pw.ne, None), "lt": (pw.lt, None), "le": (pw.le, None),
           "gt": (pw.gt, None), "ge": (pw.ge, None),
           "logical_and": (pw.logical_and, None), "logical_or": (pw.logical_or, None),
           "logical_xor": (pw.logical_xor, None)}
_COMPARISONS = ("eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor")
_SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**"}


def _operand_dtype(value: Any):
    if isinstance(value, Tensor):
        return (value.dtype, value.ndim)
    if isinstance(value, np.ndarray):
        return (dtypes.of_array(value), value.ndim)
    if isinstance(value, (list, tuple)):
        return (dtypes.of_array(np.asarray(value)), 1)
    return value


def binary(a: Any, b: Any, name: str) -> "Tensor":
    """``a <name> b`` with broadcasting and PyTorch's type promotion."""
    builder = _builder(a, b)
    fn, grad = _BINARY[name]
    if builder is not EAGER:
        return _named(_traced_binary(builder, a, b, name, fn), grad or "NotImplemented")
    result = dtypes.result_type([_operand_dtype(a), _operand_dtype(b)])
    compute = result
    if name == "div" and not result.is_floating_point:
        compute = result = dtypes.get_default_dtype()  # true division
    if name in _COMPARISONS:
        result = dtypes.bool_
        if name.startswith("logical"):
            compute = dtypes.bool_
    _check_operands(a, b, name, compute)
    nodes = [cast(_eager_node(v, compute), compute.ir) for v in (a, b)]
    if name == "pow" and not compute.is_floating_point:
        return _wrap(_integer_pow(builder, *nodes), [a, b], grad)
    if name in ("floor_divide", "remainder") and not compute.is_floating_point and np.any(nodes[1].value == 0):
        raise RuntimeError("ZeroDivisionError")
    return _wrap(builder.apply(fn, *nodes, dtype=result.ir), [a, b], grad)


_BOOL_KERNELS = {"floor_divide": "div_floor_cpu", "remainder": "remainder_cpu", "pow": "pow"}


def _check_operands(a: Any, b: Any, name: str, compute: dtypes.dtype) -> None:
    """The operand dtypes torch refuses for an op, with its errors."""
    bools = [isinstance(v, (bool, np.bool_)) or (isinstance(v, Tensor) and v.dtype is dtypes.bool_) for v in (a, b)]
    if name == "sub" and all(bools):
        raise RuntimeError("Subtraction, the `-` operator, with two bool tensors is not supported. "
                           "Use the `^` or `logical_xor()` operator instead.")
    if name == "sub" and any(bools):
        raise RuntimeError("Subtraction, the `-` operator, with a bool tensor is not supported. "
                           "If you are trying to invert a mask, use the `~` or `logical_not()` operator instead.")
    if name in _BOOL_KERNELS and compute is dtypes.bool_ and not (name == "pow" and _is_number(b)):
        raise NotImplementedError(f"\"{_BOOL_KERNELS[name]}\" not implemented for 'Bool'")
    if name == "pow" and not compute.is_floating_point and _is_number(b) and b < 0:
        raise RuntimeError("Integers to negative integer powers are not allowed.")


def _integer_pow(builder: Builder, base: Concrete, exponent: Concrete) -> Concrete:
    """``base ** exponent`` in integers as torch computes it: a negative exponent (only an
    exponent tensor can have one) gives 1 for base 1, +-1 for base -1 and 0 otherwise."""
    d = base.dtype

    def number(value: int) -> Concrete:
        return constant(np.full((), value, base.value.dtype), d)

    zero, one, minus_one = number(0), number(1), number(-1)
    power = builder.apply(pw.power, base, builder.apply(pw.maximum, exponent, zero, dtype=d), dtype=d)
    negative = builder.apply(pw.lt, exponent, zero, dtype="bool")
    if not np.any(negative.value):
        return power
    odd = builder.apply(pw.ne, builder.apply(pw.remainder, exponent, number(2), dtype=d), zero, dtype="bool")
    of_minus_one = builder.apply(pw.where, odd, minus_one, one, dtype=d)
    is_one = builder.apply(pw.eq, base, one, dtype="bool")
    is_minus_one = builder.apply(pw.eq, base, minus_one, dtype="bool")
    special = builder.apply(pw.where, is_one, one, builder.apply(pw.where, is_minus_one, of_minus_one, zero, dtype=d),
                            dtype=d)
    return builder.apply(pw.where, negative, special, power, dtype=d)


def _eager_node(value: Any, d: dtypes.dtype) -> Concrete:
    if isinstance(value, Tensor):
        return value.node
    if _is_number(value):
        return _scalar_node(value, d)
    return _constant_of(value)


def value_only(t: "Tensor", what: str) -> None:
    """Raise for an op computed on values only (not recorded) when ``t`` needs its gradient."""
    if isinstance(t._node, Recorded) or (t.requires_grad and is_grad_enabled()):
        raise TraceError(f"{what} of a tensor that requires grad is not recorded for backward yet; apply it to "
                         f"x.detach() if no gradient should flow through it")


def _in_graph(value: Any) -> bool:
    """Whether an operand is a value of the graph being built (symbolic, recorded, or a leaf that
    requires grad, or a buffer array), not data to fold in."""
    return isinstance(value, np.ndarray) or (isinstance(value, Tensor) and (value._symbolic() or value.requires_grad))


def _float32_only(b: Builder, *values: Any) -> None:
    """Recorded work computes in float32: a float64 operand is an error, not a silent rounding."""
    if isinstance(b, recording.TapeBuilder) and any(isinstance(v, Tensor) and v.dtype is dtypes.float64
                                                     for v in values):
        raise TypeError("float64 tensors in work recorded for backward are not supported yet (graphnn's graphs "
                        "compute in float32); convert with .float()")


def _traced_binary(b: Builder, x: Any, y: Any, name: str, fn) -> "Tensor":
    """The recorded form: Python numbers (and one-element tensors with a value) are folded
    into the pointwise expression; everything computes in float32."""
    _float32_only(b, x, y)
    reverse = not _in_graph(x)
    tensor, other = (y, x) if reverse else (x, y)
    if isinstance(other, Tensor) and not _in_graph(other) and other.numel() == 1 and \
            not isinstance(b, recording.TapeBuilder):  # (a tape keeps it an input: its value may change)
        other = other.item()
    dtype = "bool" if name in _COMPARISONS else None
    if _is_number(other) and name in _COMPARISONS and not np.isfinite(float(other)):
        # (sympy's real symbols are finite: x == -inf, folded in, would be False for every x)
        other = Tensor(constant(np.asarray(other, np.float32), "f32"))
    if _is_number(other):
        if name in _SYMBOLS:
            return Tensor(b.pointwise(pw.scalar_op(name, other, reverse), as_tensor(tensor, b).node))
        # the number folded into the op's expression, the tensor as its one argument
        value = pw._f(other)
        expr = fn.expr.subs({pw.x0: value, pw.x1: pw.x0} if reverse else {pw.x1: value}, simultaneous=True)
        return Tensor(b.pointwise(pw.fn(fn.name, expr, nargs=1), as_tensor(tensor, b).node, dtype=dtype))
    if name == "pow" and not isinstance(b, recording.TapeBuilder):
        raise TraceError(f"{b.where()}: a tensor exponent is not supported in a traced forward; use a Python number")
    x, y = (other, tensor) if reverse else (tensor, other)
    return Tensor(b.apply(fn, as_tensor(x, b).node, as_tensor(y, b).node, dtype=dtype))


def where_node(b: Builder, condition: Any, input: Any, other: Any, dtype: str | None = None) -> Node:
    """``where(condition, input, other)`` as one node of a traced or recorded graph: Python numbers
    folded into the expression (-inf for a masked score), tensors its arguments, broadcast
    together. The result's dtype is ``dtype``, by default PyTorch's promotion of ``input`` and
    ``other``, computed in float32 when it is a float."""
    values = [condition, input, other]
    _float32_only(b, *values)
    arguments, replaced = [], {}
    for k, v in enumerate(values):
        if _is_number(v):
            replaced[pw.X[k]] = pw._f(v)
        else:
            replaced[pw.X[k]] = pw.X[len(arguments)]
            arguments.append(as_tensor(v, b).node)
    if dtype is None:
        result = dtypes.result_type([_operand_dtype(input), _operand_dtype(other)])
        dtype = "f32" if result.is_floating_point else result.ir
    fn = pw.fn("where", pw.where.expr.xreplace(replaced), nargs=len(arguments))
    return b.apply(fn, *arguments, dtype=dtype)


def _float_dtype(x: "Tensor") -> dtypes.dtype:
    return x.dtype if x.dtype.is_floating_point else dtypes.get_default_dtype()


def unary(x: Any, fn: pw.PointwiseFn, grad: str | None, floating: bool = True) -> "Tensor":
    """An elementwise function of one tensor: in float (ints become float32) when ``floating``."""
    b = _builder(x)
    t = as_tensor(x, b)
    if b is EAGER:
        d = _float_dtype(t) if floating else t.dtype
        return _wrap(b.pointwise(fn, cast(t.node, d.ir), dtype=d.ir), [x], grad)
    _float32_only(b, t)
    return _named(Tensor(b.pointwise(fn, t.node)), grad or "NotImplemented")


from graphnn import indexing, tensor_gather, tensor_math, tensor_methods, tensor_reductions, tensor_slicing  # noqa: E402  (they use the helpers above)
from graphnn.tensor_inplace import InPlaceMethods  # noqa: E402
from graphnn.tensor_methods import TensorMethods  # noqa: E402


class Tensor(InPlaceMethods, TensorMethods):
    """A tensor (see the module docstring). ``Tensor(data)`` makes a float32 tensor from data
    and ``Tensor(*sizes)`` an uninitialised one (zeros), as PyTorch's legacy constructor."""

    __array_priority__ = 1000  # numpy defers to our operators: ``array + tensor`` is a Tensor
    __hash__ = object.__hash__
    _tape = None  # the tape of a recorded tensor (graphnn.recording)
    _step_grad = None
    """(array, start, end, shape): the gradient a compiled step of a recorded loop used for this
    leaf, a slice of the optimizer's flat step gradients (or of a copy of them), copied into
    ``.grad`` when first read (Optimizer.lend_step_grads)."""

    def __init__(self, *data: Any, requires_grad: bool = False) -> None:
        if len(data) == 1 and isinstance(data[0], Node):
            node = data[0]
        elif data and all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in data):
            node = constant(np.zeros(tuple(int(d) for d in data), np.float32), "f32")
        elif len(data) == 1 and not (isinstance(data[0], (tuple, list)) and not data[0]):
            node = _constant_of(data[0], dtypes.float32)
        else:  # Tensor() or Tensor([]): empty
            node = constant(np.zeros((0,), np.float32), "f32")
        self._node = node
        self._requires_grad = bool(requires_grad)
        self._grad = None
        self.grad_fn = None
        if isinstance(node, Recorded):
            self._join_tape(node)

    def _join_tape(self, node: Recorded) -> None:
        self._tape = recording.tape_of(node)
        self._tape.alive.append(weakref.ref(self))
        if node.requires_grad:  # a leaf's node wrapped anew (a no-op view of it) is an alias of it
            self._requires_grad = True
            grad_fn = node.grad_fn
            if grad_fn is None:
                grad_fn = node.grad_fn = GradFn(_RECORDED_GRADS.get(node.op, "AliasBackward0"))
            self.grad_fn = grad_fn

    @classmethod
    def _of_recorded(cls, node: Recorded) -> "Tensor":
        """``Tensor(node)`` of a recorded node, without ``__init__``'s dispatch on its arguments
        (what a module call taken over returns)."""
        t = object.__new__(cls)
        t._node, t._requires_grad, t._grad, t.grad_fn = node, False, None, None
        t._join_tape(node)
        return t

    @classmethod
    def _of_array(cls, array: np.ndarray, ir: str) -> "Tensor":
        """A concrete tensor sharing ``array`` (already of graph dtype ``ir``'s numpy dtype),
        without ``__init__``'s conversions: what a compiled step hands back per parameter."""
        t = object.__new__(cls)
        t._node = Concrete("constant", (), array.shape, ir, {}, value=array)
        t._requires_grad, t._grad, t.grad_fn = False, None, None
        return t

    # -- state ----------------------------------------------------------------------------------
    def _symbolic(self) -> bool:
        return not isinstance(self._node, Concrete)

    @property
    def node(self) -> Node:
        return self._node

    @property
    def array(self) -> np.ndarray:
        """The numpy array holding this tensor's values (shared, not copied): what graphnn's own
        code reads values through. A symbolic tensor has none."""
        node = self._node
        if isinstance(node, Concrete):
            return node.value
        if isinstance(node, Recorded) and trace.active() is not self._tape:
            return self._tape.value(node)  # recorded: computed now
        self._no_value("reading values")

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if self.grad_fn is not None and not value:
            raise RuntimeError("you can only change requires_grad flags of leaf variables. If you want to use a "
                               "computed variable in a subgraph that doesn't require differentiation use "
                               "var_no_grad = var.detach().")
        if value and not self.dtype.is_floating_point:
            raise RuntimeError("only Tensors of floating point dtype can require gradients")
        if bool(value) != self._requires_grad:
            guard.changed()  # a recorded leaf's flag is part of what a compiled run binds
        self._requires_grad = bool(value)

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def grad(self) -> "Tensor | None":
        if recording.pending() is not None:
            recording.materialize()  # a deferred loss.backward() fills it now
        if self._step_grad is not None:
            self._take_step_grad()
        return self._grad

    @grad.setter
    def grad(self, value: Any) -> None:
        if recording.pending() is not None:
            recording.materialize()
        self._step_grad = None
        self._grad = None if value is None else (value if isinstance(value, Tensor) else Tensor(_constant_of(value, self.dtype)))

    def _has_grad(self) -> bool:
        """Whether ``.grad`` is set (without making a compiled step's gradient a Tensor)."""
        return self._grad is not None or self._step_grad is not None

    def _take_step_grad(self) -> None:
        flat_grads, start, end, shape = self._step_grad
        self._step_grad = None
        flat.host_access(flat_grads)
        self._grad = Tensor._of_array(flat_grads[start:end].reshape(shape).copy(), "f32")

    @property
    def shape(self) -> Size:
        return Size(self._node.shape)

    @property
    def dtype(self) -> dtypes.dtype:
        return dtypes.of_ir(self._node.dtype)

    def __repr__(self) -> str:
        if self._symbolic() and not (self._tape is not None and trace.active() is not self._tape):
            path = f", path={self._node.path!r}" if self._node.path else ""
            return f"Tensor({self._node.ref}:{self._node.type_str()}{path})"
        from graphnn.printing import tensor_repr

        return tensor_repr(self)

    def __str__(self) -> str:
        return repr(self)

    def __format__(self, spec: str) -> str:
        if not self._symbolic() and self.ndim == 0 and spec:
            return format(self.item(), spec)
        if spec:  # as torch: a format spec needs one number
            raise TypeError("unsupported format string passed to Tensor.__format__")
        return repr(self)

    def __reduce_ex__(self, protocol):
        return (_rebuild, (self.array.copy(), self.dtype.name, self.requires_grad))

    def _rebind(self, view: np.ndarray) -> None:
        """Move this (concrete, float32) tensor's storage into ``view``, a slice of an optimizer's
        flat parameter buffer: a leaf tensor an optimizer updates, as a Parameter."""
        view[...] = self.array
        self._node = constant(view, self._node.dtype)


def zero_grads(tensors: Iterable, set_to_none: bool = True) -> None:
    """``zero_grad()`` of a module or an optimizer over ``tensors``: each ``.grad`` set to None
    (or zeroed in place), without making a compiled step's gradient a Tensor first."""
    if recording.pending() is not None:
        recording.materialize()  # (as reading .grad does)
    for t in tensors:
        if t._grad is not None or t._step_grad is not None:  # (_has_grad, inline)
            if set_to_none:
                t._grad = t._step_grad = None
            else:
                t.grad[...] = 0


def _rebuild(array: np.ndarray, dtype_name: str, requires_grad: bool) -> Tensor:
    t = Tensor(_constant_of(array, dtypes.as_dtype(dtype_name)))
    t._requires_grad = requires_grad
    return t


class Parameter(Tensor):
    """A trainable float32 tensor, registered by the Module it is assigned to. Inside a traced
    forward it is the graph's ``param`` leaf; elsewhere a tensor whose values are its array.

    After compiling, its array is a view into a flat parameter buffer; assigning ``.data``
    copies into that view so every compiled program keeps seeing the parameter.
    """

    def __init__(self, data: Any = None, requires_grad: bool = True) -> None:
        array = np.zeros((0,), np.float32) if data is None else np.array(
            data.array if isinstance(data, Tensor) else data, dtype=np.float32)
        self._data = np.ascontiguousarray(array)
        self._grad = None
        self._requires_grad = bool(requires_grad)
        self._flat = None  # the FlatBuffer holding the array, once compiled
        self.grad_fn = None

    def _symbolic(self) -> bool:
        return trace.active() is not None

    @property
    def _node(self) -> Node:
        tracer = trace.active()
        if tracer is not None:
            return tracer.param(self)
        return constant(self.array, "f32")

    @property
    def array(self) -> np.ndarray:
        flat.host_access(self._data)
        return self._data

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if bool(value) != self._requires_grad:
            self._requires_grad = bool(value)
            guard.changed()  # programs that compute (or skip) this gradient are retraced

    @property
    def data(self) -> Tensor:
        """The values as a tensor that does not require grad, sharing the parameter's storage."""
        return Tensor(constant(self.array, "f32"))

    @data.setter
    def data(self, value: Any) -> None:
        array = self.array
        recording.before_write(array)
        value = np.asarray(value.array if isinstance(value, Tensor) else value, dtype=np.float32)
        if value.shape != array.shape:
            raise ValueError(f"cannot assign an array of shape {value.shape} to a Parameter of shape {array.shape}")
        array[...] = value

    def _rebind(self, view: np.ndarray) -> None:
        """Move the parameter's storage into ``view`` (a slice of a flat buffer)."""
        view[...] = self._data
        self._data = view

    @property
    def shape(self) -> Size:
        return Size(self._data.shape)

    @property
    def dtype(self) -> dtypes.dtype:
        return dtypes.float32

    def __repr__(self) -> str:
        if trace.active() is not None:
            return f"Parameter({tuple(self.shape)})"
        from graphnn.printing import tensor_repr

        return "Parameter containing:\n" + tensor_repr(self, requires_grad=self.requires_grad)

    def __reduce_ex__(self, protocol):
        return (Parameter, (self.array.copy(), self.requires_grad))

    __hash__ = object.__hash__


# the methods reach Tensor and the helpers here (they cannot import this module, which imports them)
for _module in (tensor_methods, tensor_math, tensor_reductions, tensor_gather, tensor_slicing, indexing, recording):
    _module.T = sys.modules[__name__]
