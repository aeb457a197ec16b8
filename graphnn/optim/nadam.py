"""NAdam, PyTorch's single-tensor update (torch/optim/nadam.py), defined once in sympy.

With g the gradient (negated when maximize), p the parameter, m and v the moments, t the step
count after this step and P the running product of the momentum coefficients (``mu_product``)::

    mu_t = beta1 * (1 - 0.5 * 0.96**(t * momentum_decay))
    P = P * mu_t                                   (in float32, as PyTorch keeps it)
    p = p * (1 - lr * weight_decay)                decoupled weight decay
    g = g + weight_decay * p                       otherwise
    m = lerp(m, g, 1 - beta1)
    v = beta2 * v + (1 - beta2) * g * g
    d = sqrt(v / (1 - beta2**t)) + eps
    p = p - lr * (1 - mu_t) / (1 - P) * g / d
    p = p - lr * mu_{t+1} / (1 - P * mu_{t+1}) * m / d

The coefficients of g and m (from the float32 P, in double), ``1 - beta2**t``, ``1 - beta1``,
``1 - beta2`` and ``1 - lr * weight_decay`` are computed on the host, as PyTorch computes them,
and reach the update as run-time scalars; maximize, whether there is weight decay and whether it
is decoupled are compiled in. ``step`` and ``mu_product`` are the counters kept in ``state``:
the first goes up by one a step, the second is multiplied by mu_t.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import sympy

from graphnn.optim.adam import check_adam_hypers
from graphnn.optim.optimizer import PARAM, Optimizer, check_nonnegative, gradient, lerp, symbols

(exp_avg, exp_avg_sq, lerp_weight, beta2, undecayed, correction2, eps, grad_step, avg_step, scaled_grad,
 denom) = symbols("exp_avg exp_avg_sq lerp_weight beta2 one_minus_beta2 correction2 eps grad_step avg_step "
                  "scaled_grad denom")


def _mu(beta1: float, momentum_decay: float, t: float) -> float:
    """The momentum coefficient of step t, in double."""
    return beta1 * (1.0 - 0.5 * 0.96 ** (t * momentum_decay))


class NAdam(Optimizer):
    """``optim.NAdam(params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
    momentum_decay=4e-3, decoupled_weight_decay=False, *, foreach=None, maximize=False,
    capturable=False, differentiable=False)`` (``foreach``, ``capturable`` and ``differentiable``
    are kept in the groups, as PyTorch keeps them; the update is compiled either way)."""

    slots = ("exp_avg", "exp_avg_sq")
    counters = ("step", "mu_product")
    scalars = ("lerp_weight", "beta2", "one_minus_beta2", "correction2", "eps", "weight_decay", "decay",
               "grad_step", "avg_step")

    def __init__(self, params: Iterable, lr: float = 2e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, momentum_decay: float = 4e-3, decoupled_weight_decay: bool = False, *,
                 foreach=None, maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False) -> None:
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      momentum_decay=momentum_decay, decoupled_weight_decay=decoupled_weight_decay,
                                      maximize=maximize, foreach=foreach, capturable=capturable,
                                      differentiable=differentiable))

    def _check_hypers(self, group: dict) -> None:
        check_adam_hypers(group)
        check_nonnegative(group, ("momentum_decay", "momentum_decay value"))

    def flags(self, group: dict) -> tuple:
        return bool(group["maximize"]), group["weight_decay"] != 0, bool(group["decoupled_weight_decay"])

    def next_counters(self, group: dict, state: dict) -> tuple:
        """``step`` + 1, and ``mu_product`` (1 before the first step) times mu_t, both in float32."""
        t = float(state.get("step", 0.0)) + 1.0
        mu = _mu(group["betas"][0], group["momentum_decay"], t)
        return t, float(np.float32(state.get("mu_product", 1.0)) * np.float32(mu))

    def scalar_values(self, group: dict, state: dict) -> tuple:
        (beta1, beta2_), lr, decay_ = group["betas"], group["lr"], group["weight_decay"]
        t, product = self.next_counters(group, state)
        mu, mu_next = _mu(beta1, group["momentum_decay"], t), _mu(beta1, group["momentum_decay"], t + 1)
        return (1 - beta1, beta2_, 1 - beta2_, 1 - beta2_**t, group["eps"], decay_, 1 - lr * decay_,
                -lr * (1.0 - mu) / (1.0 - product), (-lr * mu_next) / (1.0 - product * mu_next))

    @classmethod
    def update(cls, flags: tuple) -> list:
        maximize, decays, decoupled = flags
        steps = []
        g = gradient(steps, maximize, decays, decoupled)
        steps += [("exp_avg", lerp(exp_avg, g, lerp_weight)),
                  ("scaled_grad", undecayed * g),  # addcmul's order: ((1 - beta2) * g) * g
                  ("exp_avg_sq", exp_avg_sq * beta2 + scaled_grad * g),
                  ("denom", sympy.sqrt(exp_avg_sq / correction2) + eps),
                  ("param", PARAM + grad_step * g / denom),
                  ("param", PARAM + avg_step * exp_avg / denom)]
        return steps
