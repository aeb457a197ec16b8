"""Gradient clipping, in place on each parameter's ``.grad``, with PyTorch's formulas (as
tensor operations, so the op set's definitions compute them)."""
from __future__ import annotations

import math
from typing import Iterable

from graphnn import factories
from graphnn.eager import no_grad
from graphnn.tensors import Tensor


def _grads(parameters) -> list:
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


def clip_grad_norm_(parameters: Iterable, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach=None) -> Tensor:
    """Scale the gradients so that their joint ``norm_type`` norm is at most ``max_norm``;
    returns the norm before clipping. As torch: the norm of the per-gradient norms, and a
    factor max_norm / (norm + 1e-6) clamped to 1 applied to every gradient."""
    grads = _grads(parameters)
    if not grads:
        return factories.tensor(0.0)
    with no_grad():
        if math.isinf(norm_type):
            total = factories.stack([g.abs().amax() for g in grads]).amax()
        else:
            norms = factories.stack([(g.abs() ** norm_type).sum() ** (1.0 / norm_type) for g in grads])
            total = (norms ** norm_type).sum() ** (1.0 / norm_type)
        if error_if_nonfinite and not bool(total.isfinite()):
            raise RuntimeError(f"The total norm of order {float(norm_type)} for gradients from `parameters` is "
                               "non-finite, so it cannot be clipped. To disable this error and scale the gradients "
                               "by the non-finite norm anyway, set `error_if_nonfinite=False`")
        coefficient = (max_norm / (total + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coefficient)
    return total


def clip_grad_value_(parameters: Iterable, clip_value: float, foreach=None) -> None:
    """Clamp every gradient element to [-clip_value, clip_value]."""
    with no_grad():
        for g in _grads(parameters):
            g.clamp_(-float(clip_value), float(clip_value))
