"""Parameter initialisation with PyTorch's distributions, in place on a Parameter, Tensor or
array; each returns what it was given, as PyTorch's do. Draws come from graphnn's generator
(``graphnn.manual_seed``) or the ``generator=`` passed."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphnn import recording
from graphnn.random import generator as global_generator


def _array(tensor: Any) -> np.ndarray:
    return getattr(tensor, "array", tensor)  # a Tensor's (or Parameter's) storage, or an array


def _fill(tensor: Any, values: np.ndarray) -> Any:
    array = _array(tensor)
    recording.before_write(array)  # recorded work that read the old values gets them first
    array[...] = values
    return tensor


def _draws(generator) -> np.random.Generator:
    return global_generator() if generator is None else generator.numpy


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


def uniform_(tensor: Any, a: float = 0.0, b: float = 1.0, generator=None) -> Any:
    if a > b:
        raise RuntimeError(f"uniform_ expects to return a [from, to) range, but found from={a} > to={b}")
    return _fill(tensor, _draws(generator).uniform(a, b, _array(tensor).shape))


def normal_(tensor: Any, mean: float = 0.0, std: float = 1.0, generator=None) -> Any:
    if std < 0:
        raise RuntimeError(f"normal expects std >= 0.0, but found std {std}")
    return _fill(tensor, _draws(generator).normal(mean, std, _array(tensor).shape))


def trunc_normal_(tensor: Any, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0,
                  generator=None) -> Any:
    """Normal(mean, std) truncated to [a, b], drawn as PyTorch draws it: uniform between the
    CDF values of the bounds, mapped back through the inverse CDF, clamped to [a, b]."""
    def cdf(value: float) -> float:
        return (1.0 + math.erf(value / math.sqrt(2.0))) / 2.0

    low, high = cdf((a - mean) / std), cdf((b - mean) / std)
    if 2 * low - 1 > 2 * high - 1:
        raise RuntimeError(f"uniform_ expects to return a [from, to) range, but found from={2 * low - 1} > "
                           f"to={2 * high - 1}")
    u = _draws(generator).uniform(2 * low - 1, 2 * high - 1, _array(tensor).shape)
    return _fill(tensor, np.clip(_erfinv(u) * (std * math.sqrt(2.0)) + mean, a, b))


def _erfinv(y: np.ndarray) -> np.ndarray:
    """The inverse error function: scipy's where it is installed, else Giles' single-precision
    approximation ("Approximating the erfinv function", 2010; relative error below 4e-7)."""
    try:
        from scipy.special import erfinv
    except ImportError:  # pragma: no cover - scipy comes with the test extras
        w = -np.log((1.0 - y) * (1.0 + y))
        central, tail = w - 2.5, np.sqrt(np.maximum(w, 5.0)) - 3.0
        p = np.where(w < 5.0, _poly(central, _ERFINV_CENTRAL), _poly(tail, _ERFINV_TAIL))
        return p * y
    return erfinv(y)


def _poly(x: np.ndarray, coefficients: tuple) -> np.ndarray:
    total = np.full_like(x, coefficients[0])
    for c in coefficients[1:]:
        total = total * x + c
    return total


_ERFINV_CENTRAL = (2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087,
                   -0.00125372503, -0.00417768164, 0.246640727, 1.50140941)
_ERFINV_TAIL = (-0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773,
                -0.0076224613, 0.00943887047, 1.00167406, 2.83297682)


def constant_(tensor: Any, val: float) -> Any:
    return _fill(tensor, val)


def zeros_(tensor: Any) -> Any:
    return _fill(tensor, 0.0)


def ones_(tensor: Any) -> Any:
    return _fill(tensor, 1.0)


def xavier_uniform_(tensor: Any, gain: float = 1.0, generator=None) -> Any:
    fan_in, fan_out = _fans(_array(tensor))
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor: Any, gain: float = 1.0, generator=None) -> Any:
    fan_in, fan_out = _fans(_array(tensor))
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator)


def _fan(tensor: Any, mode: str) -> int:
    fan_in, fan_out = _fans(_array(tensor))
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode} not supported, please use one of fan_in, fan_out")
    return fan_in if mode == "fan_in" else fan_out


def kaiming_uniform_(tensor: Any, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                     generator=None) -> Any:
    bound = math.sqrt(3.0) * calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor: Any, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                    generator=None) -> Any:
    return normal_(tensor, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode)), generator)


def reset_weight_and_bias(weight: Any, bias: Any, fan_in: int) -> None:
    """PyTorch's default for Linear and convolutions: the weight from kaiming_uniform with
    a=sqrt(5), the bias uniform in +-1/sqrt(fan_in) (drawn in that order)."""
    kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        uniform_(bias, -bound, bound)
