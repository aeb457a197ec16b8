"""The function forms of Tensor methods: ``torch.sum(x, dim=1)``, ``torch.flatten(x, 1)``,
``torch.max(out, 1)``... each calls the method of the same name on its first argument (made a
tensor first, so numbers and arrays work too)."""
from __future__ import annotations

from typing import Any

from graphnn.tensors import Tensor, as_tensor

METHODS = (
    "abs", "absolute", "add", "all", "allclose", "amax", "amin", "any", "argmax", "argmin", "ceil", "chunk", "clamp",
    "clip", "clone", "cos", "count_nonzero", "detach", "div", "divide", "dot", "eq", "equal", "exp", "expm1", "flatten",
    "floor", "floor_divide", "fmod", "ge", "greater", "gt", "isclose", "isfinite", "isinf", "isnan", "le", "less", "log",
    "log10", "log1p", "log2", "log_softmax", "logical_and", "logical_not", "logical_or", "logical_xor", "lt",
    "masked_fill", "matmul", "max", "maximum", "mean", "min", "minimum", "mm", "mul", "multiply", "narrow", "ne", "neg",
    "negative", "norm", "not_equal", "permute", "pow", "prod", "ravel", "reciprocal", "relu", "remainder", "reshape",
    "round", "rsqrt", "select", "sigmoid", "sign", "sin", "softmax", "split", "sqrt", "square", "squeeze", "std", "sub",
    "subtract", "sum", "swapaxes", "t", "tanh", "transpose", "tril", "triu", "true_divide", "trunc", "unbind",
    "unsqueeze", "var",
    "gather", "index_select", "take_along_dim",  # graphnn.tensor_gather
)
METHODS += ("argsort", "sort", "topk", "repeat_interleave", "erf", "erfc")


def _function(name: str):
    def function(input: Any, *args: Any, **kwargs: Any):
        return getattr(as_tensor(input), name)(*args, **kwargs)

    function.__name__ = function.__qualname__ = name
    function.__doc__ = f"``torch.{name}(input, ...)``: ``input.{name}(...)`` (see Tensor.{name})."
    return function


FUNCTIONS = {name: _function(name) for name in METHODS}


def _check_method_names() -> None:
    missing = [name for name in METHODS if not hasattr(Tensor, name)]
    if missing:  # pragma: no cover - a typo in METHODS
        raise AttributeError(f"Tensor has no methods {missing}")


_check_method_names()
