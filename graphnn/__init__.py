"""graphnn: PyTorch-style models traced into static graphs, differentiated symbolically and
compiled into whole-step programs."""
from graphnn import distributed, nn, optim
from graphnn.api import cache_dir, compile, trace
from graphnn.checkpoint import CheckpointError, StateDictError, load, save
from graphnn.errors import InputError, ShapeError, TraceError, UnregisteredParameterError
from graphnn.ir import B, Graph
from graphnn.random import manual_seed
from graphnn.tensor import Tensor
from graphnn.training import NonFiniteLossError

__version__ = "0.1.0"

__all__ = [
    "nn", "optim", "compile", "trace", "manual_seed", "cache_dir", "Graph", "Tensor", "B",
    "InputError", "ShapeError", "TraceError", "UnregisteredParameterError", "__version__",
    "save", "load", "CheckpointError", "StateDictError", "NonFiniteLossError", "distributed",
]
