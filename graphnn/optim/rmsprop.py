"""RMSprop, PyTorch's single-tensor update (torch/optim/rmsprop.py), defined once in sympy.

With g the gradient (negated when maximize), p the parameter, v the square average, a the
gradient average and b the momentum buffer (all starting at zero)::

    g = g + weight_decay * p                      with weight decay
    v = alpha * v + (1 - alpha) * g * g
    a = lerp(a, g, 1 - alpha)                     centered
    d = sqrt(v - a * a) + eps                     centered, else sqrt(v) + eps
    b = momentum * b + g / d                      momentum > 0
    p = p - lr * b                                momentum > 0, else p - lr * g / d

lr, alpha, ``1 - alpha`` (computed in double, as PyTorch does), eps, momentum and the weight
decay are run-time scalars; maximize, centered, whether momentum is positive and whether there
is weight decay are compiled in (the buffers a group does not use are neither read nor written,
and not in its state, as in PyTorch).
"""
from __future__ import annotations

from typing import Iterable

import sympy

from graphnn.optim.optimizer import PARAM, Optimizer, check_nonnegative, gradient, lerp, symbols

square_avg, buf, grad_avg, avg, lr, alpha, smoothing, eps, momentum = symbols(
    "square_avg momentum_buffer grad_avg avg lr alpha one_minus_alpha eps momentum")


class RMSprop(Optimizer):
    """``optim.RMSprop(params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
    centered=False, capturable=False, foreach=None, maximize=False, differentiable=False)``
    (``capturable``, ``foreach`` and ``differentiable`` are kept, as PyTorch keeps them)."""

    slots = ("square_avg", "momentum_buffer", "grad_avg")
    counters = ("step",)
    scalars = ("lr", "alpha", "one_minus_alpha", "eps", "momentum", "weight_decay")

    def __init__(self, params: Iterable, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False, capturable: bool = False,
                 foreach=None, maximize: bool = False, differentiable: bool = False) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                                      weight_decay=weight_decay, capturable=capturable, foreach=foreach,
                                      maximize=maximize, differentiable=differentiable))

    def _check_hypers(self, group: dict) -> None:
        check_nonnegative(group, ("lr", "learning rate"), ("eps", "epsilon value"), ("momentum", "momentum value"),
                          ("weight_decay", "weight_decay value"), ("alpha", "alpha value"))

    def flags(self, group: dict) -> tuple:
        return (bool(group["maximize"]), bool(group["centered"]), group["momentum"] > 0,
                group["weight_decay"] != 0)

    def scalar_values(self, group: dict, state: dict) -> tuple:
        return (group["lr"], group["alpha"], 1 - group["alpha"], group["eps"], group["momentum"],
                group["weight_decay"])

    @classmethod
    def update(cls, flags: tuple) -> list:
        maximize, centered, with_momentum, decays = flags
        steps = []
        g = gradient(steps, maximize, decays)
        steps.append(("square_avg", square_avg * alpha + smoothing * g * g))
        if centered:
            steps.append(("grad_avg", lerp(grad_avg, g, smoothing)))
            steps.append(("avg", sympy.sqrt(square_avg - grad_avg * grad_avg) + eps))
        else:
            steps.append(("avg", sympy.sqrt(square_avg) + eps))
        if with_momentum:
            steps.append(("momentum_buffer", buf * momentum + g / avg))
            steps.append(("param", PARAM - lr * buf))
        else:
            steps.append(("param", PARAM - lr * g / avg))
        return steps
