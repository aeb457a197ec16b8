"""In-place tensor operations: ``x += y``, ``add_``, ``zero_``, ``fill_``, ``copy_``, ``normal_``...

On a concrete tensor the result is computed out of place by the same op, then written into the
tensor's own storage, so every view and alias of it (a Parameter's flat buffer, a state_dict
entry, ``p.data``) sees the change, as in PyTorch. PyTorch's rules hold: the result must keep the
tensor's shape and be castable to its dtype, and a leaf that requires grad may be changed in
place only under ``no_grad``. Inside a traced forward a graph has no storage to update, so
``x += y`` records ``x + y`` and rebinds the name (the other methods ending in ``_`` raise).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from graphnn import dtypes, random, recording
from graphnn.eager import is_grad_enabled
from graphnn.errors import TraceError


def _castable(source: dtypes.dtype, target: dtypes.dtype) -> bool:
    """PyTorch's can_cast: no float into an integer or bool, no integer into bool."""
    if source.is_floating_point:
        return target.is_floating_point
    if source is not dtypes.bool_:
        return target is not dtypes.bool_
    return True


class InPlaceMethods:
    """The methods ending in ``_`` and the augmented assignments (see the module docstring)."""

    def _writable(self, what: str) -> np.ndarray:
        if self._symbolic():
            raise TraceError(f"{what} changes a tensor in place, which a traced forward cannot record; "
                             "write the out-of-place form (y = x.add(1) rather than x.add_(1))")
        if self.requires_grad and self.grad_fn is None and is_grad_enabled():
            raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation.")
        array = self.array
        recording.before_write(array)  # recorded work that read these values gets them first
        return array

    def _assign(self, result: Any, what: str):
        """Write ``result`` (a tensor, array or number) into this tensor's storage."""
        target = self._writable(what)
        value = result.array if hasattr(result, "array") else np.asarray(result)
        if hasattr(result, "dtype") and isinstance(result.dtype, dtypes.dtype) and not _castable(result.dtype, self.dtype):
            raise RuntimeError(f"result type {_name(result.dtype)} can't be cast to the desired output type "
                               f"{_name(self.dtype)}")
        if value.shape != target.shape:
            try:
                shape = np.broadcast_shapes(value.shape, target.shape)
            except ValueError:
                shape = None
            if shape != target.shape:
                raise RuntimeError(f"output with shape {list(target.shape)} doesn't match the broadcast shape "
                                   f"{list(shape) if shape is not None else list(value.shape)}")
        with np.errstate(all="ignore"):
            target[...] = value
        return self

    def _inplace(self, result: Any, what: str):
        if self._symbolic():
            return result  # recorded out of place; the name is rebound by the augmented assignment
        return self._assign(result, what)

    # -- augmented assignment -------------------------------------------------------------------
    def __iadd__(self, other):
        return self._inplace(self + other, "+=")

    def __isub__(self, other):
        return self._inplace(self - other, "-=")

    def __imul__(self, other):
        return self._inplace(self * other, "*=")

    def __itruediv__(self, other):
        return self._inplace(self / other, "/=")

    def __ifloordiv__(self, other):
        return self._inplace(self // other, "//=")

    def __imod__(self, other):
        return self._inplace(self % other, "%=")

    def __ipow__(self, other):
        return self._inplace(self ** other, "**=")

    def __iand__(self, other):
        return self._inplace(self & other, "&=")

    def __ior__(self, other):
        return self._inplace(self | other, "|=")

    def __ixor__(self, other):
        return self._inplace(self ^ other, "^=")

    # -- the methods ending in ``_`` ----------------------------------------------------------------
    def add_(self, other, alpha=1):
        return self._assign(self.add(other, alpha=alpha), "add_")

    def sub_(self, other, alpha=1):
        return self._assign(self.sub(other, alpha=alpha), "sub_")

    def mul_(self, other):
        return self._assign(self * other, "mul_")

    def div_(self, other, rounding_mode=None):
        return self._assign(self.div(other, rounding_mode=rounding_mode), "div_")

    def pow_(self, exponent):
        return self._assign(self ** exponent, "pow_")

    def neg_(self):
        return self._assign(-self, "neg_")

    def abs_(self):
        return self._assign(self.abs(), "abs_")

    def exp_(self):
        return self._assign(self.exp(), "exp_")

    def log_(self):
        return self._assign(self.log(), "log_")

    def sqrt_(self):
        return self._assign(self.sqrt(), "sqrt_")

    def relu_(self):
        return self._assign(self.relu(), "relu_")

    def sigmoid_(self):
        return self._assign(self.sigmoid(), "sigmoid_")

    def tanh_(self):
        return self._assign(self.tanh(), "tanh_")

    def clamp_(self, min=None, max=None):
        return self._assign(self.clamp(min, max), "clamp_")

    clip_ = clamp_

    def addcmul_(self, tensor1, tensor2, value=1):
        return self._assign(self + tensor1 * tensor2 * value, "addcmul_")

    def addcdiv_(self, tensor1, tensor2, value=1):
        return self._assign(self + tensor1 / tensor2 * value, "addcdiv_")

    def lerp_(self, end, weight):
        return self._assign(self + (end - self) * weight, "lerp_")

    def zero_(self):
        return self._assign(np.zeros((), self.dtype.numpy), "zero_")

    def fill_(self, value):
        value = value.item() if hasattr(value, "item") and not isinstance(value, (int, float)) else value
        return self._assign(np.asarray(value).astype(self.dtype.numpy), "fill_")

    def copy_(self, src, non_blocking: bool = False):
        source = src.array if hasattr(src, "array") else np.asarray(src)
        target = self._writable("copy_")
        try:
            np.broadcast_to(source, target.shape)
        except ValueError:
            raise RuntimeError(f"The size of tensor a ({target.shape[-1] if target.ndim else 1}) must match the size "
                               f"of tensor b ({source.shape[-1] if source.ndim else 1}) at non-singleton dimension "
                               f"{max(target.ndim - 1, 0)}") from None
        with np.errstate(all="ignore"):
            target[...] = source  # copy_ converts any dtype, as torch's
        return self

    def masked_fill_(self, mask, value):
        target = self._writable("masked_fill_")
        where = np.broadcast_to(mask.array if hasattr(mask, "array") else np.asarray(mask), target.shape)
        if where.dtype != np.bool_:
            raise RuntimeError(f"masked_fill_ only supports boolean masks, but got mask with dtype {where.dtype}")
        target[where] = value.item() if hasattr(value, "item") else value
        return self

    # -- random fills, from graphnn's generator (or ``generator=``) -------------------------------
    def _draws(self, generator) -> np.random.Generator:
        return random.generator() if generator is None else generator.numpy

    def normal_(self, mean: float = 0.0, std: float = 1.0, *, generator=None):
        target = self._writable("normal_")
        return self._assign(mean + std * self._draws(generator).standard_normal(target.shape), "normal_")

    def uniform_(self, from_: float = 0.0, to: float = 1.0, *, generator=None):
        target = self._writable("uniform_")
        return self._assign(self._draws(generator).uniform(from_, to, target.shape), "uniform_")

    def bernoulli_(self, p: float = 0.5, *, generator=None):
        target = self._writable("bernoulli_")
        return self._assign(self._draws(generator).random(target.shape) < p, "bernoulli_")

    def random_(self, from_: int = 0, to: int | None = None, *, generator=None):
        target = self._writable("random_")
        if to is None:
            from_, to = 0, from_ if from_ else 2**24
        return self._assign(self._draws(generator).integers(from_, to, target.shape), "random_")


def _name(d: dtypes.dtype) -> str:
    return {"float32": "Float", "float64": "Double", "int64": "Long", "int32": "Int", "bool": "Bool"}[d.name]

