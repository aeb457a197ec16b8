"""Adam and AdamW, PyTorch's single-tensor update (torch/optim/adam.py), defined once in sympy.

With g the gradient (negated when maximize), p the parameter, m and v the moments and t the
step count after this step::

    p = p * (1 - lr * weight_decay)               AdamW (decoupled weight decay)
    g = g + weight_decay * p                      Adam with weight decay
    m = lerp(m, g, 1 - beta1)
    v = beta2 * v + (1 - beta2) * g * g
    v_max = max(v_max, v)                         amsgrad (v_max replaces v below)
    p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

The bias corrections, ``1 - beta`` and ``1 - lr * weight_decay`` are computed on the host in
double precision, as PyTorch computes them, and reach the update as run-time scalars with lr and
the betas, so changing any of them never recompiles. amsgrad, maximize, whether there is weight
decay and whether it is decoupled are compiled in.
"""
from __future__ import annotations

import math
from typing import Iterable

import sympy

from graphnn import pointwise as pw
from graphnn.optim.optimizer import PARAM, Optimizer, check_betas, check_nonnegative, gradient, lerp, symbols

exp_avg, exp_avg_sq, max_exp_avg_sq, beta2, lerp_weight, undecayed, eps, step_size, correction2 = symbols(
    "exp_avg exp_avg_sq max_exp_avg_sq beta2 lerp_weight one_minus_beta2 eps step_size correction2")


def check_adam_hypers(group: dict) -> None:
    """PyTorch's checks, in its order, for the Adam family (lr, eps, betas, weight decay)."""
    check_nonnegative(group, ("lr", "learning rate"), ("eps", "epsilon value"))
    check_betas(group)
    check_nonnegative(group, ("weight_decay", "weight_decay value"))


class Adam(Optimizer):
    """``optim.Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False,
    *, maximize=False, decoupled_weight_decay=False)`` (``foreach``, ``capturable``,
    ``differentiable`` and ``fused`` are accepted and kept, as PyTorch keeps them; the update is
    compiled either way)."""

    slots = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    counters = ("step",)
    scalars = ("step_size", "correction2", "lerp_weight", "beta2", "one_minus_beta2", "eps", "weight_decay", "decay")
    decoupled = False

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, amsgrad: bool = False, *, foreach=None, maximize: bool = False,
                 capturable: bool = False, differentiable: bool = False, fused=None,
                 decoupled_weight_decay: bool | None = None) -> None:
        decoupled = self.decoupled if decoupled_weight_decay is None else decoupled_weight_decay
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize, foreach=foreach, capturable=capturable,
                                      differentiable=differentiable, fused=fused, decoupled_weight_decay=decoupled))

    def _check_hypers(self, group: dict) -> None:
        check_adam_hypers(group)

    def flags(self, group: dict) -> tuple:
        return (bool(group["amsgrad"]), bool(group["maximize"]), group["weight_decay"] != 0,
                bool(group["decoupled_weight_decay"]))

    def scalar_values(self, group: dict, state: dict) -> tuple:
        t = float(state.get("step", 0.0)) + 1.0
        (beta1, beta2_), lr = group["betas"], group["lr"]
        correction1, corrected2 = 1 - beta1**t, 1 - beta2_**t
        return (lr / correction1, math.sqrt(corrected2), 1 - beta1, beta2_, 1 - beta2_, group["eps"],
                group["weight_decay"], 1 - lr * group["weight_decay"])

    @classmethod
    def update(cls, flags: tuple) -> list:
        amsgrad, maximize, decays, decoupled = flags
        steps = []
        g = gradient(steps, maximize, decays, decoupled)
        steps.append(("exp_avg", lerp(exp_avg, g, lerp_weight)))
        steps.append(("exp_avg_sq", exp_avg_sq * beta2 + undecayed * g * g))
        second = exp_avg_sq
        if amsgrad:  # NaN propagates as in torch.maximum
            larger = (exp_avg_sq > max_exp_avg_sq) | (pw.isnan(exp_avg_sq) > 0)
            steps.append(("max_exp_avg_sq", sympy.Piecewise((exp_avg_sq, larger), (max_exp_avg_sq, True))))
            second = max_exp_avg_sq
        steps.append(("param", PARAM - step_size * exp_avg / (sympy.sqrt(second) / correction2 + eps)))
        return steps


class AdamW(Adam):
    """``optim.AdamW``: Adam with decoupled weight decay (default 1e-2)."""

    decoupled = True

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False, foreach=None,
                 capturable: bool = False, differentiable: bool = False, fused=None) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)
