"""The optimizer protocol: an optimizer is a declaration and one sympy update; this base owns the rest.

An optimizer subclass declares, and does nothing else:

- ``slots``: its per-parameter state arrays (SGD: ``momentum_buffer``; Adam: ``exp_avg``,
  ``exp_avg_sq``, ``max_exp_avg_sq``), each stored in one flat buffer over all parameters;
- ``counters``: per-parameter counts kept in ``state`` (Adam's ``step``), advanced after each
  step by ``next_counters(group, state)``: one more step by default (NAdam's ``mu_product`` is
  multiplied instead);
- ``scalars`` and ``scalar_values(group, state)``: the run-time scalars of a group, computed on
  the host from its hyperparameters and a parameter's state before each step (Adam's
  ``lr / (1 - beta1**step)`` in float64, as PyTorch computes it), so changing ``lr`` or ``betas``
  never recompiles;
- ``flags(group)``: the choices compiled into the update (nesterov, amsgrad, maximize...);
- ``update(flags)``: the update itself, an ordered list of assignments ``target = expression``
  over the symbols ``param``, ``grad``, the slots, the scalars and earlier targets; a target
  named ``param`` or a slot is written back, any other is an intermediate value.

Every path evaluates that one update: the compiled step appends it to the train graph as
pointwise nodes (fused where the gradient is produced), ``step()`` evaluates it with numpy on
``p.grad``, and the distributed update compiles it on its own. Storage (flat buffers for
parameters, gradients and each slot), the binding of those buffers to compiled programs,
``state``/``state_dict``/``load_state_dict``, and the host/device mirroring are written once, here.
"""
from __future__ import annotations

import copy
import functools
import numbers
from collections.abc import Mapping
from typing import Any, Callable, Iterable

import numpy as np
import sympy

from graphnn import flat, recording
from graphnn import pointwise as pw
from graphnn.checkpoint import StateDictError
from graphnn.flat import FlatBuffer, flatten_parameters
from graphnn.optim.state import check_keys, check_like, is_int, plain, state_array
from graphnn.tensors import zero_grads

__all__ = ["Optimizer", "symbols", "gradient", "lerp", "check_nonnegative", "check_betas", "assignments", "evaluate",
           "check_keys", "check_like", "plain"]


@functools.lru_cache(maxsize=None)
def _symbol(name: str) -> sympy.Symbol:
    return sympy.Symbol(name, real=True)


def symbols(names: str) -> tuple:
    """The update's symbols by name (``symbols("param grad exp_avg")``), shared by every update."""
    return tuple(_symbol(n) for n in names.split())


PARAM, GRAD = symbols("param grad")
DECAYED_GRAD, WEIGHT_DECAY, DECAY = symbols("decayed_grad weight_decay decay")


def gradient(steps: list, maximize: bool, decays: bool, decoupled: bool = False) -> sympy.Expr:
    """The gradient an update uses, negated when maximizing. With weight decay: coupled (L2),
    ``grad + weight_decay * param`` as its own assignment appended to ``steps`` (rounded once, as
    PyTorch's ``grad.add(param, alpha=weight_decay)``); decoupled (AdamW), ``param * decay`` first,
    ``decay`` being ``1 - lr * weight_decay`` computed on the host. Returns what to use as g."""
    g = -GRAD if maximize else GRAD
    if decays and decoupled:
        steps.append(("param", PARAM * DECAY))
    elif decays:
        steps.append(("decayed_grad", g + WEIGHT_DECAY * PARAM))
        return DECAYED_GRAD
    return g


def lerp(start, end, weight):
    """PyTorch's lerp: start + w (end - start) for |w| < 0.5, else end + (w - 1)(end - start)."""
    return sympy.Piecewise((start + weight * (end - start), sympy.Abs(weight) < sympy.Rational(1, 2)),
                           (end + (weight - 1) * (end - start), True))


def check_nonnegative(group: dict, *keys: tuple[str, str]) -> None:
    """PyTorch's ``Invalid <label>: <value>`` for each (key, label) whose value is negative, in order."""
    for key, label in keys:
        if not 0.0 <= group[key]:
            raise ValueError(f"Invalid {label}: {group[key]}")


def check_betas(group: dict) -> None:
    """Each of ``betas`` in [0, 1), with PyTorch's message."""
    for index, beta in enumerate(group["betas"]):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"Invalid beta parameter at index {index}: {beta}")


class Optimizer:
    """Holds ``param_groups`` (dicts whose hyperparameters may change between steps) and ``state``
    (per parameter: its slots as views of flat buffers, and its counters), as in PyTorch."""

    defaults: dict
    slots: tuple = ()
    counters: tuple = ()
    scalars: tuple = ()

    def __init__(self, params: Iterable, defaults: dict) -> None:
        self.defaults = dict(defaults)
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.param_groups: list[dict] = []
        self._state: dict[Any, dict] = {}
        self.state_version = 0  # changes whenever ``state`` gains or loses entries, so compiled steps re-read it
        for group in groups:
            self.add_param_group(group)
        self._flatten()

    # -- what a subclass declares ---------------------------------------------------------------
    def flags(self, group: dict) -> tuple:
        """The choices of ``group`` compiled into its update (a change rebuilds the step)."""
        return ()

    def scalar_values(self, group: dict, state: dict) -> tuple:
        """The values of ``scalars`` for one parameter of ``group`` with ``state`` (its state
        before this step)."""
        raise NotImplementedError

    def next_counters(self, group: dict, state: dict) -> tuple:
        """The values of ``counters`` after a step of one parameter of ``group`` with ``state``
        (its state before the step): each counts steps, from 0, unless a subclass says otherwise."""
        return tuple(float(state.get(c, 0.0)) + 1.0 for c in self.counters)

    @classmethod
    def update(cls, flags: tuple) -> list[tuple[str, sympy.Expr]]:
        """The assignments of one step for a group with ``flags``."""
        raise NotImplementedError

    def _check_hypers(self, group: dict) -> None:
        """Raise ValueError for hyperparameter values this optimizer refuses (in __init__ and loads)."""

    # -- parameter groups and storage ------------------------------------------------------------
    def add_param_group(self, param_group: dict) -> None:
        group = dict(param_group)
        params = group["params"]
        group["params"] = [params] if hasattr(params, "_rebind") else list(params)
        for p in group["params"]:
            if not hasattr(p, "_rebind"):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params is {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
            if p.dtype.name != "float32":
                raise TypeError(f"graphnn optimizes float32 tensors, got one of {p.dtype}")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in group["params"]):
            raise ValueError("some parameters appear in more than one parameter group")
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self._check_hypers(group)
        self.param_groups.append(group)
        if hasattr(self, "grads"):
            self._flatten()

    def _flatten(self) -> None:
        params = self.params
        self.flat_params = flatten_parameters(params)
        self.grads = FlatBuffer([p.shape for p in params])  # behind p.grad
        self.step_grads = FlatBuffer([p.shape for p in params])  # a compiled step's own gradients
        self.slot_buffers = {slot: FlatBuffer([p.shape for p in params]) for slot in self.slots}
        self._views = {id(p): k for k, p in enumerate(params)}
        self._members: dict = {}  # hypers(): a compiled step's parameters by group
        self._state = {p: s for p, s in self._state.items() if id(p) in self._views}
        for p, s in self._state.items():  # slots move into the new flat buffers
            for slot, value in list(s.items()):
                if slot in self.slot_buffers and value is not None:
                    view = self.slot_view(slot, p)
                    view[...] = value
                    s[slot] = view
        self.layout_version = getattr(self, "layout_version", 0) + 1

    @property
    def params(self) -> list:
        return [p for g in self.param_groups for p in g["params"]]

    def group_of(self, p: Any) -> int:
        for k, g in enumerate(self.param_groups):
            if any(q is p for q in g["params"]):
                return k
        raise KeyError("parameter is not optimised by this optimizer")

    def _index(self, p: Any) -> int:
        index = self._views.get(id(p))
        if index is None:
            raise KeyError("parameter is not optimised by this optimizer")
        return index

    def grad_view(self, p: Any) -> np.ndarray:
        """The slot in the flat gradient buffer for parameter ``p``."""
        return self.grads.views[self._index(p)]

    def slot_view(self, slot: str, p: Any) -> np.ndarray:
        """Parameter ``p``'s part of the flat buffer of state slot ``slot``."""
        return self.slot_buffers[slot].views[self._index(p)]

    @property
    def state(self) -> dict:
        """Per-parameter state (PyTorch's ``optimizer.state``); its arrays are views of flat
        buffers, brought back from a device first when one holds them."""
        for buffer in self.slot_buffers.values():
            flat.host_access(buffer.array)
        return self._state

    @state.setter
    def state(self, value: dict) -> None:
        self._state = value

    def structure(self) -> tuple:
        """The choices compiled into a step's update (not run-time scalars): a change rebuilds it."""
        return tuple([self.flags(g) for g in self.param_groups])

    def settings(self) -> tuple:
        """Everything a compiled step reads from the optimizer besides its buffers: each group's
        hyperparameters and the state's version. Compiled steps repeat while this is unchanged."""
        return (self.state_version, *(tuple(g[h] for h in self.defaults) for g in self.param_groups))

    def zero_grad(self, set_to_none: bool = True) -> None:
        zero_grads(self.params, set_to_none)
        self._lent = []  # (none of its parameters holds a lent gradient now)

    # -- the gradients of a recorded loop's compiled step ----------------------------------------------
    _lent: list = []
    """The parameters whose ``.grad`` is still their slice of ``step_grads`` (lend_step_grads)."""

    def lend_step_grads(self, places: list) -> None:
        """After a recorded loop's compiled step: each stepped parameter's ``.grad`` is its slice
        of ``step_grads`` as the step left it, copied when read (Tensor.grad) or, unread, before a
        compiled step writes the buffer again (reclaim_step_grads). A loop that zeroes its
        gradients unread copies none. ``places``: (parameter, start, end, shape)."""
        live = self.step_grads.array
        for p, start, end, shape in places:
            p._step_grad = (live, start, end, shape)
        self._lent = [place[0] for place in places]

    def reclaim_step_grads(self) -> None:
        """Before a compiled step writes ``step_grads``: the gradients lent out and still unread
        become copies of their slices."""
        if not self._lent:
            return
        live = self.step_grads.array
        flat.host_access(live)
        for p in self._lent:
            lent = p._step_grad
            if lent is not None and lent[0] is live:
                _, start, end, shape = lent
                p._step_grad = (live[start:end].copy(), 0, end - start, shape)
        self._lent = []

    # -- the update, on every path -----------------------------------------------------------------
    def _assignments(self, k: int) -> tuple:
        return assignments(type(self), self.flags(self.param_groups[k]))

    def step(self, closure=None):
        """Apply ``p.grad`` to every parameter that has one (PyTorch's ``optimizer.step()``),
        evaluating the update with numpy in float32."""
        loss = closure() if closure is not None else None
        if closure is None and recording.fused_step(self):
            return None  # the deferred backward and this update ran as one compiled step
        for k, group in enumerate(self.param_groups):
            steps = self._assignments(k)
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state.get(p, {})
                env = {"param": p.array, "grad": np.asarray(p.grad, np.float32)}
                env.update(zip(self.scalars, (np.float32(v) for v in self.scalar_values(group, state))))
                env.update((s, self.slot_view(s, p)) for s in self.slots)
                with np.errstate(all="ignore"):
                    results = evaluate(steps, env)
                for target, value in results.items():
                    if target == "param":
                        p.array[...] = value
                    elif target in self.slot_buffers:
                        self.slot_view(target, p)[...] = value
                self._advance(p, group, steps)
        return loss

    def build_update(self, b: Any, entries: list) -> dict:
        """Graph nodes for the new parameters and slots, added through the Builder ``b`` to the
        graph it builds (a step graph of its own, never the traced one): ``entries`` holds
        (Parameter, parameter node, gradient node); returns update name -> node (parameter names
        and slot buffers)."""
        updates = {}
        for p, p_node, g_node in entries:
            k = self.group_of(p)
            name = p_node.name
            b.path, b.module = name.rpartition(".")[0], type(self).__name__
            env = {"param": p_node, "grad": g_node}
            env.update((s, b.leaf("hyper", f"optim.{k}.{s}", ())) for s in self.scalars)
            env.update((s, b.leaf("buffer", f"optim.{s}.{name}", p_node.shape)) for s in self.slots)
            for target, expr in self._assignments(k):
                used = sorted(expr.free_symbols, key=lambda s: s.name)
                fn = pw.fn(f"{type(self).__name__.lower()}_{target}", expr.xreplace(dict(zip(used, pw.X))), nargs=len(used))
                env[target] = b.pointwise(fn, *(env[s.name] for s in used)) if used else env[target]
                if target == "param":
                    updates[name] = env[target]
                elif target in self.slot_buffers:
                    updates[f"optim.{target}.{name}"] = env[target]
        return updates

    def _advance(self, p: Any, group: dict, steps: tuple) -> None:
        """After a step of ``p`` in ``group``: its counters move on, and the slots the step wrote
        are in ``state`` (as PyTorch's optimizers create them on a parameter's first step)."""
        state = self._state.get(p)
        if self.counters:
            values = self.next_counters(group, _EMPTY if state is None else state)
            if state is None:
                state = self._state[p] = {}
                self.state_version += 1
            for counter, value in zip(self.counters, values):
                state[counter] = np.array(value, np.float32)
        for target, _ in steps:
            if target in self.slot_buffers and (state is None or state.get(target) is None):
                if state is None:
                    state = self._state[p] = {}
                state[target] = self.slot_view(target, p)
                self.state_version += 1

    def hypers(self, stepped: dict) -> dict | None:
        """The run-time scalars of a compiled step over the parameters in ``stepped`` (name ->
        Parameter), or None when a group's parameters disagree on them (their states differ:
        some were stepped before without the others), which one compiled step cannot express."""
        out = {}
        for k, group, members, names in self._groups_of(stepped):
            if not members:
                continue
            if self._state:
                states = [self._state.get(p, _EMPTY) for p in members]
                first = states[0]
                if self._differ(states):
                    return None
            else:  # (no parameter stepped yet: all alike)
                first = _EMPTY
            out.update(zip(names, self.scalar_values(group, first)))
        return out

    def _groups_of(self, stepped: dict) -> list:
        """Per group: its index, the group, its parameters among ``stepped`` and its scalars'
        leaf names (cached: every step asks)."""
        key = (id(stepped), self.layout_version, len(self.param_groups))
        groups = self._members.get(key)
        if groups is None:
            ids = {id(p) for p in stepped.values()}
            groups = self._members[key] = [
                (k, group, [p for p in group["params"] if id(p) in ids], [f"optim.{k}.{s}" for s in self.scalars])
                for k, group in enumerate(self.param_groups)]
        return groups

    def _differ(self, states: list) -> bool:
        """Whether parameters with these states would get different run-time scalars."""
        first = states[0]
        for c in self.counters:
            count = float(first.get(c, 0.0))
            if any(float(state.get(c, 0.0)) != count for state in states):
                return True
        for s in self.slots:
            missing = first.get(s) is None
            if any((state.get(s) is None) != missing for state in states):
                return True
        return False

    def finish_step(self, stepped: dict, structure: tuple | None = None) -> None:
        """After a compiled step wrote the new parameters and slots: advance their state as
        ``step()`` does (nothing to do where there are no counters and every slot the update
        writes is in each parameter's state already). ``structure``: ``self.structure()``, where
        the caller has it already."""
        if structure is not None and not self.counters and _idle(type(self), structure, tuple(self.slot_buffers)):
            return  # (plain SGD: no counters, no slot written in any group)
        for k, group, members, _ in self._groups_of(stepped):
            flags = structure[k] if structure is not None else self.flags(group)
            written = None if self.counters else _written(type(self), flags, tuple(self.slot_buffers))
            if written == ():
                continue
            steps = assignments(type(self), flags)
            if written is not None:
                state_of = self._state.get
                members = [p for p in members if any((state_of(p) or _EMPTY).get(t) is None for t in written)]
            for p in members:
                self._advance(p, group, steps)

    # -- where compiled programs find the buffers ---------------------------------------------------
    def flat_storage(self, named: dict) -> dict:
        """Where a compiled step finds each parameter, its gradient and its slots in the flat
        buffers: name -> (buffer, offset, buffer size, kind), for the parameters in ``named``."""
        names = {id(p): n for n, p in named.items()}
        store = flat.store_of(self.params)  # None when a later optimizer moved some of them
        storage = {}
        for p, offset in zip(self.params, self.step_grads.offsets):
            name = names.get(id(p))
            if name is None:
                continue
            if store is not None:
                storage[name] = ("flat.params", store.offset_of(p.array), store.offsets[-1], "param")
            storage[f"grad.{name}"] = ("flat.step_grads", offset, self.step_grads.offsets[-1], "grad")
            for slot, buffer in self.slot_buffers.items():
                storage[f"optim.{slot}.{name}"] = (f"flat.{slot}", offset, buffer.offsets[-1], "optim")
        return storage

    def persistent(self, named: dict) -> dict:
        """Getters for the arrays a compiled step reads and writes, by leaf or buffer name."""
        getters = {"flat.params": lambda: self.params[0]._flat.array, "flat.step_grads": lambda: self.step_grads.array}
        for slot, buffer in self.slot_buffers.items():
            getters[f"flat.{slot}"] = lambda buffer=buffer: buffer.array
        for name, p in named.items():
            if id(p) not in self._views:
                continue
            index = self._index(p)
            getters[f"grad.{name}"] = lambda v=self.step_grads.views[index]: v
            for slot, buffer in self.slot_buffers.items():
                getters[f"optim.{slot}.{name}"] = lambda v=buffer.views[index]: v
        return getters

    def state_arrays(self) -> list:
        """The flat arrays behind ``state`` (broadcast from rank 0 by distributed training)."""
        return [buffer.array for buffer in self.slot_buffers.values()]

    # -- (de)serialisation -------------------------------------------------------------------------
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
                if not is_int(i) or int(i) in by_id:
                    raise StateDictError(f"{where}['params']: expected distinct integer ids, got {i!r}")
                by_id[int(i)] = p
            values = {key: _plain_tree(value) for key, value in saved.items() if key != "params"}
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
            if not is_int(i) or int(i) not in by_id:
                raise StateDictError(f"{where}: no parameter group lists a parameter with id {i!r}")
            check_keys(where, entries, (), self.slots + self.counters)
            if any(c in entries for c in self.counters):  # counters come together (NAdam's two)
                check_keys(where, entries, self.counters, self.slots + self.counters)
            p = by_id[int(i)]
            staged[p] = {name: (state_array(f"{where}[{name!r}]", value, p.shape) if name in self.slots
                                else _counter(f"{where}[{name!r}]", value)) for name, value in entries.items()}

        def commit() -> None:
            for group, values in zip(self.param_groups, hypers):
                group.update(values)
            self._load_state(staged)

        return commit

    def _state_items(self):
        state = self.state
        return [(p, state[p]) for p in self.params if p in state]

    def _load_state(self, state: dict) -> None:
        for buffer in self.slot_buffers.values():
            flat.host_access(buffer.array)  # the views are written below
        self.state_version += 1
        self._state = {}
        for p in self.params:  # a slot the loaded state leaves out starts again from zero
            entries = dict(state.get(p, {}))
            for slot in self.slots:
                view = self.slot_view(slot, p)
                if entries.get(slot) is not None:
                    view[...] = entries[slot]
                    entries[slot] = view
                else:
                    view[...] = 0.0
            if p in state:
                self._state[p] = entries

    def __repr__(self) -> str:
        text = type(self).__name__ + " ("
        for k, group in enumerate(self.param_groups):
            text += f"\nParameter Group {k}"
            for key in sorted(group):
                if key != "params":
                    text += f"\n    {key}: {group[key]}"
        return text + "\n)"


_EMPTY: dict = {}


def _plain_tree(value: Any) -> Any:
    """``plain`` through lists and tuples (betas come back from a checkpoint as 0-d arrays)."""
    if isinstance(value, (list, tuple)):
        return type(value)(_plain_tree(v) for v in value)
    return plain(value)


def _counter(where: str, value: Any) -> np.ndarray:
    """A loaded step count as the 0-d float32 array state holds (PyTorch keeps a float32 tensor)."""
    value = plain(value)
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)) or value < 0:
        raise StateDictError(f"{where}: expected a non-negative number, got {value!r}")
    return np.array(float(value), np.float32)


@functools.lru_cache(maxsize=None)
def assignments(cls: type, flags: tuple) -> tuple:
    """``cls.update(flags)``, built once per optimizer class and flags."""
    return tuple(cls.update(flags))


@functools.lru_cache(maxsize=None)
def _written(cls: type, flags: tuple, slots: tuple) -> tuple:
    """The slots among ``slots`` that the update of ``cls`` with ``flags`` writes."""
    return tuple(target for target, _ in assignments(cls, flags) if target in slots)


@functools.lru_cache(maxsize=256)
def _idle(cls: type, structure: tuple, slots: tuple) -> bool:
    """Whether the updates of ``cls`` with each group's flags in ``structure`` write none of
    ``slots``: a step then has no state to advance (without counters)."""
    return all(_written(cls, flags, slots) == () for flags in structure)


def evaluate(steps: tuple, env: dict) -> dict:
    """The assignments evaluated in order with numpy in float32 (``env``: values by symbol name);
    returns every target's value."""
    env = dict(env)
    for target, expr in steps:
        used = sorted(expr.free_symbols, key=lambda s: s.name)
        fn = pw.numpy_function(expr.xreplace(dict(zip(used, pw.X))), len(used))
        env[target] = np.asarray(fn(*(env[s.name] for s in used), None, None), np.float32)
    return {target: env[target] for target, _ in steps}
