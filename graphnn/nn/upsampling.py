"""Nearest-neighbour resizing: ``F.interpolate`` (modes 'nearest' and 'nearest-exact'), Upsample
and UpsamplingNearest2d, over (N, C, L), (N, C, H, W) or (N, C, D, H, W).

Output position i of a spatial axis reads input position min(floor(i * scale), n - 1) ('nearest';
floor((i + 0.5) * scale) for 'nearest-exact'), scale = 1 / scale_factor when a scale factor is
given and n / out otherwise, computed in float32 as PyTorch computes it (with its shortcuts, see
``source_positions``). Per axis, those positions are one of:

- every position in order: nothing to do;
- each position repeated s times (an integer scale factor): a reshape, an expand and a reshape,
  views whose gradient is a sum over the repeats;
- anything else: a ``gather`` of the positions, whose gradient is a ``scatter_add``.
"""
from __future__ import annotations

import math

import numpy as np

from graphnn.nn.module import Module
from graphnn.tensor_gather import as_index, select
from graphnn.tensors import Tensor, _builder, _named, as_tensor

_MODES = "nearest | linear | bilinear | bicubic | trilinear | lanczos | area | nearest-exact"
_INTERPOLATING = ("linear", "bilinear", "bicubic", "trilinear", "lanczos", "area")


def _is_integer(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def source_positions(size: int, out: int, scale_factor: float | None, exact: bool, shortcuts: bool) -> np.ndarray:
    """The input position each of the ``out`` output positions reads along an axis of ``size``
    (PyTorch's ``nearest_neighbor_compute_source_index`` and its exact twin). ``shortcuts``: an
    output as large as the input, or twice as large, reads positions i and i // 2 whatever the
    scale factor (PyTorch's ``nearest_idx``, which its 2-D kernel uses and its 1-D and 3-D ones
    do not)."""
    i = np.arange(out)
    if shortcuts and not exact and out == size:
        return i
    if shortcuts and not exact and out == 2 * size:
        return i >> 1
    scale = np.float32(1.0 / scale_factor) if scale_factor is not None else np.float32(size) / np.float32(out)
    offset = np.float32(0.5) if exact else np.float32(0.0)
    position = np.floor((i.astype(np.float32) + offset) * scale).astype(np.int64)
    return np.minimum(position, size - 1)


def _resized(x: Tensor, axis: int, positions: np.ndarray) -> Tensor:
    """x with ``axis`` replaced by the positions it reads (see the module docstring)."""
    size, out = x.shape[axis], len(positions)
    if np.array_equal(positions, np.arange(size)):
        return x
    shape = tuple(x.shape)
    repeat = out // size
    if out == repeat * size and np.array_equal(positions, np.arange(out) // repeat):
        split = x.reshape(*shape[:axis + 1], 1, *shape[axis + 1:])
        wide = split.expand(*shape[:axis + 1], repeat, *shape[axis + 1:])
        return wide.reshape(*shape[:axis], out, *shape[axis + 1:])
    return select(_builder(x), x, as_index(positions, ""), axis, "interpolate", "IndexSelectBackward0")


def _output_sizes(x: Tensor, size, scale_factor, recompute_scale_factor) -> tuple[list, list]:
    """(output size, scale factor or None) per spatial axis, validated as F.interpolate does."""
    dims, spatial = x.ndim - 2, list(x.shape[2:])
    if size is not None and scale_factor is not None:
        raise ValueError("only one of size or scale_factor should be defined")
    if size is not None:
        if recompute_scale_factor:
            raise ValueError("recompute_scale_factor is not meaningful with an explicit size.")
        if isinstance(size, (list, tuple)):
            if len(size) != dims:
                raise ValueError(f"Input and output must have the same number of spatial dimensions, but got input with "
                                 f"spatial dimensions of {spatial} and output size of {size}. Please provide input "
                                 "tensor in (N, C, d1, d2, ...,dK) format and output size in (o1, o2, ...,oK) format.")
            if not all(_is_integer(v) for v in size):
                raise TypeError("expected size to be one of int or Tuple[int] or Tuple[int, int] or Tuple[int, int, int], "
                                f"but got size with types {[type(v) for v in size]}")
            return [int(v) for v in size], [None] * dims
        return [int(size)] * dims, [None] * dims
    if scale_factor is None:
        raise ValueError("either size or scale_factor should be defined")
    if isinstance(scale_factor, (list, tuple)):
        if len(scale_factor) != dims:
            raise ValueError(f"Input and scale_factor must have the same number of spatial dimensions, but got input "
                             f"with spatial dimensions of {spatial} and scale_factor of shape {scale_factor}. Please "
                             "provide input tensor in (N, C, d1, d2, ...,dK) format and scale_factor in (s1, s2, ...,sK) "
                             "format.")
        factors = [float(s) for s in scale_factor]
    else:
        factors = [float(scale_factor)] * dims
    sizes = [math.floor(n * s) for n, s in zip(spatial, factors)]
    return sizes, [None] * dims if recompute_scale_factor else factors


def interpolate(input, size=None, scale_factor=None, mode: str = "nearest", align_corners=None,
                recompute_scale_factor=None, antialias: bool = False) -> Tensor:
    """``input`` resized to ``size`` (or by ``scale_factor``) along its spatial axes by picking the
    nearest input position; the other modes are not supported yet."""
    x = as_tensor(input)
    if mode in ("nearest", "area", "nearest-exact"):
        if align_corners is not None:
            raise ValueError("align_corners option can only be set with the interpolating modes: "
                             "linear | bilinear | bicubic | trilinear")
    sizes, factors = _output_sizes(x, size, scale_factor, recompute_scale_factor)
    if antialias and not (mode in ("bilinear", "bicubic", "lanczos") and x.ndim == 4):
        raise ValueError("Anti-alias option is restricted to bilinear, bicubic, and lanczos modes and requires a 4-D "
                         "tensor as input")
    if mode in _INTERPOLATING:
        raise NotImplementedError(f"interpolate with mode={mode!r} is not supported yet (only 'nearest' and "
                                  "'nearest-exact')")
    if mode not in ("nearest", "nearest-exact") or x.ndim not in (3, 4, 5):
        raise NotImplementedError(f"Input Error: Only 3D, 4D and 5D input Tensors supported (got {x.ndim}D) for the "
                                  f"modes: {_MODES} (got {mode})")
    name = f"upsample_{mode.replace('-', '_')}{x.ndim - 2}d"
    if not x.dtype.is_floating_point:
        raise NotImplementedError(f'"{name}" not implemented for \'{x.dtype.name.capitalize()}\'')
    spatial = list(x.shape[2:])
    if any(n <= 0 for n in sizes):
        shown = ", ".join(f"{a}: {n}" for a, n in zip("DHW"[3 - len(spatial):], spatial))
        wanted = ", ".join(f"{a}: {n}" for a, n in zip("DHW"[3 - len(sizes):], sizes))
        raise RuntimeError(f"Input and output sizes should be greater than 0, but got input ({shown}) output ({wanted})")
    out = x
    for axis, (n, m, s) in enumerate(zip(spatial, sizes, factors), start=2):
        out = _resized(out, axis, source_positions(n, m, s, mode == "nearest-exact", len(spatial) == 2))
    kind = "UpsampleNearestExact" if mode == "nearest-exact" else "UpsampleNearest"
    return _named(out, f"{kind}{x.ndim - 2}DBackward0")


class Upsample(Module):
    """Resizes (N, C, ...) inputs to ``size`` or by ``scale_factor`` (F.interpolate)."""

    def __init__(self, size=None, scale_factor=None, mode: str = "nearest", align_corners=None,
                 recompute_scale_factor=None) -> None:
        super().__init__()
        self.name = type(self).__name__
        self.size = size
        if isinstance(scale_factor, tuple):
            self.scale_factor = tuple(float(factor) for factor in scale_factor)
        else:
            self.scale_factor = float(scale_factor) if scale_factor else None
        self.mode, self.align_corners, self.recompute_scale_factor = mode, align_corners, recompute_scale_factor

    def forward(self, input):
        return interpolate(input, self.size, self.scale_factor, self.mode, self.align_corners,
                           recompute_scale_factor=self.recompute_scale_factor)

    def extra_repr(self) -> str:
        info = f"scale_factor={self.scale_factor!r}" if self.scale_factor is not None else f"size={self.size!r}"
        return info + f", mode={self.mode!r}"


class UpsamplingNearest2d(Upsample):
    """Upsample with mode 'nearest', over (N, C, H, W)."""

    def __init__(self, size=None, scale_factor=None) -> None:
        super().__init__(size, scale_factor, mode="nearest")
