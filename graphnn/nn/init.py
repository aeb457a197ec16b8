"""Parameter initialisation with PyTorch's distributions, in place on a Parameter or array."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphnn.random import generator


def _array(tensor: Any) -> np.ndarray:
    return getattr(tensor, "array", tensor)  # a Tensor's (or Parameter's) storage, or an array


def _fill(tensor: Any, values: np.ndarray) -> Any:
    _array(tensor)[...] = values
    return tensor


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    linear = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "sigmoid")
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def _fans(array: np.ndarray) -> tuple[int, int]:
    if array.ndim < 2:
        raise ValueError("Fan in and fan out can not be computed for tensor with fewer than 2 dimensions")
    receptive = int(np.prod(array.shape[2:])) if array.ndim > 2 else 1
    return array.shape[1] * receptive, array.shape[0] * receptive


def uniform_(tensor: Any, a: float = 0.0, b: float = 1.0) -> Any:
    a_ = _array(tensor)
    return _fill(tensor, generator().uniform(a, b, a_.shape))


def normal_(tensor: Any, mean: float = 0.0, std: float = 1.0) -> Any:
    a_ = _array(tensor)
    return _fill(tensor, generator().normal(mean, std, a_.shape))


def constant_(tensor: Any, val: float) -> Any:
    return _fill(tensor, val)


def zeros_(tensor: Any) -> Any:
    return _fill(tensor, 0.0)


def ones_(tensor: Any) -> Any:
    return _fill(tensor, 1.0)


def xavier_uniform_(tensor: Any, gain: float = 1.0) -> Any:
    fan_in, fan_out = _fans(_array(tensor))
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor: Any, gain: float = 1.0) -> Any:
    fan_in, fan_out = _fans(_array(tensor))
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def kaiming_uniform_(tensor: Any, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> Any:
    fan_in, fan_out = _fans(_array(tensor))
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode} not supported, please use one of fan_in, fan_out")
    fan = fan_in if mode == "fan_in" else fan_out
    bound = math.sqrt(3.0) * calculate_gain(nonlinearity, a) / math.sqrt(fan)
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor: Any, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> Any:
    fan_in, fan_out = _fans(_array(tensor))
    fan = fan_in if mode == "fan_in" else fan_out
    return normal_(tensor, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(fan))


def reset_weight_and_bias(weight: Any, bias: Any, fan_in: int) -> None:
    """PyTorch's default for Linear and convolutions: the weight from kaiming_uniform with
    a=sqrt(5), the bias uniform in +-1/sqrt(fan_in) (drawn in that order)."""
    kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        uniform_(bias, -bound, bound)
