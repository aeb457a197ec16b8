"""Eager evaluation: the builder that computes each op as it is built, and grad mode.

Outside a traced forward, a Tensor holds a value (a numpy array). Its methods build the same
primitive Nodes they record while tracing, through an ``EagerBuilder`` whose ``emit`` evaluates
each Node at once with ``graphnn.evaluate`` (the op set's one numpy definition) and returns it
as a ``Concrete`` node carrying its value. Shapes are checked by the shared Builder code, so an
eager op and a compiled one agree in results and in errors.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphnn.errors import ShapeError
from graphnn.evaluate import NUMPY_DTYPES, check_indices, evaluate
from graphnn.ir import IndexCheck, Node
from graphnn.ops import Builder


@dataclass(eq=False, repr=False)
class Concrete(Node):
    """A Node whose value is known: an eager tensor's. It keeps no inputs (its value is all
    that later ops need), so a long eager computation holds no chain of intermediates."""

    value: Any = None

    def __repr__(self) -> str:
        return f"<Concrete {self.type_str()}>"


def constant(array: np.ndarray, ir: str) -> Concrete:
    """The Concrete leaf holding ``array`` (of the numpy dtype of graph dtype ``ir``)."""
    return Concrete("constant", (), tuple(int(d) for d in array.shape), ir, {}, value=array)


class EagerBuilder(Builder):
    """A Builder without a graph: every op is evaluated when it is emitted."""

    def __init__(self) -> None:
        super().__init__(None)

    def where(self) -> str:
        return ""

    def error(self, message: str) -> ShapeError:
        return ShapeError(message)

    def emit(self, op: str, inputs, shape, dtype: str, /, **attrs) -> Concrete:
        node = Concrete(op, (), tuple(int(d) for d in shape), dtype, attrs)
        with np.errstate(all="ignore"):  # as torch: overflow gives inf, 0/0 NaN, no warnings
            node.value = evaluate(node, [i.value for i in inputs])
        return node

    def leaf(self, op: str, name: str, shape, dtype: str = "f32", /, **attrs) -> Node:
        raise TypeError(f"an eager computation has no {op} named {name!r}")

    def check(self, condition, message: str) -> None:
        if not bool(condition):
            raise self.error(message)

    def check_index(self, index: Concrete, size: int, op: str, axis: int = 0) -> None:
        check_indices(index.value, IndexCheck("", int(size), op, int(axis)))

    def check_labels(self, labels: Concrete, classes: int, ignore_index: int) -> None:
        values = np.asarray(labels.value)
        bad = values[(values != ignore_index) & ((values < 0) | (values >= classes))]
        if bad.size:
            raise IndexError(f"Target {int(bad.flat[0])} is out of bounds.")


EAGER = EagerBuilder()


def cast(node: Concrete, ir: str) -> Concrete:
    """``node`` converted to graph dtype ``ir`` (itself when it already is)."""
    if node.dtype == ir:
        return node
    with np.errstate(all="ignore"):  # float -> int of NaN or out-of-range values: as C casts them
        return constant(np.asarray(node.value).astype(NUMPY_DTYPES[ir]), ir)


# -- grad mode --------------------------------------------------------------------------------
class _Mode(threading.local):
    """Grad mode per thread; on unless set (a class default: no caught AttributeError per read,
    see graphnn.trace._State)."""

    enabled = True


_mode = _Mode()


def is_grad_enabled() -> bool:
    return _mode.enabled


class _GradMode:
    """A grad mode as a context manager and a decorator: ``mode`` holds inside it."""

    mode = True

    def __enter__(self) -> None:
        self.previous = is_grad_enabled()
        _mode.enabled = self.mode

    def __exit__(self, *exc) -> None:
        _mode.enabled = self.previous

    def __call__(self, function):
        import functools

        mode = self.mode

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            scope = _GradMode()
            scope.mode = mode
            with scope:
                return function(*args, **kwargs)

        return wrapper


class set_grad_enabled(_GradMode):
    """Turn gradient recording on or off: as a call it holds until changed again; as a context
    manager (or decorator), inside it only."""

    def __init__(self, mode: bool) -> None:
        self.previous, self.mode = is_grad_enabled(), bool(mode)
        _mode.enabled = self.mode

    def __enter__(self) -> None:
        _mode.enabled = self.mode  # the previous mode was recorded by the call


class no_grad(_GradMode):
    """``with graphnn.no_grad():`` (or ``@graphnn.no_grad()``, ``@graphnn.no_grad``): results do
    not require grad."""

    mode = False

    def __new__(cls, function=None):
        scope = super().__new__(cls)
        return scope if function is None else scope(function)  # used as a decorator without a call


class enable_grad(_GradMode):
    """The opposite of ``no_grad``, inside one."""

    mode = True


class inference_mode(_GradMode):
    """``torch.inference_mode``: no gradients (graphnn has no separate inference tensors)."""

    def __init__(self, mode: bool = True) -> None:
        self.mode = not mode


class GradFn:
    """What PyTorch shows as a result's ``grad_fn`` (``<AddmmBackward0 object at ...>``): the
    op that computed it. graphnn differentiates whole graphs symbolically, so this only names
    the op (loss.backward() arrives with the recorded-graph state)."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"<{self._name} object at {hex(id(self))}>"
