"""Adagrad, PyTorch's single-tensor update (torch/optim/adagrad.py), defined once in sympy.

With g the gradient (negated when maximize), p the parameter, s the running sum of squares and
t the step count after this step::

    g = g + weight_decay * p                      with weight decay
    clr = lr / (1 + (t - 1) * lr_decay)
    s = s + g * g
    p = p - clr * g / (sqrt(s) + eps)

clr is computed on the host in double precision, as PyTorch computes it, and reaches the update
as a run-time scalar with eps and the weight decay; maximize and whether there is weight decay are
compiled in. As in PyTorch, every parameter's state (``step`` 0 and ``sum`` filled with
``initial_accumulator_value``) is created by the constructor; a parameter without state (added by
``add_param_group`` later, or left out of a loaded state dict) starts from the default
``initial_accumulator_value`` on its first step, as PyTorch's lazy initialisation does.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import sympy

from graphnn.optim.optimizer import PARAM, Optimizer, check_nonnegative, gradient, symbols

total, clr, eps, initial, initialized = symbols("sum clr eps initial_accumulator_value initialized")


class Adagrad(Optimizer):
    """``optim.Adagrad(params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0,
    eps=1e-10, foreach=None, *, maximize=False, differentiable=False, fused=None)`` (``foreach``,
    ``differentiable`` and ``fused`` are kept, as PyTorch keeps them)."""

    slots = ("sum",)
    counters = ("step",)
    scalars = ("clr", "eps", "weight_decay", "initial_accumulator_value", "initialized")

    def __init__(self, params: Iterable, lr: float = 1e-2, lr_decay: float = 0, weight_decay: float = 0,
                 initial_accumulator_value: float = 0, eps: float = 1e-10, foreach=None, *,
                 maximize: bool = False, differentiable: bool = False, fused=None) -> None:
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, foreach=foreach,
                                      maximize=maximize, differentiable=differentiable, fused=fused))
        for p in self.params:  # the constructor's value, not a group's, as in PyTorch
            view = self.slot_view("sum", p)
            view[...] = initial_accumulator_value
            self._state[p] = {"step": np.array(0.0, np.float32), "sum": view}
        self.state_version += 1

    def _check_hypers(self, group: dict) -> None:
        check_nonnegative(group, ("lr", "learning rate"), ("lr_decay", "lr_decay value"),
                          ("weight_decay", "weight_decay value"),
                          ("initial_accumulator_value", "initial_accumulator_value value"), ("eps", "epsilon value"))

    def flags(self, group: dict) -> tuple:
        return bool(group["maximize"]), group["weight_decay"] != 0

    def scalar_values(self, group: dict, state: dict) -> tuple:
        t = float(state.get("step", 0.0)) + 1.0
        started = 1.0 if state.get("sum") is not None else 0.0
        return (group["lr"] / (1 + (t - 1) * group["lr_decay"]), group["eps"], group["weight_decay"],
                self.defaults["initial_accumulator_value"], started)

    @classmethod
    def update(cls, flags: tuple) -> list:
        maximize, decays = flags
        steps = []
        g = gradient(steps, maximize, decays)
        previous = sympy.Piecewise((initial, initialized <= 0), (total, True))
        return steps + [("sum", previous + g * g), ("param", PARAM - clr * g / (sympy.sqrt(total) + eps))]
