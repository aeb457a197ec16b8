"""Running recorded work: a tape's graph compiled by the backend's pipeline, cached by structure.

``run_tape(tape, {"value": node})`` computes one recorded value; ``{"backward": loss}``
differentiates the tape's graph (graphnn.autodiff) and computes the gradient of every leaf that
requires grad. A run also applies the buffer updates (BatchNorm's running statistics) recorded since
the last run, once. The graph each run needs is compiled once per structure: two iterations of a
training loop record graphs that print alike (the same ops, shapes and leaves in the same order)
and that read the same parameter and buffer objects, so the second finds the first's executable.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from graphnn import backends, flat, recording
from graphnn.autodiff import gradients
from graphnn.evaluate import NUMPY_DTYPES
from graphnn.executable import scalar_storage
from graphnn.ir import Graph
from graphnn.ops import Builder
from graphnn.recording import Tape

CACHE_LIMIT = 64

_seen: dict[tuple, int] = {}
"""How often each structure was asked for before it was compiled."""


_runs: dict[tuple, tuple] = {}
"""A tape's structural key -> (executable, the input leaves' names in the order it takes them):
a tape recorded like an earlier one runs without autodiff, pruning or lowering."""


def run_tape(tape: Tape, requested: dict) -> dict:
    """The requested values of ``tape`` (see the module docstring), as numpy arrays."""
    key = _key(tape, requested)
    found = _runs.get(key)
    if found is not None:
        executable, inputs, dtypes = found
        outputs = _execute(executable, tape, inputs, dtypes)
        tape.graph.updates.clear()
        return outputs
    updates = dict(tape.graph.updates)
    if "backward" in requested:
        loss = requested["backward"]
        wrt = [leaf for leaf in tape.graph.params if tape.leaves[leaf.attrs["name"]].requires_grad]
        backward, grads = gradients(tape.graph, loss, wrt)
        names = {leaf.id: leaf.attrs["name"] for leaf in wrt}
        values = {name: node for name, node in requested.items() if name != "backward"}
        graph = backward.variant({**values, **{names[i]: g for i, g in grads.items()}}, updates)
    else:
        graph = tape.graph.variant(dict(requested), updates)
    if len(_seen) >= 16 * CACHE_LIMIT:
        _seen.clear()
    seen = _seen[key] = _seen.get(key, 0) + 1
    # the first time a structure is seen it runs in the numpy reference (printing a value, a
    # one-off computation: no compile); the second time it is compiled for the backend
    backend = backends.resolve("auto") if seen > 1 else "numpy"
    executable, inputs, dtypes = _compile(_live(graph), tape, backend)
    if backend != "numpy" or backends.resolve("auto") == "numpy":
        if len(_runs) >= CACHE_LIMIT:
            _runs.pop(next(iter(_runs)))
        _runs[key] = (executable, inputs, dtypes)
    outputs = _execute(executable, tape, inputs, dtypes)
    tape.graph.updates.clear()  # applied once: later runs of this tape read the buffers they wrote
    return outputs


def _key(tape: Tape, requested: dict) -> tuple:
    """What decides the graph a run compiles: the tape's signature, the requested nodes, which
    leaves require grad, the leaf objects, whether updates are still to apply, the backend and
    the parameters' flat layout."""
    leaves = tuple((name, id(holder), bool(getattr(holder, "requires_grad", False)))
                   for name, holder in tape.leaves.items())
    wanted = tuple((name, node.index) for name, node in requested.items())
    updates = tuple((name, node.index) for name, node in tape.graph.updates.items())
    return (tuple(tape.signature), wanted, leaves, updates,
            backends.resolve("auto"), flat.generation)


def _live(graph: Graph) -> Graph:
    """The graph with only the nodes its outputs and updates need (its inputs are then the
    live ones, in order, as the compiled entry point takes them)."""
    pruned = Graph()
    for node in graph.live_nodes():
        pruned.add(node)
    pruned.outputs, pruned.updates = dict(graph.outputs), dict(graph.updates)
    pruned.placements = dict(graph.placements)
    pruned.checks, pruned.label_checks = list(graph.checks), list(graph.label_checks)
    pruned.index_checks = list(graph.index_checks)
    return pruned


def _compile(graph: Graph, tape: Tape, backend: str) -> tuple:
    """(executable, input names, output dtypes) of a pruned graph; the executable's persistent
    arrays are read from the leaf objects of ``tape`` (the key holds their identities)."""
    persistent = {name: _getter(tape.leaves[name]) for name in _persistent_names(graph)}
    graphs = {"recorded": graph}
    executable = backends.get(backend).executable(graphs, scalar_storage(graphs), persistent)
    dtypes = {name: NUMPY_DTYPES[node.dtype] for name, node in graph.outputs.items()}
    return executable, [(leaf.attrs["name"], leaf.dtype) for leaf in graph.inputs], dtypes


def _execute(executable: Any, tape: Tape, inputs: list, dtypes: dict, entry: str = "recorded",
             hypers: dict | None = None) -> dict:
    arrays = [_input(tape.input_values[name], dtype) for name, dtype in inputs]
    outputs = executable.run(entry, 1, arrays, {"rng.seed": tape.seed, "rng.step": 0, **(hypers or {})})
    return {name: np.asarray(value).astype(dtypes[name], copy=False) for name, value in outputs.items()}


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
    wrt = [leaf for leaf in tape.graph.params if tape.leaves[leaf.attrs["name"]].requires_grad]
    if any(tape.leaves[leaf.attrs["name"]]._grad is not None for leaf in wrt):
        return False
    optimised = {id(p) for p in optimizer.params}
    wanted = recording.alive_values(tape)
    key = ("step", _key(tape, {"backward": loss, **wanted}), id(optimizer), optimizer.structure(),
           optimizer.layout_version)
    found = _runs.get(key)
    if found is None:
        found = _compile_step(optimizer, tape, loss, wrt, optimised, wanted)
        if len(_runs) >= CACHE_LIMIT:
            _runs.pop(next(iter(_runs)))
        _runs[key] = found
    executable, inputs, dtypes, stepped = found
    stepped = {name: tape.leaves[name] for name in stepped}
    hypers = optimizer.hypers(stepped)
    if hypers is None:
        return False
    outputs = _execute(executable, tape, inputs, dtypes, "step", hypers)
    optimizer.finish_step(stepped)
    tape.graph.updates.clear()
    recording.keep_values(tape, wanted, outputs)
    for name, p in stepped.items():  # the gradient the step used, as p.grad after torch's step
        p.grad = optimizer.step_grads.views[optimizer._index(p)].copy()
    for name, value in outputs.items():  # leaves no optimizer of this step holds
        tape.leaves[name].grad = value
    return True


def _compile_step(optimizer: Any, tape: Tape, loss: Any, wrt: list, optimised: set, wanted: dict) -> tuple:
    backward, grads = gradients(tape.graph, loss, wrt)
    by_name = {leaf.attrs["name"]: grads[leaf.id] for leaf in wrt if leaf.id in grads}
    stepped = {name: tape.leaves[name] for name in by_name if id(tape.leaves[name]) in optimised}
    others = {name: g for name, g in by_name.items() if name not in stepped}
    step = backward.variant({**wanted, **others}, dict(tape.graph.updates))
    entries = [(p, tape.graph.leaf(name), by_name[name]) for name, p in stepped.items()]
    step.updates.update(optimizer.build_update(Builder(step), entries))
    step.placements.update({f"grad.{name}": by_name[name] for name in stepped})
    step = _live(step)
    graphs = {"step": step}
    storage = {**scalar_storage(graphs), **optimizer.flat_storage(stepped)}
    persistent = {name: _getter(tape.leaves[name]) for name in _persistent_names(step) if name in tape.leaves}
    persistent.update(optimizer.persistent(stepped))
    executable = backends.get(backends.resolve("auto")).executable(graphs, storage, persistent)
    dtypes = {name: NUMPY_DTYPES[node.dtype] for name, node in step.outputs.items()}
    return executable, [(leaf.attrs["name"], leaf.dtype) for leaf in step.inputs], dtypes, tuple(stepped)


def compiled() -> list:
    """(entry, Graph, executable) of every recorded program compiled so far, oldest first: what a
    training loop became (``graphnn dump --loop``)."""
    out = []
    for found in _runs.values():
        executable = found[0]
        out.extend((entry, graph, executable) for entry, graph in executable.graphs.items())
    return out
