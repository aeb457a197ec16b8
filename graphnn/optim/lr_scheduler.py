"""Learning-rate schedulers that change ``optimizer.param_groups`` between steps, as PyTorch's do.

A compiled step reads the learning rate at every call, so a scheduler's change takes effect at
the next step without recompiling.
"""
from __future__ import annotations

import copy
from typing import Any, Callable

from graphnn.optim.optimizer import check_keys, check_like, plain


class LRScheduler:
    """Base class: keeps ``base_lrs`` and ``last_epoch``; ``step()`` sets each group's ``lr``."""

    def __init__(self, optimizer: Any, last_epoch: int = -1) -> None:
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()

    def get_lr(self) -> list[float]:  # pragma: no cover - overridden
        raise NotImplementedError

    def step(self) -> None:
        self.last_epoch += 1
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        return list(self._last_lr)

    def state_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a ``state_dict()``; a state that does not fit raises StateDictError and changes nothing."""
        self.prepare_load(state_dict)()

    def prepare_load(self, state_dict: Any) -> Callable[[], None]:
        """Check ``state_dict`` against this scheduler (the same keys, each value of the kind and
        length of the current one); returns the function that loads it, which cannot fail."""
        own = self.state_dict()
        check_keys(f"the {type(self).__name__} state dict", state_dict, tuple(own), tuple(own))
        values = {}
        for key, value in state_dict.items():
            check_like(f"{key!r}", value, own[key])
            values[key] = copy.deepcopy(plain(value))
        return lambda: self.__dict__.update(values)


class StepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` calls of ``step()``."""

    def __init__(self, optimizer: Any, step_size: int, gamma: float = 0.1, last_epoch: int = -1) -> None:
        self.step_size, self.gamma = int(step_size), float(gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        # PyTorch's chained form: the current lr, times gamma at each multiple of step_size
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return [group["lr"] for group in self.optimizer.param_groups]
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]
