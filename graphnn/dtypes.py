"""Tensor dtypes (``graphnn.float32``...) and PyTorch's type promotion.

A dtype names a numpy dtype and the graph dtype ops compute in. Promotion follows PyTorch's
categories (bool < integer < floating): the result of an operation takes the highest category
among its operands, and within that category the widest dtype among the operands of the
highest rank group, in the order tensors with dimensions, then 0-d tensors, then Python
numbers (a Python float counts as the default dtype float32, an int as int64). So
``int64 tensor + 2.5`` is float32, ``float32 tensor + float64 0-d tensor`` stays float32.
This module imports nothing of graphnn's.
"""
from __future__ import annotations

from typing import Any

import numpy as np


class dtype:
    """A tensor element type, printed as PyTorch prints it (``torch.float32``)."""

    __slots__ = ("name", "numpy", "ir", "is_floating_point", "is_signed", "itemsize", "_rank")

    def __init__(self, name: str, numpy_dtype: Any, ir: str, rank: int) -> None:
        self.name, self.numpy, self.ir, self._rank = name, np.dtype(numpy_dtype), ir, rank
        self.is_floating_point = self.numpy.kind == "f"
        self.is_signed = self.numpy.kind in "if"
        self.itemsize = self.numpy.itemsize

    @property
    def kind(self) -> str:
        """numpy's kind character ("f", "i", "b"), for code that asks numpy-style."""
        return self.numpy.kind

    def to_complex(self):  # pragma: no cover - complex dtypes are not supported
        raise TypeError(f"complex dtypes are not supported by graphnn (asked for the complex twin of {self})")

    def __repr__(self) -> str:
        return f"torch.{self.name}"

    def __reduce__(self):
        return (_by_name, (self.name,))


bool_ = dtype("bool", np.bool_, "bool", 0)
int32 = dtype("int32", np.int32, "i32", 1)
int64 = dtype("int64", np.int64, "i64", 2)
float32 = dtype("float32", np.float32, "f32", 3)
float64 = dtype("float64", np.float64, "f64", 4)

DTYPES = (bool_, int32, int64, float32, float64)
_BY_NUMPY = {d.numpy: d for d in DTYPES}
_BY_IR = {d.ir: d for d in DTYPES}
_ALIASES = {"float": float32, "double": float64, "long": int64, "int": int32, "bool": bool_,
            **{d.name: d for d in DTYPES}}
_default = float32


def _by_name(name: str) -> dtype:
    return _ALIASES[name]


_TYPE_NAMES = {"float32": "Float", "float64": "Double", "int64": "Long", "int32": "Int", "bool": "Bool"}


def torch_type_name(d: dtype) -> str:
    """The scalar type name torch's messages use ("Float", "Long")."""
    return _TYPE_NAMES[d.name]


def tensor_type_name(d: dtype) -> str:
    """The legacy tensor type name ``Tensor.type()`` returns ("torch.FloatTensor")."""
    return f"torch.{_TYPE_NAMES[d.name]}Tensor"


def get_default_dtype() -> dtype:
    return _default


def set_default_dtype(d: dtype) -> None:
    global _default
    d = as_dtype(d)
    if not d.is_floating_point:
        raise TypeError(f"only floating-point types are supported as the default type, got {d}")
    _default = d


def of_ir(ir: str) -> dtype:
    return _BY_IR[ir]


def as_dtype(value: Any) -> dtype:
    """A dtype from a dtype, a numpy dtype or type, a Python type (float, int, bool) or a name."""
    if isinstance(value, dtype):
        return value
    if value is float:
        return _default
    if value is int:
        return int64
    if value is bool:
        return bool_
    if isinstance(value, str) and value in _ALIASES:
        return _ALIASES[value]
    try:
        found = _BY_NUMPY.get(np.dtype(value))
    except TypeError:
        found = None
    if found is None:
        supported = ", ".join(repr(d) for d in DTYPES)
        raise TypeError(f"dtype {value!r} is not supported by graphnn; supported: {supported}")
    return found


def of_array(array: np.ndarray) -> dtype:
    """The dtype a numpy array becomes: its own where graphnn has it, else the nearest (uint8 and
    int16 to int64, float16 to float32); strings and objects are an error."""
    found = _BY_NUMPY.get(array.dtype)
    if found is not None:
        return found
    if array.dtype.kind in "iu":
        return int64
    if array.dtype.kind == "f":
        return float32
    raise TypeError(f"can't convert an array of dtype {array.dtype}; graphnn supports "
                    + ", ".join(repr(d) for d in DTYPES))


def promote_types(a: dtype, b: dtype) -> dtype:
    """The smallest dtype both convert to without losing their category (torch.promote_types)."""
    return a if a._rank >= b._rank else b


def _category(d: dtype) -> int:
    return 2 if d.is_floating_point else (1 if d is not bool_ else 0)


def _combine(higher: dtype | None, lower: dtype | None) -> dtype | None:
    if higher is None:
        return lower
    if lower is None:
        return higher
    return promote_types(higher, lower) if _category(lower) > _category(higher) else higher


def scalar_dtype(value: Any) -> dtype:
    """The dtype a Python number takes in an operation with tensors."""
    if isinstance(value, (bool, np.bool_)):
        return bool_
    if isinstance(value, (int, np.integer)):
        return int64
    return _default


def result_type(operands: list) -> dtype:
    """torch.result_type over operands given as (dtype, rank) for tensors and Python numbers as
    themselves."""
    groups: list[dtype | None] = [None, None, None]  # dimensioned tensors, 0-d tensors, numbers
    for operand in operands:
        if isinstance(operand, tuple):
            d, rank = operand
            slot = 0 if rank > 0 else 1
        else:
            d, slot = scalar_dtype(operand), 2
        groups[slot] = d if groups[slot] is None else promote_types(groups[slot], d)
    return _combine(groups[0], _combine(groups[1], groups[2]))
