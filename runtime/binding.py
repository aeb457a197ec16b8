"""Binding a KernelPlan's buffer table to arrays: what every runtime that calls a plan shares.

A plan lists its non-arena buffers in calling order (``plan.arguments``), each typed by kind
(``graphnn.passes.plan.KINDS``) and naming what it binds to (``Buffer.source``). ``classify``
reads that table alone and says, per slot, where the array comes from: the call's inputs, the
program's persistent arrays (fixed for the life of a binding, or looked up on every call), or an
output allocated per batch size. Nothing here reads the Graph or parses a buffer's name.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from graphnn.ir import evaluate_dim, evaluate_shape
from graphnn.passes.plan import KernelPlan

NUMPY_DTYPES = {"f32": np.float32, "i64": np.int64, "f64": np.float64, "bool": np.float32}

LOOKED_UP = ("state",)
"""Kinds whose arrays the user can reassign between calls (a model buffer), so a binding looks
them up on every call; the other persistent kinds stay where they are for the life of a binding
(programs rebuild when parameters move)."""


class Output(NamedTuple):
    """An output slot: its name, element count and shape (expressions of B), numpy dtype."""

    slot: int
    name: str
    size: object
    dtype: type
    shape: tuple


class Slots(NamedTuple):
    """Where each argument slot of a plan gets its array.

    inputs (slot, position among the call's inputs); fixed and arrays (slot, getter, numpy dtype)
    for persistent arrays bound once and looked up per call; outputs (Output)."""

    inputs: list
    fixed: list
    arrays: list
    outputs: list


def classify(plan: KernelPlan, getters: dict[str, Callable[[], np.ndarray]]) -> Slots:
    """The slots of ``plan.arguments`` by where their arrays come from (see Slots). ``getters``
    maps a persistent buffer's ``source`` to a function returning its current array."""
    positions = {name: k for k, name in enumerate(plan.inputs)}
    slots = Slots([], [], [], [])
    for slot, name in enumerate(plan.arguments):
        spec = plan.buffers[name]
        dtype = NUMPY_DTYPES[spec.dtype]
        if spec.kind == "input":
            slots.inputs.append((slot, positions[spec.source]))
        elif spec.kind == "output":
            slots.outputs.append(Output(slot, spec.source, spec.size, dtype, spec.shape))
        elif spec.kind in LOOKED_UP:
            slots.arrays.append((slot, getters[spec.source], dtype))
        else:
            slots.fixed.append((slot, getters[spec.source], dtype))
    return slots


def check_array(array: np.ndarray, dtype: type, backend: str) -> None:
    """Compiled code addresses persistent arrays directly: they must be C-contiguous, of the dtype."""
    if not array.flags.c_contiguous or array.dtype != dtype:
        raise ValueError(f"the {backend} backend needs C-contiguous {np.dtype(dtype).name} parameter and buffer "
                         f"arrays, got a {'non-contiguous ' if not array.flags.c_contiguous else ''}"
                         f"{array.dtype} array")


def output_arrays(outputs: list, batch: int):
    """(slot, name, flat array, array in the output's shape) for each output at a batch size."""
    for slot, name, size, dtype, shape in outputs:
        array = np.zeros(evaluate_dim(size, batch), dtype)
        yield slot, name, array, array.reshape(evaluate_shape(shape, batch))
