"""Compiled programs: validate inputs, bind the batch size, run a backend, write results back.

A program traces its model on the first call with a given input signature (dtypes, the shape
after the batch axis, train/eval mode) and reuses that graph for every batch size. Everything
that can be decided once per signature is (names, checks per batch size, where each buffer
lives), so a call does little more than check its inputs and make one native call. Inputs are
checked completely before anything runs, so a call that fails leaves parameters, momentum and
running statistics unchanged.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from graphnn import backends, flat, guard, random
from graphnn.autodiff import with_gradients
from graphnn.capture import graph_dtype, input_names, trace
from graphnn.errors import InputError
from graphnn.evaluate import check_indices
from graphnn.executable import CompiledExecutable, scalar_storage
from graphnn.ir import B, Graph
from graphnn.tensors import Tensor


class Program:
    """What inference and train programs share: the graph cache, input checks and running."""

    def __init__(self, model: Any, backend: str) -> None:
        self.model = model
        self.backend = backend
        self.graphs: dict[tuple, dict[str, Graph]] = {}
        self.executables: dict[tuple, object] = {}
        self.seed = random.next_seed()
        self.stream = 0  # added to the seed: each rank of a distributed program draws its own masks
        self.calls = 0
        self._names: dict[int, list[str]] = {}
        self._checked: set[tuple] = set()
        self._label_inputs: dict[tuple, tuple] = {}
        self._built_for: tuple | None = None
        self._guards: dict[str, _Repeat] = {}  # entry -> a repeat of its last call
        self._assumed: dict[tuple, guard.Assumptions] = {}  # signature -> what its trace read
        self._version_seen = guard.version

    # -- inputs ------------------------------------------------------------------------------
    def _input_names(self, count: int, target: bool) -> list[str]:
        names = self._names.get(count)
        if names is None:
            names = self._names[count] = input_names(self.model, count - target) + (["target"] if target else [])
        return names

    def _arrays(self, args: Sequence, names: Sequence[str]) -> list[np.ndarray]:
        arrays = []
        for value, name in zip(args, names):
            if isinstance(value, Tensor):
                value = value.array
            elif not isinstance(value, np.ndarray):
                if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
                    value = value.detach().cpu().numpy()
                value = np.asarray(value)
            if value.ndim == 0:
                raise InputError(f"{name}: expected an array with a leading batch dimension, got a scalar")
            if value.dtype != np.float32 and value.dtype != np.int64:
                value = value.astype(np.float32 if graph_dtype(value, name) == "f32" else np.int64)
            if not value.flags.c_contiguous:
                value = np.ascontiguousarray(value)
            arrays.append(value)
        batch = arrays[0].shape[0]
        if any(a.shape[0] != batch for a in arrays):
            listed = ", ".join(f"{n} has {a.shape[0]}" for n, a in zip(names, arrays))
            raise InputError(f"inputs and target must have the same batch size (first dimension): {listed}")
        if batch < 1:
            raise InputError("the batch is empty: expected at least one sample")
        return arrays

    def _key(self, arrays: Sequence[np.ndarray]) -> tuple:
        return (self.model.training,) + tuple((a.dtype.char, a.shape[1:]) for a in arrays)

    def _check(self, key: tuple, graph: Graph, arrays: list, batch: int) -> None:
        """Run-time conditions: the batch size (once per size), class labels and indices (every
        call)."""
        if (key, batch) not in self._checked:
            for check in graph.checks:
                if not bool(check.condition.subs(B, batch)):
                    raise InputError(check.message)
            self._checked.add((key, batch))
        labels, indices = self._labels(key, graph)
        for position, name, classes, ignore in labels:
            _check_labels(name, arrays[position], classes, ignore)
        for position, check in indices:
            check_indices(arrays[position], check, check.input)

    def _labels(self, key: tuple, graph: Graph) -> tuple[list, list]:
        """(input position, name, classes, ignore_index) of each of the graph's label checks, and
        (input position, IndexCheck) of each of its index checks."""
        found = self._label_inputs.get((key, id(graph)))
        if found is None:
            positions = {n.name: k for k, n in enumerate(graph.inputs)}
            found = self._label_inputs[(key, id(graph))] = (
                [(positions[c.input], c.input, c.classes, c.ignore_index) for c in graph.label_checks],
                [(positions[c.input], c) for c in graph.index_checks],
            )
        return found

    # -- where persistent values live ---------------------------------------------------------
    def _persistent(self) -> dict[str, Callable[[], np.ndarray]]:
        """Getters for the arrays behind parameter and buffer leaves, by leaf name."""
        getters: dict[str, Callable[[], np.ndarray]] = {}
        for name, p in self.model.named_parameters():
            getters[name] = lambda p=p: p.array
        for path, module in self.model.named_modules():
            for attr in module._buffers:
                getters[(path + "." if path else "") + attr] = lambda m=module, a=attr: m._buffers[a]
        optimizer = getattr(self, "optimizer", None)
        if optimizer is not None:
            getters.update(optimizer.persistent(dict(self.model.named_parameters())))
        return getters

    def storage(self, graphs: dict) -> dict:
        """Shared buffers for the plan-based backends: the optimizer's flat buffers by parameter
        name, and one array per dtype holding every run-time scalar."""
        storage = scalar_storage(graphs)
        optimizer = getattr(self, "optimizer", None)
        if optimizer is not None:
            storage.update(optimizer.flat_storage(dict(self.model.named_parameters())))
        return storage

    def _layout(self) -> tuple:
        """What compiled code assumes about where parameters live and how they are updated; when
        it changes (parameters moved to another flat buffer, a parameter group added, nesterov
        switched on), programs are rebuilt."""
        optimizer = getattr(self, "optimizer", None)
        return (flat.generation, getattr(optimizer, "layout_version", None),
                optimizer.structure() if optimizer is not None else None)

    def _context(self) -> tuple:
        """What a repeated call must find as it was, besides its inputs: the train/eval mode, the
        parameter layout, the dropout seed, the optimizer's hyperparameters and state, and no
        change to any module since (graphnn.guard)."""
        optimizer = getattr(self, "optimizer", None)
        return (self.model.training, self._layout(), self.seed, self.stream, guard.version,
                optimizer.settings() if optimizer is not None else None)

    def _repeat(self, entry: str, args: Sequence) -> dict | None:
        """The outputs of ``entry`` on ``args`` if they are like its last call's (see _Repeat),
        else None: the caller then takes the general path."""
        guard = self._guards.get(entry)
        return guard(self, args) if guard is not None else None

    def _refresh(self) -> None:
        """Drop compiled code built for another layout, and traces whose assumptions about the
        model no longer hold (called before looking graphs up)."""
        layout = self._layout()
        if self._built_for != layout:
            self.executables.clear()
            self._guards.clear()
            if getattr(self, "optimizer", None) is not None:
                self.graphs.clear()  # which parameters a step updates may have changed too
            self._built_for = layout
        if self._version_seen != guard.version:
            for key, assumed in list(self._assumed.items()):
                if not assumed.holds():
                    self._forget(key)
            self._version_seen = guard.version

    def _forget(self, key: tuple) -> None:
        """Drop the graphs of one signature and everything derived from them."""
        self.graphs.pop(key, None)
        self.executables.pop(key, None)
        self._assumed.pop(key, None)
        self._guards.clear()
        self._checked = {c for c in self._checked if c[0] != key}
        self._label_inputs = {k: v for k, v in self._label_inputs.items() if k[0] != key}
        getattr(self, "stepped", {}).pop(key, None)

    def _traced(self, key: tuple, build: Callable[[], dict]) -> dict:
        """The graphs of one signature, built by ``build`` while recording what it reads."""
        loss_fn = getattr(self, "loss_fn", None)
        modules = [self.model] + ([loss_fn] if hasattr(loss_fn, "named_modules") else [])
        with guard.Assumptions(modules) as assumed:
            graphs = build()
        self.graphs[key], self._assumed[key] = graphs, assumed
        return graphs

    def _executable(self, key: tuple):
        executable = self.executables.get(key)
        if executable is None:
            graphs = self.graphs[key]
            persistent = self._persistent()
            for graph in graphs.values():  # values the forward made itself, held by its graph
                persistent.update({name: lambda a=array: a for name, array in graph.constants.items()})
            executable = backends.get(self.backend).executable(graphs, self.storage(graphs), persistent)
            self.executables[key] = executable
        return executable

    def graphs_for(self, *args: Any) -> dict[str, Graph]:
        """The graph of each entry point for a call on arrays like ``args`` (traced now if this
        signature has not been seen), without running anything."""
        raise NotImplementedError

    def _run(self, key: tuple, entry: str, arrays: list, hypers: dict | None = None, copy: bool = True) -> dict:
        """Run one entry point; its updates are written into the arrays they name. Returns its
        outputs (with ``copy=False``, arrays the next call overwrites)."""
        graph = self.graphs[key][entry]
        batch = arrays[0].shape[0]
        self._check(key, graph, arrays, batch)
        scalars = {"rng.seed": (self.seed + self.stream) % 2**63, "rng.step": self.calls}
        if hypers:
            scalars.update(hypers)
        context = self._context()  # before running: a step that changes optimizer state ends the repeat
        executable = self._executable(key)
        outputs = executable.run(entry, batch, arrays, scalars, copy)
        self.calls += 1
        if isinstance(executable, CompiledExecutable) and entry in REPEATED:
            self._guards[entry] = _Repeat(self, key, entry, arrays, context, executable)
        return outputs


def _check_labels(name: str, labels: np.ndarray, classes: int, ignore: int) -> None:
    low, high = labels.min(), labels.max()
    if low >= 0 and high < classes:
        return
    bad = ((labels < 0) | (labels >= classes)) & (labels != ignore)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(
            f"{name}: class labels must be in [0, {classes}) (or ignore_index {ignore}), "
            f"got {labels[where]} at index {where[0] if len(where) == 1 else where}"
        )


REPEATED = ("step", "loss", "forward")
"""Entry points whose calls repeat without the general path (grad and evaluate copy their
outputs into other arrays anyway)."""


class _Repeat:
    """The last call of one entry point, repeated without the general path when a new call is
    like it: input arrays of the same type, dtype, shape (batch included) and layout, and the
    same context (Program._context). What can differ between such calls is checked again (class
    labels, indices); everything else (conversion, batch-size conditions, which graph and binding, the
    run-time scalars) was settled by the call that made it."""

    __slots__ = ("signature", "context", "labels", "binding", "batch", "step_slot", "counted")

    def __init__(self, program: Program, key: tuple, entry: str, arrays: list, context: tuple,
                 executable: CompiledExecutable) -> None:
        self.signature = [(a.dtype, a.shape) for a in arrays]
        self.context = context
        self.labels = program._labels(key, program.graphs[key][entry])
        self.binding = executable.bindings[entry]
        self.batch = arrays[0].shape[0]
        self.step_slot = executable.scalar_slots.get("rng.step")
        # an optimizer with step counters (Adam's bias corrections) changes its run-time scalars
        # every step: the repeat computes them again and advances the counters after the call
        optimizer = getattr(program, "optimizer", None)
        self.counted = None
        if entry == "step" and optimizer is not None and optimizer.counters:
            stepped = program.stepped[key]
            self.counted = (optimizer, stepped, [(name, *executable.scalar_slots[name])
                                                 for name in optimizer.hypers(stepped) or ()
                                                 if name in executable.scalar_slots])

    def __call__(self, program: Program, args: Sequence) -> dict | None:
        if len(args) != len(self.signature):
            return None
        for value, (dtype, shape) in zip(args, self.signature):
            if type(value) is not np.ndarray or value.dtype != dtype or value.shape != shape \
                    or not value.flags.c_contiguous:
                return None
        if program._context() != self.context:
            return None
        labels, indices = self.labels
        for position, name, classes, ignore in labels:
            _check_labels(name, args[position], classes, ignore)
        for position, check in indices:
            check_indices(args[position], check, check.input)
        if self.step_slot is not None:
            self.step_slot[0][self.step_slot[1]] = program.calls
        if self.counted is not None:
            optimizer, stepped, slots = self.counted
            values = optimizer.hypers(stepped)
            if values is None:
                return None
            for name, array, index in slots:
                array[index] = values[name]
        outputs = self.binding(self.batch, args, False)
        program.calls += 1
        if self.counted is not None:
            optimizer.finish_step(stepped)
        return outputs


def nested_outputs(outputs: dict):
    """A forward's outputs (copies) as it returned them: one array for "output", else a tuple
    in the order of "output0", "output1"..., with tuples where the forward returned tuples
    ("output1_0", "output1_1": graphnn.capture)."""
    if "output" in outputs:
        return outputs["output"].copy()
    tree: dict = {}
    for name, array in outputs.items():
        *parents, last = (int(part) for part in name[len("output"):].split("_"))
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = array.copy()

    def joined(node: dict) -> tuple:
        return tuple(joined(v) if isinstance(v, dict) else v for _, v in sorted(node.items()))

    return joined(tree)


class InferenceProgram(Program):
    """``program(*inputs)``: the model's forward, in its train or eval mode at call time.
    ``static``: traced with every input dimension fixed (inputs without a batch axis, such as
    one unbatched sample for a Linear), one graph per input shape."""

    def __init__(self, model: Any, backend: str, static: bool = False) -> None:
        super().__init__(model, backend)
        self.static = static

    def _key(self, arrays: Sequence[np.ndarray]) -> tuple:
        key = super()._key(arrays)
        return key + tuple(a.shape[:1] for a in arrays) if self.static else key

    def __call__(self, *inputs: Any):
        outputs = self._repeat("forward", inputs)
        if outputs is None:
            key, arrays = self._prepare(inputs)
            outputs = self._run(key, "forward", arrays, copy=False)
        return nested_outputs(outputs)

    def _prepare(self, inputs: Sequence) -> tuple[tuple, list]:
        arrays = self._arrays(inputs, self._input_names(len(inputs), target=False))
        key = self._key(arrays)
        self._refresh()
        if key not in self.graphs:
            self._traced(key, lambda: {"forward": trace(self.model, *arrays, static=self.static)})
        return key, arrays

    def graphs_for(self, *inputs: Any) -> dict[str, Graph]:
        return self.graphs[self._prepare(inputs)[0]]

    def predict(self, x, batch_size: int | None = None) -> np.ndarray:
        """The outputs for every sample of ``x``, computed ``batch_size`` samples at a time."""
        from graphnn.training import predict

        return predict(self, x, batch_size)


class TrainProgram(Program):
    """``step(*inputs, target) -> loss``: forward, loss, backward and optimizer update in one run."""

    def __init__(self, model: Any, loss_fn: Any, optimizer: Any, backend: str, distributed: bool = False) -> None:
        super().__init__(model, backend)
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.stepped: dict[tuple, dict] = {}  # signature -> {parameter name: Parameter} its step updates
        self.distributed = distributed
        self._last_signature: tuple | None = None  # distributed: the graphs an empty shard updates with
        if distributed:
            from graphnn import distributed as mpi

            context = mpi.init()
            mpi.broadcast_state(model, optimizer)
            self.seed = context.comm.bcast(self.seed, root=0)
            self.stream = context.rank

    def _prepare(self, args: Sequence) -> tuple[tuple, list]:
        if len(args) < 2:
            raise TypeError(f"expected the model's inputs and a target, got {len(args)} argument(s)")
        arrays = self._arrays(args, self._input_names(len(args), target=True))
        key = self._key(arrays)
        self._refresh()
        if key not in self.graphs:
            self._traced(key, lambda: self._build(key, arrays))
        return key, arrays

    def graphs_for(self, *args: Any) -> dict[str, Graph]:
        return self.graphs[self._prepare(args)[0]]

    def _build(self, key: tuple, arrays: list) -> dict:
        """The entry points of one signature, each its own Graph: ``loss`` and ``evaluate`` over
        the traced forward, ``grad`` over the backward (a new graph holding the forward), and
        ``step`` (the backward plus the optimizer update; with ``distributed``, ``shard_grad`` and
        ``update`` too). No stage adds to a graph another entry point holds."""
        traced = trace(self.model, *arrays[:-1], loss_fn=self.loss_fn, target=arrays[-1])
        loss = traced.outputs["loss"]
        forward_updates = dict(traced.updates)
        named_params = dict(self.model.named_parameters())
        backward, grads = with_gradients(traced, named_params)
        graphs = {
            "loss": traced.variant({"loss": loss}, forward_updates),
            "evaluate": traced.variant({"loss": loss, "output": traced.outputs["output"]}, forward_updates),
            "grad": backward.variant({"loss": loss, **{f"grad:{n}": g for n, g in grads.items()}}, forward_updates),
        }
        if self.optimizer is not None:
            optimised = {id(p) for p in self.optimizer.params}
            entries = [
                (named_params[name], backward.leaf(name), g) for name, g in grads.items()
                if id(named_params[name]) in optimised
            ]
            graphs["step"] = self._step(backward, loss, forward_updates, grads, entries)
            self.stepped[key] = {leaf.attrs["name"]: p for p, leaf, _ in entries}
            if self.distributed:
                graphs.update(self._split_step(backward, loss, forward_updates, entries))
        return graphs

    def _step(self, backward: Graph, loss, forward_updates: dict, grads: dict, entries: list) -> Graph:
        """The fused train step: a new Graph holding ``backward`` and the optimizer's update of
        each parameter in ``entries``, each gradient placed in its slot of the flat gradient buffer."""
        from graphnn.ops import Builder

        step = backward.variant({"loss": loss}, forward_updates)
        step.updates.update(self.optimizer.build_update(Builder(step), entries))
        step.placements.update({f"grad.{name}": g for name, g in grads.items()})
        return step

    def _split_step(self, backward: Graph, loss, forward_updates: dict, entries: list) -> dict:
        """The fused step in two entries with an Allreduce between them: ``shard_grad`` (forward,
        loss, backward; each gradient written to its slot of the flat step-gradient buffer, the
        ``grad.<name>`` buffer leaves) and ``update`` (the optimizer over the flat buffers). Both
        are new Graphs; ``backward`` is not changed."""
        from graphnn.ops import Builder

        slots = {f"grad.{leaf.attrs['name']}": g for _, leaf, g in entries}
        shard = backward.variant({"loss": loss}, {**forward_updates, **slots})
        b = Builder(shard)
        for name, g in slots.items():
            b.leaf("buffer", name, g.shape)
        shard.placements.update(slots)
        update = Graph()
        ub = Builder(update)
        update_entries = [(p, ub.leaf("param", leaf.attrs["name"], leaf.shape),
                           ub.leaf("buffer", f"grad.{leaf.attrs['name']}", leaf.shape)) for p, leaf, _ in entries]
        update.updates.update(self.optimizer.build_update(ub, update_entries))
        return {"shard_grad": shard, "update": update}

    def step(self, *args: Any) -> float:
        """One training step on a batch; returns the loss before the update."""
        if self.optimizer is None:
            raise TypeError("step() needs an optimizer: gn.compile(model, loss_fn, optimizer)")
        self.optimizer.reclaim_step_grads()  # (a recorded loop's gradients it is about to overwrite)
        if self.distributed:
            return self._step_distributed(args)
        outputs = self._repeat("step", args)
        if outputs is None:
            key, arrays = self._prepare(args)
            stepped = self.stepped[key]
            hypers = self.optimizer.hypers(stepped)
            if hypers is None:
                return self._step_in_two(args, stepped)
            outputs = self._run(key, "step", arrays, hypers, copy=False)
            self.optimizer.finish_step(stepped)
        return float(outputs["loss"][()])

    def _step_distributed(self, args: Sequence) -> float:
        """This rank's gradients (of its shard, possibly empty), averaged over ranks with one
        Allreduce of the flat gradient buffer, then the update; any failure aborts the job."""
        from graphnn import distributed

        try:
            optimizer = self.optimizer
            count = len(args[0]) if args and hasattr(args[0], "__len__") else 0
            if count:
                key, arrays = self._prepare(args)
                self._last_signature = key
                loss = float(self._run(key, "shard_grad", arrays, copy=False)["loss"][()])
            else:  # an empty shard: no work (its gradients count zero), the call counter stays in step
                key, loss = self._last_signature, 0.0
                self.calls += 1
            flat_gradients = optimizer.step_grads.array
            flat.host_access(flat_gradients)
            loss, _ = distributed.average_gradients(flat_gradients, loss, count)
            hypers = optimizer.hypers(self.stepped[key]) if key is not None else None
            if hypers is None:  # no compiled update yet on this rank, or a group half initialised
                self._update_eagerly(flat_gradients)
            else:
                self._executable(key).run("update", 1, [], hypers)
                optimizer.finish_step(self.stepped[key])
            distributed.broadcast_buffers(self.model)
        except Exception as error:  # noqa: BLE001 - every failure must end the whole job
            distributed.abort(error)
        return loss

    def _update_eagerly(self, flat_gradients) -> None:
        """optimizer.step() with the averaged step gradients as ``p.grad``."""
        optimizer = self.optimizer
        saved = [p.grad for p in optimizer.params]
        try:
            for p, view in zip(optimizer.params, optimizer.step_grads.views):
                p.grad = view
            optimizer.step()
        finally:
            for p, grad in zip(optimizer.params, saved):
                p.grad = grad

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
        key, arrays = self._prepare(args)
        outputs = self._run(key, "grad", arrays)
        params = dict(self.model.named_parameters())
        for name, value in outputs.items():
            if not name.startswith("grad:"):
                continue
            p = params[name[len("grad:"):]]
            if p.grad is None:
                p.grad = self._grad_slot(p)
                p.grad[...] = value
            else:
                p.grad += value
        return float(outputs["loss"][()])

    def loss(self, *args: Any) -> float:
        """The loss on a batch, with no gradient and no update (BatchNorm in train mode still
        updates its running statistics, as in PyTorch)."""
        outputs = self._repeat("loss", args)
        if outputs is None:
            key, arrays = self._prepare(args)
            outputs = self._run(key, "loss", arrays, copy=False)
        return float(outputs["loss"][()])

    def loss_and_output(self, *args: Any) -> tuple[float, np.ndarray]:
        """The loss and the model's output on a batch, with no gradient and no update."""
        key, arrays = self._prepare(args)
        outputs = self._run(key, "evaluate", arrays)
        return float(outputs["loss"][()]), outputs["output"]

    def fit(self, x, y=None, batch_size: int = 64, epochs: int = 1, shuffle: bool = True,
            validation_data: tuple | None = None, seed: int = 0, verbose: int = 1, scheduler: Any = None,
            checkpoint=None, checkpoint_every: int = 1, resume=None, stop_on_nan: bool = False,
            scheduler_interval: str = "epoch"):
        """Train for ``epochs`` passes over (x, y) in shuffled batches; returns a History of
        per-epoch "loss", "val_loss", "val_accuracy", "lr" and "epoch_time" (graphnn.training).
        ``checkpoint``/``checkpoint_every`` save the run at epoch ends; ``resume`` continues one.
        A NaN or infinite loss is stepped on, as in PyTorch; ``stop_on_nan=True`` raises
        NonFiniteLossError right after the first such step. ``scheduler_interval="batch"`` steps
        the scheduler after each batch (OneCycleLR) instead of each epoch."""
        from graphnn.training import fit

        return fit(self, x, y, batch_size, epochs, shuffle, validation_data, seed, verbose, scheduler,
                   checkpoint, checkpoint_every, resume, stop_on_nan, scheduler_interval=scheduler_interval)

    def evaluate(self, x, y=None, batch_size: int = 256) -> tuple[float, float | None]:
        """(mean loss, accuracy) over a data set in eval mode; accuracy is None for regression."""
        from graphnn.training import evaluate

        return evaluate(self, x, y, batch_size)

    def _grad_slot(self, p: Any) -> np.ndarray:
        if self.optimizer is not None:
            try:
                return self.optimizer.grad_view(p)
            except KeyError:
                pass
        return np.zeros(p.shape, np.float32)


__all__ = ["Program", "InferenceProgram", "TrainProgram"]
