"""The recurrent layers ``RNN``, ``LSTM``, ``GRU`` and their cells, with PyTorch's constructors,
parameters (names, shapes, registration order, uniform(-1/sqrt(hidden), 1/sqrt(hidden))
initialisation: state dicts load either way), checks and results.

Each layer's time loop is one ``scan`` node, a loop the backends run (graphnn.nn.recurrent), so
the sequence length is fixed per program while the batch stays symbolic. Packed sequences are not
supported.
"""
from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from graphnn import dtypes, factories
from graphnn.errors import BatchAxisError
from graphnn.ir import format_dim
from graphnn.nn import functional as F
from graphnn.nn import init
from graphnn.nn.module import Module, Parameter
from graphnn.nn.recurrent import STEPS, Weights, zeros
from graphnn.nn.recurrent import layer as run_layer
from graphnn.nn.utils.rnn import refuse_packed
from graphnn.tensors import Tensor, as_tensor

_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}
_NAMES = {"LSTM": "LSTM", "GRU": "GRU", "RNN_TANH": "RNN", "RNN_RELU": "RNN"}


def _reset_uniform(module: Module) -> None:
    """Every parameter uniform in +-1/sqrt(hidden_size), as PyTorch's recurrent layers."""
    bound = 1.0 / math.sqrt(module.hidden_size) if module.hidden_size > 0 else 0
    for weight in module.parameters():
        init.uniform_(weight, -bound, bound)


def _fixed(size, what: str, why: str, module: str) -> int:
    """A dimension that must be a number (not a size that follows the batch symbol)."""
    if not isinstance(size, int):
        raise BatchAxisError(
            f"{module}: {what} is {format_dim(size)}, a size that depends on the batch size, but {why}, so it must be "
            "fixed. A compiled program takes the leading axis of each input as its batch: give the layer "
            "batch_first=True inputs, or permute time-major data inside forward")
    return size


def _float_input(x: Tensor) -> None:
    if x.dtype is not dtypes.float32:
        raise ValueError(f"RNN input dtype ({x.dtype}) does not match weight dtype (torch.float32). Convert input: "
                         f"input.to(torch.float32), or convert model: model.to({x.dtype})")


class RNNBase(Module):
    """What RNN, LSTM and GRU share: the parameters of each layer and direction
    (``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}``, the LSTM's
    ``weight_hr_l{k}``, with ``_reverse`` for the second direction) and the stacked,
    possibly bidirectional forward over them."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device=None, dtype=None) -> None:
        super().__init__()
        if not isinstance(dropout, numbers.Number) or not 0 <= dropout <= 1 or isinstance(dropout, bool):
            raise ValueError("dropout should be a number in range [0, 1] representing the probability of an element "
                             "being zeroed")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so non-zero dropout expects "
                          f"num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}",
                          stacklevel=2)
        for name, value, kind in (("bias", bias, bool), ("batch_first", batch_first, bool),
                                  ("input_size", input_size, int), ("hidden_size", hidden_size, int)):
            if not isinstance(value, kind):
                raise TypeError(f"{name} should be of type {kind.__name__}, got: {type(value).__name__}")
            if kind is int and value <= 0:
                raise ValueError(f"{name} must be greater than zero")
        if num_layers <= 0:
            raise ValueError("num_layers must be greater than zero")
        if proj_size < 0:
            raise ValueError("proj_size should be a positive integer or zero to disable projections")
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        if mode not in _GATES:
            raise ValueError("Unrecognized RNN mode: " + mode)
        self.mode, self.input_size, self.hidden_size, self.num_layers = mode, input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size = bidirectional, proj_size
        gates = _GATES[mode] * hidden_size
        real_hidden = proj_size if proj_size > 0 else hidden_size
        directions = 2 if bidirectional else 1
        self._flat_weights_names: list[str] = []
        self._all_weights: list[list[str]] = []
        for layer in range(num_layers):
            for direction in range(directions):
                layer_input = input_size if layer == 0 else real_hidden * directions
                shapes = {"weight_ih": (gates, layer_input), "weight_hh": (gates, real_hidden)}
                if bias:
                    shapes.update(bias_ih=(gates,), bias_hh=(gates,))
                if proj_size > 0:
                    shapes["weight_hr"] = (proj_size, hidden_size)
                names = []
                for kind, shape in shapes.items():
                    name = f"{kind}_l{layer}{'_reverse' if direction == 1 else ''}"
                    setattr(self, name, Parameter(np.empty(shape, np.float32)))
                    names.append(name)
                self._flat_weights_names.extend(names)
                self._all_weights.append(names)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset_uniform(self)

    def flatten_parameters(self) -> None:
        """PyTorch's cuDNN weight layout call: nothing to do here."""

    @property
    def all_weights(self) -> list[list[Parameter]]:
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    def _weights(self, layer: int, direction: int) -> Weights:
        suffix = f"_l{layer}{'_reverse' if direction == 1 else ''}"
        get = lambda kind: getattr(self, kind + suffix, None)  # noqa: E731
        return Weights(get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh"), get("weight_hr"))

    def __call__(self, input, *args, **kwargs):
        refuse_packed(input, type(self).__name__)  # before a program would try to read it as an array
        return super().__call__(input, *args, **kwargs)

    def forward(self, input, hx=None):
        x = as_tensor(input)
        name = _NAMES[self.mode]
        if x.dim() not in (2, 3):
            raise ValueError(f"{name}: Expected input to be 2D or 3D, got {x.dim()}D"
                             f"{' tensor' if name == 'RNN' else ''} instead")
        _float_input(x)
        batched = x.dim() == 3
        batch_dim, time_axis = (0, 1) if self.batch_first else (1, 0)
        states = self._given_states(hx, batched)
        if not batched:
            x = x.unsqueeze(batch_dim)
            states = [s if s is None else s.unsqueeze(1) for s in states]
        if x.shape[-1] != self.input_size:
            raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected {self.input_size}, "
                               f"got {x.shape[-1]}")
        _fixed(x.shape[time_axis], f"the sequence length (dimension {time_axis} of the input)",
               "a program runs a fixed number of time steps", name)
        output, finals = self._layers(x, time_axis, self._initial_states(states, x, x.shape[batch_dim]))
        if not batched:
            output = output.squeeze(batch_dim)
            finals = [f.squeeze(1) for f in finals]
        if self.mode == "LSTM":
            return output, (finals[0], finals[1])
        return output, finals[0]

    def _given_states(self, hx, batched: bool) -> list:
        """hx as a list of tensors (h, and c for the LSTM), None where not given, after PyTorch's
        checks of their ranks."""
        rank, kind = (3, "batched 3-D") if batched else (2, "unbatched 2-D")
        if self.mode == "LSTM":
            if hx is None:
                return [None, None]
            h, c = (as_tensor(s) for s in hx)
            if h.dim() != rank or c.dim() != rank:
                raise RuntimeError(f"For {kind} input, hx and cx should also be {rank}-D but got "
                                   f"({h.dim()}-D, {c.dim()}-D) tensors")
            return [h, c]
        if hx is None:
            return [None]
        h = as_tensor(hx)
        if h.dim() != rank:
            raise RuntimeError(f"For {kind} input, hx should also be {rank}-D but got {h.dim()}-D tensor")
        return [h]

    def _initial_states(self, states: list, x: Tensor, batch) -> list:
        """The (layers * directions, batch, size) initial states: those given, checked against
        their expected shapes (torch's messages), zeros for the others."""
        layers = self.num_layers * (2 if self.bidirectional else 1)
        sizes = [self.proj_size if self.proj_size > 0 else self.hidden_size, self.hidden_size]
        filled = []
        for k, (s, size) in enumerate(zip(states, sizes)):
            if s is None:
                filled.append(zeros(x, layers, batch, size))
                continue
            what = f"hidden[{k}]" if self.mode == "LSTM" else "hidden"
            _fixed(s.shape[0], f"dimension 0 of the {what} state (layers times directions)",
                   "each layer takes its own part of it", _NAMES[self.mode])
            if tuple(s.shape) != (layers, batch, size):
                raise RuntimeError(f"Expected {what} size {(layers, batch, size)}, got {list(s.shape)}")
            filled.append(s)
        return filled

    def _layers(self, x: Tensor, time_axis: int, states: list) -> tuple:
        """The stacked layers over ``x``: (the last layer's outputs, [h_n, and c_n for the LSTM])."""
        step = STEPS[self.mode]
        directions = 2 if self.bidirectional else 1
        finals: list[list] = [[] for _ in states]
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(directions):
                k = layer * directions + direction
                initial = tuple(s[k] for s in states)
                out, final = run_layer(step, x, time_axis, initial, self._weights(layer, direction), direction == 1)
                outputs.append(out)
                for kept, value in zip(finals, final):
                    kept.append(value)
            x = outputs[0] if directions == 1 else factories.cat(outputs, -1)
            if layer < self.num_layers - 1 and self.dropout > 0 and self.training:
                x = F.dropout(x, self.dropout, training=True)
        return x, [factories.stack(kept, 0) for kept in finals]

    def extra_repr(self) -> str:
        options = (("proj_size", 0), ("num_layers", 1), ("bias", True), ("batch_first", False), ("dropout", 0),
                   ("bidirectional", False))  # shown when not the default, in torch's order
        return ", ".join([f"{self.input_size}, {self.hidden_size}"] +
                         [f"{name}={getattr(self, name)}" for name, default in options if getattr(self, name) != default])


class RNN(RNNBase):
    """An Elman RNN, h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh) (``nonlinearity``
    "tanh" or "relu"), over (L, N, H_in) inputs ((N, L, H_in) with ``batch_first``, (L, H_in)
    unbatched): ``(output, h_n)``."""

    def __init__(self, *args, **kwargs) -> None:
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if len(args) > 3:
            nonlinearity = args[3]
            args = args[:3] + args[4:]
        else:
            nonlinearity = kwargs.pop("nonlinearity", "tanh")
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", *args, **kwargs)
        self.nonlinearity = nonlinearity


class LSTM(RNNBase):
    """A long short-term memory layer stack (gates i, f, g, o; ``proj_size`` projects h through
    ``weight_hr``): ``(output, (h_n, c_n))``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__("LSTM", *args, **kwargs)


class GRU(RNNBase):
    """A gated recurrent unit layer stack (gates r, z, n): ``(output, h_n)``."""

    def __init__(self, *args, **kwargs) -> None:
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        super().__init__("GRU", *args, **kwargs)


class RNNCellBase(Module):
    """One time step of a recurrent layer as a module: ``weight_ih``, ``weight_hh``, ``bias_ih``
    and ``bias_hh`` for ``num_chunks`` gates of ``hidden_size``."""

    _mode = ""

    def __init__(self, input_size: int, hidden_size: int, bias: bool, num_chunks: int, device=None,
                 dtype=None) -> None:
        super().__init__()
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.weight_ih = Parameter(np.empty((num_chunks * hidden_size, input_size), np.float32))
        self.weight_hh = Parameter(np.empty((num_chunks * hidden_size, hidden_size), np.float32))
        if bias:
            self.bias_ih = Parameter(np.empty((num_chunks * hidden_size,), np.float32))
            self.bias_hh = Parameter(np.empty((num_chunks * hidden_size,), np.float32))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset_uniform(self)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s

    def forward(self, input, hx=None):
        name = type(self).__name__
        x = as_tensor(input)
        if x.dim() not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {x.dim()}D instead")
        states = [None, None] if self._mode == "LSTM" else [None]
        if hx is not None:
            states = [as_tensor(s) for s in hx] if self._mode == "LSTM" else [as_tensor(hx)]
            for k, s in enumerate(states):
                if s.dim() not in (1, 2):
                    what = f"hx[{k}]" if self._mode == "LSTM" else "hidden"
                    raise ValueError(f"{name}: Expected {what} to be 1D or 2D, got {s.dim()}D instead")
        batched = x.dim() == 2
        if not batched:
            x = x.unsqueeze(0)
            states = [s if s is None else s.unsqueeze(0) for s in states]
        states = [zeros(x, x.shape[0], self.hidden_size) if s is None else s for s in states]
        w = Weights(self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        result = STEPS[self._mode](F.linear(x, w.weight_ih, w.bias_ih), tuple(states), w)
        if not batched:
            result = tuple(r.squeeze(0) for r in result)
        return result if self._mode == "LSTM" else result[0]


class RNNCell(RNNCellBase):
    """h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh) (or relu)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 device=None, dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, num_chunks=1)
        self.nonlinearity = nonlinearity

    @property
    def _mode(self) -> str:
        if self.nonlinearity not in ("tanh", "relu"):
            raise RuntimeError(f"Unknown nonlinearity: {self.nonlinearity}")
        return "RNN_TANH" if self.nonlinearity == "tanh" else "RNN_RELU"


class LSTMCell(RNNCellBase):
    """One LSTM step: ``(h', c')``."""

    _mode = "LSTM"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, num_chunks=4)


class GRUCell(RNNCellBase):
    """One GRU step: h'."""

    _mode = "GRU"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, num_chunks=3)


__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]
