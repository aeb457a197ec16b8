"""Constant padding: ``F.pad`` (mode 'constant'), ConstantPad2d and ZeroPad2d.

A pad is the ``pad`` primitive (the input placed inside a larger value of the fill, whose
gradient is a ``slice``); a negative amount crops, as in PyTorch, by slicing first.
"""
from __future__ import annotations

import numpy as np

from graphnn.nn.module import Module
from graphnn.tensors import Tensor, _builder, _named, _wrap, as_tensor

_OTHER_MODES = ("reflect", "replicate", "circular")


def _pad_amounts(pad, ndim: int) -> tuple[int, ...]:
    if not isinstance(pad, (tuple, list)):
        raise TypeError(f"pad(): argument 'pad' (position 2) must be tuple of ints, not {type(pad).__name__}")
    for k, v in enumerate(pad):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
            raise TypeError(f"pad(): argument 'pad' (position 2) must be tuple of ints, but found element of type "
                            f"{type(v).__name__} at pos {k}")
    if len(pad) % 2:
        raise RuntimeError("Padding length must be divisible by 2")
    if len(pad) // 2 > ndim:
        raise RuntimeError(f"Padding length should be less than or equal to two times the input dimension but got "
                           f"padding length {len(pad)} and input of dimension {ndim}")
    return tuple(int(v) for v in pad)


def _fill_of(value, x: Tensor):
    """The fill as x's dtype holds it (PyTorch converts it: 2.5 pads an integer tensor with 2)."""
    value = 0 if value is None else value
    if x.dtype.is_floating_point:
        return float(value)
    return bool(value) if x.dtype.name == "bool" else int(value)


def pad(input, pad, mode: str = "constant", value=None) -> Tensor:
    """``input`` padded by ``pad`` = (left, right) of the last dimension, then (top, bottom) of the
    one before, and so on: ``value`` (0 by default) placed around it; negative amounts crop."""
    x = as_tensor(input)
    amounts = _pad_amounts(pad, x.ndim)
    if mode != "constant":
        if mode not in _OTHER_MODES:
            raise NotImplementedError(f"Unrecognised padding mode {mode}")
        if value is not None and value != 0:
            raise RuntimeError(f'Padding mode "{mode}" doesn\'t take in value argument')
        raise NotImplementedError(f"pad with mode={mode!r} is not supported yet (only 'constant')")
    before, after = [0] * x.ndim, [0] * x.ndim
    for k in range(len(amounts) // 2):
        before[x.ndim - 1 - k], after[x.ndim - 1 - k] = amounts[2 * k], amounts[2 * k + 1]
    for d, (lo, hi) in enumerate(zip(before, after)):
        size = x.shape[d]
        if isinstance(size, int) and size + lo + hi < 0:
            raise RuntimeError(f"The input size {size}, plus negative padding {lo} and {hi} resulted in a negative "
                               f"output size, which is invalid. Check dimension {d} of your input.")
    if any(v < 0 for v in before + after):  # crop first
        x = x[tuple(slice(max(-lo, 0), hi if hi < 0 else None) for lo, hi in zip(before, after))]
        before, after = [max(v, 0) for v in before], [max(v, 0) for v in after]
    fill = _fill_of(value, x)
    if x.dtype.is_floating_point or not fill:
        padded = _placed(x, before, after, fill)
    elif x.dtype.name == "bool":  # the primitive pads integers and booleans with 0 (False)
        padded = ~_placed(~x, before, after, 0.0)
    else:
        padded = _placed(x - fill, before, after, 0.0) + fill
    return _named(padded, "ConstantPadNdBackward0")


def _placed(x: Tensor, before: list, after: list, fill: float) -> Tensor:
    """x inside a value of ``fill``, ``before[d]`` and ``after[d]`` positions from its edges."""
    b = _builder(x)
    shape = tuple(n + lo + hi for n, lo, hi in zip(x.shape, before, after))
    return _wrap(b.pad(x.node, before, (1,) * x.ndim, shape, float(fill)), [x], "ConstantPadNdBackward0")


def _quadruple(padding) -> tuple:
    return tuple(padding) if isinstance(padding, (tuple, list)) else (padding,) * 4


class ConstantPad2d(Module):
    """Pads the last two dimensions with ``value``: ``padding`` is an int or (left, right, top, bottom)."""

    def __init__(self, padding, value: float) -> None:
        super().__init__()
        self.padding, self.value = _quadruple(padding), value

    def forward(self, input):
        return pad(input, self.padding, "constant", self.value)

    def extra_repr(self) -> str:
        return f"padding={self.padding}, value={self.value}"


class ZeroPad2d(ConstantPad2d):
    """Pads the last two dimensions with zeros: ``padding`` is an int or (left, right, top, bottom)."""

    def __init__(self, padding) -> None:
        super().__init__(padding, 0.0)

    def extra_repr(self) -> str:
        return f"{self.padding}"
