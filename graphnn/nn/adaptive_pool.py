"""Adaptive pooling over (N, C, H, W): AdaptiveAvgPool2d, AdaptiveMaxPool2d and their functional
twins, decomposed into primitives while tracing.

Output position i of an axis of size n pooled to m positions reads the window
[floor(i*n/m), ceil((i+1)*n/m)), as PyTorch's; windows differ in size and may overlap when m does
not divide n. Each axis is laid out as (m, k) before one reduction over both window axes:

- an output of (1, 1) is one mean or max over (H, W), and an axis of size m*k a reshape into
  (m, k) (a view: the plain pools);
- another axis is a ``gather`` of each window's positions, padded to the longest window k by
  repeating the window's last position: a repeat changes no maximum and, since it comes after
  the position it repeats, never takes a tie; for the mean, a constant mask reads 0 there and
  the sum is divided by each window's size. The gradient is the gather's ``scatter_add``.

The maximum's gradient goes to the first maximum of each window in row-major order (to the last
NaN where there are several), PyTorch's choice.
"""
from __future__ import annotations

import numpy as np

from graphnn.nn.conv import _checked
from graphnn.nn.module import Module
from graphnn.tensor_gather import as_index, select
from graphnn.tensors import Tensor, _builder, _constant_of, _named, _wrap, as_tensor


def _output_size(output_size, spatial: tuple, name: str) -> tuple[int, int]:
    """``output_size`` (an int, or a pair whose None entries keep the input's size) as two ints."""
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != 2:
            raise RuntimeError(f"{name}: output_size must be 2")
        sizes = tuple(d if v is None else v for v, d in zip(output_size, spatial))
    elif isinstance(output_size, (int, np.integer)) and not isinstance(output_size, bool):
        sizes = (output_size, output_size)
    else:  # torch takes len() of it
        raise TypeError(f"object of type '{type(output_size).__name__}' has no len()")
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in sizes):
        raise TypeError(f"{name}(): argument 'output_size' must be a tuple of ints, got {output_size!r}")
    if any(v < 0 for v in sizes):
        raise RuntimeError(f"{name}: elements of output_size must be greater than or equal to 0 but received "
                           f"{{{sizes[0]}, {sizes[1]}}}")
    if 0 in sizes:
        raise NotImplementedError(f"{name} to an output size of 0 (an empty result) is not supported, got "
                                  f"output_size={output_size!r}")
    return int(sizes[0]), int(sizes[1])


def adaptive_windows(size: int, out: int) -> list[tuple[int, int]]:
    """(start, end) of each of the ``out`` windows over an axis of ``size`` positions."""
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


def _window_positions(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """(index, lengths): index (out, k) holds each window's positions, the shorter ones repeating
    their last position up to the longest window's k; lengths (out,) each window's size."""
    windows = adaptive_windows(size, out)
    lengths = np.array([end - start for start, end in windows])
    offsets = np.arange(lengths.max())
    starts = np.array([start for start, _ in windows])
    index = starts[:, None] + np.minimum(offsets[None, :], lengths[:, None] - 1)
    return index.astype(np.int64), lengths


def _spread(x: Tensor, output: tuple[int, int]) -> tuple[Tensor, list]:
    """x (N, C, H, W) laid out as (N, C, oh, kh, ow, kw), each output position's window along the
    k axes, and for each spatial axis the window lengths where they differ (else None)."""
    b = _builder(x)
    lengths = []
    for axis, out in zip((2, 4), output):
        size = x.shape[axis]
        shape = tuple(x.shape)
        if size % out == 0:  # equal windows side by side: a view
            x = x.reshape(*shape[:axis], out, size // out, *shape[axis + 1:])
            lengths.append(None)
            continue
        index, length = _window_positions(size, out)
        x = select(b, x, as_index(index, ""), axis, "adaptive pooling", "IndexSelectBackward0")
        lengths.append(length)
    return x, lengths


def _reduced(spread: Tensor, kind: str, axes: tuple) -> Tensor:
    """The sum or max over ``axes`` (kept with size 1); a max's gradient goes to the first maximum."""
    b = _builder(spread)
    return _wrap(b.reduce(kind, spread.node, axes, **({"ties": "pool"} if kind == "max" else {})), [spread], "x")


def _pooled(input, output_size, kind: str, name: str) -> Tensor:
    x = _checked(as_tensor(input), name)
    n, c, h, w = x.shape
    output = _output_size(output_size, (h, w), name)
    if output == (1, 1):  # the global pool: one reduction over the spatial axes
        return _reduced(x, kind, (2, 3)) if kind == "max" else x.mean((2, 3), keepdim=True)
    spread, lengths = _spread(x, output)
    if kind == "max":
        pooled = _reduced(spread, "max", (3, 5))
    elif all(length is None for length in lengths):
        pooled = spread.mean((3, 5), keepdim=True)
    else:  # repeated positions read 0 (a product with 0 would make an infinity NaN)
        kh, kw = spread.shape[3], spread.shape[5]
        lengths = [np.full(out, k) if length is None else length for length, out, k in zip(lengths, output, (kh, kw))]
        inside = [np.arange(k)[None, :] < length[:, None] for length, k in zip(lengths, (kh, kw))]
        repeated = ~(inside[0][:, :, None, None] & inside[1][None, None, :, :])
        counts = (lengths[0][:, None] * lengths[1][None, :]).astype(np.float32)
        total = spread.masked_fill(Tensor(_constant_of(repeated)), 0.0).sum((3, 5), keepdim=True)
        pooled = total / Tensor(_constant_of(counts[:, None, :, None]))
    return pooled.reshape(n, c, *output)


# -- functional ---------------------------------------------------------------------------------
def adaptive_avg_pool2d(input, output_size) -> Tensor:
    """The mean of each adaptive window: output (N, C, *output_size); an int is a square output,
    a None entry keeps the input's size."""
    out = _pooled(input, output_size, "sum", "adaptive_avg_pool2d")
    # PyTorch computes a (1, 1) output as a mean, and names its gradient so
    return _named(out, "MeanBackward1" if tuple(out.shape[2:]) == (1, 1) else "AdaptiveAvgPool2DBackward0")


def adaptive_max_pool2d(input, output_size, return_indices: bool = False) -> Tensor:
    """The maximum of each adaptive window (see adaptive_avg_pool2d for output_size)."""
    if return_indices:
        raise NotImplementedError("adaptive_max_pool2d with return_indices=True is not supported yet")
    return _named(_pooled(input, output_size, "max", "adaptive_max_pool2d"), "AdaptiveMaxPool2DBackward0")


# -- modules ------------------------------------------------------------------------------------
class AdaptiveAvgPool2d(Module):
    """The mean over windows chosen so that the output has ``output_size`` (H, W)."""

    def __init__(self, output_size) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, input):
        return adaptive_avg_pool2d(input, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveMaxPool2d(Module):
    """The maximum over windows chosen so that the output has ``output_size`` (H, W)."""

    def __init__(self, output_size, return_indices: bool = False) -> None:
        super().__init__()
        self.output_size, self.return_indices = output_size, return_indices

    def forward(self, input):
        return adaptive_max_pool2d(input, self.output_size, self.return_indices)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"
