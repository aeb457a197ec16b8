"""What the C and Triton emitters share about a kernel's loops, computed from the plan before
anything is printed: which axes loop (an axis of extent 1 is the constant index 0), index
expressions over the loop indices, which loads, assignments and stores of a reduction run per
reduced element and which once its accumulator is final, how each buffer a kernel touches is
bound (its own slot, or a slice of the arena), and which names a part of a kernel uses."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import sympy

from codegen.printers import BATCH, c_index
from graphnn.passes.memory import MemoryPlan
from graphnn.passes.plan import Assign, Kernel, KernelPlan, Load, Store


def numel(shape: Iterable) -> sympy.Expr:
    """The product of a shape's dimensions (1 for a scalar)."""
    total = sympy.Integer(1)
    for d in shape:
        total = total * d
    return total


def is_one(value) -> bool:
    return sympy.sympify(value) == 1


def is_zero(value) -> bool:
    return sympy.sympify(value) == 0


# -- loops and indices ---------------------------------------------------------------------------
def looped(domain: tuple, axes: Iterable[int]) -> list[int]:
    """The axes of ``axes`` that need a loop: those of extent other than 1."""
    return [k for k in axes if not is_one(domain[k])]


def axis_names(domain: tuple) -> tuple:
    """The index variable of each axis of ``domain``: ``i<k>``, or None for an axis of extent 1,
    whose index is the constant 0 (no loop, and no term in any index expression)."""
    return tuple(None if is_one(d) else f"i{k}" for k, d in enumerate(domain))


def index_terms(strides: Sequence, names: Sequence) -> list[tuple[str, sympy.Expr]]:
    """(index variable, coefficient) of each term an index over ``names`` has: axes with a zero
    stride or no variable (extent 1) add nothing."""
    terms = []
    for name, stride in zip(names, strides):
        stride = sympy.sympify(stride)
        if name is not None and stride != 0:
            terms.append((name, stride))
    return terms


def index(offset, strides: Sequence, names: Sequence, times: str = "*") -> str:
    """``offset + sum(name_k * stride_k)`` as integer source text: a zero offset left out, a
    coefficient of 1 printed as the bare variable, "0" when nothing is left."""
    parts = [] if is_zero(offset) else [c_index(offset)]
    parts += [name if stride == 1 else f"{name}{times}{c_index(stride)}" for name, stride in index_terms(strides, names)]
    return " + ".join(parts) or "0"


def index_symbols(offset, strides: Sequence, names: Sequence) -> set[str]:
    """The names ``index(offset, strides, names)`` prints: its loop variables and the batch size."""
    used = {str(s) for s in sympy.sympify(offset).free_symbols}
    for name, stride in index_terms(strides, names):
        used.add(name)
        used |= {str(s) for s in stride.free_symbols}
    return used


def load_symbols(load: Load, names: Sequence) -> set[str]:
    """The names a load's source text uses (index, guards, random-draw key)."""
    used = index_symbols(load.offset, load.strides, names)
    for g in load.guards:
        used |= index_symbols(g.const, g.coefs, names) | {str(s) for s in sympy.sympify(g.limit).free_symbols}
        if g.div != 1:
            used |= {str(s) for s in sympy.sympify(g.stride).free_symbols}
    for _, offset in load.key:
        used |= {str(s) for s in sympy.sympify(offset).free_symbols}
    if load.indirect is not None:
        used |= {load.indirect.index} | {str(s) for s in sympy.sympify(load.indirect.stride).free_symbols}
        used |= {str(s) for s in sympy.sympify(load.indirect.size).free_symbols}
    return used


def symbols(loads: Iterable[Load] = (), assigns: Iterable[Assign] = (), stores: Iterable[Store] = (),
            names: Sequence = (), sizes: Iterable = ()) -> set[str]:
    """The names the source text of these loads, assignments, stores and sizes uses, indexed
    over ``names``: loop variables, the batch size, and the locals the expressions read."""
    used = set()
    for load in loads:
        used |= load_symbols(load, names)
    for a in assigns:
        used |= {str(s) for s in a.expr.free_symbols}
    for s in stores:
        used |= index_symbols(s.offset, s.strides, names) | {s.value}
        if s.indirect is not None:
            used |= {s.indirect.index} | {str(x) for x in sympy.sympify(s.indirect.stride).free_symbols}
            used |= {str(x) for x in sympy.sympify(s.indirect.size).free_symbols}
    for size in sizes:
        used |= {str(s) for s in sympy.sympify(size).free_symbols}
    return used


def uses_batch(used: set[str]) -> bool:
    return BATCH in used


# -- reductions ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReductionParts:
    """A reduction's body split around its accumulator: the early part runs for every reduced
    element (the loads and prologue assignments the reduced value needs, and the stores of
    prologue values), the late part once per kept position, after the accumulator is final (the
    epilogue's loads, assignments and stores). A load both parts read appears in both."""

    early_loads: list
    prologue: list
    early_stores: list
    late_loads: list
    epilogue: list
    late_stores: list


def reduction_parts(kernel: Kernel, hoisted: set = frozenset()) -> ReductionParts:
    """The early and late parts of a reduce kernel, leaving out the loads and assignments named
    in ``hoisted`` (computed once before the loops)."""
    assigns = [a for a in kernel.body if a.name not in hoisted]
    prologue = [a for a in assigns if a.stage == "prologue"]
    epilogue = [a for a in assigns if a.stage == "epilogue"]
    prologue_names = {a.name for a in kernel.body if a.stage == "prologue"}
    early_stores = [s for s in kernel.stores if s.value in prologue_names]
    late_stores = [s for s in kernel.stores if s.value not in prologue_names]
    early = {str(s) for a in prologue for s in a.expr.free_symbols} | {kernel.reduce_value}
    early |= {s.indirect.index for s in early_stores + late_stores if s.indirect is not None}  # a scatter's index
    late = {str(s) for a in epilogue for s in a.expr.free_symbols} | {s.value for s in late_stores}
    loads = [l for l in kernel.loads if l.name not in hoisted]
    return ReductionParts(with_indices(loads, early), prologue, early_stores,
                          with_indices(loads, late), epilogue, late_stores)


def with_indices(loads: list[Load], names: set[str]) -> list[Load]:
    """The loads named in ``names`` and the index loads their gathers read, in kernel order."""
    names = set(names)
    for load in reversed(loads):  # an index load comes before the gather that reads it
        if load.name in names and load.indirect is not None:
            names.add(load.indirect.index)
    return [l for l in loads if l.name in names]


# -- buffers -------------------------------------------------------------------------------------
def unique_names(buffers: Iterable[str]) -> dict[str, str]:
    """Readable identifiers for buffers, made distinct ("fc.weight" and "fc_weight" both spell
    p_..._fc_weight; the second one in sorted order gets a suffix)."""
    names, taken = {}, set()
    for buffer in sorted(buffers):
        base = "p_" + "".join(ch if ch.isalnum() else "_" for ch in buffer)
        name, k = base, 2
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        names[buffer] = name
        taken.add(name)
    return names


def buffers_named(kernel: Kernel, loads: Iterable[Load] = (), stores: Iterable[Store] = (),
                  operands: Iterable[Load] = ()) -> list[str]:
    """The buffers that these loads (with random-draw keys), stores and matmul operands of a
    kernel name, in the kernel's own order (``Kernel.buffers``)."""
    named = {l.source for l in list(loads) + list(operands)} | {s.buffer for s in stores}
    named |= {buffer for l in loads if l.source == "rand" for buffer, _ in l.key}
    return [b for b in kernel.buffers() if b in named]


@dataclass(frozen=True)
class Binding:
    """How a kernel reaches one buffer: ``slot`` (its position among the entry point's buffers)
    or, for an intermediate, ``arena_offset`` (elements into the arena)."""

    buffer: str
    name: str
    dtype: str
    written: bool
    slot: int | None
    arena_offset: object | None


def bindings(kernel: Kernel, plan: KernelPlan, memory: MemoryPlan, names: dict, slots: dict,
             buffers: Iterable[str] | None = None) -> list[Binding]:
    """The bindings of ``buffers`` (default: every buffer the kernel touches), in that order."""
    written = {s.buffer for s in kernel.stores}
    out = []
    for buffer in kernel.buffers() if buffers is None else buffers:
        spec = plan.buffers[buffer]
        arena = spec.kind == "arena"
        out.append(Binding(buffer, names[buffer], spec.dtype, buffer in written,
                           None if arena else slots[buffer], memory.offsets[buffer] if arena else None))
    return out


def binding_symbols(bound: Iterable[Binding]) -> set[str]:
    """The names the bindings' source text uses (an arena offset may depend on the batch size)."""
    return {str(s) for b in bound if b.arena_offset is not None for s in sympy.sympify(b.arena_offset).free_symbols}
