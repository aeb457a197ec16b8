"""Learning-rate schedulers that change ``optimizer.param_groups`` between steps, as PyTorch's do.

A compiled step reads the learning rate (and the momentum) at every call, so a scheduler's change
takes effect at the next step without recompiling. Each scheduler computes in Python floats with
PyTorch's formulas in PyTorch's order of operations (the chained, recursive forms in ``step()``,
the closed forms for the deprecated ``step(epoch)``), so its learning rates equal PyTorch's bit
for bit; ``state_dict()`` has PyTorch's keys, so a state saved by either loads into the other.

This module holds the schedules of epochs and exports every scheduler, as PyTorch's does; the base
class is in ``lr_scheduler_base``, ``OneCycleLR`` and ``ReduceLROnPlateau`` in
``lr_scheduler_onecycle_plateau``.
"""
from __future__ import annotations

import copy
import math
import types
from bisect import bisect_right
from collections import Counter
from collections.abc import Mapping
from typing import Any, Callable, Iterable

from graphnn.checkpoint import StateDictError
from graphnn.optim.lr_scheduler_base import LRScheduler, _check_optimizer, _values
from graphnn.optim.lr_scheduler_onecycle_plateau import OneCycleLR, ReduceLROnPlateau
from graphnn.optim.optimizer import Optimizer, check_like

__all__ = ["LRScheduler", "LambdaLR", "StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "LinearLR",
           "OneCycleLR", "ReduceLROnPlateau"]


class LambdaLR(LRScheduler):
    """Scale each group's initial learning rate by a function of the epoch::

        lr_t = base_lr * lr_lambda(t)

    ``lr_lambda`` is one function or a list of one per group. Like PyTorch, ``state_dict()`` saves
    no plain function or lambda, only the attributes of callable objects."""

    def __init__(self, optimizer: Optimizer, lr_lambda: Callable[[int], float] | list, last_epoch: int = -1) -> None:
        _check_optimizer(optimizer)
        groups = len(optimizer.param_groups)
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != groups:
                raise ValueError(f"Expected {groups} lr_lambdas, but got {len(lr_lambda)}")
            self.lr_lambdas = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * groups
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [base_lr * f(self.last_epoch) for f, base_lr in zip(self.lr_lambdas, self.base_lrs, strict=True)]

    def state_dict(self) -> dict:
        state = {key: copy.deepcopy(value) for key, value in self.__dict__.items()
                 if key not in ("optimizer", "lr_lambdas")}
        state["lr_lambdas"] = [None if isinstance(f, types.FunctionType) else f.__dict__.copy()
                               for f in self.lr_lambdas]
        return state

    def _check_entry(self, key: str, value: Any, reference: Any) -> None:
        if key != "lr_lambdas":
            return super()._check_entry(key, value, reference)
        check_like("'lr_lambdas'", value, reference)
        for k, (saved, f) in enumerate(zip(value, self.lr_lambdas)):
            if saved is not None and not (isinstance(saved, Mapping) and hasattr(f, "__dict__")):
                raise StateDictError(f"'lr_lambdas'[{k}]: expected None or the attributes of a callable object, "
                                     f"got {saved!r}")

    def _commit(self, values: dict) -> None:
        values = dict(values)
        saved = values.pop("lr_lambdas")
        super()._commit(values)
        for f, attributes in zip(self.lr_lambdas, saved):
            if attributes is not None:
                f.__dict__.update(attributes)


class StepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs::

        lr_t = lr_{t-1} * gamma   if t > 0 and t % step_size == 0, else lr_{t-1}
    """

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1) -> None:
        if step_size == 0:  # PyTorch fails at the first step() with a ZeroDivisionError
            raise ValueError(f"step_size should be a nonzero integer, but got step_size={step_size!r}")
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return _values(self.optimizer)
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]

    def _closed_form_lr(self) -> list[float]:
        return [base_lr * self.gamma ** (self.last_epoch // self.step_size) for base_lr in self.base_lrs]

    def _check_values(self, values: dict) -> None:
        if values["step_size"] == 0:
            raise StateDictError("'step_size': expected a nonzero number, got 0")


class MultiStepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` at each milestone (by ``gamma ** n`` at one listed n times)::

        lr_t = lr_{t-1} * gamma ** milestones.count(t)
    """

    def __init__(self, optimizer: Optimizer, milestones: Iterable[int], gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        self.milestones = Counter(milestones)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch not in self.milestones:
            return _values(self.optimizer)
        return [group["lr"] * self.gamma ** self.milestones[self.last_epoch] for group in self.optimizer.param_groups]

    def _closed_form_lr(self) -> list[float]:
        passed = bisect_right(sorted(self.milestones.elements()), self.last_epoch)
        return [base_lr * self.gamma ** passed for base_lr in self.base_lrs]

    def _check_entry(self, key: str, value: Any, reference: Any) -> None:
        if key != "milestones":
            return super()._check_entry(key, value, reference)
        if not isinstance(value, Mapping):
            raise StateDictError(f"'milestones': expected a dict of epoch -> count, got a {type(value).__name__}")
        for epoch, count in value.items():
            check_like(f"'milestones'[{epoch!r}]", epoch, 0)
            check_like(f"'milestones'[{epoch!r}]", count, 0)

    def _commit(self, values: dict) -> None:
        super()._commit({**values, "milestones": Counter(values["milestones"])})


class ExponentialLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every epoch::

        lr_t = lr_{t-1} * gamma
    """

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self._is_initial:  # resuming at last_epoch > 0 must not advance the rate once more
            return _values(self.optimizer)
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]

    def _closed_form_lr(self) -> list[float]:
        return [base_lr * self.gamma ** self.last_epoch for base_lr in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """Anneal the learning rate from ``base_lr`` to ``eta_min`` along half a cosine over ``T_max``
    epochs (and back up over the next ``T_max``, without restarts)::

        lr_t = eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2

    ``step()`` applies it recursively, as PyTorch does, so outside changes to ``lr`` carry on::

        lr_t = eta_min + (lr_{t-1} - eta_min) * (1 + cos(pi * t / T_max)) / (1 + cos(pi * (t - 1) / T_max))
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        if T_max == 0:  # PyTorch fails at the first step() with a ZeroDivisionError
            raise ValueError(f"T_max should be a nonzero number of epochs, but got T_max={T_max!r}")
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        t, period, eta_min = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return _values(self.optimizer)
        if self._step_count == 1 and t > 0:  # the first step of a scheduler resumed at last_epoch
            return [eta_min + (base_lr - eta_min) * (1 + math.cos(t * math.pi / period)) / 2
                    for base_lr in self.base_lrs]
        if (t - 1 - period) % (2 * period) == 0:  # leaving the minimum, where the ratio is 0/0
            return [group["lr"] + (base_lr - eta_min) * (1 - math.cos(math.pi / period)) / 2
                    for base_lr, group in zip(self.base_lrs, self.optimizer.param_groups, strict=True)]
        return [(1 + math.cos(math.pi * t / period)) / (1 + math.cos(math.pi * (t - 1) / period))
                * (group["lr"] - eta_min) + eta_min for group in self.optimizer.param_groups]

    def _closed_form_lr(self) -> list[float]:
        return [self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
                for base_lr in self.base_lrs]

    def _check_values(self, values: dict) -> None:
        if values["T_max"] == 0:
            raise StateDictError("'T_max': expected a nonzero number, got 0")


class LinearLR(LRScheduler):
    """Scale the learning rate by a factor going linearly from ``start_factor`` to ``end_factor``
    over ``total_iters`` epochs, then constant::

        lr_t = base_lr * (start_factor + (end_factor - start_factor) * min(t, total_iters) / total_iters)

    ``step()`` applies it recursively, as PyTorch does::

        lr_t = lr_{t-1} * (1 + (end_factor - start_factor)
                               / (total_iters * start_factor + (t - 1) * (end_factor - start_factor)))
    """

    def __init__(self, optimizer: Optimizer, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5, last_epoch: int = -1) -> None:
        if start_factor > 1.0 or start_factor <= 0:
            raise ValueError("Starting multiplicative factor expected to be greater than 0 and less or equal to 1.")
        if end_factor > 1.0 or end_factor < 0:
            raise ValueError("Ending multiplicative factor expected to be between 0 and 1.")
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch == 0:
            return [group["lr"] * self.start_factor for group in self.optimizer.param_groups]
        if self._is_initial or self.last_epoch > self.total_iters:
            return _values(self.optimizer)
        change = self.end_factor - self.start_factor
        factor = 1.0 + change / (self.total_iters * self.start_factor + (self.last_epoch - 1) * change)
        return [group["lr"] * factor for group in self.optimizer.param_groups]

    def _closed_form_lr(self) -> list[float]:
        change = self.end_factor - self.start_factor
        return [base_lr * (self.start_factor + change * min(self.total_iters, self.last_epoch) / self.total_iters)
                for base_lr in self.base_lrs]
