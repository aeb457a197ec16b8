"""The optimizer base: parameter groups, per-parameter state and (de)serialisation, as in PyTorch."""
from __future__ import annotations

import copy
import numbers
from collections.abc import Mapping
from typing import Any, Callable, Iterable

import numpy as np

from graphnn import flat
from graphnn.checkpoint import StateDictError
from graphnn.flat import FlatBuffer, flatten_parameters


class Optimizer:
    """Holds ``param_groups`` (dicts whose hyperparameters may change between steps) and ``state``.

    Parameters live in one flat buffer; gradients in a second, per-parameter views of which
    become ``p.grad``.
    """

    defaults: dict
    state_keys: tuple = ()
    """The per-parameter state entries: arrays of the parameter's shape, or None."""

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
        """Load a ``state_dict()`` (this optimizer's, or PyTorch's with numpy arrays). Everything is
        checked first: a state that does not fit raises StateDictError and changes nothing."""
        self.prepare_load(state_dict)()

    def prepare_load(self, state_dict: Any) -> Callable[[], None]:
        """Check ``state_dict`` completely against this optimizer (group structure, hyperparameter
        types and values, state entries' shapes and dtypes); returns the function that loads it,
        which cannot fail."""
        check_keys("the optimizer's state dict", state_dict, ("state", "param_groups"), ("state", "param_groups"))
        groups = state_dict["param_groups"]
        if not isinstance(groups, (list, tuple)) or len(groups) != len(self.param_groups):
            got = f"{len(groups)}" if isinstance(groups, (list, tuple)) else f"a {type(groups).__name__}"
            raise StateDictError(f"loaded state dict has a different number of parameter groups: expected "
                                 f"{len(self.param_groups)}, got {got}")
        by_id: dict[int, Any] = {}  # saved parameter id -> parameter, matched by position as in PyTorch
        hypers = []
        for k, (saved, group) in enumerate(zip(groups, self.param_groups)):
            where = f"param_groups[{k}]"
            check_keys(where, saved, ("params", *self.defaults))
            ids = saved["params"]
            if not isinstance(ids, (list, tuple)) or len(ids) != len(group["params"]):
                got = f"{len(ids)}" if isinstance(ids, (list, tuple)) else f"a {type(ids).__name__}"
                raise StateDictError(f"{where} has a different number of parameters: expected "
                                     f"{len(group['params'])}, got {got}")
            for i, p in zip(ids, group["params"]):
                if not _is_int(i) or int(i) in by_id:
                    raise StateDictError(f"{where}['params']: expected distinct integer ids, got {i!r}")
                by_id[int(i)] = p
            values = {key: plain(value) for key, value in saved.items() if key != "params"}
            for key, default in self.defaults.items():  # any real number where the default is one
                numeric = isinstance(default, numbers.Real) and not isinstance(default, (bool, np.bool_))
                check_like(f"{where}[{key!r}]", values[key], 0.0 if numeric else default)
            try:
                self._check_hypers(values)
            except ValueError as error:
                raise StateDictError(f"{where}: {error}") from None
            hypers.append(copy.deepcopy(values))
        state = state_dict["state"]
        if not isinstance(state, Mapping):
            raise StateDictError(f"'state': expected a dict of per-parameter state, got a {type(state).__name__}")
        staged = {}
        for i, entries in state.items():
            where = f"state[{i!r}]"
            if not _is_int(i) or int(i) not in by_id:
                raise StateDictError(f"{where}: no parameter group lists a parameter with id {i!r}")
            check_keys(where, entries, (), self.state_keys)
            p = by_id[int(i)]
            staged[p] = {name: _state_array(f"{where}[{name!r}]", value, p.shape) for name, value in entries.items()}

        def commit() -> None:
            for group, values in zip(self.param_groups, hypers):
                group.update(values)
            self._load_state(staged)

        return commit

    def _check_hypers(self, group: dict) -> None:
        """Raise ValueError for hyperparameter values this optimizer refuses (none here)."""

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


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def plain(value: Any) -> Any:
    """A 0-d numeric array as its Python scalar (how a numpy scalar comes back from a checkpoint)."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "biuf":
        return value.item()
    return value


def check_keys(where: str, value: Any, required: tuple, allowed: tuple | None = None) -> None:
    """``value`` is a dict holding every key in ``required`` and, when ``allowed`` is given, no other."""
    if not isinstance(value, Mapping):
        raise StateDictError(f"{where}: expected a dict, got a {type(value).__name__}")
    missing = [key for key in required if key not in value]
    unexpected = [key for key in value if allowed is not None and key not in allowed]
    if missing or unexpected:
        found = f"missing {missing}" if missing else f"unexpected {unexpected}"
        wanted = f"the keys {list(required)}" if required else ""
        if allowed is not None:
            wanted = "exactly " + wanted if tuple(allowed) == tuple(required) else f"no key but {list(allowed)}"
        raise StateDictError(f"{where}: {found}; expected {wanted}")


def check_like(where: str, value: Any, reference: Any) -> None:
    """``value`` has the kind of ``reference``: a bool, an integer, a real number, or a list or
    tuple of the same length whose items do (other references accept anything)."""
    value = plain(value)
    if isinstance(reference, (bool, np.bool_)):
        ok = isinstance(value, (bool, np.bool_))
        expected = "a bool"
    elif isinstance(reference, numbers.Integral):
        ok, expected = _is_int(value), "an integer"
    elif isinstance(reference, numbers.Real):
        ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
        expected = "a real number"
    elif isinstance(reference, (list, tuple)):
        if not isinstance(value, (list, tuple)) or len(value) != len(reference):
            got = f"{len(value)} items" if isinstance(value, (list, tuple)) else f"a {type(value).__name__}"
            raise StateDictError(f"{where}: expected a list of {len(reference)} items, got {got}")
        for k, (item, ref) in enumerate(zip(value, reference)):
            check_like(f"{where}[{k}]", item, ref)
        return
    else:
        return
    if not ok:
        raise StateDictError(f"{where}: expected {expected}, got {value!r} ({type(value).__name__})")


def _state_array(where: str, value: Any, shape: tuple) -> np.ndarray | None:
    """A state entry as the float32 array it will be stored as, after checking its shape and dtype."""
    if value is None:
        return None
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise StateDictError(f"{where}: expected an array of shape {shape}, got a {type(value).__name__} "
                             f"({error})") from None
    if array.dtype.kind not in "biuf":
        raise StateDictError(f"{where}: expected an array of numbers of shape {shape}, got dtype {array.dtype}")
    if array.shape != tuple(shape):
        raise StateDictError(f"{where}: expected shape {tuple(shape)} (the parameter's), got {array.shape}")
    return array.astype(np.float32)
