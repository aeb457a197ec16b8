"""Stochastic gradient descent with momentum, PyTorch's exact update, defined once in sympy.

With g the gradient (negated when maximize), p the parameter and b the momentum buffer::

    g = g + weight_decay * p
    b = g                                     on a parameter's first step (or momentum == 0)
    b = momentum * b + (1 - dampening) * g    afterwards
    g = g + momentum * b if nesterov else b   (g itself when momentum == 0)
    p = p - lr * g

The two expressions below are that update; the compiled train step applies them as graph
nodes, and ``step()`` evaluates the same expressions with numpy on ``p.grad``. The learning rate,
momentum, dampening and weight decay are run-time scalars, so changing ``param_groups[k]["lr"]``
takes effect without recompiling. A group's structure (whether momentum is zero, nesterov,
maximize) is folded into the compiled step's expressions instead: the generated update has no
branches on it (each such branch would make the C compiler copy every update loop once per
combination), and changing it rebuilds the step, as adding a parameter group does.
"""
from __future__ import annotations

import functools
from typing import Any, Iterable

import numpy as np
import sympy

from graphnn import flat
from graphnn import pointwise as pw
from graphnn.flat import FlatBuffer
from graphnn.ops import Builder
from graphnn.optim.optimizer import Optimizer

p_, g_, buf_, lr_, m_, d_, wd_, init_, nest_, max_ = pw.X[:10]
_grad = sympy.Piecewise((-g_, max_ > 0), (g_, True)) + wd_ * p_

MOMENTUM = pw.fn(
    "sgd_momentum",
    sympy.Piecewise((_grad, (init_ <= 0) | sympy.Eq(m_, 0)), (m_ * buf_ + d_ * _grad, True)),
    nargs=10,
)
"""The new momentum buffer from (p, grad, buf, lr, momentum, 1 - dampening, weight_decay,
initialized, nesterov, maximize); here ``buf`` is the old buffer. ``1 - dampening`` comes computed
in double precision, as PyTorch computes it (in float32, dampening 0.9999 loses three digits)."""

PARAMETER = pw.fn(
    "sgd_update",
    p_ - lr_ * sympy.Piecewise((_grad, sympy.Eq(m_, 0)), (_grad + m_ * buf_, nest_ > 0), (buf_, True)),
    nargs=10,
)
"""The new parameter from the same arguments, where ``buf`` is the new momentum buffer."""

_HYPERS = ("lr", "momentum", "one_minus_dampening", "weight_decay")


def _hyper_values(group: dict) -> tuple:
    """The run-time scalars of a group, in ``_HYPERS`` order."""
    return group["lr"], group["momentum"], 1.0 - group["dampening"], group["weight_decay"]


@functools.lru_cache(maxsize=None)
def specialised(zero_momentum: bool, nesterov: bool, maximize: bool) -> tuple[pw.PointwiseFn, pw.PointwiseFn]:
    """MOMENTUM and PARAMETER for one group's structure, those choices folded in (the same
    arithmetic, so the same float32 results, with the flags' branches gone)."""
    def fold(fn: pw.PointwiseFn) -> pw.PointwiseFn:
        expr = fn.expr.subs(sympy.Eq(m_, 0), sympy.true if zero_momentum else sympy.false)
        # the flags' arguments (the last two) are gone: the graph node takes the first eight
        return pw.fn(fn.name, expr.subs({nest_: int(nesterov), max_: int(maximize)}), nargs=fn.nargs - 2)
    return fold(MOMENTUM), fold(PARAMETER)


class SGD(Optimizer):
    """``optim.SGD(params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False)``."""

    state_keys = ("momentum_buffer",)

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize)
        self._check_hypers(defaults)
        super().__init__(params, defaults)

    def _check_hypers(self, group: dict) -> None:
        """PyTorch's checks of SGD's hyperparameters (at construction and in load_state_dict)."""
        if group["lr"] < 0.0:
            raise ValueError(f"Invalid learning rate: {group['lr']}")
        if group["momentum"] < 0.0:
            raise ValueError(f"Invalid momentum value: {group['momentum']}")
        if group["weight_decay"] < 0.0:
            raise ValueError(f"Invalid weight_decay value: {group['weight_decay']}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _flatten(self) -> None:
        super()._flatten()
        self._members: dict[tuple, list] = {}  # compiled step -> its parameters, by group
        self._initialized: dict[tuple, tuple] = {}  # (step, group) -> (state version, flag)
        self._pending = True
        self.momentum = FlatBuffer([p.shape for p in self.params])
        self._state = {p: s for p, s in self._state.items() if any(p is q for q in self.params)}

    def _state_arrays(self) -> list:
        return [self.momentum.array]

    # -- the update, shared by the graph and step() ------------------------------------------
    def _arguments(self, k: int, p: Any) -> list:
        group = self.param_groups[k]
        initialized = 1.0 if self.state.get(p, {}).get("momentum_buffer") is not None else 0.0
        return [np.float32(v) for v in _hyper_values(group)] + [
            np.float32(initialized), np.float32(bool(group["nesterov"])), np.float32(bool(group["maximize"]))
        ]

    def _momentum_view(self, p: Any) -> np.ndarray:
        for q, view in zip(self.params, self.momentum.views):
            if q is p:
                return view
        raise KeyError("parameter is not optimised by this optimizer")

    def _finish(self, p: Any) -> None:
        if self.param_groups[self.group_of(p)]["momentum"] != 0:
            self._state.setdefault(p, {})["momentum_buffer"] = self._momentum_view(p)
            self.state_version += 1

    def step(self, closure=None):
        """Apply ``p.grad`` to every parameter that has one (PyTorch's ``optimizer.step()``)."""
        loss = closure() if closure is not None else None
        momentum = pw.numpy_function(MOMENTUM.expr, MOMENTUM.nargs)
        update = pw.numpy_function(PARAMETER.expr, PARAMETER.nargs)
        for k, group in enumerate(self.param_groups):
            for p in group["params"]:
                if p.grad is None:
                    continue
                args = self._arguments(k, p)
                buf = self._momentum_view(p)
                grad = np.asarray(p.grad, np.float32)
                new_buf = np.asarray(momentum(p.data, grad, buf, *args, None, None), np.float32)
                p.data[...] = update(p.data, grad, new_buf, *args, None, None)
                if group["momentum"] != 0:  # PyTorch leaves the buffer alone without momentum
                    buf[...] = new_buf
                self._finish(p)
        return loss

    # -- the graph side -----------------------------------------------------------------------
    def build_update(self, b: Builder, entries: list) -> dict:
        """Graph nodes for the new parameters and momentum buffers.

        ``entries`` holds (Parameter, parameter node, gradient node); returns update name -> node.
        """
        updates = {}
        for p, p_node, g_node in entries:
            k = self.group_of(p)
            hypers = [b.leaf("hyper", f"optim.{k}.{h}", ()) for h in _HYPERS]
            initialized = b.leaf("hyper", f"optim.{k}.initialized", ())
            buf = b.leaf("buffer", f"optim.momentum_buffer.{p_node.name}", p_node.shape)
            b.path, b.module = p_node.name.rpartition(".")[0], "SGD"
            zero_momentum, nesterov, maximize = self.structure()[k]
            momentum, parameter = specialised(zero_momentum, nesterov, maximize)
            # without momentum the buffer is neither read nor written (PyTorch keeps it as it was)
            new_buf = buf if zero_momentum else b.pointwise(momentum, p_node, g_node, buf, *hypers, initialized)
            updates[p_node.name] = b.pointwise(parameter, p_node, g_node, new_buf, *hypers, initialized)
            if not zero_momentum:
                updates[buf.name] = new_buf
        return updates

    def structure(self) -> tuple:
        """Per group: (momentum is zero, nesterov, maximize), compiled into the step."""
        return tuple((g["momentum"] == 0, bool(g["nesterov"]), bool(g["maximize"])) for g in self.param_groups)

    def flat_storage(self, named: dict) -> dict:
        storage = super().flat_storage(named)
        total = self.momentum.offsets[-1]
        for name, entry in list(storage.items()):
            if entry[0] == "flat.step_grads":
                storage[f"optim.momentum_buffer.{name[len('grad.'):]}"] = ("flat.momentum", entry[1], total, "state")
        return storage

    def persistent(self, named: dict) -> dict:
        getters = super().persistent(named)
        getters["flat.momentum"] = lambda: self.momentum.array
        for name, p in named.items():
            if any(p is q for q in self.params):
                view = self._momentum_view(p)
                getters[f"optim.momentum_buffer.{name}"] = lambda view=view: view
        return getters

    def hypers(self, stepped: dict) -> dict | None:
        """The run-time scalars of a compiled step over the parameters in ``stepped`` (name ->
        Parameter), or None when a group's parameters do not all agree on having a momentum buffer
        (the compiled step has one flag per group)."""
        key = (id(stepped), len(self.param_groups))
        groups = self._members.get(key)
        if groups is None:
            groups = self._members[key] = [
                (k, g, [p for p in stepped.values() if any(p is q for q in g["params"])],
                 [f"optim.{k}.{h}" for h in _HYPERS + ("initialized",)])
                for k, g in enumerate(self.param_groups)
            ]
        out = {}
        pending = False
        for k, group, members, names in groups:
            if not members:
                continue
            version, initialized = self._initialized.get(key + (k,), (None, None))
            if version != self.state_version:  # look again only when the state changed
                flags = {self._state.get(p, {}).get("momentum_buffer") is not None for p in members}
                if len(flags) > 1:
                    return None
                initialized = float(flags.pop())
                self._initialized[key + (k,)] = (self.state_version, initialized)
            pending = pending or not initialized
            values = (*_hyper_values(group), initialized)
            out.update(zip(names, values))
        self._pending = pending
        return out

    def finish_step(self, named: dict) -> None:
        """After a compiled step wrote the new buffers: record them in ``state`` as step() does."""
        if self._pending:
            for p in named.values():
                if self._state.get(p, {}).get("momentum_buffer") is None:
                    self._finish(p)

    def _load_state(self, state: dict) -> None:
        flat.host_access(self.momentum.array)  # the views are written below
        self.state_version += 1
        self.state = {}
        for p, s in state.items():
            s = dict(s)
            buf = s.get("momentum_buffer")
            if buf is not None:
                view = self._momentum_view(p)
                view[...] = np.asarray(buf, np.float32)
                s["momentum_buffer"] = view
            self.state[p] = s
