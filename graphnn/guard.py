"""When a traced program still applies: what tracing read from the model, checked after changes.

A traced graph bakes in what its forward read from the model and the loss: plain attributes
(``negative_slope``, ``momentum``, ``eps``, ``reduction``...), which parameters require grad,
which modules and parameters make up the model. Any later change to those must give a new trace,
never a stale program. Checking them all on every call would cost the per-step hot path too much,
so the check is two-level, as Dynamo's guards are:

- ``version`` counts every change that could matter (a Module attribute set or deleted, a
  parameter's ``requires_grad`` flipped); programs compare it with the value they last saw, one
  integer per call;
- only when it moved does a program ask each traced graph's ``Assumptions`` whether they still
  hold, and retraces the graphs whose assumptions broke.

Attribute reads are recorded while a forward is traced (``Module.__getattribute__`` reports the
instance attributes it returns). Values mutated in place (a list attribute appended to) are not
seen: assign a new value instead. This module imports nothing of graphnn's.
"""
from __future__ import annotations

from typing import Any

import numpy as np

version = 0
"""Bumped by every change to a Module attribute or a parameter's ``requires_grad``."""

modes = 0
"""Bumped by every change of a module's train/eval flag (``train()``, ``eval()``, and the places
that set the flags for a while): a recorded loop reads the flags again only then."""

recording: dict | None = None
"""While a forward is traced: (id(module), attribute) -> (module, attribute, frozen value)."""

UNGUARDED = frozenset({"training"})
"""Attributes read while tracing that programs guard by other means (the train/eval mode is
part of every program's signature)."""


def changed() -> None:
    """Record that something a traced program may depend on has changed."""
    global version
    version += 1


def modes_changed() -> None:
    """Record that some module's ``training`` flag may have changed."""
    global modes
    modes += 1


def record_read(module: Any, name: str, value: Any) -> None:
    """Called for each instance attribute a Module returns while a forward is traced."""
    if name not in UNGUARDED and (id(module), name) not in recording:
        recording[(id(module), name)] = (module, name, frozen(value))


def frozen(value: Any) -> Any:
    """A comparable snapshot of an attribute's value: plain values as they are, containers and
    arrays by content, any other object by identity."""
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return value
    if isinstance(value, (tuple, list)):
        return (type(value).__name__, tuple(frozen(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple((k, frozen(v)) for k, v in value.items()))
    if isinstance(value, np.ndarray):
        return ("array", value.shape, value.dtype.str, value.tobytes())
    if isinstance(value, np.generic):
        return value.item()
    return ("object", _Identity(value))


class _Identity:
    """Compares equal only to a wrapper of the same object (whatever the object's own ``==``)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Identity) and other.value is self.value

    def __hash__(self) -> int:
        return id(self.value)


class Assumptions:
    """What one trace assumed about its modules: the attributes it read and the model's
    structure (modules, parameters with their ``requires_grad``, buffers). ``holds()`` says
    whether a program built from that trace may still run."""

    def __init__(self, modules: list) -> None:
        self.modules = modules
        self.reads: dict = {}
        self.structure: tuple = ()

    def __enter__(self) -> "Assumptions":
        global recording
        self._outer, recording = recording, self.reads
        return self

    def __exit__(self, *exc) -> None:
        global recording
        if self._outer is not None:  # a trace inside a trace: the outer one read these too
            self._outer.update(self.reads)
        recording = self._outer
        self.structure = self._structure()

    def _structure(self) -> tuple:
        found = []
        for root in self.modules:
            found += [(path, _Identity(m)) for path, m in root.named_modules()]
            found += [(name, _Identity(p), p.requires_grad) for name, p in root.named_parameters()]
            found += [(name, b.shape, b.dtype.str) for name, b in root.named_buffers()]
        return tuple(found)

    def holds(self) -> bool:
        for module, name, value in self.reads.values():
            current = module.__dict__.get(name, _MISSING)
            if current is _MISSING or frozen(current) != value:
                return False
        return self._structure() == self.structure

    def broken(self) -> list[str]:
        """The attributes whose values changed, as ``Type.attribute`` (for messages and tests)."""
        return [f"{type(m).__name__}.{n}" for m, n, v in self.reads.values()
                if n not in m.__dict__ or frozen(m.__dict__[n]) != v]


_MISSING = object()
