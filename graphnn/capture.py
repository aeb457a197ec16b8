"""Capturing a model as a Graph: its forward (and loss) traced on symbolic inputs shaped like
example arrays. What ``gn.trace`` is, and what every program does first."""
from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from graphnn.errors import InputError, TraceError
from graphnn.ir import Graph, format_shape
from graphnn.nn.module import set_modes
from graphnn.tensors import Tensor
from graphnn.trace import Tracer, symbolic_shape


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


def _spec(example: Any, what: str, static: bool = False) -> tuple[tuple, str]:
    if isinstance(example, tuple) and all(isinstance(d, int) for d in example):
        return (example if static else symbolic_shape(example)), "f32"
    array = np.asarray(example)
    if array.ndim == 0 and not static:
        raise InputError(f"{what}: expected an array with a leading batch dimension, got a scalar")
    return (tuple(array.shape) if static else symbolic_shape(array.shape)), graph_dtype(array, what)


def _add_outputs(graph: Graph, name: str, value: Any) -> None:
    """A forward's result as outputs of ``graph``: a tensor under ``name``; the tensors of a tuple
    within its results (an LSTM's ``(h_n, c_n)``) under ``name_0``, ``name_1``... (programs
    return them nested alike, graphnn.program.nested_outputs)."""
    if isinstance(value, (tuple, list)) and value:
        for k, part in enumerate(value):
            _add_outputs(graph, f"{name}_{k}", part)
        return
    if not hasattr(value, "node"):
        raise TraceError(f"forward must return tensors, got {type(value).__name__}")
    graph.outputs[name] = value.node


def trace(model: Any, *example_inputs: Any, loss_fn: Any = None, target: Any = None, training: bool | None = None,
          static: bool = False) -> Graph:
    """Record ``model``'s forward (and ``loss_fn(output, target)``) on symbolic inputs.

    Example inputs are arrays or shape tuples; their leading dimension becomes the batch
    symbol B (``static``: every dimension keeps its size, for inputs without a batch axis).
    Returns the forward Graph with outputs "output" (and "loss").
    """
    if not example_inputs:
        raise TraceError("trace needs at least one example input (an array or a shape tuple)")
    names = input_names(model, len(example_inputs))
    specs = [_spec(x, name, static) for x, name in zip(example_inputs, names)]
    if loss_fn is not None and target is None:
        raise TraceError("tracing a loss needs an example target")
    flags = [(m, m.training) for m in model.modules()]
    if training is not None:
        model.train(training)
    try:
        with Tracer(model) as tracer:
            inputs = [Tensor(tracer.input(name, shape, dtype)) for name, (shape, dtype) in zip(names, specs)]
            output = model(*inputs)
            graph = tracer.graph
            results = output if isinstance(output, (tuple, list)) else [output]
            for k, value in enumerate(results):
                _add_outputs(graph, "output" if len(results) == 1 else f"output{k}", value)
            if loss_fn is not None:
                t_shape, t_dtype = _spec(target, "target")
                t = Tensor(tracer.input("target", t_shape, t_dtype, role="target"))
                tracer.module_paths.setdefault(id(loss_fn), "loss")
                loss = loss_fn(results[0], t)
                if tuple(loss.shape) != ():
                    raise TraceError(
                        f"the loss must be a scalar, got shape {format_shape(loss.shape)}; use reduction='mean' or 'sum'"
                    )
                graph.outputs["loss"] = loss.node
    finally:
        set_modes(flags)  # restore each module's own mode
    return graph
