"""Tracing: calling a Module on symbolic Tensors records its forward as a Graph.

A ``Tracer`` is active while the model runs. Module calls push their path (``layer1.0``) so
every Node records where it came from; parameters and buffers the forward touches become leaves
named by their ``state_dict`` keys; layers that keep running statistics register their new values
as graph updates.
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np
import sympy

from graphnn import random
from graphnn.errors import TraceError, UnregisteredParameterError
from graphnn.ir import B, Graph, Node
from graphnn.ops import Builder


class _State(threading.local):
    """Per-thread tracing state. Its defaults are class attributes, so reading one in a thread
    that never set it costs an attribute lookup, not a caught AttributeError (about ten times
    more: a training loop asks several times per iteration)."""

    stack: list | None = None


_state = _State()


def active() -> "Tracer | None":
    """The tracer recording the current forward, or None outside tracing."""
    stack = _state.stack
    return stack[-1] if stack else None


def current() -> "Tracer":
    tracer = active()
    if tracer is None:
        raise TraceError("this operation only works inside a traced forward (gn.trace or gn.compile)")
    return tracer


class Tracer:
    """Records one Module's forward (and optionally its loss) into a Graph."""

    def __init__(self, model: Any) -> None:
        self.graph = Graph()
        self.builder = Builder(self.graph)
        self.model = model
        self.param_names = {id(p): name for name, p in model.named_parameters()}
        self.buffer_names = {id(b): name for name, b in model.named_buffers()}
        self.module_paths = {id(m): name for name, m in model.named_modules()}
        self.updated: dict[str, Node] = {}
        self.dropout_streams = 0
        self.random_state = random.generator().bit_generator.state  # (see concrete)
        self.constant_leaves: dict[int, tuple] = {}  # id(array) -> (array, leaf): one leaf per array read

    def __enter__(self) -> "Tracer":
        if _state.stack is None:
            _state.stack = []
        _state.stack.append(self)
        return self

    def __exit__(self, *exc) -> None:
        _state.stack.pop()

    # -- module scopes ------------------------------------------------------------------
    def scope(self, module: Any) -> "_Scope":
        return _Scope(self, module)

    # -- leaves -----------------------------------------------------------------------------
    # leaves are returned as Nodes: the Tensor layer wraps them (it imports this module, not the
    # other way round)
    def input(self, name: str, shape: tuple, dtype: str, **attrs) -> Node:
        return self.builder.leaf("input", name, shape, dtype, **attrs)

    def param(self, p: Any) -> Node:
        name = self.param_names.get(id(p))
        if name is None:
            raise UnregisteredParameterError(_unregistered_message(self, p))
        return self.builder.leaf("param", name, tuple(p.shape), "f32")

    def has_buffer(self, array: np.ndarray) -> bool:
        """Whether ``array`` is a buffer of the traced model (a Module reads it as a tensor then)."""
        return id(array) in self.buffer_names

    def buffer(self, array: np.ndarray) -> Node:
        array = storage(array)
        name = self.buffer_names.get(id(array))
        if name is None:
            raise UnregisteredParameterError(
                f"{self.builder.where()}: a buffer of shape {tuple(array.shape)} used in forward is not "
                "registered with the model; register it with register_buffer on a Module the model owns"
            )
        return self.builder.leaf("buffer", name, tuple(array.shape), buffer_dtype(array))

    def concrete(self, tensor: Any) -> Node:
        """A tensor with a value that the traced forward reads: a constant of the graph.

        The forward made it itself (``torch.ones``, ``torch.arange``, ``torch.tril(...)``, class
        weights), so its value at trace time is its value on every call. One value everywhere
        is a pointwise constant, which kernels fold into their expressions; any other value is
        a ``buffer`` leaf whose array the graph holds (``Graph.constants``). A tensor sharing
        memory with a parameter or buffer (``p.data``, ``from_numpy(buf)``) is that leaf, read
        at run time (a parameter detached, as ``.data`` is), never a copy that would go stale.
        """
        array = tensor.array
        leaf = self._storage_leaf(array)
        if leaf is not None:
            return leaf
        if tensor.requires_grad:
            raise self.builder.error(
                f"a tensor that requires grad (shape {list(tensor.shape)}) is used in the traced forward but is not "
                "a parameter of the model; make it an nn.Parameter of a submodule, or detach it")
        if random.generator().bit_generator.state != self.random_state:
            raise self.builder.error(
                f"a tensor with a value (shape {list(tensor.shape)}) is used in the traced forward after the forward "
                "drew random numbers (torch.rand, randn...): a compiled program would repeat the same draws on every "
                "call; use nn.Dropout / F.dropout for random masks, or pass random values as an input")
        dtype = {"f": "f32", "b": "bool"}.get(array.dtype.kind, "i64")
        if array.size and dtype != "bool" and np.isfinite(array.flat[0]) and (array == array.flat[0]).all():
            value = array.flat[0].item() if dtype == "i64" else float(np.float32(array.flat[0]))
            expr = sympy.Integer(int(value)) if float(value).is_integer() else sympy.Float(value)
            return self.builder.emit("pointwise", (), array.shape, dtype, name="constant", expr=expr)
        if id(array) in self.constant_leaves:
            return self.constant_leaves[id(array)][1]
        graph = self.graph
        name = f"constant.{len(graph.constants)}"
        while graph.leaf(name) is not None or name in self.buffer_names.values() or name in self.param_names.values():
            name += "_"
        stored = array.astype(np.float32 if dtype != "i64" else np.int64)  # bools as 0/1, as backends hold them
        graph.constants[name] = np.array(stored, order="C")  # (ascontiguousarray would make a 0-d array 1-d)
        leaf = self.builder.leaf("buffer", name, array.shape, dtype)
        self.constant_leaves[id(array)] = (array, leaf)  # (the array is held: its id is not reused)
        return leaf

    def _storage_leaf(self, array: np.ndarray) -> Node | None:
        """The parameter (detached) or buffer leaf whose array ``array`` is; an error when it is
        only part of one (a slice taken outside the graph would not follow later changes)."""
        for name, p in self.model.named_parameters():
            if p.array is array:
                return self.builder.detach(self.param(p))
            if np.may_share_memory(p.array, array):
                break
        else:
            for name, b in self.model.named_buffers():
                if b is array:
                    return self.buffer(b)
                if np.may_share_memory(b, array):
                    break
            else:
                return None
        raise self.builder.error(
            f"a tensor of shape {list(array.shape)} that shares memory with {name!r} is used in the traced forward; "
            f"use the model's {name} itself (slicing and reshaping it inside forward), so the compiled program "
            "reads its current values")

    def hyper(self, name: str, dtype: str = "f32") -> Node:
        return self.builder.leaf("hyper", name, (), dtype)

    def update(self, array: np.ndarray, value) -> None:
        """Record the new value of a persistent buffer (written back after a successful run)."""
        name = self.buffer_names[id(storage(array))]
        if name in self.updated:
            raise TraceError(f"{self.builder.where()}: buffer {name!r} is updated twice in one forward")
        self.updated[name] = value.node
        self.graph.updates[name] = value.node

    def next_stream(self) -> int:
        self.dropout_streams += 1
        return self.dropout_streams - 1


class _Scope:
    def __init__(self, tracer: Tracer, module: Any) -> None:
        self.tracer, self.module = tracer, module

    def __enter__(self) -> None:
        b = self.tracer.builder
        self.saved = (b.path, b.module)
        path = self.tracer.module_paths.get(id(self.module))
        b.path = path if path is not None else (b.path + "." if b.path else "") + "<unregistered>"
        b.module = type(self.module).__name__

    def __exit__(self, *exc) -> None:
        self.tracer.builder.path, self.tracer.builder.module = self.saved


def _unregistered_message(tracer: Tracer, p: Any) -> str:
    where = tracer.builder.where()
    found = _find_unregistered(tracer.model, p)
    if found:
        owner_path, attr, kind = found
        owner = owner_path or type(tracer.model).__name__
        hint = "nn.ModuleDict" if kind == "dict" else "nn.ModuleList"
        return (
            f"{where}: a Parameter of shape {tuple(p.shape)} is used in forward but the model does not register "
            f"it: it is reached through `{owner}.{attr}`, a plain Python {kind}, so model.parameters() and the "
            f"optimizer never see it. Keep submodules in {hint} (or the Parameter in a registered Module)."
        )
    return (
        f"{where}: a Parameter of shape {tuple(p.shape)} is used in forward but is not registered in the model "
        "(it is not among model.named_parameters()); assign it as a Module attribute or keep it in "
        "nn.ModuleList / nn.ModuleDict"
    )


def _find_unregistered(model: Any, p: Any):
    """Where a parameter hides: (module path, attribute expression, container kind) or None."""
    for path, module in model.named_modules():
        for attr, value in vars(module).items():
            if attr.startswith("_") and attr in ("_parameters", "_buffers", "_modules"):
                continue
            if isinstance(value, (list, tuple, dict)):
                items = value.items() if isinstance(value, dict) else enumerate(value)
                for key, item in items:
                    if _holds(item, p):
                        kind = "dict" if isinstance(value, dict) else type(value).__name__
                        return path, f"{attr}[{key!r}]", kind
    return None


def _holds(item: Any, p: Any) -> bool:
    if item is p:
        return True
    named = getattr(item, "parameters", None)
    if callable(named):
        return any(q is p for q in named())
    return False


def storage(buffer: Any) -> np.ndarray:
    """A model buffer as its array: one read inside a traced forward is a tensor of its leaf that
    holds on to the array (graphnn.nn.Module), by which leaves and updates name it."""
    return getattr(buffer, "_buffer", buffer)


def buffer_dtype(array: np.ndarray) -> str:
    """The graph dtype of a buffer's leaf (registered buffers are float32 or int64 arrays)."""
    return "i64" if array.dtype.kind in "iu" else "f32"


def symbolic_shape(shape: tuple) -> tuple:
    """An example input's shape with its leading dimension replaced by the batch symbol."""
    if len(shape) == 0:
        raise TraceError("inputs need a leading batch dimension; got a scalar")
    return (B,) + tuple(int(d) for d in shape[1:])
