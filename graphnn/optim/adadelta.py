"""Adadelta, PyTorch's single-tensor update (torch/optim/adadelta.py), defined once in sympy.

With g the gradient (negated when maximize), p the parameter, v the square average and u the
accumulated squared update (both starting at zero)::

    g = g + weight_decay * p                      with weight decay
    v = rho * v + (1 - rho) * g * g
    d = sqrt(u + eps) / sqrt(v + eps) * g
    u = rho * u + (1 - rho) * d * d
    p = p - lr * d

lr, rho, ``1 - rho`` (computed in double, as PyTorch does), eps and the weight decay are run-time
scalars; maximize and whether there is weight decay are compiled in.
"""
from __future__ import annotations

from typing import Iterable

import sympy

from graphnn.optim.optimizer import PARAM, Optimizer, check_nonnegative, gradient, symbols

square_avg, acc_delta, delta, lr, rho, smoothing, eps = symbols(
    "square_avg acc_delta delta lr rho one_minus_rho eps")


class Adadelta(Optimizer):
    """``optim.Adadelta(params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, foreach=None, *,
    capturable=False, maximize=False, differentiable=False)`` (``foreach``, ``capturable`` and
    ``differentiable`` are kept, as PyTorch keeps them)."""

    slots = ("square_avg", "acc_delta")
    counters = ("step",)
    scalars = ("lr", "rho", "one_minus_rho", "eps", "weight_decay")

    def __init__(self, params: Iterable, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0, foreach=None, *, capturable: bool = False, maximize: bool = False,
                 differentiable: bool = False) -> None:
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize,
                                      capturable=capturable, foreach=foreach, differentiable=differentiable))

    def _check_hypers(self, group: dict) -> None:
        check_nonnegative(group, ("lr", "learning rate"))
        if not 0.0 <= group["rho"] <= 1.0:
            raise ValueError(f"Invalid rho value: {group['rho']}")
        check_nonnegative(group, ("eps", "epsilon value"), ("weight_decay", "weight_decay value"))

    def flags(self, group: dict) -> tuple:
        return bool(group["maximize"]), group["weight_decay"] != 0

    def scalar_values(self, group: dict, state: dict) -> tuple:
        return group["lr"], group["rho"], 1 - group["rho"], group["eps"], group["weight_decay"]

    @classmethod
    def update(cls, flags: tuple) -> list:
        maximize, decays = flags
        steps = []
        g = gradient(steps, maximize, decays)
        return steps + [("square_avg", square_avg * rho + smoothing * g * g),
                ("delta", sympy.sqrt(acc_delta + eps) / sympy.sqrt(square_avg + eps) * g),
                ("acc_delta", acc_delta * rho + smoothing * delta * delta),
                ("param", PARAM - lr * delta)]
