"""Tensor printing, character for character as PyTorch 2.13 prints tensors.

``format_tensor`` turns a numpy array into what ``repr(torch.tensor(array))`` shows: the
``tensor(...)`` wrapper, nested brackets indented under the opening one, long rows wrapped at
the line width, big tensors summarized to their edge items, and the ``size=``, ``dtype=``,
``grad_fn=`` / ``requires_grad=`` suffixes. ``set_printoptions`` / ``get_printoptions`` hold the
same options as ``torch.set_printoptions``.

One formatter decides the look of every element of a tensor: floats print as integers with a
trailing ``.`` when all finite nonzero values are whole, in scientific notation when their
magnitudes span more than 1000x (or lie beyond 1e8 or below 1e-4), fixed-point otherwise; every
element is right-aligned to the widest one. Values are formatted as Python floats (float32
widens exactly), which is what torch formats after ``.item()``/``.tolist()``.
This module imports nothing of graphnn's.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

_PREFIX = "tensor("


@dataclass
class _Options:
    precision: int = 4
    threshold: float = 1000
    edgeitems: int = 3
    linewidth: int = 80
    sci_mode: bool | None = None


_OPTS = _Options()
_PROFILES = {
    "default": dict(precision=4, threshold=1000, edgeitems=3, linewidth=80),
    "short": dict(precision=2, threshold=1000, edgeitems=2, linewidth=80),
    "full": dict(precision=4, threshold=math.inf, edgeitems=3, linewidth=80),
}


def set_printoptions(precision=None, threshold=None, edgeitems=None, linewidth=None, profile=None,
                     sci_mode=None) -> None:
    """Set the print options as ``torch.set_printoptions`` does.

    A profile ("default", "short", "full") resets the other options first; the explicit ones
    then override it. Like torch, ``sci_mode`` is always assigned, so leaving it out turns
    automatic notation back on.
    """
    if profile in _PROFILES:
        for name, value in _PROFILES[profile].items():
            setattr(_OPTS, name, value)
    for name, value in (("precision", precision), ("threshold", threshold),
                        ("edgeitems", edgeitems), ("linewidth", linewidth)):
        if value is not None:
            setattr(_OPTS, name, value)
    _OPTS.sci_mode = sci_mode


def get_printoptions() -> dict[str, Any]:
    """The current options, as keyword arguments ``set_printoptions`` accepts."""
    return asdict(_OPTS)


class _Formatter:
    """Formats the elements of one tensor to a common width.

    Built from the values that will be shown (the summarized ones for a big tensor), since the
    notation and width depend on all of them.
    """

    def __init__(self, values: np.ndarray) -> None:
        self.floating = values.dtype.kind == "f"
        self.int_mode, self.sci_mode, self.width = True, False, 1
        flat = values.reshape(-1)
        if not self.floating:
            self.width = max([self.width] + [len(str(v)) for v in flat.tolist()])
            return
        # Only finite nonzero values decide the notation; nan, inf and zeros print whatever
        # they are and do not count towards the width (so "nan" may stick out).
        shown = flat[np.isfinite(flat) & (flat != 0)]
        if shown.size == 0:
            return  # torch keeps fixed-point int mode here, even when sci_mode is forced
        magnitudes = np.abs(shown).astype(np.float64)
        low, high = magnitudes.min(), magnitudes.max()
        self.int_mode = bool(np.all(shown == np.ceil(shown)))
        auto_sci = high / low > 1000.0 or high > 1.0e8 or low < 1.0e-4
        self.sci_mode = bool(auto_sci if _OPTS.sci_mode is None else _OPTS.sci_mode)
        self.width = max(len(self._text(v)) + (self.int_mode and not self.sci_mode)
                         for v in shown.tolist())

    def _text(self, value: float) -> str:
        """The unpadded text of a float, without int mode's trailing dot."""
        if self.sci_mode:
            return f"{value:.{_OPTS.precision}e}"
        if self.int_mode:
            return f"{value:.0f}"
        return f"{value:.{_OPTS.precision}f}"

    def format(self, value) -> str:
        """One element (a Python number from ``tolist``), right-aligned to the common width."""
        if not self.floating:
            text = str(value)
        else:
            text = self._text(value)
            if self.int_mode and not self.sci_mode and math.isfinite(value):
                text += "."  # marks the integers as floats
        return text.rjust(self.width)


def _summarized(array: np.ndarray) -> np.ndarray:
    """The elements a summarized print shows: the edge items along every axis."""
    edge = _OPTS.edgeitems
    if array.ndim == 0:
        return array
    if not edge:
        # torch's 1-d case slices [:0] and [-0:], which is the whole vector.
        return array if array.ndim == 1 else array[(slice(0, 0),) * array.ndim]
    for axis, size in enumerate(array.shape):
        if size > 2 * edge:
            keep = np.r_[0:edge, size - edge:size]
            array = np.take(array, keep, axis=axis)
    return array


def _vector(array: np.ndarray, indent: int, summarize: bool, fmt: _Formatter) -> str:
    """A 1-d tensor's brackets, wrapped so each line fits the line width."""
    edge = _OPTS.edgeitems
    if summarize and not edge:
        items = ["..."]
    elif summarize and array.shape[0] > 2 * edge:
        items = ([fmt.format(v) for v in array[:edge].tolist()] + [" ..."]
                 + [fmt.format(v) for v in array[-edge:].tolist()])
    else:
        items = [fmt.format(v) for v in array.tolist()]
    # Every element counts its ", " separator; at least one element goes on each line.
    per_line = max(1, (_OPTS.linewidth - indent) // (fmt.width + 2))
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"


def _nested(array: np.ndarray, indent: int, summarize: bool, fmt: _Formatter) -> str:
    """The brackets of a tensor of any rank; ``indent`` is the column of its opening bracket."""
    if array.ndim == 0:
        return fmt.format(array.item())
    if array.ndim == 1:
        return _vector(array, indent, summarize, fmt)
    edge, size = _OPTS.edgeitems, array.shape[0]
    rows = range(size)
    if summarize and size > 2 * edge:
        rows = [*range(edge), None, *range(size - edge, size)]
    parts = ["..." if i is None else _nested(array[i], indent + 1, summarize, fmt) for i in rows]
    # Sub-tensors of rank k are separated by k blank-ish line breaks: one per extra dimension.
    return "[" + ("," + "\n" * (array.ndim - 1) + " " * (indent + 1)).join(parts) + "]"


def _body(array: np.ndarray, indent: int) -> str:
    """The bracketed contents of a nonempty tensor."""
    summarize = array.size > _OPTS.threshold
    fmt = _Formatter(_summarized(array) if summarize else array)
    return _nested(array, indent, summarize, fmt)


def _with_suffixes(text: str, suffixes: list[str], indent: int) -> str:
    """Append ``, suffix`` items, moving one to a new line when it would pass the line width."""
    # torch counts the last line two characters longer than it is; kept for identical breaks.
    line_len = len(text) - text.rfind("\n") + 1
    parts = [text]
    for suffix in suffixes:
        if line_len + len(suffix) + 2 > _OPTS.linewidth:
            parts.append(",\n" + " " * indent + suffix)
            line_len = indent + len(suffix)
        else:
            parts.append(", " + suffix)
            line_len += len(suffix) + 2
    return "".join(parts) + ")"


def format_tensor(array: np.ndarray, dtype_name: str, *, requires_grad: bool = False,
                  grad_fn: str | None = None, default_dtype_name: str = "float32") -> str:
    """What ``repr(torch.tensor(array, dtype=...))`` prints, suffixes included.

    ``dtype_name`` is the tensor's dtype ("float32", "float64", "int64", "int32", "bool");
    ``default_dtype_name`` is the default float dtype, which (with int64 and bool) goes without
    a ``dtype=`` suffix. ``grad_fn`` is the backward node's name, e.g. "MulBackward0".
    """
    array = np.asarray(array)
    indent, suffixes = len(_PREFIX), []
    shape = "size=" + str(tuple(int(n) for n in array.shape))
    dtype = "dtype=torch." + dtype_name
    if array.size == 0:
        # Nothing shows the kind of the elements, so only the default float dtype goes unsaid.
        suffixes += [shape] if array.ndim != 1 else []
        suffixes += [dtype] if dtype_name != default_dtype_name else []
        body = "[]"
    else:
        suffixes += [shape] if not _OPTS.edgeitems else []
        suffixes += [dtype] if dtype_name not in (default_dtype_name, "int64", "bool") else []
        body = _body(array, indent)
    if grad_fn is not None:
        suffixes.append(f"grad_fn=<{grad_fn}>")
    elif requires_grad:
        suffixes.append("requires_grad=True")
    return _with_suffixes(_PREFIX + body, suffixes, indent)


def tensor_repr(t, requires_grad: bool | None = None) -> str:
    """``repr`` of a graphnn tensor: anything with ``.array``, ``.dtype.name``,
    ``.requires_grad`` and ``.grad_fn`` (None or a node with ``.name()``).

    ``requires_grad`` overrides the tensor's own flag (Parameters pass True).
    """
    from graphnn.dtypes import get_default_dtype

    grad_fn = t.grad_fn.name() if t.grad_fn is not None else None
    return format_tensor(t.array, t.dtype.name,
                         requires_grad=t.requires_grad if requires_grad is None else requires_grad,
                         grad_fn=grad_fn, default_dtype_name=get_default_dtype().name)
