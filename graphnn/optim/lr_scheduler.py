"""Learning-rate schedulers that change ``optimizer.param_groups`` between steps, as PyTorch's do.

A compiled step reads the learning rate (and the momentum) at every call, so a scheduler's change
takes effect at the next step without recompiling. Each scheduler computes in Python floats with
PyTorch's formulas in PyTorch's order of operations (the chained, recursive forms in ``step()``,
the closed forms for the deprecated ``step(epoch)``), so its learning rates equal PyTorch's bit
for bit; ``state_dict()`` has PyTorch's keys, so a state saved by either loads into the other.
"""
from __future__ import annotations

import copy
import math
import numbers
import types
import warnings
from bisect import bisect_right
from collections import Counter
from collections.abc import Mapping
from typing import Any, Callable, Iterable

import numpy as np

from graphnn.checkpoint import StateDictError
from graphnn.optim.optimizer import Optimizer, check_keys, check_like

__all__ = ["LRScheduler", "LambdaLR", "StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "LinearLR",
           "OneCycleLR", "ReduceLROnPlateau"]

_EPOCH_DEPRECATED = ("passing an epoch to scheduler.step() is deprecated, as in PyTorch: it sets last_epoch and "
                     "uses the closed form where there is one; call step() without arguments")


def _check_optimizer(optimizer: Any) -> None:
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")


def _values(optimizer: Optimizer, key: str = "lr") -> list:
    return [group[key] for group in optimizer.param_groups]


def _per_group(name: str, optimizer: Optimizer, value: Any) -> list:
    """``value`` once per parameter group, or a list or tuple that already has one value per group."""
    groups = len(optimizer.param_groups)
    if isinstance(value, (list, tuple)):
        if len(value) != groups:
            raise ValueError(f"{name} must have the same length as optimizer.param_groups. "
                             f"{name} has {len(value)} values, param_groups has {groups}.")
        return list(value)
    return [value] * groups


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars (how numbers may come back from a checkpoint) as Python's."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "biuf":
        return value.item()
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return value.item()
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(item) for item in value)
    return value


def _check_kind(where: str, value: Any, reference: Any) -> None:
    """``value`` is of ``reference``'s kind: a bool, a real number (int or float alike), a string,
    a list of as many items or a dict of the same keys whose items are; other references take anything."""
    if isinstance(reference, Mapping):
        if not isinstance(value, Mapping) or set(value) != set(reference):
            got = f"the keys {list(value)}" if isinstance(value, Mapping) else f"a {type(value).__name__}"
            raise StateDictError(f"{where}: expected a dict with the keys {list(reference)}, got {got}")
        for key, item in reference.items():
            _check_kind(f"{where}[{key!r}]", value[key], item)
    elif isinstance(reference, (list, tuple)):
        check_like(where, value, [None] * len(reference))
        for k, (item, ref) in enumerate(zip(value, reference)):
            _check_kind(f"{where}[{k}]", item, ref)
    elif isinstance(reference, str):
        if not isinstance(value, str):
            raise StateDictError(f"{where}: expected a string, got {value!r} ({type(value).__name__})")
    elif isinstance(reference, numbers.Real) and not isinstance(reference, (bool, np.bool_)):
        check_like(where, value, 0.0)
    else:
        check_like(where, value, reference)


class LRScheduler:
    """Base class: keeps ``base_lrs`` (each group's ``initial_lr``) and ``last_epoch``; ``step()``
    adds one to ``last_epoch`` and sets each group's ``lr`` to ``get_lr()``."""

    _is_initial = False  # true during the step the constructor takes
    _get_lr_called_within_step = False  # kept because PyTorch's state dicts hold it
    _integer_keys: tuple = ("last_epoch", "_step_count")
    _optional_keys: tuple = ("_is_initial", "_get_lr_called_within_step")  # older PyTorch lacks them

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        _check_optimizer(optimizer)
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for k, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(f"param 'initial_lr' is not specified in param_groups[{k}] when resuming "
                                   "scheduler with last_epoch >= 0 (load the optimizer's state first)")
        self.base_lrs = _values(optimizer, "initial_lr")
        self.last_epoch = last_epoch
        self._initial_step()

    def _initial_step(self) -> None:
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self) -> list[float]:  # pragma: no cover - overridden
        """The learning rates for ``last_epoch``, one per parameter group."""
        raise NotImplementedError

    def step(self, epoch: int | None = None) -> None:
        """Advance one epoch (or batch) and set each group's ``lr``; call after ``optimizer.step()``."""
        self._step_count += 1
        self._get_lr_called_within_step = True
        try:
            if epoch is None:
                self.last_epoch += 1
                values = self.get_lr()
            else:
                warnings.warn(_EPOCH_DEPRECATED, UserWarning, stacklevel=2)
                self.last_epoch = epoch
                closed_form = getattr(self, "_closed_form_lr", None)
                values = closed_form() if closed_form is not None else self.get_lr()
        finally:
            self._get_lr_called_within_step = False
        for group, lr in zip(self.optimizer.param_groups, values, strict=True):
            group["lr"] = lr
        self._last_lr = _values(self.optimizer)

    def get_last_lr(self) -> list[float]:
        """The learning rates the last ``step()`` set, one per parameter group."""
        return list(self._last_lr)

    def state_dict(self) -> dict:
        """Every attribute but the optimizer, under PyTorch's names."""
        return {key: copy.deepcopy(value) for key, value in self.__dict__.items() if key != "optimizer"}

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a ``state_dict()`` (this scheduler's or PyTorch's); a state that does not fit raises
        StateDictError and changes nothing."""
        self.prepare_load(state_dict)()

    def prepare_load(self, state_dict: Any) -> Callable[[], None]:
        """Check ``state_dict`` against this scheduler (the same keys, each value of the kind and
        length of the current one, values the scheduler can run with); returns the function that
        loads it, which cannot fail."""
        own = self.state_dict()
        required = tuple(key for key in own if key not in self._optional_keys)
        check_keys(f"the {type(self).__name__} state dict", state_dict, required, tuple(own))
        values = {key: _plain(copy.deepcopy(value)) for key, value in state_dict.items()}
        for key, value in values.items():
            if key in self._integer_keys:
                check_like(repr(key), value, 0)
            else:
                self._check_entry(key, value, own[key])
        self._check_values(values)
        return lambda: self._commit(values)

    def _check_entry(self, key: str, value: Any, reference: Any) -> None:
        _check_kind(repr(key), value, reference)

    def _check_values(self, values: dict) -> None:
        """Raise StateDictError for a loaded state this scheduler could not run with."""

    def _commit(self, values: dict) -> None:
        self.__dict__.update(values)


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


class OneCycleLR(LRScheduler):
    """The 1cycle policy, stepped after every batch: the learning rate rises from
    ``initial_lr = max_lr / div_factor`` to ``max_lr`` over the first ``pct_start`` of
    ``total_steps``, then falls to ``min_lr = initial_lr / final_div_factor``; momentum (or
    ``betas[0]`` for groups of an optimizer with ``betas``) moves the opposite way between
    ``max_momentum`` and ``base_momentum``. Within a phase from step s0 to s1, with
    pct = (t - s0) / (s1 - s0)::

        cos:    value = end + (start - end) / 2 * (cos(pi * pct) + 1)
        linear: value = (end - start) * pct + start

    Phases (two, or three with ``three_phase``, as in PyTorch) end at steps
    ``pct_start * total_steps - 1``, [``2 * pct_start * total_steps - 2``,] ``total_steps - 1``.
    Each group gets ``initial_lr``, ``max_lr``, ``min_lr`` (and ``max_momentum``, ``base_momentum``) keys.
    """

    _integer_keys = LRScheduler._integer_keys + ("total_steps",)
    _phase_keys = ("initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum")

    def __init__(self, optimizer: Optimizer, max_lr: float | list[float], total_steps: int | None = None,
                 epochs: int | None = None, steps_per_epoch: int | None = None, pct_start: float = 0.3,
                 anneal_strategy: str = "cos", cycle_momentum: bool = True,
                 base_momentum: float | list[float] = 0.85, max_momentum: float | list[float] = 0.95,
                 div_factor: float = 25.0, final_div_factor: float = 1e4, three_phase: bool = False,
                 last_epoch: int = -1) -> None:
        _check_optimizer(optimizer)
        self.optimizer = optimizer
        if total_steps is not None:
            if total_steps <= 0 or not isinstance(total_steps, int):
                raise ValueError(f"Expected positive integer total_steps, but got {total_steps}")
            self.total_steps = total_steps
        elif epochs is not None and steps_per_epoch is not None:
            if not isinstance(epochs, int) or epochs <= 0:
                raise ValueError(f"Expected positive integer epochs, but got {epochs}")
            if not isinstance(steps_per_epoch, int) or steps_per_epoch <= 0:
                raise ValueError(f"Expected positive integer steps_per_epoch, but got {steps_per_epoch}")
            self.total_steps = epochs * steps_per_epoch
        else:
            raise ValueError("You must define either total_steps OR (epochs AND steps_per_epoch)")
        up = ("initial_lr", "max_lr", "max_momentum", "base_momentum")
        if three_phase:
            phases = [(float(pct_start * self.total_steps) - 1, *up),
                      (float(2 * pct_start * self.total_steps) - 2, "max_lr", "initial_lr", "base_momentum",
                       "max_momentum"),
                      (self.total_steps - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum")]
        else:
            phases = [(float(pct_start * self.total_steps) - 1, *up),
                      (self.total_steps - 1, "max_lr", "min_lr", "base_momentum", "max_momentum")]
        self._schedule_phases = [dict(zip(("end_step", "start_lr", "end_lr", "start_momentum", "end_momentum"), phase))
                                 for phase in phases]
        if pct_start < 0 or pct_start > 1 or not isinstance(pct_start, float):
            raise ValueError(f"Expected float between 0 and 1 pct_start, but got {pct_start}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy must be one of 'cos' or 'linear', instead got {anneal_strategy}")
        self._anneal_func_type = anneal_strategy

        max_lrs = _per_group("max_lr", optimizer, max_lr)
        if last_epoch == -1:
            for group, peak in zip(optimizer.param_groups, max_lrs):
                group["initial_lr"] = peak / div_factor
                group["max_lr"] = peak
                group["min_lr"] = group["initial_lr"] / final_div_factor

        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
                raise ValueError("optimizer must support momentum or beta1 with `cycle_momentum` option enabled")
            self.use_beta1 = "betas" in optimizer.defaults
            highs = _per_group("max_momentum", optimizer, max_momentum)
            lows = _per_group("base_momentum", optimizer, base_momentum)
            if last_epoch == -1:
                for high, low, group in zip(highs, lows, optimizer.param_groups, strict=True):
                    self._set_momentum(group, high)
                    group["max_momentum"] = high
                    group["base_momentum"] = low
        super().__init__(optimizer, last_epoch)

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self._anneal_func_type == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def _set_momentum(self, group: dict, value: float) -> None:
        if self.use_beta1:
            group["betas"] = (value, *group["betas"][1:])
        else:
            group["momentum"] = value

    def get_lr(self) -> list[float]:
        """The learning rates at ``last_epoch``; with ``cycle_momentum``, also sets each group's momentum."""
        t = self.last_epoch
        if t > self.total_steps:
            raise ValueError(f"Tried to step {t} times. The specified number of total steps is {self.total_steps}")
        lrs = []
        for group in self.optimizer.param_groups:
            start = 0.0
            for k, phase in enumerate(self._schedule_phases):
                end = phase["end_step"]
                if t <= end or k == len(self._schedule_phases) - 1:
                    pct = (t - start) / (end - start)
                    lrs.append(self._anneal(group[phase["start_lr"]], group[phase["end_lr"]], pct))
                    if self.cycle_momentum:
                        self._set_momentum(group, self._anneal(group[phase["start_momentum"]],
                                                               group[phase["end_momentum"]], pct))
                    break
                start = end
        return lrs

    def _check_entry(self, key: str, value: Any, reference: Any) -> None:
        if key != "_schedule_phases":
            return super()._check_entry(key, value, reference)
        if not isinstance(value, (list, tuple)) or len(value) not in (2, 3):
            raise StateDictError(f"'_schedule_phases': expected a list of 2 or 3 phases, got {value!r}")
        for k, phase in enumerate(value):
            _check_kind(f"'_schedule_phases'[{k}]", phase, reference[0])
            for name, item in phase.items():
                if name != "end_step" and item not in self._phase_keys:
                    raise StateDictError(f"'_schedule_phases'[{k}][{name!r}]: expected one of "
                                         f"{list(self._phase_keys)}, got {item!r}")

    def _check_values(self, values: dict) -> None:
        strategy = values["_anneal_func_type"]
        if strategy not in ("cos", "linear"):
            raise StateDictError(f"'_anneal_func_type': expected 'cos' or 'linear', got {strategy!r}")


class ReduceLROnPlateau(LRScheduler):
    """Multiply the learning rate by ``factor`` when a metric has not improved for more than
    ``patience`` epochs; ``step(metrics)`` takes the epoch's metric. With ``best`` the best value so far::

        improved = metric < best * (1 - threshold)   mode "min", threshold_mode "rel"
                   metric < best - threshold         mode "min", threshold_mode "abs"
                   metric > best * (1 + threshold)   mode "max", threshold_mode "rel"
                   metric > best + threshold         mode "max", threshold_mode "abs"
        lr = max(lr * factor, min_lr), kept when it would change by eps or less

    After a reduction, ``cooldown`` epochs pass before bad epochs are counted again.
    """

    _integer_keys = LRScheduler._integer_keys + ("cooldown_counter", "num_bad_epochs")

    def __init__(self, optimizer: Optimizer, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_lr: list[float] | float = 0, eps: float = 1e-8) -> None:
        if factor >= 1.0:
            raise ValueError("Factor should be < 1.0.")
        self.factor = factor
        _check_optimizer(optimizer)
        self.optimizer = optimizer
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != len(optimizer.param_groups):
                raise ValueError(f"expected {len(optimizer.param_groups)} min_lrs, got {len(min_lr)}")
            self.default_min_lr = None
            self.min_lrs = list(min_lr)
        else:
            self.default_min_lr = min_lr
            self.min_lrs = [min_lr] * len(optimizer.param_groups)
        self.patience = patience
        self.cooldown = cooldown
        self.eps = eps
        self.last_epoch = 0
        self._last_lr = _values(optimizer)
        self._init_is_better(mode, threshold, threshold_mode)
        self._reset()

    def _init_is_better(self, mode: str, threshold: float, threshold_mode: str) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode {mode} is unknown!")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold mode {threshold_mode} is unknown!")
        self.mode_worse = math.inf if mode == "min" else -math.inf
        self.mode = mode
        self.threshold = threshold
        self.threshold_mode = threshold_mode

    def _reset(self) -> None:
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def _is_better(self, a: float, best: float) -> bool:
        """Whether metric ``a`` improves on ``best`` by more than the threshold."""
        if self.mode == "min":
            return a < best * (1.0 - self.threshold) if self.threshold_mode == "rel" else a < best - self.threshold
        return a > best * (self.threshold + 1.0) if self.threshold_mode == "rel" else a > best + self.threshold

    def step(self, metrics: Any, epoch: int | None = None) -> None:  # type: ignore[override]
        """Record the epoch's metric (a number, or an array of one) and reduce the rates if it stalled."""
        current = float(metrics)
        if epoch is None:
            epoch = self.last_epoch + 1
        else:
            warnings.warn(_EPOCH_DEPRECATED, UserWarning, stacklevel=2)
        self.last_epoch = epoch
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs in the cooldown do not count
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = _values(self.optimizer)

    def _reduce_lr(self) -> None:
        groups = self.optimizer.param_groups
        if len(groups) != len(self.min_lrs):
            if self.default_min_lr is None:
                raise RuntimeError(f"The number of param groups in the `optimizer` ({len(groups)}) differs from when "
                                   f"`ReduceLROnPlateau` was initialized ({len(self.min_lrs)}), usually due to a new "
                                   "param group being added to the optimizer. Please modify the `min_lrs` field to "
                                   "match the length of the `optimizer` param groups.")
            self.min_lrs = [self.default_min_lr] * len(groups)
        for group, min_lr in zip(groups, self.min_lrs):
            old = float(group["lr"])
            new = max(old * self.factor, min_lr)
            if old - new > self.eps:
                group["lr"] = new

    def _check_entry(self, key: str, value: Any, reference: Any) -> None:
        if key == "default_min_lr":  # None when min_lr was given per group
            if value is not None:
                check_like("'default_min_lr'", value, 0.0)
            return
        super()._check_entry(key, value, reference)

    def _check_values(self, values: dict) -> None:
        for key, allowed in (("mode", ("min", "max")), ("threshold_mode", ("rel", "abs"))):
            if values[key] not in allowed:
                raise StateDictError(f"{key!r}: expected one of {list(allowed)}, got {values[key]!r}")

    def _commit(self, values: dict) -> None:
        super()._commit(values)
        self._init_is_better(self.mode, self.threshold, self.threshold_mode)
