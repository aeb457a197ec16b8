"""The recorded state of tensors: work on tensors that require grad is recorded, not executed.

While grad mode is on, an operation with an operand that requires grad (a Parameter, a tensor
made with ``requires_grad=True``, or a tensor recorded before) appends primitive Nodes to the
current ``Tape`` instead of computing: a module called on tensors traces its forward into it
(the Tape is a Tracer), losses and arithmetic record their ops. The tape's leaves are the
parameters and leaf tensors (``param`` leaves, by identity), model buffers, and the data tensors
the recorded ops read (``input`` leaves, their values taken when recorded). Shapes are the
concrete shapes of this iteration.

Values are produced when something needs one (``item()``, printing, ``numpy()``, a comparison in
Python control flow) and ``loss.backward()`` differentiates the tape with graphnn's symbolic
autodiff and accumulates each leaf's gradient into its ``.grad``. Both run the tape's graph
through ``runner`` (graphnn.lazy compiles it with the backend's pipeline, cached by the graph's
structure); this module sits below the compiler and is told how to run graphs.
"""
from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from graphnn import pointwise as pw
from graphnn import random, trace
from graphnn.eager import Concrete
from graphnn.errors import TraceError
from graphnn.ir import Graph, Node
from graphnn.ops import Builder


@dataclass(eq=False, repr=False)
class Recorded(Node):
    """A Node of a tape: the value of a recorded tensor, computed when it is needed."""

    tape: Any = None
    requires_grad: bool = False
    index: int = -1
    """Its position in the tape: what the structural key of a later node names it by."""
    """Whether the value depends on a leaf that requires grad (through float ops, not detach)."""

    def __repr__(self) -> str:
        return f"<Recorded {self.ref}:{self.type_str()}>"


class TapeBuilder(Builder):
    """A Builder whose nodes are Recorded nodes of its tape."""

    def __init__(self, tape: "Tape") -> None:
        super().__init__(tape.graph)
        self.tape = tape

    def emit(self, op: str, inputs, shape, dtype: str, /, **attrs) -> Node:
        inputs = [self.tape.constant(i) if isinstance(i, Concrete) else i for i in inputs]
        grad = dtype in ("f32", "f64") and op != "detach" and any(getattr(i, "requires_grad", False) for i in inputs)
        node = Recorded(op, tuple(inputs), tuple(int(d) for d in shape), dtype, attrs, self.path, self.module,
                        tape=self.tape, requires_grad=grad, index=len(self.graph.nodes))
        self.tape.signature.append((op, dtype, node.shape, tuple(i.index for i in inputs), _attrs_key(attrs)))
        return self.graph.add(node)

    def leaf(self, op: str, name: str, shape, dtype: str = "f32", /, **attrs) -> Node:
        existing = self.graph.leaf(name)
        if existing is not None:
            return existing
        node = Recorded(op, (), tuple(int(d) for d in shape), dtype, dict(name=name, **attrs), tape=self.tape,
                        index=len(self.graph.nodes))
        self.tape.signature.append((op, dtype, node.shape, name))
        return self.graph.add(node)

    def check(self, condition, message: str) -> None:
        if not bool(condition):
            raise self.error(message)

    def check_labels(self, labels: Node, classes: int, ignore_index: int) -> None:
        if labels.op == "input":
            values = np.asarray(self.tape.input_values[labels.attrs["name"]])
            bad = values[(values != ignore_index) & ((values < 0) | (values >= classes))]
            if bad.size:
                raise IndexError(f"Target {int(bad.flat[0])} is out of bounds.")


def _attrs_key(attrs: dict) -> tuple:
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in attrs.items())


runner: Callable[["Tape", dict], dict] | None = None
"""Runs a tape's graph for the named outputs (name -> node), applying its buffer updates the
first time: graphnn.lazy sets it."""


class Tape(trace.Tracer):
    """One iteration's recorded work (see the module docstring)."""

    def __init__(self) -> None:
        self.graph = Graph()
        self.builder = TapeBuilder(self)
        self.model = None
        self.param_names: dict[int, str] = {}
        self.buffer_names: dict[int, str] = {}
        self.module_paths: dict[int, str] = {}
        self.updated: dict[str, Node] = {}
        self.dropout_streams = 0
        self.leaves: dict[str, Any] = {}  # param and buffer leaf name -> the object holding its value
        self.input_values: dict[str, np.ndarray] = {}
        self.inputs_by_id: dict[int, Node] = {}
        self.input_owners: list = []
        self.values: dict[int, np.ndarray] = {}  # node id -> value, once computed
        self.backwarded = False
        self.retained = False
        self.alive: weakref.WeakSet = weakref.WeakSet()
        """The tensors wrapping this tape's nodes that Python still holds: backward computes their
        values in the same run, so reading one after optimizer.step() gives the value it had when
        it was recorded, as in PyTorch (``loss.item()`` after the step is the loss before it)."""
        self.seed = random.next_seed()
        self.signature: list = []
        """One entry per node (op, dtype, shape, input positions, attributes): two tapes with equal
        signatures (and the same leaf objects) record the same graph, so the compiled run of one
        serves the other (graphnn.lazy)."""

    # -- leaves ------------------------------------------------------------------------------------
    def param(self, p: Any) -> Node:
        """The leaf of a Parameter or a leaf tensor that requires grad, named by first use."""
        name = self.param_names.get(id(p))
        if name is None:
            name = self.param_names[id(p)] = f"p{len(self.param_names)}"
            self.leaves[name] = p
            self.builder.leaf("param", name, tuple(p.shape), "f32").requires_grad = bool(p.requires_grad)
        return self.graph.leaf(name)

    def buffer(self, array: np.ndarray) -> Node:
        """A model buffer: its leaf, or the value a forward earlier in this tape updated it to
        (a second forward in one iteration sees the first one's running statistics)."""
        name = self.buffer_names.get(id(array))
        if name is None:
            name = self.buffer_names[id(array)] = f"b{len(self.buffer_names)}"
            self.leaves[name] = array
        if name in self.graph.updates:
            return self.graph.updates[name]
        dtype = "i64" if array.dtype.kind in "iu" else "f32"
        return self.builder.leaf("buffer", name, tuple(array.shape), dtype)

    def update(self, array: np.ndarray, value) -> None:
        name = self.buffer_names[id(array)]
        self.graph.updates[name] = value.node

    def concrete(self, tensor: Any) -> Node:
        """A tensor with a value read by recorded work: an input leaf holding that value (a
        tensor that requires grad is a leaf to differentiate instead)."""
        if tensor.requires_grad:
            return self.param(tensor)
        node = self.inputs_by_id.get(id(tensor))
        if node is None:
            array = tensor.array
            name = f"x{len(self.input_values)}"
            node = self.builder.leaf("input", name, tuple(array.shape), tensor._node.dtype)
            self.input_values[name] = array.copy()  # its value now, as torch's autograd saves it
            self.inputs_by_id[id(tensor)] = node
            self.input_owners.append(tensor)  # held, so no other tensor reuses its id in this tape
        return node

    def constant(self, node: Concrete) -> Node:
        """A value computed eagerly (a number, a tensor's value) read by recorded work: an input leaf."""
        name = f"x{len(self.input_values)}"
        self.input_values[name] = np.asarray(node.value)
        return self.builder.leaf("input", name, tuple(node.shape), node.dtype)

    # -- scopes --------------------------------------------------------------------------------------
    def forward(self, module: Any, args: tuple, kwargs: dict) -> Any:
        """``module(*args)`` traced into this tape."""
        with self:
            with self.scope(module):
                return module.forward(*args, **kwargs)

    def scope(self, module: Any) -> trace._Scope:
        self.module_paths.setdefault(id(module), type(module).__name__)
        return trace._Scope(self, module)

    # -- values ----------------------------------------------------------------------------------------
    def value(self, node: Node) -> np.ndarray:
        """The value of one of this tape's nodes (running the recorded work for it once)."""
        materialize()
        found = self.values.get(node.id)
        if found is None:
            outputs = run(self, {"value": node})
            found = self.values[node.id] = outputs["value"]
        return found


_state = threading.local()


def current() -> Tape:
    """The tape new recording starts on (a module called on data, an op on leaves): the open one,
    or a new one when the last was differentiated or has given values (a new iteration, or an
    evaluation loop's next batch). Work on tensors already recorded goes on their own tape."""
    tape = getattr(_state, "tape", None)
    if tape is None or tape.backwarded or tape.values:
        flush()
        tape = _state.tape = Tape()
    return tape


def flush() -> None:
    """Apply the buffer updates the last tape recorded, if nothing has run it yet (a forward
    whose output was never read still moves BatchNorm's running statistics, as in PyTorch).
    Called before a new tape starts and before Python reads model buffers."""
    if trace.active() is not None:
        return
    materialize()
    tape = getattr(_state, "tape", None)
    if tape is not None and tape.graph.updates:
        run(tape, {})


def run(tape: Tape, outputs: dict) -> dict:
    if runner is None:  # pragma: no cover - graphnn.api sets it on import
        raise RuntimeError("recorded tensors need graphnn.api imported to run")
    return runner(tape, outputs)


def backward(loss: Any, gradient: Any = None, retain_graph: bool | None = None) -> None:
    """``loss.backward()``: accumulate d loss / d leaf into the ``.grad`` of every leaf of
    ``loss``'s tape that requires grad.

    The run is deferred while nothing needs it: when ``optimizer.step()`` comes next, the
    backward and the update run as one compiled step (graphnn.lazy.run_step). Reading a ``.grad``,
    a recorded value, another ``backward()`` or a new forward's buffers runs it first."""
    node = loss._node
    if not isinstance(node, Recorded) or not loss.requires_grad:
        raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn")
    tape = node.tape
    if tape.backwarded and not tape.retained:
        raise RuntimeError("Trying to backward through the graph a second time (or directly access saved tensors "
                           "after they have already been freed). Saved intermediate values of the graph are freed "
                           "when you call .backward() or autograd.grad(). Specify retain_graph=True if you need to "
                           "backward through the graph a second time or if you need to access saved tensors after "
                           "calling backward.")
    materialize()
    if gradient is not None:
        weight = tape.builder.leaf("input", f"x{len(tape.input_values)}", tuple(node.shape), "f32")
        tape.input_values[weight.attrs["name"]] = np.asarray(gradient.array if hasattr(gradient, "array") else gradient,
                                                             np.float32).copy()
        # the vector-Jacobian product with ``gradient``: the gradient of sum(loss * gradient)
        b = tape.builder
        node = b.reshape(b.reduce("sum", b.apply(pw.mul, node, weight), tuple(range(len(node.shape)))), ())
    elif node.shape != ():
        raise RuntimeError("grad can be implicitly created only for scalar outputs")
    tape.backwarded, tape.retained = True, bool(retain_graph)
    _state.pending = (tape, node)


def pending() -> tuple | None:
    """The deferred backward (tape, loss node), if one waits."""
    return getattr(_state, "pending", None)


def alive_values(tape: Tape) -> dict:
    """Output name -> node for the recorded tensors Python still holds whose values a run of
    ``tape`` should compute too, named by their order in the tape (so the next iteration's graph
    prints, and caches, alike)."""
    nodes = {t._node.id: t._node for t in list(tape.alive)
             if t._node.id not in tape.values and t._node.op not in ("param", "input", "buffer")}
    order = {n.id: k for k, n in enumerate(tape.graph.nodes)}
    return {f"value{k}": nodes[i] for k, i in enumerate(sorted(nodes, key=order.__getitem__))}


def keep_values(tape: Tape, wanted: dict, outputs: dict) -> None:
    for key, node in wanted.items():
        tape.values[node.id] = outputs.pop(key)


def materialize() -> None:
    """Run the deferred backward, if any: gradients added into ``.grad``, live values kept."""
    waiting = pending()
    if waiting is None:
        return
    _state.pending = None
    tape, node = waiting
    wanted = alive_values(tape)
    outputs = run(tape, {"backward": node, **wanted})
    keep_values(tape, wanted, outputs)
    for name, value in outputs.items():
        leaf = tape.leaves[name]
        if leaf._grad is None:
            leaf.grad = value
        else:
            leaf._grad.array[...] += value


stepper: Callable[[Any, Tape, Node], bool] | None = None
"""Runs a deferred backward and an optimizer's step as one compiled step, returning False when it
cannot (graphnn.lazy.run_step); graphnn.api sets it."""


def fused_step(optimizer: Any) -> bool:
    """``optimizer.step()`` right after ``loss.backward()``: both in one run, if possible."""
    waiting = pending()
    if waiting is None or stepper is None:
        return False
    tape, node = waiting
    if not stepper(optimizer, tape, node):
        return False
    _state.pending = None
    return True


def recorded_error(what: str) -> TraceError:
    return TraceError(f"{what} on a tensor recorded for backward is not supported yet")
