"""Flat persistent buffers: many arrays stored as views into one contiguous float32 array.

Parameters, gradients and momentum each live in one such buffer, so an optimizer update is one
loop over one array and a data-parallel gradient average is one collective call.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


class FlatBuffer:
    """One contiguous array and the views into it, one per shape, in order."""

    def __init__(self, shapes: Sequence[tuple], dtype=np.float32) -> None:
        self.shapes = [tuple(s) for s in shapes]
        sizes = [int(np.prod(s)) for s in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int).tolist()
        self.array = np.zeros(self.offsets[-1], dtype)
        self.views = [
            self.array[self.offsets[k] : self.offsets[k + 1]].reshape(shape) for k, shape in enumerate(self.shapes)
        ]

    def __len__(self) -> int:
        return len(self.views)

    def offset_of(self, array: np.ndarray) -> int | None:
        """Where ``array`` starts in this buffer, if it is one of its views."""
        for view, offset in zip(self.views, self.offsets):
            if view is array:
                return offset
        return None


generation = 0
"""Counts the times any parameter moved to a new flat buffer; compiled programs that address
parameters inside flat buffers compare it to rebuild when their layout is gone."""


def store_of(params: Sequence) -> FlatBuffer | None:
    """The one flat buffer holding all of ``params`` (each as one of its views), or None."""
    params = list(params)
    store = getattr(params[0], "_flat", None) if params else None
    if store is None or any(getattr(p, "_flat", None) is not store or store.offset_of(p.array) is None for p in params):
        return None
    return store


def flatten_parameters(params: Sequence) -> FlatBuffer:
    """Move the parameters' storage into one flat buffer, unless they already share one (a second
    optimizer over part of a model keeps the layout the first one made)."""
    global generation
    params = list(params)
    store = store_of(params)
    if store is not None:
        return store
    store = FlatBuffer([p.shape for p in params])
    for p, view in zip(params, store.views):
        host_access(p.array)  # a device may hold newer values than the old storage
        p._rebind(view)
        p._flat = store
    generation += 1
    return store


device_copies: dict[int, object] = {}
"""id(host array) -> its device copy, for arrays a GPU backend keeps on the device between calls
(runtime/gpu.py). An entry is removed when its host array is freed (so an id is never reused
while registered)."""


def root(array: np.ndarray) -> np.ndarray:
    """The array that owns the memory ``array`` views."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def host_access(array) -> None:
    """Call before Python reads or writes ``array`` (or a view of it) that compiled code may keep
    a newer copy of on a device: the device's values come back first, and since the caller may
    write, the device copy is refreshed before a kernel next reads it. Free when nothing is on a
    device."""
    if device_copies and isinstance(array, np.ndarray):
        copy = device_copies.get(id(root(array)))
        if copy is not None:
            copy.to_host()
