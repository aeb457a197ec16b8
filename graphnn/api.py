"""The public entry points: ``trace`` a Module into a Graph, ``compile`` it into a program.

The top of the package: it composes the layers below (capture, autodiff, the backend registry,
programs) and nothing below imports it. It also tells ``graphnn.nn`` how a Module runs on arrays
outside tracing (``call_eagerly``), since nn sits below the compiler and cannot import it.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from graphnn import backends, guard, lazy, recording
from graphnn.autodiff import with_gradients
from graphnn.backends import cache_dir
from graphnn.capture import graph_dtype, input_names, trace
from graphnn.eager import GradFn, constant, is_grad_enabled
from graphnn.errors import ShapeError
from graphnn.nn import module as _module
from graphnn.program import InferenceProgram, TrainProgram
from graphnn.tensors import Tensor

__all__ = ["compile", "trace", "cache_dir", "resolve_backend", "call_eagerly", "with_gradients", "graph_dtype",
           "input_names"]


def resolve_backend(backend: str) -> str:
    """The backend a program runs on (graphnn.backends.resolve): ``backend`` when it can run here,
    or for "auto" triton on a CUDA GPU, else C where a C compiler is installed, else numpy."""
    return backends.resolve(backend)


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
    """``module(array, ...)`` outside tracing: run it through a cached inference program (one
    native call). On arrays it returns arrays; on tensors, tensors (requiring grad, as PyTorch's
    would, while grad mode is on and a parameter or input does). An input the model cannot read
    with a leading batch axis (one unbatched sample, ``linear(torch.ones(1))``) runs through a
    program traced for its exact shape."""
    if kwargs:
        raise TypeError(f"calling {type(module).__name__} outside a traced forward takes positional inputs only, "
                        f"got keyword arguments {sorted(kwargs)}")
    if not any(isinstance(a, Tensor) for a in args):
        return _program(module, "_eager_program", False)(*args)
    arrays = [a.array if isinstance(a, Tensor) else a for a in args]
    program = module.__dict__.get("_eager_static_program") if _unbatched(module, arrays) else None
    if program is None:
        program = _program(module, "_eager_program", False)
        try:
            outputs = program(*arrays)
        except ShapeError:
            if not any(a.ndim <= 1 for a in arrays if isinstance(a, np.ndarray)):
                raise
            program = _program(module, "_eager_static_program", True)
            outputs = program(*arrays)
            module.__dict__.setdefault("_eager_unbatched", set()).add(_signature(arrays))
    else:
        outputs = program(*arrays)
    grad = is_grad_enabled() and (_trains(module) or any(isinstance(a, Tensor) and a.requires_grad for a in args))
    results = outputs if isinstance(outputs, tuple) else (outputs,)
    names = _grad_names(program) if grad else [None] * len(results)
    tensors = tuple(_result(array, name) for array, name in zip(results, names))
    return tensors if isinstance(outputs, tuple) else tensors[0]


def _trains(module: Any) -> bool:
    """Whether any parameter of ``module`` requires grad (remembered until a module changes:
    flipping requires_grad moves graphnn.guard's version)."""
    cached = module.__dict__.get("_eager_trains")
    if cached is None or cached[0] != guard.version:
        cached = (guard.version, any(p.requires_grad for p in module.parameters()))
        object.__setattr__(module, "_eager_trains", cached)
    return cached[1]


def _program(module: Any, attribute: str, static: bool) -> InferenceProgram:
    program = module.__dict__.get(attribute)
    if program is None:
        program = InferenceProgram(module, resolve_backend(getattr(module, "_backend", "auto")), static=static)
        object.__setattr__(module, attribute, program)
    return program


def _signature(arrays: Sequence) -> tuple:
    return tuple(np.shape(a) for a in arrays)


def _unbatched(module: Any, arrays: Sequence) -> bool:
    known = module.__dict__.get("_eager_unbatched")
    return known is not None and _signature(arrays) in known


def _result(array: np.ndarray, grad: str | None) -> Tensor:
    t = Tensor(constant(array, "i64" if array.dtype.kind in "iu" else "f32"))
    if grad is not None:
        t._requires_grad, t.grad_fn = True, GradFn(grad)
    return t


_MODULE_GRADS = {
    "ReLU": "ReluBackward0", "Tanh": "TanhBackward0", "Sigmoid": "SigmoidBackward0", "SiLU": "SiluBackward0",
    "GELU": "GeluBackward0", "ELU": "EluBackward0", "LeakyReLU": "LeakyReluBackward0", "Hardtanh": "HardtanhBackward0",
    "Softplus": "SoftplusBackward0", "Softmax": "SoftmaxBackward0", "LogSoftmax": "LogSoftmaxBackward0",
    "Conv2d": "ConvolutionBackward0", "MaxPool2d": "MaxPool2DWithIndicesBackward0", "AvgPool2d": "AvgPool2DBackward0",
    "BatchNorm1d": "NativeBatchNormBackward0", "BatchNorm2d": "NativeBatchNormBackward0", "Flatten": "ViewBackward0",
    "Dropout": "MulBackward0",
}
_OP_GRADS = {"reshape": "ViewBackward0", "permute": "PermuteBackward0", "matmul": "MmBackward0",
             "expand": "ExpandBackward0", "reduce": "SumBackward1"}


def _grad_names(program: InferenceProgram) -> list:
    """PyTorch's grad_fn name for each output: the op (or layer) that computed it (in the graph
    traced last, which is the one just run but for a program called with several signatures)."""
    graphs = next(reversed(program.graphs.values()))
    names = program.__dict__.get("_grad_names", {}).get(id(graphs))
    if names is None:
        names = program.__dict__.setdefault("_grad_names", {})[id(graphs)] = _output_grads(graphs["forward"])
    return names


def _output_grads(graph) -> list:
    names = []
    for node in graph.outputs.values():
        if node.module == "Linear":
            name = {"pointwise": "AddmmBackward0", "matmul": "MmBackward0"}.get(node.op, "ViewBackward0")
        elif node.module in _MODULE_GRADS:
            name = _MODULE_GRADS[node.module]
        elif node.op == "pointwise":
            name = node.attrs["name"].title().replace("_", "") + "Backward0"
        else:
            name = _OP_GRADS.get(node.op, "ViewBackward0")
        names.append(name)
    return names


_module.eager_call = call_eagerly
recording.runner = lazy.run_tape
recording.stepper = lazy.run_step
