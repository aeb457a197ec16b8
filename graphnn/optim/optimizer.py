"""The optimizer base: parameter groups, per-parameter state and (de)serialisation, as in PyTorch."""
from __future__ import annotations

import copy
from typing import Any, Iterable

import numpy as np

from graphnn import flat
from graphnn.flat import FlatBuffer, flatten_parameters


class Optimizer:
    """Holds ``param_groups`` (dicts whose hyperparameters may change between steps) and ``state``.

    Parameters live in one flat buffer; gradients in a second, per-parameter views of which
    become ``p.grad``.
    """

    defaults: dict

    def __init__(self, params: Iterable, defaults: dict) -> None:
        self.defaults = dict(defaults)
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.param_groups: list[dict] = []
        self._state: dict[Any, dict] = {}
        self.state_version = 0  # changes whenever ``state`` does, so compiled steps re-read it
        for group in groups:
            self.add_param_group(group)
        self._flatten()

    def add_param_group(self, param_group: dict) -> None:
        group = dict(param_group)
        params = group["params"]
        group["params"] = [params] if hasattr(params, "_rebind") else list(params)
        for p in group["params"]:
            if not hasattr(p, "_rebind"):
                raise TypeError(f"optimizer can only optimize Parameters, got {type(p).__name__}")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in group["params"]):
            raise ValueError("some parameters appear in more than one parameter group")
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self.param_groups.append(group)
        if hasattr(self, "grads"):
            self._flatten()

    def _flatten(self) -> None:
        params = self.params
        self.flat_params = flatten_parameters(params)
        self.grads = FlatBuffer([p.shape for p in params])  # behind p.grad
        self.step_grads = FlatBuffer([p.shape for p in params])  # a compiled step's own gradients
        self.layout_version = getattr(self, "layout_version", 0) + 1

    @property
    def state(self) -> dict:
        """Per-parameter state (PyTorch's ``optimizer.state``); its arrays are views of flat
        buffers, brought back from a device first when one holds them."""
        for array in self._state_arrays():
            flat.host_access(array)
        return self._state

    @state.setter
    def state(self, value: dict) -> None:
        self._state = value

    def _state_arrays(self) -> list:
        """The flat arrays behind ``state`` (none here; SGD's momentum buffer)."""
        return []

    def structure(self) -> tuple:
        """The choices compiled into a step's update (not run-time scalars): a change rebuilds it."""
        return ()

    def settings(self) -> tuple:
        """Everything a compiled step reads from the optimizer besides its buffers: each group's
        hyperparameters and the state's version. Compiled steps repeat while this is unchanged."""
        return (self.state_version, *(tuple(g[h] for h in self.defaults) for g in self.param_groups))

    @property
    def params(self) -> list:
        return [p for g in self.param_groups for p in g["params"]]

    def group_of(self, p: Any) -> int:
        for k, g in enumerate(self.param_groups):
            if any(q is p for q in g["params"]):
                return k
        raise KeyError("parameter is not optimised by this optimizer")

    def grad_view(self, p: Any) -> np.ndarray:
        """The slot in the flat gradient buffer for parameter ``p``."""
        for q, view in zip(self.params, self.grads.views):
            if q is p:
                return view
        raise KeyError("parameter is not optimised by this optimizer")

    def flat_storage(self, named: dict) -> dict:
        """Where a compiled step finds each parameter (and its gradient) in the flat buffers:
        name -> (buffer, offset, buffer size, kind), for the parameters named in ``named``."""
        names = {id(p): n for n, p in named.items()}
        store = flat.store_of(self.params)  # None when a later optimizer moved some of them
        storage = {}
        for p, offset in zip(self.params, self.step_grads.offsets):
            name = names.get(id(p))
            if name is None:
                continue
            if store is not None:
                storage[name] = ("flat.params", store.offset_of(p.data), store.offsets[-1], "param")
            storage[f"grad.{name}"] = ("flat.step_grads", offset, self.step_grads.offsets[-1], "grad")
        return storage

    def persistent(self, named: dict) -> dict:
        """Getters for the arrays a compiled step reads and writes, by leaf or buffer name (a
        parameter's slot in the step's gradient buffer is ``grad.<name>``)."""
        getters = {"flat.params": lambda: self.params[0]._flat.array, "flat.step_grads": lambda: self.step_grads.array}
        names = {id(p): n for n, p in named.items()}
        for p, view in zip(self.params, self.step_grads.views):
            if id(p) in names:
                getters[f"grad.{names[id(p)]}"] = lambda view=view: view
        return getters

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if p.grad is not None:
                if set_to_none:
                    p.grad = None
                else:
                    p.grad[...] = 0

    def state_dict(self) -> dict:
        """{'state': {index: {...}}, 'param_groups': [{..., 'params': [indices]}]} as in PyTorch."""
        index = {id(p): k for k, p in enumerate(self.params)}
        groups = []
        for g in self.param_groups:
            packed = {k: v for k, v in g.items() if k != "params"}
            packed["params"] = [index[id(p)] for p in g["params"]]
            groups.append(packed)
        state = {index[id(p)]: {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
                 for p, s in self._state_items() if id(p) in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups) or any(
            len(a["params"]) != len(b["params"]) for a, b in zip(groups, self.param_groups)
        ):
            raise ValueError("loaded state dict has a different number of parameter groups or parameters")
        params = self.params
        for saved, group in zip(groups, self.param_groups):
            for key, value in saved.items():
                if key != "params":
                    group[key] = copy.deepcopy(value)
        self._load_state({params[int(k)]: v for k, v in state_dict["state"].items()})

    def _state_items(self):
        state = self.state
        return [(p, state[p]) for p in self.params if p in state]

    def _load_state(self, state: dict) -> None:
        self._state = {p: dict(s) for p, s in state.items()}
        self.state_version += 1

    def __repr__(self) -> str:
        text = type(self).__name__ + " ("
        for k, group in enumerate(self.param_groups):
            text += f"\nParameter Group {k}"
            for key in sorted(group):
                if key != "params":
                    text += f"\n    {key}: {group[key]}"
        return text + "\n)"
