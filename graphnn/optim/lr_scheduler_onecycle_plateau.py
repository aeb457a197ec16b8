"""The learning-rate schedulers that do not follow a schedule of epochs: ``OneCycleLR``, stepped
after every batch (and moving the momentum too), and ``ReduceLROnPlateau``, stepped with a metric.
Both are exported by ``graphnn.optim.lr_scheduler``, where PyTorch's users import them from."""
from __future__ import annotations

import math
import warnings
from typing import Any

from graphnn.checkpoint import StateDictError
from graphnn.optim.lr_scheduler_base import (_EPOCH_DEPRECATED, LRScheduler, _check_kind, _check_optimizer, _per_group,
                                             _values)
from graphnn.optim.optimizer import Optimizer, check_like


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
