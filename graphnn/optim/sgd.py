"""Stochastic gradient descent with momentum, PyTorch's exact update (torch/optim/sgd.py).

With g the gradient (negated when maximize), p the parameter and b the momentum buffer::

    g = g + weight_decay * p
    b = g                                     on a parameter's first step
    b = momentum * b + (1 - dampening) * g    afterwards
    g = g + momentum * b if nesterov else b   (g itself when momentum == 0)
    p = p - lr * g

lr, momentum, 1 - dampening (computed in double, as PyTorch does), weight decay and whether the
buffer exists yet are run-time scalars; whether momentum is zero, nesterov and maximize are
compiled into the update (without momentum the buffer is neither read nor written, as PyTorch
leaves it).
"""
from __future__ import annotations

from typing import Iterable

import sympy

from graphnn.optim.optimizer import GRAD, PARAM, Optimizer, symbols

buf, lr, momentum, undamped, weight_decay, initialized = symbols(
    "momentum_buffer lr momentum one_minus_dampening weight_decay initialized")


class SGD(Optimizer):
    """``optim.SGD(params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *,
    maximize=False)``."""

    slots = ("momentum_buffer",)
    scalars = ("lr", "momentum", "one_minus_dampening", "weight_decay", "initialized")

    def __init__(self, params: Iterable, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, maximize: bool = False, foreach=None,
                 differentiable: bool = False, fused=None) -> None:
        # foreach, differentiable and fused choose among PyTorch's implementations; graphnn has
        # one, compiled, and keeps them in the groups as PyTorch does (for its state dicts)
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, maximize=maximize, foreach=foreach,
                                      differentiable=differentiable, fused=fused))

    def _check_hypers(self, group: dict) -> None:
        if group["lr"] < 0.0:
            raise ValueError(f"Invalid learning rate: {group['lr']}")
        if group["momentum"] < 0.0:
            raise ValueError(f"Invalid momentum value: {group['momentum']}")
        if group["weight_decay"] < 0.0:
            raise ValueError(f"Invalid weight_decay value: {group['weight_decay']}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def flags(self, group: dict) -> tuple:
        return group["momentum"] == 0, bool(group["nesterov"]), bool(group["maximize"])

    def scalar_values(self, group: dict, state: dict) -> tuple:
        started = 1.0 if state.get("momentum_buffer") is not None else 0.0
        return group["lr"], group["momentum"], 1.0 - group["dampening"], group["weight_decay"], started

    @classmethod
    def update(cls, flags: tuple) -> list:
        zero_momentum, nesterov, maximize = flags
        g = (-GRAD if maximize else GRAD) + weight_decay * PARAM
        if zero_momentum:
            return [("param", PARAM - lr * g)]
        new_buf = sympy.Piecewise((g, initialized <= 0), (momentum * buf + undamped * g, True))
        step = g + momentum * buf if nesterov else buf
        return [("momentum_buffer", new_buf), ("param", PARAM - lr * step)]
