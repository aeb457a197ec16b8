"""Executables: a compiled program's graphs made runnable by one backend.

``run(entry, batch, feeds)`` evaluates one entry point (``step``, ``grad``, ``loss``,
``forward``) on feeds that map every leaf name to its array, writes the entry's updates into
the arrays it names and returns its outputs. The numpy backend interprets the Graph; the C
backend simplifies and fuses each graph into a KernelPlan, plans its memory, generates one C
translation unit for all entries and calls it once per step.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from graphnn.ir import Graph, evaluate_dim, evaluate_shape
from runtime import reference

NUMPY_DTYPES = {"f32": np.float32, "i64": np.int64, "f64": np.float64, "bool": np.float32}


class ReferenceExecutable:
    """Runs graphs with the numpy interpreter; updates are written only after all are computed."""

    def __init__(self, graphs: Mapping[str, Graph]) -> None:
        self.graphs = dict(graphs)

    def run(self, entry: str, batch: int, feeds: dict) -> dict:
        outputs, updates = reference.run(self.graphs[entry], feeds, batch)
        for name, value in updates.items():
            feeds[name][...] = value
        return outputs


class CExecutable:
    """Runs graphs as generated C: one library, one native call per entry-point call."""

    ENTRY_NAMES = {"step": "train_step", "grad": "grad_step", "loss": "loss_step", "forward": "forward"}

    def __init__(self, graphs: Mapping[str, Graph], cache_dir, storage: dict | None = None) -> None:
        from codegen import c
        from graphnn.passes.fuse import build_plan
        from graphnn.passes.memory import plan_memory
        from graphnn.passes.simplify import simplify
        from runtime.cpu import Library

        self.plans = {}
        self.shapes = {self.ENTRY_NAMES[e]: {k: n.shape for k, n in g.outputs.items()} for e, g in graphs.items()}
        for entry, graph in graphs.items():
            plan = build_plan(simplify(graph), storage)
            self.plans[self.ENTRY_NAMES[entry]] = (plan, plan_memory(plan))
        self.source = c.generate(self.plans)
        self.library = Library(self.source, c.declarations(self.plans), cache_dir)
        self.ffi = self.library.ffi
        self.order = {entry: c.buffer_order(plan) for entry, (plan, _) in self.plans.items()}
        self.tables = {entry: self.ffi.new("void*[]", len(order) + 1) for entry, order in self.order.items()}
        self.keep: dict[str, list] = {}
        self.arena = np.zeros(0, np.float32)
        self.outputs: dict[tuple, np.ndarray] = {}

    def run(self, entry: str, batch: int, feeds: dict) -> dict:
        name = self.ENTRY_NAMES[entry]
        plan, memory = self.plans[name]
        table, keep, results = self.tables[name], [], {}
        for k, buffer in enumerate(self.order[name]):
            kind, _, leaf = buffer.partition(".")
            spec = plan.buffers[buffer]
            if kind == "out":
                array = self._output(name, buffer, evaluate_dim(spec.size, batch), spec.dtype)
                results[leaf] = array
            else:
                array = feeds[leaf]
                if not isinstance(array, np.ndarray) or array.dtype != NUMPY_DTYPES[spec.dtype]:
                    array = np.asarray(array, NUMPY_DTYPES[spec.dtype])
                    keep.append(array)
                elif not array.flags.c_contiguous:
                    raise ValueError(f"{leaf}: the C backend needs contiguous arrays")
            table[k] = self.ffi.cast("void*", array.ctypes.data)
        size = evaluate_dim(memory.size, batch)
        if self.arena.size < size:  # grows for a larger batch, never shrinks
            self.arena = np.zeros(size, np.float32)
        table[len(self.order[name])] = self.ffi.cast("void*", self.arena.ctypes.data)
        self.library.function(name)(batch, table)
        del keep
        shapes = self.shapes[name]
        return {leaf: a.reshape(evaluate_shape(shapes[leaf], batch)).copy() for leaf, a in results.items()}

    def _output(self, entry: str, buffer: str, size: int, dtype: str) -> np.ndarray:
        key = (entry, buffer)
        array = self.outputs.get(key)
        if array is None or array.size != size:
            array = self.outputs[key] = np.zeros(size, NUMPY_DTYPES[dtype])
        return array
