"""Running recorded work: a tape's graph compiled by the backend's pipeline, cached by structure.

``run_tape(tape, {"value": node})`` computes one recorded value; ``{"backward": loss}``
differentiates the tape's graph (graphnn.autodiff) and computes the gradient of every leaf that
requires grad. A run also applies the buffer updates (BatchNorm's running statistics) recorded since
the last run, once. The graph each run needs is compiled once per structure: two iterations of a
training loop record graphs that print alike (the same ops, shapes and leaves in the same order)
and that read the same parameter and buffer objects, so the second finds the first's executable.
A tape that is an earlier one's graph at another batch size runs one program compiled for every
batch size (graphnn.generalize), from the second batch size seen on.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from graphnn import backends, flat, generalize, recording
from graphnn.autodiff import gradients
from graphnn.evaluate import NUMPY_DTYPES
from graphnn.executable import CompiledExecutable, scalar_storage
from graphnn.ir import Graph
from graphnn.ops import Builder
from graphnn.recording import Tape

CACHE_LIMIT = 64

_seen: dict[tuple, int] = {}
"""How often each structure was asked for before it was compiled."""


class _Run:
    """A compiled run of a tape's structure: the executable, the input leaves' names in the order
    it takes them, the outputs' dtypes, and the batch size it runs at (1 where its shapes are the
    tape's own, the tape's batch where it was compiled for every batch: graphnn.generalize)."""

    def __init__(self, executable: Any, inputs: list, dtypes: dict) -> None:
        self.executable, self.inputs, self.dtypes = executable, inputs, dtypes
        self.scalars: dict | None = {} if isinstance(executable, CompiledExecutable) else None
        """The run-time scalars last written into the executable's slots (only this run writes
        them); None where the executable keeps none (the numpy reference takes them each call)."""
        # whether it draws random numbers (dropout): only then does the tape draw its seed
        self.random = any(leaf.attrs["name"] in ("rng.seed", "rng.step")
                          for graph in executable.graphs.values() for leaf in graph.leaves("hyper"))

    def run(self, tape: Tape, batch: int, entry: str, hypers: dict | None = None) -> dict:
        """The outputs of ``entry`` on ``tape``'s input values (and run-time scalars ``hypers``)."""
        values, dtypes = tape.input_values, self.dtypes
        arrays = [_input(values[name], dtype) for name, dtype in self.inputs]
        scalars = {"rng.seed": tape.seed, "rng.step": 0} if self.random else {}
        if hypers:
            scalars.update(hypers)
        written = self.scalars
        if written is not None and scalars == written:
            scalars = {}  # (in the slots already: a loop's learning rate stays put for many steps)
        outputs = self.executable.run(entry, batch, arrays, scalars)
        if written is not None and scalars:
            self.scalars = scalars  # (once the run wrote them: a failed build writes none)
        return {name: value if type(value) is np.ndarray and value.dtype.type is dtypes[name]
                else np.asarray(value).astype(dtypes[name], copy=False) for name, value in outputs.items()}


_runs: dict[tuple, tuple] = {}
"""A tape's structural key -> (its _Run, the batch it runs at): a tape recorded like an earlier
one runs without autodiff, pruning or lowering."""

_first: dict[tuple, list] = {}
"""A family key (the structural key with the tape's numbers left out) -> the signature of the
first tape seen with it: what a tape at another batch size generalizes against."""

_families: dict[tuple, tuple] = {}
"""A family key -> (the generalized signature, its _Run compiled for every batch size, or None
where compiling it failed: such tapes compile by their own shapes)."""

fallbacks: list = []
"""Why generalized graphs failed to compile (none is expected; the tests read it)."""


def _lookup(key: tuple, tape: Tape, compile_graph) -> tuple | None:
    """The cached (run, batch) for ``key``; or, for a tape that is an earlier one's graph at
    another batch size, the run compiled for every batch (compiled now, by ``compile_graph(graph,
    nodes)`` on the generalized graph, if this is the second batch size seen). None when the
    tape must be compiled by its own shapes."""
    found = _runs.get(key)
    if found is not None:
        return found
    family = _family_key(key, tape)
    first = _first.get(family)
    if first is None:
        if len(_first) >= 4 * CACHE_LIMIT:
            _first.clear()
        _first[family] = list(tape.signature)
        return None
    try:
        entries = generalize.generalize(first, tape.signature)
        batch = generalize.batch_sizes(first, tape.signature)[1]
    except generalize.Apart:
        return None
    known = _families.get(family)
    if known is None or known[0] != entries:
        graph, nodes = generalize.batch_graph(tape.graph, entries)
        try:
            run = compile_graph(graph, nodes)
        except (NotImplementedError, ValueError) as error:  # a pass or backend without symbolic support for it
            fallbacks.append(f"{type(error).__name__}: {error}")
            run = None
        known = _families[family] = (entries, run)
    if known[1] is None:
        return None
    found = (known[1], batch)
    _remember(key, found)
    return found


def _family_key(key: tuple, tape: Tape) -> tuple:
    """``key`` with the tape's structure number replaced by its skeleton (graphnn.generalize)."""
    skeleton = generalize.skeleton(tape.signature)
    if key[0] == "step":
        return ("step", ("family", skeleton, *key[1][1:]), *key[2:])
    return ("family", skeleton, *key[1:])


def _remember(key: tuple, found: tuple) -> None:
    if len(_runs) >= CACHE_LIMIT:
        _runs.pop(next(iter(_runs)))
    _runs[key] = found


def run_tape(tape: Tape, requested: dict) -> dict:
    """The requested values of ``tape`` (see the module docstring), as numpy arrays."""
    key = _key(tape, requested)

    def compile_graph(graph: Graph, nodes: dict) -> _Run:
        wanted = {name: nodes[node.id] for name, node in requested.items()}
        return _compile(_live(_value_graph(graph, tape.leaves, wanted)), tape, backends.resolve("auto"))

    found = _lookup(key, tape, compile_graph)
    if found is None:
        graph = _value_graph(tape.graph, tape.leaves, requested)
        if len(_seen) >= 16 * CACHE_LIMIT:
            _seen.clear()
        seen = _seen[key] = _seen.get(key, 0) + 1
        # the first time a structure is seen it runs in the numpy reference (printing a value, a
        # one-off computation: no compile); the second time it is compiled for the backend
        backend = backends.resolve("auto") if seen > 1 else "numpy"
        found = (_compile(_live(graph), tape, backend), 1)
        if backend != "numpy" or backends.resolve("auto") == "numpy":
            _remember(key, found)
    run, batch = found
    outputs = run.run(tape, batch, "recorded")
    tape.graph.updates.clear()  # applied once: later runs of this tape read the buffers they wrote
    return outputs


def _value_graph(graph: Graph, leaves: dict, requested: dict) -> Graph:
    """The graph computing the requested values (``"backward"``: the gradient of every leaf that
    requires grad, named by the leaf) and applying the buffer updates."""
    updates = dict(graph.updates)
    if "backward" not in requested:
        return graph.variant(dict(requested), updates)
    wrt = [leaf for leaf in graph.params if leaves[leaf.attrs["name"]].requires_grad]
    backward, grads = gradients(graph, requested["backward"], wrt)
    names = {leaf.id: leaf.attrs["name"] for leaf in wrt}
    values = {name: node for name, node in requested.items() if name != "backward"}
    return backward.variant({**values, **{names[i]: g for i, g in grads.items()}}, updates)


def _key(tape: Tape, requested: dict) -> tuple:
    """What decides the graph a run compiles: the tape's signature, the requested nodes, which
    leaves require grad, the leaf objects, whether updates are still to apply, the backend and
    the parameters' flat layout."""
    wanted = tuple([(name, node.index) for name, node in requested.items()])
    updates = tape.graph.updates
    updates = tuple([(name, node.index) for name, node in updates.items()]) if updates else ()
    return (tape.structure(), wanted, tape.leaf_key(), updates, backends.resolve("auto"), flat.generation)


def _live(graph: Graph) -> Graph:
    """The graph with only the nodes its outputs and updates need (its inputs are then the
    live ones, in order, as the compiled entry point takes them)."""
    pruned = Graph()
    for node in graph.live_nodes():
        pruned.add(node)
    pruned.outputs, pruned.updates = dict(graph.outputs), dict(graph.updates)
    pruned.placements = dict(graph.placements)
    pruned.checks, pruned.label_checks = list(graph.checks), list(graph.label_checks)
    pruned.index_checks, pruned.constants = list(graph.index_checks), dict(graph.constants)
    return pruned


def _compile(graph: Graph, tape: Tape, backend: str) -> _Run:
    """The run of a pruned graph; the executable's persistent
    arrays are read from the leaf objects of ``tape`` (the key holds their identities)."""
    persistent = {name: _getter(tape.leaves[name]) for name in _persistent_names(graph)}
    graphs = {"recorded": graph}
    executable = backends.get(backend).executable(graphs, scalar_storage(graphs), persistent)
    dtypes = {name: NUMPY_DTYPES[node.dtype] for name, node in graph.outputs.items()}
    return _Run(executable, [(leaf.attrs["name"], leaf.dtype) for leaf in graph.inputs], dtypes)


def _persistent_names(graph: Graph) -> list:
    return [leaf.attrs["name"] for kind in ("param", "buffer") for leaf in graph.leaves(kind)]


def _getter(holder: Any):
    if isinstance(holder, np.ndarray):
        return lambda: holder
    return lambda: holder.array


def _input(array: np.ndarray, dtype: str) -> np.ndarray:
    """An input as the backends take it: C-contiguous, float32 (bool as 0/1) or int64."""
    target = np.int64 if dtype == "i64" else np.float32
    return np.asarray(array, dtype=target, order="C")  # (ascontiguousarray would make a 0-d input 1-d)


def run_step(optimizer: Any, tape: Tape, loss: Any) -> bool:
    """A deferred ``loss.backward()`` and ``optimizer.step()`` as one compiled step (the
    backward, the live values, and the optimizer's update of each parameter it holds that gets
    a gradient, as ``gn.compile``'s train step fuses them). False, with nothing run, where one
    step cannot express it: a gradient to add to an existing ``.grad``, or a parameter group
    whose parameters' states differ."""
    wanted = recording.alive_values(tape)
    structure = optimizer.structure()
    key = ("step", _key(tape, {"backward": loss, **wanted}), id(optimizer), structure, optimizer.layout_version)
    found = _runs.get(key)
    if found is None:
        wrt_names = [leaf.attrs["name"] for leaf in tape.graph.params
                     if tape.leaves[leaf.attrs["name"]].requires_grad]

        def compile_graph(graph: Graph, nodes: dict) -> _Step:
            return _compile_step(optimizer, graph, tape.leaves, nodes[loss.id], wrt_names,
                                 {name: nodes[node.id] for name, node in wanted.items()})

        if any(tape.leaves[name]._has_grad() for name in wrt_names):
            return False  # (checked before compiling anything; a cached step checks below)
        found = _lookup(key, tape, compile_graph)
        if found is None:
            found = (compile_graph(tape.graph, {n.id: n for n in tape.graph.nodes}), 1)
            _remember(key, found)
    step, batch = found
    for holder in step.differentiated:  # (Tensor._has_grad, inline: every step asks for each leaf)
        if holder._grad is not None or holder._step_grad is not None:
            return False  # gradients to accumulate into: backward and step run apart
    hypers = optimizer.hypers(step.stepped)
    if hypers is None:
        return False
    optimizer.reclaim_step_grads()
    outputs = step.run(tape, batch, "step", hypers)
    optimizer.finish_step(step.stepped, structure)
    tape.graph.updates.clear()
    recording.keep_values(tape, wanted, outputs)
    optimizer.lend_step_grads(step.grads)  # the gradients the step used, as p.grad after torch's step
    for name, value in outputs.items():  # leaves no optimizer of this step holds
        tape.leaves[name].grad = value
    return True


class _Step(_Run):
    """A compiled step and what running it needs besides: the parameters it updates (name ->
    object, held here so the identities in its cache key stay theirs) with their places in the
    optimizer's gradient buffer (start, end, shape), and every leaf it differentiates."""

    def __init__(self, executable: Any, inputs: list, dtypes: dict, stepped: dict, grads: list,
                 differentiated: list) -> None:
        super().__init__(executable, inputs, dtypes)
        self.stepped, self.grads, self.differentiated = stepped, grads, differentiated


def _compile_step(optimizer: Any, graph: Graph, leaves: dict, loss: Any, wrt_names: list, wanted: dict) -> _Step:
    """The step program of a tape's ``graph`` (its own, or generalized over the batch)."""
    optimised = {id(p) for p in optimizer.params}
    wrt = [graph.leaf(name) for name in wrt_names]
    backward, grads = gradients(graph, loss, wrt)
    by_name = {leaf.attrs["name"]: grads[leaf.id] for leaf in wrt if leaf.id in grads}
    stepped = {name: leaves[name] for name in by_name if id(leaves[name]) in optimised}
    others = {name: g for name, g in by_name.items() if name not in stepped}
    step = backward.variant({**wanted, **others}, dict(graph.updates))
    entries = [(p, graph.leaf(name), by_name[name]) for name, p in stepped.items()]
    step.updates.update(optimizer.build_update(Builder(step), entries))
    step.placements.update({f"grad.{name}": by_name[name] for name in stepped})
    step = _live(step)
    graphs = {"step": step}
    storage = {**scalar_storage(graphs), **optimizer.flat_storage(stepped)}
    persistent = {name: _getter(leaves[name]) for name in _persistent_names(step) if name in leaves}
    persistent.update(optimizer.persistent(stepped))
    executable = backends.get(backends.resolve("auto")).executable(graphs, storage, persistent)
    dtypes = {name: NUMPY_DTYPES[node.dtype] for name, node in step.outputs.items()}
    places, grads = optimizer.step_grads, []
    for p in stepped.values():
        k = optimizer._index(p)
        grads.append((p, places.offsets[k], places.offsets[k + 1], places.shapes[k]))
    return _Step(executable, [(leaf.attrs["name"], leaf.dtype) for leaf in step.inputs], dtypes, stepped, grads,
                 [leaves[name] for name in wrt_names])


def compiled() -> list:
    """(entry, Graph, executable) of every recorded program compiled so far, oldest first: what a
    training loop became (``graphnn dump --loop``)."""
    out, seen = [], set()
    for run, _ in _runs.values():
        if id(run.executable) not in seen:
            seen.add(id(run.executable))
            out.extend((entry, graph, run.executable) for entry, graph in run.executable.graphs.items())
    return out
