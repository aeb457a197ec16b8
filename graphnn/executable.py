"""Executables: a compiled program's graphs made runnable by one backend.

``run(entry, batch, inputs, scalars)`` evaluates one entry point (``step``, ``grad``, ``loss``,
``forward``) on the input arrays (in the order of the graph's inputs) and run-time scalars (by
name), reads parameters and buffers through ``persistent`` (leaf or buffer name -> getter),
writes the entry's updates into those arrays and returns its outputs. The numpy backend
interprets the Graph; the others simplify and fuse each graph into a KernelPlan and plan its
memory, and from then on read only the plan: the C backend generates one translation unit per
entry and calls it once per step, the Triton backend generates a module of kernels, the plan
backend interprets the plan with numpy. Bindings take their buffers from the plan's buffer
table (runtime/binding.py).
"""
from __future__ import annotations

import functools
import weakref
from typing import TYPE_CHECKING, Mapping

import numpy as np
import sympy

from graphnn.ir import B, Graph, evaluate_dim
from runtime import reference
from runtime.binding import NUMPY_DTYPES, check_array, classify, output_arrays

if TYPE_CHECKING:
    from graphnn.passes.memory import MemoryPlan


def scalar_storage(graphs: Mapping[str, Graph]) -> dict:
    """Storage entries putting every run-time scalar of ``graphs`` in one array per dtype."""
    names: dict[str, dict] = {}
    for graph in graphs.values():
        for leaf in graph.leaves("hyper"):
            names.setdefault(leaf.dtype, {}).setdefault(leaf.attrs["name"], None)
    return {name: (f"scalars.{dtype}", k, len(group), "hyper")
            for dtype, group in names.items() for k, name in enumerate(group)}


class ReferenceExecutable:
    """Runs graphs with the numpy interpreter; updates are written only after all are computed."""

    def __init__(self, graphs: Mapping[str, Graph], persistent: dict) -> None:
        self.graphs = dict(graphs)
        self.persistent = persistent
        # each entry with its placements as extra outputs: the values a compiled program stores in
        # a shared slot (a fused step's gradients, which become p.grad) are stored there too
        self.runnable = {entry: g.variant({**g.outputs, **{f"placement:{n}": v for n, v in g.placements.items()}},
                                          g.updates) if g.placements else g for entry, g in self.graphs.items()}

    def run(self, entry: str, batch: int, inputs: list, scalars: dict, copy: bool = True) -> dict:
        graph = self.runnable[entry]
        feeds = {leaf.attrs["name"]: array for leaf, array in zip(graph.inputs, inputs)}
        feeds.update(scalars)
        for kind in ("param", "buffer"):
            for leaf in graph.leaves(kind):
                feeds[leaf.attrs["name"]] = self.persistent[leaf.attrs["name"]]()
        outputs, updates = reference.run(graph, feeds, batch)
        for name, value in updates.items():
            feeds[name][...] = value
        for name in graph.placements:
            slot = self.persistent.get(name)
            value = outputs.pop(f"placement:{name}")
            if slot is not None:
                slot()[...] = value
        return outputs


ENTRY_NAMES = {"step": "train_step", "grad": "grad_step", "loss": "loss_step", "evaluate": "evaluate_step",
               "forward": "forward", "shard_grad": "shard_grad_step", "update": "update_step",
               "recorded": "recorded_step"}
"""The function name of each entry point in generated code (and of its plan)."""


def lower(graph: Graph, storage: dict, native: tuple = ()) -> tuple:
    """(KernelPlan, MemoryPlan) of one entry point's graph: simplified, fused, each kernel's
    shared subexpressions computed once, memory planned. ``storage``: which values live in
    shared buffers (scalar_storage, the optimizer's); ``native``: the composite ops the backend
    has kernels for ("attention"); the others are expanded into primitives first."""
    from graphnn import attention_op
    from graphnn.passes.cse import share_subexpressions
    from graphnn.passes.fuse import build_plan
    from graphnn.passes.memory import plan_memory
    from graphnn.passes.simplify import simplify

    if "attention" not in native:
        graph = attention_op.expand(graph)
    plan = share_subexpressions(build_plan(simplify(graph), storage))
    return plan, plan_memory(plan)


class CompiledExecutable:
    """What the plan-based backends share: plans built per entry point on its first call, the
    run-time scalars in one array per dtype (shared by all entries), and ``run``."""

    ENTRY_NAMES = ENTRY_NAMES
    NATIVE: tuple = ()
    """The composite ops this backend has kernels for (see ``lower``)."""

    def __init__(self, graphs: Mapping[str, Graph], cache_dir, storage: dict, persistent: dict) -> None:
        self.graphs, self.cache_dir, self.storage, self.persistent = dict(graphs), cache_dir, storage, persistent
        self.plans: dict[str, tuple] = {}
        self.sources: dict[str, str] = {}
        self.bindings: dict[str, object] = {}
        dtypes = {leaf.attrs["name"]: leaf.dtype for graph in self.graphs.values() for leaf in graph.leaves("hyper")}
        self.scalars = {buffer: np.zeros(size, NUMPY_DTYPES[dtypes[name]])
                        for name, (buffer, _, size, kind) in storage.items() if kind == "hyper"}
        # name -> (array, index): every run-time scalar's slot; entries share the arrays
        self.scalar_slots = {name: (self.scalars[buffer], offset)
                             for name, (buffer, offset, _, kind) in storage.items() if kind == "hyper"}

    def plan(self, entry: str) -> tuple:
        """(entry point name, KernelPlan, MemoryPlan) of one entry point."""
        name = self.ENTRY_NAMES[entry]
        self.plans[name] = lower(self.graphs[entry], self.storage, self.NATIVE)
        return (name, *self.plans[name])

    def build(self, entry: str):
        raise NotImplementedError

    def array_getters(self) -> dict:
        """Getters of the arrays behind the plans' non-input buffers: persistent state by leaf or
        buffer name, and the scalar arrays by buffer name."""
        getters = dict(self.persistent)
        for buffer, array in self.scalars.items():
            getters[buffer] = lambda array=array: array
        return getters

    @property
    def source(self) -> str:
        return "\n".join(self.sources.values())

    def run(self, entry: str, batch: int, inputs: list, scalars: dict, copy: bool = True) -> dict:
        """``copy=False`` returns the output arrays themselves; the next call overwrites them."""
        binding = self.bindings.get(entry) or self.build(entry)
        slots = self.scalar_slots
        for name, value in scalars.items():  # scalars an entry does not read keep their values
            slot = slots.get(name)
            if slot is not None:
                slot[0][slot[1]] = value
        return binding(batch, inputs, copy)


class CExecutable(CompiledExecutable):
    """Runs graphs as generated C: one library per entry point, built on its first call, and one
    native call per entry-point call."""

    def __init__(self, graphs: Mapping[str, Graph], cache_dir, storage: dict, persistent: dict,
                 profile: bool = False) -> None:
        super().__init__(graphs, cache_dir, storage, persistent)
        self.profile = profile
        self.libraries: dict[str, object] = {}
        self.arena = np.zeros(0, np.float32)
        self.arena_generation = 0

    def build(self, entry: str) -> "_Binding":
        """Plan, generate and compile (or load from the cache) one entry point."""
        from codegen import c
        from runtime.cpu import Library, sanitizers

        name, plan, memory = self.plan(entry)
        guarded = "address" in sanitizers()
        if guarded:
            memory = spread_memory(plan)
            self.plans[name] = (plan, memory)
        plans = {name: (plan, memory)}
        self.sources[name] = c.generate(plans, self.profile)
        library = self.libraries[name] = Library(self.sources[name], c.declarations(plans, self.profile), self.cache_dir,
                                                 c.units(self.sources[name]))
        self.ffi = library.ffi
        kind = _GuardedBinding if guarded else _Binding
        binding = self.bindings[entry] = kind(self, library, name, self.array_getters())
        return binding

    @property
    def library(self):
        return next(iter(self.libraries.values()))

    def reserve_arena(self, size: int, shrink: bool) -> np.ndarray:
        """The arena shared by the entry points, holding at least ``size`` elements. ``shrink``
        (a binding's batch size changed) also replaces it when ``size`` is under a quarter of it,
        so one large batch does not keep its memory for the life of the program."""
        if self.arena.size < size or (shrink and 4 * size < self.arena.size):
            self.arena = np.zeros(size, np.float32)
            self.arena_generation += 1
        return self.arena

    def kernel_seconds(self, entry: str) -> list[tuple[str, float]]:
        """Seconds spent in each kernel of an entry point so far (needs ``profile=True``)."""
        name = self.ENTRY_NAMES[entry]
        plan, _ = self.plans[name]
        seconds = self.libraries[name].function(f"{name}_profile")()
        return [(k.name, seconds[i]) for i, k in enumerate(plan.kernels)]


class TritonExecutable(CompiledExecutable):
    """Runs graphs as generated Triton kernels: one module per entry point, its buffers as torch
    tensors (the numpy arrays' own memory when the kernels run in the interpreter on the CPU,
    device copies on a GPU; runtime/gpu.py)."""

    NATIVE = ("attention",)

    def __init__(self, graphs: Mapping[str, Graph], cache_dir, storage: dict, persistent: dict) -> None:
        from runtime import gpu

        super().__init__(graphs, cache_dir, storage, persistent)
        self.device = gpu.Device()
        self.modules: dict[str, object] = {}

    def build(self, entry: str):
        from codegen import triton
        from runtime import gpu

        name, plan, memory = self.plan(entry)
        self.sources[name] = triton.generate(name, plan, memory)
        module = self.modules[name] = gpu.Module(self.sources[name], self.cache_dir)
        binding = self.bindings[entry] = gpu.Binding(self.device, module.function(name), plan, memory,
                                                     self.array_getters())
        return binding


class PlanExecutable(CompiledExecutable):
    """Runs each entry point's KernelPlan kernel by kernel with numpy (runtime/interpreter.py):
    the plans the code generators get, with no code generated, so that fusion and memory
    planning are checked on their own against the reference."""

    def build(self, entry: str):
        from runtime import interpreter

        name, plan, memory = self.plan(entry)
        binding = self.bindings[entry] = interpreter.Binding(plan, memory, self.array_getters())
        return binding


class _Binding:
    """The pointer table of one entry point: inputs bound on every call, other arrays only when
    they change."""

    def __init__(self, owner: CExecutable, library, name: str, getters: dict) -> None:
        from runtime import threads

        self.owner, self.function, self.ffi = owner, library.function(name), library.ffi
        self.threads = threads.configure(library)  # one thread or OpenMP's team per call, by measured time
        # cffi's FFI.cast parses its type argument in Python on every call; cast with the type object
        backend, void_pointer = self.ffi._backend, self.ffi.typeof("void*")
        self.pointer = lambda address: backend.cast(void_pointer, address)
        # a pointer to an input's data, holding it only while used (FFI.from_buffer without its
        # Python wrapper: the char[] type it defaults to, given)
        self.from_buffer = functools.partial(backend.from_buffer, self.ffi.BCharA)
        plan, memory = owner.plans[name]
        self.plan, self.memory = plan, memory
        self.table = self.ffi.new("void*[]", len(plan.arguments) + 1)
        self.arena_slot = len(plan.arguments)
        self.inputs, self.fixed, self.arrays, self.outputs = classify(plan, getters)
        self.seen: dict[int, object] = {}
        self.batch = None
        self.arena_size = 0
        self.generation = -1
        self.results: dict[str, np.ndarray] = {}

    def _bind(self, slot: int, array: np.ndarray, dtype: type) -> None:
        check_array(array, dtype, "C")
        self.table[slot] = self.pointer(array.ctypes.data)
        self.seen[slot] = array

    def _bind_arena(self, shrink: bool) -> None:
        """Point the table at the shared arena, resized for this entry's batch size."""
        arena = self.owner.reserve_arena(self.arena_size, shrink)
        self.table[self.arena_slot] = self.pointer(arena.ctypes.data)
        self.generation = self.owner.arena_generation

    def __call__(self, batch: int, inputs: list, copy: bool) -> dict:
        table, pointer = self.table, self.pointer
        seen = self.seen
        if self.fixed:  # the first call binds the arrays that stay put
            for slot, getter, dtype in self.fixed:
                self._bind(slot, getter(), dtype)
            self.fixed = []
        for slot, getter, dtype in self.arrays:
            array = getter()
            if seen.get(slot) is not array:  # the same array as last call: pointer unchanged
                self._bind(slot, array, dtype)
        from_buffer = self.from_buffer
        for slot, position in self.inputs:  # bound on every call: the binding keeps no input alive
            table[slot] = from_buffer(inputs[position])
        if batch != self.batch:
            self.results = {}
            for slot, name, array, shaped in output_arrays(self.outputs, batch):
                self.results[name] = shaped
                table[slot] = pointer(array.ctypes.data)
            self.arena_size = evaluate_dim(self.memory.size, batch)
            self.batch = batch
            self._bind_arena(shrink=True)
        elif self.generation != self.owner.arena_generation:  # another entry replaced the arena
            self._bind_arena(shrink=False)
        if self.threads is None:
            self.function(batch, table)
        else:
            self.threads(self.function, batch, table)
        if not copy:
            return self.results
        return {name: array.copy() for name, array in self.results.items()}


GUARD = 16
"""Elements (64 bytes) of poisoned gap after each arena buffer in an AddressSanitizer build."""


def spread_memory(plan) -> MemoryPlan:
    """A memory plan for AddressSanitizer builds: each arena buffer in its own place (no sharing
    by liveness), aligned as plan_memory aligns, followed by a GUARD-element gap."""
    from graphnn.passes.memory import ALIGN, MemoryPlan

    def rounded(size):  # each coefficient of the polynomial in B rounded up to a multiple of ALIGN
        poly = sympy.Poly(sympy.sympify(size), B)
        return sum((-(-int(c) // ALIGN) * ALIGN * B**m for (m,), c in poly.terms()), sympy.Integer(0))

    offsets, end = {}, sympy.Integer(0)
    for name, buffer in sorted(plan.buffers.items()):
        if buffer.kind == "arena":
            offsets[name] = end
            end = sympy.expand(end + rounded(_width(buffer.dtype) * buffer.size) + GUARD)
    return MemoryPlan(offsets, end)


def _width(dtype: str) -> int:
    """Arena elements (4 bytes) per value."""
    return 2 if dtype in ("i64", "f64") else 1


def guarded_arena(size: int, extents: list[tuple[int, int]]) -> np.ndarray:
    """An arena of ``size`` float32 elements in which AddressSanitizer reports any access outside
    the ``(start, end)`` element ranges: the gaps are poisoned (and unpoisoned when it is freed)."""
    from runtime.cpu import poison

    arena = np.zeros(size, np.float32)
    address, used = arena.ctypes.data, sorted(extents) + [(size, size)]
    start = 0
    for begin, end in used:
        poison(address + 4 * start, 4 * (begin - start))
        start = max(start, end)
    weakref.finalize(arena, poison, address, 4 * size, False)
    return arena


class _GuardedBinding(_Binding):
    """A binding for AddressSanitizer builds: the entry has its own arena, laid out by
    spread_memory, with the gaps between buffers poisoned, so an access past a buffer is
    reported instead of reaching its neighbour."""

    def _bind_arena(self, shrink: bool) -> None:
        if shrink:  # a new batch size: a new arena
            extents = []
            for buffer, offset in self.memory.offsets.items():
                spec = self.plan.buffers[buffer]
                start = evaluate_dim(offset, self.batch)
                extents.append((start, start + _width(spec.dtype) * evaluate_dim(spec.size, self.batch)))
            self.arena = guarded_arena(self.arena_size, extents)
        self.table[self.arena_slot] = self.pointer(self.arena.ctypes.data)
        self.generation = self.owner.arena_generation
