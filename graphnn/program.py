"""Compiled programs: validate inputs, bind the batch size, run a backend, write results back.

A program traces its model on the first call with a given input signature (dtypes, the shape
after the batch axis, train/eval mode) and reuses that graph for every batch size. Results are
computed completely before anything is written, so a call that fails leaves parameters,
momentum and running statistics unchanged.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from graphnn import random
from graphnn.api import add_gradients, cache_dir, graph_dtype, input_names, trace
from graphnn.errors import InputError
from graphnn.executable import CExecutable, ReferenceExecutable
from graphnn.ir import B, Graph


class Program:
    """What inference and train programs share: the graph cache, input checks and running."""

    def __init__(self, model: Any, backend: str) -> None:
        self.model = model
        self.backend = backend
        self.graphs: dict[tuple, dict[str, Graph]] = {}
        self.executables: dict[tuple, object] = {}
        self.seed = random.next_seed()
        self.calls = 0

    # -- inputs ------------------------------------------------------------------------------
    def _arrays(self, args: Sequence, names: Sequence[str]) -> list[np.ndarray]:
        arrays = []
        for value, name in zip(args, names):
            if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
                value = value.detach().cpu().numpy()
            array = np.asarray(value)
            if array.ndim == 0:
                raise InputError(f"{name}: expected an array with a leading batch dimension, got a scalar")
            kind = graph_dtype(array, name)
            array = array.astype(np.float32 if kind == "f32" else np.int64, copy=False)
            arrays.append(np.ascontiguousarray(array))
        batches = {name: a.shape[0] for name, a in zip(names, arrays)}
        if len(set(batches.values())) > 1:
            listed = ", ".join(f"{n} has {b}" for n, b in batches.items())
            raise InputError(f"inputs and target must have the same batch size (first dimension): {listed}")
        if arrays and arrays[0].shape[0] < 1:
            raise InputError("the batch is empty: expected at least one sample")
        return arrays

    def _key(self, arrays: Sequence[np.ndarray]) -> tuple:
        return (self.model.training,) + tuple((a.dtype.str, a.shape[1:]) for a in arrays)

    def _bind(self, graph: Graph, named: dict) -> int:
        """Check run-time conditions (batch size, labels); return the batch size."""
        batch = next(iter(named.values())).shape[0]
        for check in graph.checks:
            if not bool(check.condition.subs(B, batch)):
                raise InputError(check.message)
        for node in graph.inputs:
            if "classes" not in node.attrs or node.attrs["name"] not in named:
                continue
            labels = named[node.attrs["name"]]
            classes, ignore = node.attrs["classes"], node.attrs["ignore_index"]
            bad = ((labels < 0) | (labels >= classes)) & (labels != ignore)
            if bad.any():
                where = tuple(int(i) for i in np.argwhere(bad)[0])
                raise InputError(
                    f"{node.attrs['name']}: class labels must be in [0, {classes}) (or ignore_index {ignore}), "
                    f"got {labels[where]} at index {where[0] if len(where) == 1 else where}"
                )
        return batch

    def _storage(self) -> dict:
        """Where the C backend finds shared buffers: the flat parameter, gradient and momentum
        buffers of the optimizer, by parameter name (see ``graphnn.passes.fuse.Fusion``)."""
        optimizer = getattr(self, "optimizer", None)
        if optimizer is None:
            return {}
        names = {id(p): n for n, p in self.model.named_parameters()}
        total = optimizer.flat_params.offsets[-1]
        storage = {}
        for p, offset in zip(optimizer.params, optimizer.flat_params.offsets):
            name = names.get(id(p))
            if name is not None:
                storage[name] = ("flat.params", offset, total, "param")
                storage[f"grad.{name}"] = ("flat.grads", offset, total, "grad")
                if hasattr(optimizer, "momentum"):
                    storage[f"optim.momentum_buffer.{name}"] = ("flat.momentum", offset, total, "state")
        return storage

    def _feeds(self, named: dict) -> dict:
        feeds = dict(named)
        optimizer = getattr(self, "optimizer", None)
        if optimizer is not None:
            feeds["params"], feeds["grads"] = optimizer.flat_params.array, optimizer.grads.array
            if hasattr(optimizer, "momentum"):
                feeds["momentum"] = optimizer.momentum.array
        feeds.update({n: p.data for n, p in self.model.named_parameters()})
        feeds.update(dict(self.model.named_buffers()))
        feeds["rng.seed"], feeds["rng.step"] = np.int64(self.seed), np.int64(self.calls)
        return feeds

    def _executable(self, key: tuple, graphs: dict):
        executable = self.executables.get(key)
        if executable is None:
            if self.backend == "numpy":
                executable = ReferenceExecutable(graphs)
            else:
                executable = CExecutable(graphs, cache_dir(), self._storage())
            self.executables[key] = executable
        return executable

    def _run(self, key: tuple, entry: str, named: dict, extra: dict | None = None) -> dict:
        """Run one entry point; its updates are written into the arrays they name. Returns its outputs."""
        graphs = self.graphs[key]
        batch = self._bind(graphs[entry], named)
        feeds = self._feeds(named)
        if extra:
            feeds.update(extra)
        outputs = self._executable(key, graphs).run(entry, batch, feeds)
        self.calls += 1
        return outputs


class InferenceProgram(Program):
    """``program(*inputs)``: the model's forward, in its train or eval mode at call time."""

    def __call__(self, *inputs: Any):
        names = input_names(self.model, len(inputs))
        arrays = self._arrays(inputs, names)
        key = self._key(arrays)
        if key not in self.graphs:
            self.graphs[key] = {"forward": trace(self.model, *arrays)}
        outputs = self._run(key, "forward", dict(zip(names, arrays)))
        results = [outputs[k] for k in sorted(outputs)]
        return results[0] if len(results) == 1 else tuple(results)

    predict = __call__


class TrainProgram(Program):
    """``step(*inputs, target) -> loss``: forward, loss, backward and optimizer update in one run."""

    def __init__(self, model: Any, loss_fn: Any, optimizer: Any, backend: str) -> None:
        super().__init__(model, backend)
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.stepped: dict[tuple, dict] = {}  # signature -> {parameter name: Parameter} its step updates

    def _graphs(self, args: Sequence) -> tuple[dict, dict]:
        if len(args) < 2:
            raise TypeError(f"expected the model's inputs and a target, got {len(args)} argument(s)")
        names = input_names(self.model, len(args) - 1) + ["target"]
        arrays = self._arrays(args, names)
        key = self._key(arrays)
        if key not in self.graphs:
            self.graphs[key] = self._build(key, arrays)
        return key, dict(zip(names, arrays))

    def _build(self, key: tuple, arrays: list) -> dict:
        traced = trace(self.model, *arrays[:-1], loss_fn=self.loss_fn, target=arrays[-1])
        loss = traced.outputs["loss"]
        forward_updates = dict(traced.updates)
        named_params = dict(self.model.named_parameters())
        grads = add_gradients(traced, named_params)
        graphs = {
            "loss": traced.variant({"loss": loss}, forward_updates),
            "grad": traced.variant({"loss": loss, **{f"grad:{n}": g for n, g in grads.items()}}, forward_updates),
        }
        if self.optimizer is not None:
            optimised = {id(p) for p in self.optimizer.params}
            entries = [
                (named_params[name], traced.leaf(name), g) for name, g in grads.items() if id(named_params[name]) in optimised
            ]
            from graphnn.ops import Builder

            updates = self.optimizer.build_update(Builder(traced), entries)
            traced.placements.update({f"grad.{name}": g for name, g in grads.items()})
            graphs["step"] = traced.variant({"loss": loss}, {**forward_updates, **updates})
            self.stepped[key] = {leaf.attrs["name"]: p for p, leaf, _ in entries}
        return graphs

    def step(self, *args: Any) -> float:
        """One training step on a batch; returns the loss before the update."""
        if self.optimizer is None:
            raise TypeError("step() needs an optimizer: gn.compile(model, loss_fn, optimizer)")
        key, named = self._graphs(args)
        stepped = self.stepped[key]
        if not self.optimizer.uniform(stepped.values()):
            return self._step_in_two(args, stepped)
        outputs = self._run(key, "step", named, self.optimizer.feeds(stepped))
        self.optimizer.finish_step(stepped)
        return float(outputs["loss"])

    def _step_in_two(self, args: Sequence, stepped: dict) -> float:
        """grad() then optimizer.step(): for a group whose parameters do not all have momentum
        buffers yet (some had no gradient in earlier steps), which the fused step cannot express."""
        saved = {name: p.grad for name, p in stepped.items()}
        for p in stepped.values():
            p.grad = None
        try:
            loss = self.grad(*args)
            self.optimizer.step()
        finally:
            for name, p in stepped.items():
                p.grad = saved[name]
        return loss

    def grad(self, *args: Any) -> float:
        """Forward, loss and backward: adds each gradient into ``p.grad`` (as ``loss.backward()``)."""
        key, named = self._graphs(args)
        outputs = self._run(key, "grad", named)
        params = dict(self.model.named_parameters())
        for key, value in outputs.items():
            if not key.startswith("grad:"):
                continue
            p = params[key[len("grad:"):]]
            if p.grad is None:
                p.grad = self._grad_slot(p)
                p.grad[...] = value
            else:
                p.grad += value
        return float(outputs["loss"])

    def loss(self, *args: Any) -> float:
        """The loss on a batch, with no gradient and no update (BatchNorm in train mode still
        updates its running statistics, as in PyTorch)."""
        key, named = self._graphs(args)
        return float(self._run(key, "loss", named)["loss"])

    def _grad_slot(self, p: Any) -> np.ndarray:
        if self.optimizer is not None:
            try:
                return self.optimizer.grad_view(p)
            except KeyError:
                pass
        return np.zeros(p.shape, np.float32)


__all__ = ["Program", "InferenceProgram", "TrainProgram"]
