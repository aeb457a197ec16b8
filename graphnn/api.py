"""The public entry points: ``trace`` a Module into a Graph, ``compile`` it into a program.

The top of the package: it composes the layers below (capture, autodiff, the backend registry,
programs) and nothing below imports it. It also tells ``graphnn.nn`` how a Module runs on arrays
outside tracing (``call_eagerly``), since nn sits below the compiler and cannot import it.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from graphnn import backends, lazy, recording
from graphnn.autodiff import with_gradients
from graphnn.backends import cache_dir
from graphnn.capture import graph_dtype, input_names, trace
from graphnn.eager import constant
from graphnn.errors import BatchAxisError, ShapeError
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
    native call). On arrays it returns arrays; on tensors, tensors (a call that PyTorch would
    record for backward is recorded instead: graphnn.recording). An input the model cannot read
    with a leading batch axis (one unbatched sample, ``linear(torch.ones(1))``, or a recurrent
    layer's time-major sequence) runs through a program traced for its exact shape."""
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
        except ShapeError as error:
            if not isinstance(error, BatchAxisError) and not any(a.ndim <= 1 for a in arrays if isinstance(a, np.ndarray)):
                raise
            program = _program(module, "_eager_static_program", True)
            outputs = program(*arrays)
            module.__dict__.setdefault("_eager_unbatched", set()).add(_signature(arrays))
    else:
        outputs = program(*arrays)
    return _tensors(outputs)


def _tensors(outputs):
    """A program's arrays (nested in tuples as the forward returned them) as tensors."""
    if isinstance(outputs, tuple):
        return tuple(_tensors(part) for part in outputs)
    return Tensor(constant(outputs, "i64" if outputs.dtype.kind in "iu" else "f32"))


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


_module.eager_call = call_eagerly
recording.runner = lazy.run_tape
recording.stepper = lazy.run_step
