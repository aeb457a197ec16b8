"""Adamax, PyTorch's single-tensor update (torch/optim/adamax.py), defined once in sympy.

With g the gradient (negated when maximize), p the parameter, m the first moment, u the
exponentially weighted infinity norm and t the step count after this step::

    g = g + weight_decay * p
    m = lerp(m, g, 1 - beta1)
    u = max(beta2 * u, |g| + eps)          NaN when either side is NaN, as torch.maximum
    p = p - lr / (1 - beta1**t) * m / u

The step size ``lr / (1 - beta1**t)`` and ``1 - beta1`` are computed on the host in double
precision, as PyTorch computes them, and reach the update as run-time scalars with beta2, eps and
the weight decay; maximize and whether there is weight decay are compiled in.
"""
from __future__ import annotations

from typing import Iterable

import sympy

from graphnn import pointwise as pw
from graphnn.optim.adam import check_adam_hypers
from graphnn.optim.optimizer import PARAM, Optimizer, gradient, lerp, symbols

exp_avg, exp_inf, step_size, lerp_weight, beta2, eps, decayed_inf, norm = symbols(
    "exp_avg exp_inf step_size lerp_weight beta2 eps decayed_inf norm")


class Adamax(Optimizer):
    """``optim.Adamax(params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, foreach=None,
    *, maximize=False, differentiable=False, capturable=False)`` (``foreach``, ``differentiable``
    and ``capturable`` are kept in the groups, as PyTorch keeps them; the update is compiled
    either way)."""

    slots = ("exp_avg", "exp_inf")
    counters = ("step",)
    scalars = ("step_size", "lerp_weight", "beta2", "eps", "weight_decay")

    def __init__(self, params: Iterable, lr: float = 2e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, foreach=None, *, maximize: bool = False, differentiable: bool = False,
                 capturable: bool = False) -> None:
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, foreach=foreach,
                                      maximize=maximize, differentiable=differentiable, capturable=capturable))

    def _check_hypers(self, group: dict) -> None:
        check_adam_hypers(group)

    def flags(self, group: dict) -> tuple:
        return bool(group["maximize"]), group["weight_decay"] != 0

    def scalar_values(self, group: dict, state: dict) -> tuple:
        t = float(state.get("step", 0.0)) + 1.0
        beta1, beta2_ = group["betas"]
        return group["lr"] / (1 - beta1**t), 1 - beta1, beta2_, group["eps"], group["weight_decay"]

    @classmethod
    def update(cls, flags: tuple) -> list:
        maximize, decays = flags
        steps = []
        g = gradient(steps, maximize, decays)
        larger = (norm > decayed_inf) | (pw.isnan(norm) > 0)  # else decayed_inf, NaN or not
        return steps + [("exp_avg", lerp(exp_avg, g, lerp_weight)),
                        ("decayed_inf", exp_inf * beta2),
                        ("norm", sympy.Abs(g) + eps),
                        ("exp_inf", sympy.Piecewise((norm, larger), (decayed_inf, True))),
                        ("param", PARAM - step_size * exp_avg / exp_inf)]
