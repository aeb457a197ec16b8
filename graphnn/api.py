"""The public entry points: ``trace`` a Module into a Graph, ``compile`` it into a program."""
from __future__ import annotations

import inspect
from typing import Any, Sequence

import numpy as np

from graphnn import autodiff, backends
from graphnn.backends import cache_dir  # noqa: F401 - public here
from graphnn.errors import InputError, TraceError
from graphnn.ir import Graph, format_shape
from graphnn.trace import Tracer, symbolic_shape


def resolve_backend(backend: str) -> str:
    """The backend a program runs on (graphnn.backends.resolve): ``backend`` when it can run here,
    or for "auto" triton on a CUDA GPU, else C where a C compiler is installed, else numpy."""
    return backends.resolve(backend)


def input_names(model: Any, count: int) -> list[str]:
    """Names for the model's inputs: its forward's parameter names where it has them."""
    try:
        params = [
            p.name
            for p in inspect.signature(model.forward).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    names = params[:count] if len(params) >= count else [f"input{k}" for k in range(count)]
    return [n if n != "target" else "input_target" for n in names]


def graph_dtype(array: np.ndarray, what: str) -> str:
    """The graph dtype an input array of this numpy dtype becomes (float -> f32, int -> i64)."""
    kind = array.dtype.kind
    if kind == "f":
        return "f32"
    if kind in "iu":
        return "i64"
    raise InputError(f"{what}: expected a float or integer array, got dtype {array.dtype}")


def _spec(example: Any, what: str) -> tuple[tuple, str]:
    if isinstance(example, tuple) and all(isinstance(d, int) for d in example):
        return symbolic_shape(example), "f32"
    array = np.asarray(example)
    if array.ndim == 0:
        raise InputError(f"{what}: expected an array with a leading batch dimension, got a scalar")
    return symbolic_shape(array.shape), graph_dtype(array, what)


def trace(model: Any, *example_inputs: Any, loss_fn: Any = None, target: Any = None, training: bool | None = None) -> Graph:
    """Record ``model``'s forward (and ``loss_fn(output, target)``) on symbolic inputs.

    Example inputs are arrays or shape tuples; their leading dimension becomes the batch
    symbol B. Returns the forward Graph with outputs "output" (and "loss").
    """
    if not example_inputs:
        raise TraceError("trace needs at least one example input (an array or a shape tuple)")
    names = input_names(model, len(example_inputs))
    specs = [_spec(x, name) for x, name in zip(example_inputs, names)]
    if loss_fn is not None and target is None:
        raise TraceError("tracing a loss needs an example target")
    flags = [(m, m.training) for m in model.modules()]
    if training is not None:
        model.train(training)
    try:
        with Tracer(model) as tracer:
            inputs = [tracer.input(name, shape, dtype) for name, (shape, dtype) in zip(names, specs)]
            output = model(*inputs)
            graph = tracer.graph
            results = output if isinstance(output, (tuple, list)) else [output]
            for k, value in enumerate(results):
                if not hasattr(value, "node"):
                    raise TraceError(f"forward must return tensors, got {type(value).__name__}")
                graph.outputs["output" if len(results) == 1 else f"output{k}"] = value.node
            if loss_fn is not None:
                t_shape, t_dtype = _spec(target, "target")
                t = tracer.input("target", t_shape, t_dtype, role="target")
                tracer.module_paths.setdefault(id(loss_fn), "loss")
                loss = loss_fn(results[0], t)
                if tuple(loss.shape) != ():
                    raise TraceError(
                        f"the loss must be a scalar, got shape {format_shape(loss.shape)}; use reduction='mean' or 'sum'"
                    )
                graph.outputs["loss"] = loss.node
    finally:
        for m, flag in flags:  # restore each module's own mode
            object.__setattr__(m, "training", flag)
    return graph


def add_gradients(graph: Graph, named_params: dict) -> dict:
    """Append d loss / d parameter to a traced graph; returns parameter name -> gradient node."""
    wrt = [n for n in graph.params if named_params[n.name].requires_grad]
    grads = autodiff.gradients(graph, graph.outputs["loss"], wrt)
    by_id = {n.id: n.name for n in wrt}
    return {by_id[i]: g for i, g in grads.items()}


def compile(model: Any, loss_fn: Any = None, optimizer: Any = None, *, backend: str = "auto",
            distributed: bool = False):
    """Compile ``model`` into a program.

    Without a loss: an inference program, ``program(*inputs) -> numpy array``. With a loss (and
    an optimizer): a train program with ``step(*inputs, target) -> float`` (forward, loss,
    backward and update in one program) and ``grad(*inputs, target) -> float`` (fills ``p.grad``).
    Programs are traced on their first call and reused for every batch size. ``backend`` is
    "c" (generated C, the default where a C compiler exists), "triton", "numpy" (the reference),
    "plan" (the fused plan interpreted with numpy) or "auto" (graphnn.backends lists them).
    ``distributed=True``: data-parallel over MPI (graphnn.distributed), each rank stepping on its
    own shard of the batch.
    """
    from graphnn.program import InferenceProgram, TrainProgram

    backend = resolve_backend(backend)
    if loss_fn is None:
        if optimizer is not None:
            raise TypeError("an optimizer needs a loss function: gn.compile(model, loss_fn, optimizer)")
        if distributed:
            raise TypeError("distributed=True trains: it needs a loss function and an optimizer")
        return InferenceProgram(model, backend)
    if distributed and optimizer is None:
        raise TypeError("distributed=True needs an optimizer: gn.compile(model, loss_fn, optimizer, distributed=True)")
    return TrainProgram(model, loss_fn, optimizer, backend, distributed)


def call_eagerly(module: Any, args: Sequence, kwargs: dict):
    """``module(array, ...)`` outside tracing: run it through a cached inference program."""
    if kwargs:
        raise TypeError("calling a Module on arrays takes positional inputs only")
    program = module.__dict__.get("_eager_program")
    if program is None:
        program = compile(module)
        object.__setattr__(module, "_eager_program", program)
    return program(*args)
