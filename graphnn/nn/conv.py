"""Convolution and pooling over (N, C, H, W): Conv2d, MaxPool2d, AvgPool2d and their functional
twins, decomposed into primitives while tracing.

Every one of them starts from the ``window`` primitive, the (N, Ho, Wo, C, kh, kw) patches the
kernel visits, a strided view of the input that costs no kernel of its own:

- ``conv2d``: the weight as an (O, C*kh*kw) matrix times the patches as a (C*kh*kw, N*Ho*Wo)
  matrix, so the GEMM and its fused bias epilogue serve convolutions too; its backward is two
  matmuls and the transpose of the window (``unwindow`` + a sum);
- ``max_pool2d``: a max over the patch axes, padding reading -inf; the gradient goes to the
  first maximum of each window in row-major order, PyTorch's choice on ties (and to the last
  NaN of a window that holds several, as PyTorch's pooling sends it); where windows overlap or
  are padded, autodiff adds it at that element with one scatter_add (autodiff's
  ``_routed_pool_gradient``) rather than through the window's transpose;
- ``avg_pool2d``: a sum over the patch axes divided by the window's size.

A convolution's result comes out channels-first, (O, N, Ho, Wo), and is read as (N, C, H, W)
through a permuted view whose H*W positions are contiguous: batch norm's sums, ReLU and pooling
then read along rows. Pooling reads its patches channel-major, (N, C, Ho, Wo, kh, kw), for the
same reason. (Computing (N*Ho*Wo, O) rows makes the forward GEMM itself faster, it reads the
patches in place, but every consumer then strides across channels: the steps were 10-17% slower.
Grouped convolutions, one matmul per group batched over the groups, still compute such rows.)
"""
from __future__ import annotations

import numpy as np
import sympy

from graphnn import pointwise as pw
from graphnn.ir import format_shape
from graphnn.nn.init import reset_weight_and_bias
from graphnn.nn.module import Module, Parameter
from graphnn.nn.padding import pad
from graphnn.tensors import Tensor, _builder, _named, _wrap, as_tensor, current_builder


def _pair(value, name: str) -> tuple[int, int]:
    values = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(values) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return tuple(int(v) for v in values)


def _checked(x: Tensor, name: str) -> Tensor:
    """x if it is a float (N, C, H, W) tensor, else a clear error. The first dimension is always
    the batch, so unbatched (C, H, W) inputs are refused rather than read as C samples."""
    b = _builder(x)
    if x.dtype.kind != "f":
        raise b.error(f"{name} expected a float32 input, got {x.dtype.name} (convert it with .float())")
    if x.ndim != 4:
        raise b.error(f"{name} expected a 4-D (N, C, H, W) input, got shape {format_shape(x.shape)}"
                      + (" (an unbatched (C, H, W) input needs a leading batch axis)" if x.ndim == 3 else ""))
    return x


def _window(x: Tensor, kernel, stride, padding, dilation, fill: float = 0.0) -> Tensor:
    return _wrap(_builder(x).window(x.node, kernel, stride, padding, dilation, fill), [x], "x")


def _same_padding(kernel: tuple, dilation: tuple, stride: tuple) -> tuple[tuple[int, int], tuple[int, int]]:
    """(padding before, padding after) per spatial axis that keeps the size: dilation*(kernel-1)
    in all, the odd one after (PyTorch's choice)."""
    if stride != (1, 1):
        raise ValueError("padding='same' is not supported for strided convolutions")
    total = tuple(d * (k - 1) for k, d in zip(kernel, dilation))
    return tuple(t // 2 for t in total), tuple(t - t // 2 for t in total)


def _conv_padding(padding, kernel: tuple, dilation: tuple, stride: tuple) -> tuple[tuple, tuple]:
    """(padding before, padding after) per spatial axis."""
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        return _same_padding(kernel, dilation, stride)
    if isinstance(padding, str):
        raise ValueError(f"Invalid padding string {padding!r}, should be one of {{'valid', 'same'}}")
    padding = _pair(padding, "padding")
    return padding, padding


# -- functional ---------------------------------------------------------------------------------
def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1) -> Tensor:
    """2-D cross-correlation of (N, C, H, W) with weight (O, C/groups, kh, kw), as PyTorch's."""
    b = _builder(input, weight)
    x = _checked(as_tensor(input, b), "conv2d")
    w = as_tensor(weight, b)
    if w.ndim != 4:
        raise b.error(f"conv2d expected a 4-D weight (out_channels, in_channels/groups, kh, kw), got {format_shape(w.shape)}")
    out_channels, group_channels, kh, kw = (int(d) for d in w.shape)
    channels = x.shape[1]
    if groups < 1 or channels % groups or out_channels % groups:
        raise b.error(f"conv2d with groups={groups} needs in_channels ({channels}) and out_channels "
                      f"({out_channels}) divisible by groups")
    if channels != group_channels * groups:
        raise b.error(f"conv2d expected input with {group_channels * groups} channels (weight {format_shape(w.shape)}, "
                      f"groups={groups}), got input of shape {format_shape(x.shape)}")
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    padding, after = _conv_padding(padding, (kh, kw), dilation, stride)
    if after != padding:  # 'same' with an even span: the extra position after, as its own pad
        x = pad(x, (0, after[1] - padding[1], 0, after[0] - padding[0]))
    patches = _window(x, (kh, kw), stride, padding, dilation)  # (N, Ho, Wo, C, kh, kw)
    n, ho, wo = patches.shape[:3]
    rows, depth = n * ho * wo, group_channels * kh * kw
    if groups == 1:
        # channels-first (O, N*Ho*Wo): each output channel's positions are contiguous, so the
        # (N, C, H, W) view of the result walks H*W in memory order (batch norm's statistics,
        # pooling and the next window read it along its rows). The patches are gathered as
        # (C*kh*kw, N*Ho*Wo) rows: the gather copies along the input's rows, the GEMM packs its
        # B row by row, and the patches' gradient comes out in the same layout
        columns = patches.permute(3, 4, 5, 0, 1, 2).reshape(depth, rows)
        y = w.reshape(out_channels, depth) @ columns
        if bias is not None:
            y = y + as_tensor(bias).reshape(out_channels, 1)
        return _named(y.reshape(out_channels, n, ho, wo).permute(1, 0, 2, 3), "ConvolutionBackward0")
    # grouped: one matmul per group, batched over the groups, as (N*Ho*Wo, O) rows
    per_group = patches.reshape(rows, groups, depth).permute(1, 0, 2)
    kernels = w.reshape(groups, out_channels // groups, depth).permute(0, 2, 1)
    y = (per_group @ kernels).permute(1, 0, 2).reshape(rows, out_channels)
    if bias is not None:
        y = y + as_tensor(bias)
    return _named(y.reshape(n, ho, wo, out_channels).permute(0, 3, 1, 2), "ConvolutionBackward0")


def _pool_arguments(name: str, kernel_size, stride, padding, dilation, ceil_mode: bool):
    kernel = _pair(kernel_size, "kernel_size")
    stride = kernel if stride is None or (isinstance(stride, (tuple, list)) and not stride) else _pair(stride, "stride")
    padding, dilation = _pair(padding, "padding"), _pair(dilation, "dilation")
    if ceil_mode:
        raise NotImplementedError(f"{name} with ceil_mode=True is not supported yet")
    for k, p in zip(kernel, padding):
        if p > k // 2:  # so every window holds at least one input element
            raise current_builder().error(
                f"{name}: pad should be smaller than or equal to half of kernel size, but got "
                f"padding={padding} and kernel_size={kernel}")
    return kernel, stride, padding, dilation


def _pooled(patches: Tensor, kind: str) -> Tensor:
    """Reduce the patch axes of (N, Ho, Wo, C, kh, kw) into (N, C, Ho, Wo). The patches are read
    channel-major, (N, C, Ho, Wo, kh, kw), a view: the reduction's loops then walk the (N, C, H, W)
    input along its rows and store its result in order (in the patches' own order, each step
    along C jumped H*W elements of the input)."""
    b = _builder(patches)
    channel_major = patches.permute(0, 3, 1, 2, 4, 5)
    reduced = _wrap(b.reduce(kind, channel_major.node, (4, 5), **({"ties": "pool"} if kind == "max" else {})),
                    [channel_major], "x")
    n, ho, wo, c = patches.shape[:4]
    return reduced.reshape(n, c, ho, wo)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False) -> Tensor:
    """The maximum of each window; padding never wins (it reads -inf)."""
    if return_indices:
        raise NotImplementedError("max_pool2d with return_indices=True is not supported yet")
    x = _checked(as_tensor(input), "max_pool2d")
    kernel, stride, padding, dilation = _pool_arguments("max_pool2d", kernel_size, stride, padding, dilation, ceil_mode)
    empty = empty_window(x.shape[2:], kernel, stride, padding, dilation)
    if empty is not None:
        raise current_builder().error(
            f"max_pool2d: window {empty[1]} along dimension {empty[0] + 2} holds only padding (input size "
            f"{x.shape[2 + empty[0]]}, kernel_size={kernel}, stride={stride}, padding={padding}, dilation={dilation}); "
            "its maximum is undefined (PyTorch reads out of bounds there)")
    return _named(_pooled(_window(x, kernel, stride, padding, dilation, float("-inf")), "max"),
                  "MaxPool2DWithIndicesBackward0")


def empty_window(spatial, kernel, stride, padding, dilation) -> tuple[int, int] | None:
    """(axis, window index) of the first window that reads no input element (with dilation, a
    window can step over the whole input), or None."""
    for axis, (size, k, s, p, d) in enumerate(zip(spatial, kernel, stride, padding, dilation)):
        count = (size + 2 * p - d * (k - 1) - 1) // s + 1
        for o in range(count):
            if not any(0 <= o * s - p + j * d < size for j in range(k)):
                return axis, o
    return None


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override=None) -> Tensor:
    """The mean of each window: over kh*kw elements (padding counted as zeros), over the elements
    inside the input with ``count_include_pad=False``, or over ``divisor_override``."""
    x = _checked(as_tensor(input), "avg_pool2d")
    kernel, stride, padding, _ = _pool_arguments("avg_pool2d", kernel_size, stride, padding, 1, ceil_mode)
    patches = _window(x, kernel, stride, padding, (1, 1))
    total = _pooled(patches, "sum")
    if divisor_override is not None:
        if int(divisor_override) == 0:
            raise ValueError("divisor must be not zero")
        return _named(total / float(int(divisor_override)), "AvgPool2DBackward0")
    if count_include_pad or padding == (0, 0):
        return _named(total / float(kernel[0] * kernel[1]), "AvgPool2DBackward0")
    return _named(total / _window_sizes(total, x.shape[2:], kernel, stride, padding), "AvgPool2DBackward0")


def _window_sizes(pooled: Tensor, spatial: tuple, kernel: tuple, stride: tuple, padding: tuple) -> Tensor:
    """How many input elements each window covers, a function of the window's position: the
    product over axes of min(o*s - p + k, size) - max(o*s - p, 0)."""
    b = _builder(pooled)
    shape = (1, 1) + tuple(pooled.shape[2:])
    factors = []
    for axis in range(2):
        o = b.iota(shape, 2 + axis, "f32")
        start = pw.x0 * stride[axis] - padding[axis]
        covered = sympy.Min(start + kernel[axis], spatial[axis]) - sympy.Max(start, 0)
        factors.append(b.pointwise(pw.fn("window_extent", covered, nargs=1), o))
    return Tensor(b.pointwise(pw.mul, *factors))


# -- modules ------------------------------------------------------------------------------------
class Conv2d(Module):
    """2-D convolution; weight and bias start uniform in +-1/sqrt(fan_in) as in PyTorch, with
    fan_in = in_channels/groups * kh * kw."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros") -> None:
        super().__init__()
        if padding_mode != "zeros":
            raise NotImplementedError(f"Conv2d with padding_mode={padding_mode!r} is not supported yet (only 'zeros')")
        if groups < 1 or in_channels % groups:
            raise ValueError("in_channels must be divisible by groups")
        if out_channels % groups:
            raise ValueError("out_channels must be divisible by groups")
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.kernel_size, self.stride, self.dilation = (_pair(kernel_size, "kernel_size"), _pair(stride, "stride"),
                                                        _pair(dilation, "dilation"))
        if isinstance(padding, str):
            _conv_padding(padding, self.kernel_size, self.dilation, self.stride)  # validate now, as PyTorch does
            self.padding = padding
        else:
            self.padding = _pair(padding, "padding")
        self.padding_mode = padding_mode
        shape = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
        self.weight = Parameter(np.empty(shape, np.float32))
        if bias:
            self.bias = Parameter(np.empty((self.out_channels,), np.float32))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        fan_in = self.in_channels // self.groups * self.kernel_size[0] * self.kernel_size[1]
        reset_weight_and_bias(self.weight, self.bias, fan_in)

    def forward(self, input):
        return conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):  # PyTorch prints a padding string without quotes
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        return text


class MaxPool2d(Module):
    """The maximum over each kernel_size window (stride defaults to kernel_size)."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices: bool = False,
                 ceil_mode: bool = False) -> None:
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride if stride is not None else kernel_size
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def forward(self, input):
        return max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                          self.return_indices)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    """The mean over each kernel_size window (stride defaults to kernel_size)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True,
                 divisor_override=None) -> None:
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride if stride is not None else kernel_size
        self.padding, self.ceil_mode = padding, ceil_mode
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def forward(self, input):
        return avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad,
                          self.divisor_override)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
