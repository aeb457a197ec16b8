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

import functools
import itertools
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from graphnn import pointwise as pw
from graphnn import guard, random, trace
from graphnn.eager import Concrete
from graphnn.evaluate import check_indices
from graphnn.ir import LEAF_OPS, Graph, IndexCheck, LabelCheck, Node
from graphnn.ops import Builder, index_source


@dataclass(eq=False, repr=False)
class Recorded(Node):
    """A Node of a tape: the value of a recorded tensor, computed when it is needed."""

    tape: Any = None
    requires_grad: bool = False
    """Whether the value depends on a leaf that requires grad (through float ops, not detach)."""
    index: int = -1
    """Its position in the tape: what the structural key of a later node names it by."""
    backward_ids: frozenset | None = None
    """The ids of the recorded ops a backward from it goes through (_backward_path), once asked:
    nodes never change and later iterations take them over, so each backward reuses it."""
    grad_fn: Any = None
    """The ``grad_fn`` of the tensors wrapping it, made for the first (graphnn.tensors)."""

    def __repr__(self) -> str:
        return f"<Recorded {self.ref}:{self.type_str()}>"


class TapeBuilder(Builder):
    """A Builder whose nodes are Recorded nodes of its tape."""

    def __init__(self, tape: "Tape") -> None:
        super().__init__(tape.graph)
        self._tape = weakref.ref(tape)  # (no cycle: a finished tape is freed when its last tensor is)

    @property
    def tape(self) -> "Tape":
        return self._tape()

    def emit(self, op: str, inputs, shape, dtype: str, /, **attrs) -> Node:
        tape = self.tape
        inputs = [tape.constant(i) if isinstance(i, Concrete) else i for i in inputs]
        shape = tuple(int(d) for d in shape)
        entry = (op, dtype, shape, tuple(i.index for i in inputs), _attrs_key(attrs))
        node = tape.replayed(entry)
        if node is None:
            grad = dtype in ("f32", "f64") and op != "detach" and any(getattr(i, "requires_grad", False) for i in inputs)
            node = Recorded(op, tuple(inputs), shape, dtype, attrs, self.path, self.module, tape=tape,
                            requires_grad=grad, index=len(self.graph.nodes))
        return tape.add(entry, node)

    def leaf(self, op: str, name: str, shape, dtype: str = "f32", /, requires_grad: bool = False, **attrs) -> Node:
        return self.tape.new_leaf(op, name, shape, dtype, requires_grad, attrs)

    def check(self, condition, message: str) -> None:
        if not bool(condition):
            raise self.error(message)

    def check_labels(self, labels: Node, classes: int, ignore_index: int) -> None:
        """Check the labels now (their values are known), and keep the check with the tape: a
        later iteration that takes the module call over checks its own labels (Span.replay)."""
        if labels.op == "input":
            check = LabelCheck(labels.attrs["name"], int(classes), int(ignore_index))
            self.verify(check)
            self.graph.label_checks.append(check)

    def check_index(self, index: Node, size: int, op: str, axis: int = 0) -> None:
        """Check an index's values now, with PyTorch's error, and keep the check with the tape
        (as ``check_labels``)."""
        if isinstance(index, Concrete):
            check_indices(index.value, IndexCheck("", int(size), op, int(axis)))
            return
        source = index_source(index)
        if source.op == "buffer":  # a model buffer: its values now
            check_indices(self.tape.leaves[source.attrs["name"]], IndexCheck("", int(size), op, int(axis)))
        elif source.op == "input":
            check = IndexCheck(source.attrs["name"], int(size), op, int(axis))
            self.verify(check)
            self.graph.index_checks.append(check)

    def verify(self, check: LabelCheck | IndexCheck, pending: dict | None = None) -> None:
        """Raise PyTorch's error if the tape's value of the checked input (or its value in
        ``pending``, values about to be taken over) breaks ``check``."""
        values = np.asarray((pending if pending and check.input in pending else self.tape.input_values)[check.input])
        if isinstance(check, IndexCheck):
            check_indices(values, check)
            return
        if values.size == 0 or (values.min() >= 0 and values.max() < check.classes):
            return  # (every label a class: the usual case, two reductions)
        bad = values[(values != check.ignore_index) & ((values < 0) | (values >= check.classes))]
        if bad.size:
            raise IndexError(f"Target {int(bad.flat[0])} is out of bounds.")


def _attrs_key(attrs: dict) -> tuple:
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in attrs.items())


def _modes(module: Any) -> tuple:
    """The train/eval flag of every module under ``module``, remembered until a module changes
    or a flag is set (graphnn.guard's ``version`` and ``modes``)."""
    cached = object.__getattribute__(module, "__dict__").get("_tape_modes")  # (not through Module's own)
    if cached is None or cached[0] != guard.version or cached[1] != guard.modes:
        # (read from their attribute dictionaries: skips Module.__getattribute__)
        flags = tuple([vars(m)["training"] for m in module.modules()])
        cached = (guard.version, guard.modes, flags)
        object.__setattr__(module, "_tape_modes", cached)
    return cached[2]


def _key_of(value: Any) -> Any:
    """An argument as a module call's key holds it: a tensor (its node) by the node's place in
    the tape, a tuple of them (an LSTM's ``(h, c)``) by theirs, anything else by identity when it
    is not hashable."""
    if isinstance(value, Node):
        return ("node", value.index)
    if type(value) is tuple:
        return ("tuple",) + tuple(_key_of(v) for v in value)
    try:
        hash(value)
    except TypeError:
        return ("object", id(value))
    return value


def _as_argument(value: Any, node: Any) -> Any:
    """What a traced forward receives for an argument whose node (Tape._node_of) is ``node``."""
    if type(value) is tuple:
        return tuple(_as_argument(v, n) for v, n in zip(value, node))
    if not isinstance(value, T.Tensor) or value._node is node:
        return value
    return T.Tensor(node)


def _graph_value(array: np.ndarray, dtype: str) -> tuple[np.ndarray, str]:
    """A value as a graph input takes it: int32 as int64 (graphs have no int32)."""
    if dtype == "i32":
        return array.astype(np.int64), "i64"
    return array, dtype


class Span:
    """A module call recorded in a tape: the signature positions its nodes took, the leaves it
    named, the buffers it updated, the dropout streams it drew, the checks its inputs passed
    (class labels, indices) and its output's nodes."""

    def __init__(self, key: tuple, start: int, end: int, names: list, constants: list, updates: dict, streams: int,
                 output: Any, checks: tuple = ((), ())):
        self.key, self.start, self.end, self.constants = key, start, end, constants
        self.updates, self.streams, self.output, self.checks = updates, streams, output, checks
        # the names it adds, (kind, key, name, holder) each, as a replay adds them: parameter and
        # buffer names by key, and the holders by name
        self.named = ({k: n for kind, k, n, _ in names if kind == "param"},
                      {k: n for kind, k, n, _ in names if kind == "buffer"}, {n: h for _, _, n, h in names})
        # set when the tape knows them: its signature entries, its nodes and their ids, its leaves by name
        self.signature: tuple = ()
        self.nodes: tuple = ()
        self.ids: tuple = ()
        self.leaf_nodes: dict = {}
        self.drew = False
        """Whether the forward drew from the global random generator (torch.randn in forward):
        its values would differ on the next call, so the call is traced again."""

    def current(self) -> bool:
        """Whether the tensors the forward read still have the shapes and dtypes they had (their
        values are read again when the call is taken over)."""
        for _, owner, array in self.constants:
            if owner is not None:
                value = _graph_value(owner.array, owner._node.dtype)[0]
                if value.shape != array.shape or value.dtype != array.dtype:
                    return False
        return True

    @classmethod
    def recorded(cls, tape: "Tape", key: tuple, start: int, marks: tuple, output: Any) -> "Span":
        params, buffers, inputs, streams, updates, labels, indices = marks
        names = [("param", k, n) for k, n in list(tape.param_names.items())[params:]]
        names += [("buffer", k, n) for k, n in list(tape.buffer_names.items())[buffers:]]
        names = [(kind, k, n, tape.leaves[n]) for kind, k, n in names]
        # the tensors the forward read or made (an attribute, torch.ones(...)): their values are
        # read again from the same tensors when the call is taken over
        constants = [(name, tape.owner_of.get(name), array) for name, array in list(tape.input_values.items())[inputs:]]
        changed = {n: v for n, v in tape.graph.updates.items() if updates.get(n) is not v}
        checks = (tuple(tape.graph.label_checks[labels:]), tuple(tape.graph.index_checks[indices:]))
        span = cls(key, start, len(tape.signature), names, constants, changed, tape.dropout_streams - streams,
                   _nodes_of(output), checks)
        span.signature = tuple(tape.signature[start:span.end])
        span.nodes = tuple(tape.graph.nodes[start:span.end])
        span.ids = tuple(n.id for n in span.nodes)
        span.leaf_nodes = {n.attrs["name"]: n for n in span.nodes if n.op in LEAF_OPS}
        return span

    def replay(self, tape: "Tape") -> Any:
        """Take the call over into ``tape`` (which follows the tape this span was recorded in)."""
        # the values of the tensors the forward read, now; then the checks on this call's inputs
        # (class labels, indices) as the forward would have made them, before anything changes
        values = {name: array if owner is None else _graph_value(owner.array, owner._node.dtype)[0].copy()
                  for name, owner, array in self.constants} if self.constants else None
        labels, indices = self.checks
        if labels or indices:
            for check in labels + indices:
                tape.builder.verify(check, values)
        tape.adopted.update(self.ids)
        tape.signature.extend(self.signature)  # (the template's entries and nodes at these places)
        graph = tape.graph
        graph.nodes.extend(self.nodes)
        if self.leaf_nodes:
            if not graph._leaves.keys().isdisjoint(self.leaf_nodes):
                raise ValueError(f"graph already has a leaf named {next(iter(graph._leaves.keys() & self.leaf_nodes))!r}")
            graph._leaves.update(self.leaf_nodes)
        params, buffers, holders = self.named
        if holders:
            tape.param_names.update(params)
            if buffers:
                tape.buffer_names.update(buffers)
            tape.leaves.update(holders)
        if values:
            tape.input_values.update(values)
            for name, owner, _ in self.constants:
                if owner is not None:
                    tape.inputs_by_id[id(owner)] = graph.leaf(name)
                    tape.owner_of[name] = owner
        if labels or indices:
            graph.label_checks.extend(labels)
            graph.index_checks.extend(indices)
        if self.updates:
            graph.updates.update(self.updates)
        tape.dropout_streams += self.streams
        tape.spans[self.start] = self
        return _tensors_of(self.output)


def _nodes_of(output: Any) -> Any:
    if isinstance(output, (tuple, list)):
        return type(output)(_nodes_of(o) for o in output)
    return output._node if hasattr(output, "_node") else output


def _tensors_of(nodes: Any) -> Any:
    if type(nodes) is Recorded:
        return T.Tensor._of_recorded(nodes)
    if isinstance(nodes, (tuple, list)):
        return type(nodes)(_tensors_of(n) for n in nodes)
    return T.Tensor(nodes) if isinstance(nodes, Node) else nodes


T: Any = None
"""graphnn.tensors, which imports this module and sets this when it is loaded."""

replay_module_calls = True
"""Take a module call over from the previous iteration without running its forward when the
call is made as before: the module unchanged since (graphnn.guard's version moves on any module
attribute set, registration or requires_grad flip), the same train/eval flags, the same input
positions, and no draw from the global random generator in the forward. Tensors the forward read
(an attribute changed in place) are read again; tensors it made (``torch.arange(T)``) are taken
to be the same again. This is what ``gn.compile`` assumes of a forward, and it saves the
forward's Python every iteration; a forward whose result depends on a global, a closure or
Python's random module would run stale: set this False for such models, and every forward runs
(its nodes are still taken over node by node)."""

runner: Callable[["Tape", dict], dict] | None = None
"""Runs a tape's graph for the named outputs (name -> node), applying its buffer updates the
first time: graphnn.lazy sets it."""


class Tape(trace.Tracer):
    """One iteration's recorded work (see the module docstring)."""

    # (values every tape starts with, rebound, never changed in place: a tape is made per iteration)
    dropout_streams = 0
    backwarded = False
    freed: frozenset = frozenset()
    """The recorded ops a backward went through (without retain_graph): another backward
    through any of them is torch's "backward through the graph a second time" error."""
    same_leaves = True
    """Whether every leaf named outside a taken-over module call is held by the object the
    template's leaf of that name was (a call taken over names the template's own)."""
    _token: tuple = (-1, None)
    _leaf_key: tuple = (-1, -1, -1, -1)

    def __init__(self, template: "Tape | None" = None) -> None:
        self.graph = Graph()
        self.param_names: dict[int, str] = {}
        self.leaves: dict[str, Any] = {}  # param and buffer leaf name -> the object holding its value
        self.input_values: dict[str, np.ndarray] = {}
        self.inputs_by_id: dict[int, Node] = {}
        self.owner_of: dict[str, Any] = {}
        """Input leaf name -> the tensor it holds the value of (held, so no other tensor reuses
        its id, the key of ``inputs_by_id``, while this tape lives)."""
        self.shared: dict[str, np.ndarray] = {}
        """Input values held without a copy (a data tensor's own array): before_write copies
        one before it is written in place."""
        self.values: dict[int, np.ndarray] = {}  # node id -> value, once computed
        self.alive: list = []
        """Weak references to the tensors wrapping this tape's nodes: backward computes the values
        of those Python still holds in the same run, so reading one after optimizer.step() gives
        the value it had when it was recorded, as in PyTorch (``loss.item()`` after the step is
        the loss before it). (A list: cheaper than a WeakSet, and a tape lives one iteration.)"""
        self.signature: list = []
        """One entry per node (op, dtype, shape, input positions, attributes): two tapes with equal
        signatures (and the same leaf objects) record the same graph, so the compiled run of one
        serves the other (graphnn.lazy)."""
        self.template: Tape | None = template
        """The previous iteration's tape, followed while this one records alike: its nodes are
        reused instead of built, and a module call it recorded is not traced again (Span)."""
        self.followed: Tape | None = template
        """The template this tape started from (``template`` is dropped where they part)."""
        self.adopted: set[int] = set()
        self.spans: dict[int, Span] = {}

    @functools.cached_property
    def seed(self) -> int:
        """The seed of this tape's random streams (dropout), drawn from the global generator when
        a run first needs it: an iteration that draws nothing advances the generator by nothing,
        as torch's does."""
        return random.next_seed()

    # (made when first asked for: a tape whose module calls are all taken over needs none of them)
    @functools.cached_property
    def builder(self) -> TapeBuilder:
        return TapeBuilder(self)

    @functools.cached_property
    def buffer_names(self) -> dict[int, str]:
        return {}

    @functools.cached_property
    def module_paths(self) -> dict[int, str]:
        return {}

    def structure(self) -> int:
        """A number naming this tape's signature so far: equal signatures get equal numbers.
        A tape that followed its template to the end takes the template's number without
        hashing its signature (what an iteration of a training loop costs per step)."""
        length, token = self._token
        if length == len(self.signature):
            return token
        followed = self.followed
        if self.template is not None and followed is not None and len(followed.signature) == len(self.signature):
            token = followed.structure()
        else:
            token = _number(_tokens, tuple(self.signature))
        self._token = (len(self.signature), token)
        return token

    def leaf_key(self) -> int:
        """A number naming (name, identity of the object holding the value, requires grad) of
        every leaf: what a compiled run of this tape binds. A tape that followed its template to
        the end, its leaves held by the same objects and no ``requires_grad`` flipped since
        (graphnn.guard's version moves on a flip), takes the template's instead of walking its
        leaves."""
        state = (len(self.signature), len(self.leaves), guard.version)
        memo = self._leaf_key
        if memo[:3] == state:
            return memo[3]
        followed = self.followed
        if (self.same_leaves and self.template is not None and followed is not None
                and followed._leaf_key[:3] == state and len(followed.signature) == state[0]):
            key = followed._leaf_key[3]
        else:
            key = _number(_leaf_tokens, tuple((name, id(holder), bool(getattr(holder, "requires_grad", False)))
                                              for name, holder in self.leaves.items()))
        self._leaf_key = (*state, key)
        return key

    # -- following the previous iteration ------------------------------------------------------------
    def replayed(self, entry: tuple) -> Node | None:
        """The template's node at this position when it was recorded from the same entry; None
        (and no template from here on) once this iteration records something else."""
        template = self.template
        if template is None:
            return None
        position = len(self.signature)
        if position < len(template.signature) and template.signature[position] == entry:
            return template.graph.nodes[position]
        self.template = None
        return None

    def add(self, entry: tuple, node: Recorded) -> Recorded:
        if node.tape is not self:
            self.adopted.add(node.id)
        self.signature.append(entry)
        return self.graph.add(node)

    def new_leaf(self, op: str, name: str, shape, dtype: str = "f32", requires_grad: bool = False,
                 attrs: dict | None = None) -> Node:
        """The leaf called ``name`` (TapeBuilder.leaf): the template's node where this tape
        follows it, else a new one."""
        graph = self.graph
        existing = graph._leaves.get(name)
        if existing is not None:
            return existing
        shape = tuple([int(d) for d in shape])
        entry = (op, dtype, shape, name, requires_grad)
        node = self.replayed(entry)
        if node is None:
            node = Recorded(op, (), shape, dtype, dict(name=name, **(attrs or {})), tape=self,
                            requires_grad=requires_grad, index=len(graph.nodes))
        else:
            self.adopted.add(node.id)
        self.signature.append(entry)  # (as add, the name known to be new)
        graph._leaves[name] = node
        graph.nodes.append(node)
        return node

    # -- leaves ------------------------------------------------------------------------------------
    def param(self, p: Any) -> Node:
        """The leaf of a Parameter or a leaf tensor that requires grad, named by first use."""
        name = self.param_names.get(id(p))
        if name is None:
            name = self.param_names[id(p)] = f"p{len(self.param_names)}"
            self.leaves[name] = p
            self._note_holder(name, p)
            self.new_leaf("param", name, tuple(p.shape), "f32", bool(p.requires_grad))
        return self.graph.leaf(name)

    def _note_holder(self, name: str, holder: Any) -> None:
        if self.same_leaves and (self.followed is None or self.followed.leaves.get(name) is not holder):
            self.same_leaves = False

    def has_buffer(self, array: np.ndarray) -> bool:
        return True  # a tape names every array it reads

    def buffer(self, array: np.ndarray) -> Node:
        """A model buffer: its leaf, or the value a forward earlier in this tape updated it to
        (a second forward in one iteration sees the first one's running statistics)."""
        array = trace.storage(array)
        name = self.buffer_names.get(id(array))
        if name is None:
            name = self.buffer_names[id(array)] = f"b{len(self.buffer_names)}"
            self.leaves[name] = array
            self._note_holder(name, array)
        if name in self.graph.updates:
            return self.graph.updates[name]
        return self.new_leaf("buffer", name, tuple(array.shape), trace.buffer_dtype(array))

    def update(self, array: np.ndarray, value) -> None:
        name = self.buffer_names[id(trace.storage(array))]
        self.graph.updates[name] = value.node

    def concrete(self, tensor: Any) -> Node:
        """A tensor with a value read by recorded work: an input leaf holding that value (a
        tensor that requires grad is a leaf to differentiate instead)."""
        if tensor._requires_grad:
            return self.param(tensor)
        node = self.inputs_by_id.get(id(tensor))
        if node is None:
            held = tensor.array
            node = self._followed_input(held, tensor._node.dtype)
            if node is None:
                array, dtype = _graph_value(held, tensor._node.dtype)
                name = f"x{len(self.input_values)}"
                node = self.new_leaf("input", name, array.shape, dtype)
            else:
                array, name = held, node.attrs["name"]
            # its value now, as torch's autograd saves it: the array itself, copied only if it is
            # written in place before this tape has run (before_write), so a batch costs no copy
            self.input_values[name] = array
            if array is held:
                if not self.shared:
                    _share(self)
                self.shared[name] = array
            self.inputs_by_id[id(tensor)] = node
            self.owner_of[name] = tensor
        return node

    def _followed_input(self, array: np.ndarray, dtype: str) -> Node | None:
        """The template's input leaf at this position, taken over, where it was recorded from a
        value of this dtype and shape (what ``new_leaf`` would find, without building the entry:
        every iteration of a loop reads its batch this way); else None."""
        template = self.template
        if template is None:
            return None
        position = len(self.signature)
        if position >= len(template.signature):
            return None
        node = template.graph.nodes[position]
        if node.op != "input" or node.dtype != dtype or node.shape != array.shape:
            return None  # (an int32 tensor never matches: its leaf holds it as int64)
        name = node.attrs["name"]  # (the same as this tape's next input name: the tapes agree so far)
        self.adopted.add(node.id)
        self.signature.append(template.signature[position])
        self.graph._leaves[name] = node
        self.graph.nodes.append(node)
        return node

    def constant(self, node: Concrete) -> Node:
        """A value computed eagerly (a number, a tensor's value) read by recorded work: an input leaf."""
        name = f"x{len(self.input_values)}"
        self.input_values[name], dtype = _graph_value(np.asarray(node.value), node.dtype)
        return self.builder.leaf("input", name, tuple(node.shape), dtype)

    # -- scopes --------------------------------------------------------------------------------------
    def forward(self, module: Any, args: tuple, kwargs: dict) -> Any:
        """``module(*args)`` recorded into this tape: traced, or, where the previous iteration
        made the same call (the same module unchanged, in the same modes, on the same nodes), its
        nodes taken over without running the forward in Python."""
        nodes = tuple([self._node_of(a) for a in args])
        keyword_nodes = {k: self._node_of(v) for k, v in kwargs.items()} if kwargs else {}
        key = ("call", id(module), guard.version, _modes(module), tuple([_key_of(n) for n in nodes]),
               tuple([(k, _key_of(n)) for k, n in sorted(keyword_nodes.items())]) if kwargs else ())
        start = len(self.signature)
        span = self.template.spans.get(start) if self.template is not None else None
        if replay_module_calls and span is not None and span.key == key and not span.drew and span.current():
            # (a forward that drew random values, torch.randn(...) say, runs again: they would differ)
            return span.replay(self)
        self.template = None if self.template is not None and span is None else self.template
        args = tuple(_as_argument(a, n) for a, n in zip(args, nodes))
        kwargs = {k: _as_argument(v, keyword_nodes[k]) for k, v in kwargs.items()}
        marks = (len(self.param_names), len(self.buffer_names), len(self.input_values), self.dropout_streams,
                 dict(self.graph.updates), len(self.graph.label_checks), len(self.graph.index_checks))
        draws = random.generator().bit_generator.state
        with self:
            with self.scope(module):
                output = module.forward(*args, **kwargs)
        span = self.spans[start] = Span.recorded(self, key, start, marks, output)
        span.drew = random.generator().bit_generator.state != draws
        return output

    def _node_of(self, value: Any) -> Any:
        """A module call's argument as this tape's node (data becomes an input leaf up front, so a
        replayed call finds its inputs at the same positions); a tuple's tensors alike; other
        values as they are."""
        if type(value) is tuple:
            return tuple(self._node_of(v) for v in value)
        if not isinstance(value, T.Tensor):
            return value
        node = value._node
        if value._tape is self and isinstance(node, Recorded):
            return node  # recorded here before: a loss on a model's output, the next layer's input
        if isinstance(node, Concrete) and not isinstance(value, T.Parameter):
            return self.concrete(value)
        with self:
            return T.as_tensor(value, self.builder)._node

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


class _State(threading.local):
    """Per-thread recording state, its defaults class attributes (see graphnn.trace._State)."""

    tape: "Tape | None" = None
    """The open tape: the one new recording starts on."""
    pending: tuple | None = None
    """The deferred backward (tape, loss node), if one waits."""


_state = _State()
_sharing: list = []
"""Weak references to the tapes that hold input values without a copy (Tape.shared): a list of
a few, pruned as tapes are added (every iteration adds one; a WeakSet costs more)."""


def _share(tape: Tape) -> None:
    global _sharing
    if len(_sharing) >= 8:
        _sharing = [ref for ref in _sharing if ref() is not None]
    _sharing.append(weakref.ref(tape))


_tokens: dict[tuple, int] = {}
"""Tape signatures -> the numbers that name them (Tape.structure)."""
_leaf_tokens: dict[tuple, int] = {}
"""The leaves of tapes (name, holder's identity, requires grad) -> their numbers (Tape.leaf_key)."""
_numbers = itertools.count()


def _number(table: dict, value: tuple) -> int:
    """The number naming ``value`` in ``table``: cache keys hold it, cheap to hash and compare.
    Numbers are never reused: a value forgotten when the table is full gets a new one."""
    number = table.get(value)
    if number is None:
        if len(table) >= 4096:
            table.clear()
        number = table[value] = next(_numbers)
    return number


def current(module_call: bool = False) -> Tape:
    """The tape new recording starts on (a module called on data, an op on leaves): the open one,
    or a new one when the last was differentiated (a new iteration) or, for a module call, has
    given values (an evaluation loop's next batch). Work on tensors already recorded goes on their
    own tape (graphnn.tensors._builder)."""
    tape = _state.tape
    if tape is None or tape.backwarded or (module_call and tape.values):
        flush()
        tape = _state.tape = Tape(template=tape)
        if tape.template is not None:
            tape.template.template = None  # one iteration back is all a tape follows
            tape.template.followed = None
    return tape


def tape_of(node: Recorded) -> Tape:
    """The tape a recorded node belongs to for a tensor made now: the current tape where it took
    the node over from the previous iteration's, else the tape that built it."""
    tape = _state.tape
    if tape is not None and node.id in tape.adopted:
        return tape
    return node.tape


def flush() -> None:
    """Apply the buffer updates the last tape recorded, if nothing has run it yet (a forward
    whose output was never read still moves BatchNorm's running statistics, as in PyTorch).
    Called before a new tape starts and before Python reads model buffers."""
    if trace.active() is not None:
        return
    materialize()
    tape = _state.tape
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
    tape = loss._tape
    path = node.backward_ids
    if path is None:
        path = node.backward_ids = _backward_path(node)
    if not path.isdisjoint(tape.freed):
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
    tape.backwarded = True
    if not retain_graph:
        tape.freed = path if not tape.freed else tape.freed | path
    _state.pending = (tape, node)


def _backward_path(loss: Node) -> frozenset:
    """The ids of the recorded ops a backward from ``loss`` goes through (not past a detach, not
    the leaves): what it frees, as torch frees the saved values of the graph it traversed."""
    path, stack = set(), [loss]
    while stack:
        node = stack.pop()
        if node.id in path or node.op in ("param", "input", "buffer", "hyper", "detach"):
            continue
        path.add(node.id)
        stack.extend(node.inputs)
    return frozenset(path)


def pending() -> tuple | None:
    """The deferred backward (tape, loss node), if one waits."""
    return _state.pending


def alive_values(tape: Tape) -> dict:
    """Output name -> node for the recorded tensors Python still holds whose values a run of
    ``tape`` should compute too, named by their order in the tape (so the next iteration's graph
    prints, and caches, alike)."""
    values, nodes = tape.values, {}
    for ref in tape.alive:
        t = ref()
        if t is not None:
            node = t._node
            if node.id not in values and node.op not in LEAF_OPS:
                nodes[node.index] = node  # (its place in the tape, the template's nodes taken over included)
    return {_value_name(k): nodes[index] for k, index in enumerate(sorted(nodes))}


_VALUE_NAMES: list[str] = []


def _value_name(k: int) -> str:
    """``value{k}`` (formatted once)."""
    while len(_VALUE_NAMES) <= k:
        _VALUE_NAMES.append(f"value{len(_VALUE_NAMES)}")
    return _VALUE_NAMES[k]


def keep_values(tape: Tape, wanted: dict, outputs: dict) -> None:
    for key, node in wanted.items():
        tape.values[node.id] = outputs.pop(key)


def before_write(array: np.ndarray) -> None:
    """Before ``array`` (a leaf's or a data tensor's storage) is written in place: run a deferred
    backward, and compute the values of the open tape's live tensors if the tape reads it, so they
    keep the values they had when they were recorded, as PyTorch computes them at once."""
    materialize()
    for sharing in [ref() for ref in _sharing]:  # inputs recorded without a copy keep the values they had
        if sharing is None:
            continue
        for name, held in list(sharing.shared.items()):
            if np.shares_memory(held, array):
                sharing.input_values[name] = held.copy()
                del sharing.shared[name]
    tape = _state.tape
    if tape is None or tape.backwarded or all(ref() is None for ref in tape.alive):
        return
    holders = [*tape.leaves.values(), *tape.owner_of.values()]
    if any((h if isinstance(h, np.ndarray) else h.array) is array for h in holders):
        wanted = alive_values(tape)
        if wanted:
            keep_values(tape, wanted, run(tape, wanted))


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
        if leaf._step_grad is not None:
            leaf._take_step_grad()
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
    _state.pending = None  # taken: reading or setting a .grad now must not run it again
    if not stepper(optimizer, tape, node):
        _state.pending = waiting
        return False
    return True

