"""The public entry points: ``trace`` a Module into a Graph, ``compile`` it into a program.

The top of the package: it composes the layers below (capture, autodiff, the backend registry,
programs) and nothing below imports it. It also tells ``graphnn.nn`` how a Module runs on arrays
outside tracing (``call_eagerly``), since nn sits below the compiler and cannot import it.
"""
from __future__ import annotations

from typing import Any, Sequence

from graphnn import backends
from graphnn.autodiff import with_gradients
from graphnn.backends import cache_dir
from graphnn.capture import graph_dtype, input_names, trace
from graphnn.nn import module as _module
from graphnn.program import InferenceProgram, TrainProgram

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
    """``module(array, ...)`` outside tracing: run it through a cached inference program."""
    if kwargs:
        raise TypeError("calling a Module on arrays takes positional inputs only")
    program = module.__dict__.get("_eager_program")
    if program is None:
        program = compile(module)
        object.__setattr__(module, "_eager_program", program)
    return program(*args)


_module.eager_call = call_eagerly
