"""The base of the learning-rate schedulers (``LRScheduler``) and what the schedulers share:
checking the optimizer, one value per parameter group, and checking a loaded state's values
against the current ones. The schedulers themselves are in ``graphnn.optim.lr_scheduler``."""
from __future__ import annotations

import copy
import numbers
import warnings
from collections.abc import Mapping
from typing import Any, Callable

import numpy as np

from graphnn.checkpoint import StateDictError
from graphnn.optim.optimizer import Optimizer, check_keys, check_like

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
