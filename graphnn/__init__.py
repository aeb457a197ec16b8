"""graphnn: PyTorch-style models traced into static graphs, differentiated symbolically and
compiled into whole-step programs.

The package reads like ``torch``: a script written for PyTorch runs after ``import graphnn as
torch`` (tensors, factories, dtypes, devices, ``nn``, ``optim``, ``utils.data``), and
``graphnn.compile`` turns a model, a loss and an optimizer into one native call per step.
"""
from graphnn import distributed, nn, optim
from graphnn.api import cache_dir, compile, trace
from graphnn.checkpoint import CheckpointError, StateDictError, load, save
from graphnn.dtypes import (bool_ as bool, dtype, float32, float64, get_default_dtype, int32, int64,  # noqa: A004
                            promote_types, set_default_dtype)
from graphnn.eager import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled
from graphnn.errors import InputError, ShapeError, TraceError, UnregisteredParameterError
from graphnn.factories import (Generator, arange, bernoulli, cat, concat, concatenate, empty, empty_like, eye,
                               from_numpy, full, full_like, is_tensor, linspace, logspace, multinomial, normal,
                               numel, ones, ones_like, rand, rand_like, randint, randn, randn_like, randperm, stack,
                               where, zeros, zeros_like)
from graphnn.factories import as_tensor_ as as_tensor
from graphnn.factories import tensor
from graphnn.functions import FUNCTIONS as _FUNCTIONS
from graphnn.ir import B, Graph
from graphnn.printing import get_printoptions, set_printoptions
from graphnn.random import initial_seed, manual_seed, seed
from graphnn.tensors import Size, Tensor
from graphnn.training import NonFiniteLossError

globals().update(_FUNCTIONS)

float = float32  # noqa: A001 - torch.float
double = float64
long = int64
int = int32  # noqa: A001 - torch.int

from graphnn import device as _device_module  # noqa: E402
from graphnn import utils  # noqa: E402
from graphnn.device import accelerator, cuda, device  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "nn", "optim", "utils", "compile", "trace", "manual_seed", "cache_dir", "Graph", "Tensor", "B",
    "InputError", "ShapeError", "TraceError", "UnregisteredParameterError", "__version__",
    "save", "load", "CheckpointError", "StateDictError", "NonFiniteLossError", "distributed",
    "tensor", "as_tensor", "from_numpy", "zeros", "ones", "full", "empty", "zeros_like", "ones_like", "full_like",
    "empty_like", "arange", "linspace", "logspace", "eye", "rand", "randn", "randint", "randperm", "normal",
    "rand_like", "randn_like", "bernoulli", "multinomial", "cat", "concat", "concatenate", "stack", "where",
    "is_tensor", "numel", "Generator", "seed", "initial_seed", "Size", "dtype", "float32", "float64", "int32",
    "int64", "bool", "float", "double", "long", "int", "get_default_dtype", "set_default_dtype", "promote_types",
    "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled", "inference_mode", "set_printoptions",
    "get_printoptions", "device", "cuda", "accelerator", *_FUNCTIONS,
]
del _device_module
