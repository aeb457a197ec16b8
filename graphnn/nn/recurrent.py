"""The arithmetic of the recurrent layers: one time step of each cell, and a layer's time loop
unrolled into the traced graph (the modules are graphnn.nn.rnn).

A layer's input projection ``x W_ih^T + b_ih`` is one matmul over every time step at once
((T * N) rows); each step then adds the recurrent product ``h W_hh^T + b_hh`` and applies the
gates. A step is one function of (input projection at t, state, weights), ``step(x_t, state, w)
-> state``, the body a loop primitive would repeat; ``unroll`` calls it once per time step. The
state is a tuple: ``(h,)``, or ``(h, c)`` for the LSTM. A zero initial state is a broadcast
constant (``zeros``), multiplied as torch multiplies it, so NaN and infinite weights propagate
alike and W_hh has a (zero) gradient even for a single step.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

from graphnn import factories
from graphnn.nn import functional as F
from graphnn.tensors import Tensor, _builder, as_tensor


class Weights(NamedTuple):
    """One layer and direction's parameters (bias_ih, bias_hh and the LSTM's projection
    weight_hr may be None)."""

    weight_ih: Tensor
    weight_hh: Tensor
    bias_ih: Tensor | None
    bias_hh: Tensor | None
    weight_hr: Tensor | None = None


State = tuple
Step = Callable[[Tensor, State, Weights], State]


def _gates(x: Tensor, h: Tensor, w: Weights) -> Tensor:
    """x + h W_hh^T + b_hh: the gates before their activations (``x`` holds b_ih)."""
    return x + F.linear(h, w.weight_hh, w.bias_hh)


def rnn_tanh_step(x: Tensor, state: State, w: Weights) -> State:
    """h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh), ``x`` the input's projection."""
    return (F.tanh(_gates(x, state[0], w)),)


def rnn_relu_step(x: Tensor, state: State, w: Weights) -> State:
    """h' = relu(x W_ih^T + b_ih + h W_hh^T + b_hh)."""
    return (F.relu(_gates(x, state[0], w)),)


def lstm_step(x: Tensor, state: State, w: Weights) -> State:
    """Gates i, f, g, o (in that order along the last axis); c' = f c + i g, h' = o tanh(c'),
    then h' W_hr^T when the layer projects (``proj_size``)."""
    h, c = state
    i, f, g, o = _gates(x, h, w).chunk(4, -1)
    c = F.sigmoid(f) * c + F.sigmoid(i) * F.tanh(g)
    h = F.sigmoid(o) * F.tanh(c)
    if w.weight_hr is not None:
        h = F.linear(h, w.weight_hr)
    return h, c


def gru_step(x: Tensor, state: State, w: Weights) -> State:
    """Gates r, z, n: r and z from the sums of both projections, n = tanh(x_n + r (h W_hn^T +
    b_hn)), h' = n + z (h - n) (PyTorch's CPU kernel's form of (1 - z) n + z h)."""
    h = state[0]
    x_r, x_z, x_n = x.chunk(3, -1)
    h_r, h_z, h_n = F.linear(h, w.weight_hh, w.bias_hh).chunk(3, -1)
    r, z = F.sigmoid(x_r + h_r), F.sigmoid(x_z + h_z)
    n = F.tanh(x_n + r * h_n)
    return (n + z * (h - n),)


STEPS: dict[str, Step] = {"RNN_TANH": rnn_tanh_step, "RNN_RELU": rnn_relu_step, "LSTM": lstm_step, "GRU": gru_step}
"""Each mode's step, by the names PyTorch's RNNBase gives the modes."""


def unroll(step: Step, x: Tensor, time_axis: int, state: State, w: Weights, reverse: bool = False) -> tuple:
    """One layer and direction over the whole sequence ``x`` (time along ``time_axis``):
    (its outputs h_t stacked along ``time_axis``, its final state)."""
    projected = F.linear(x, w.weight_ih, w.bias_ih)  # every time step in one matmul
    length = x.shape[time_axis]
    outputs: list = [None] * length
    for t in (reversed(range(length)) if reverse else range(length)):
        state = step(projected.select(time_axis, t), state, w)
        outputs[t] = state[0]
    return factories.stack(outputs, time_axis), state


def zeros(like: Tensor, *shape) -> Tensor:
    """A zero state of ``shape`` (whose batch size may be symbolic) in ``like``'s graph: a
    constant broadcast, as torch.zeros."""
    return as_tensor(factories.zeros(shape[-1]), _builder(like)).expand(*shape)
