"""The errors graphnn raises, each a subclass of the Python error a PyTorch user would expect."""
from graphnn.ops import ShapeError


class TraceError(RuntimeError):
    """The model does something a static graph cannot record (control flow on tensor values)."""


class UnregisteredParameterError(TraceError):
    """A Parameter used in forward that the model does not register (a plain list or dict)."""


class BatchAxisError(ShapeError):
    """A model that cannot take an input's leading axis as the batch (the sequence axis of a
    recurrent layer, whose number of time steps a program fixes): a program traced for the
    input's exact shape can still run it."""


class InputError(ValueError):
    """An input, target or label given to a compiled program that does not fit it."""


__all__ = ["ShapeError", "BatchAxisError", "TraceError", "UnregisteredParameterError", "InputError"]
