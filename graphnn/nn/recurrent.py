"""The arithmetic of the recurrent layers: one time step of each cell, and a layer's time loop
(the modules are graphnn.nn.rnn).

A layer's input projection ``x W_ih^T + b_ih`` is one matmul over every time step at once
((T * N) rows); each step then adds the recurrent product ``h W_hh^T + b_hh`` and applies the
gates. A step is one function of (input projection at t, state, weights), ``step(x_t, state, w)
-> state``. The state is a tuple: ``(h,)``, or ``(h, c)`` for the LSTM. A zero initial state is
a broadcast constant (``zeros``), multiplied as torch multiplies it, so NaN and infinite weights
propagate alike and W_hh has a (zero) gradient even for a single step.

``layer`` runs a step over a sequence in one of two forms that compute the same numbers:
``loop`` traces the step once into the body of a ``scan`` node (graphnn.scan_op), which the
backends run as a loop over time, so the graph, the plan and the generated code do not grow
with the sequence's length; ``unroll`` calls the step once per time step (sequences up to
``UNROLL_LIMIT`` steps).
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import numpy as np
import sympy

from graphnn import factories, scan_op, trace
from graphnn.autodiff import differentiate_step
from graphnn.eager import EAGER
from graphnn.errors import TraceError
from graphnn.ir import Graph
from graphnn.nn import functional as F
from graphnn.ops import Builder
from graphnn.tensors import Tensor, _builder, _wrap, as_tensor

UNROLL_LIMIT = 0
"""Sequences up to this length are unrolled; longer ones run as a time loop (``loop``). The loop
is the default at every length: on the C backend a 2-layer LSTM (input 64, hidden 128, batch 32)
trains faster as a loop (0.46 against 0.79 ms per step at length 1, 1.8 against 3.4 ms at 4, 3.5
against 7.3 ms at 8: the step's kernels vectorise on their own) and compiles faster."""


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


def layer(step: Step, x: Tensor, time_axis: int, state: State, w: Weights, reverse: bool = False) -> tuple:
    """One layer and direction over the whole sequence ``x`` (time along ``time_axis``): (its
    outputs h_t stacked along ``time_axis``, its final state), unrolled or as a time loop by the
    sequence's length (``UNROLL_LIMIT``)."""
    run = unroll if x.shape[time_axis] <= UNROLL_LIMIT else loop
    return run(step, x, time_axis, state, w, reverse)


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


def loop(step: Step, x: Tensor, time_axis: int, state: State, w: Weights, reverse: bool = False) -> tuple:
    """``unroll``'s result from a ``scan`` node whose body is ``step`` traced once: the
    projection of every time step is one matmul before it, as in ``unroll``."""
    projected = F.linear(x, w.weight_ih, w.bias_ih)
    seq = projected if time_axis == 0 else projected.transpose(0, 1)  # time-major: (T, N, gates)
    weights = [t for t in (w.weight_hh, w.bias_hh, w.weight_hr) if t is not None]
    b = _builder(seq, *state, *weights)
    seq, state, weights = as_tensor(seq, b), [as_tensor(s, b) for s in state], [as_tensor(t, b) for t in weights]
    body = _body(step, tuple(seq.shape[1:]), tuple(tuple(s.shape) for s in state),
                 tuple(None if t is None else tuple(t.shape) for t in (w.weight_hh, w.bias_hh, w.weight_hr)),
                 b is not EAGER, b.path, b.module)
    node = scan_op.scan(b, body, [seq.node], [s.node for s in state], [t.node for t in weights], reverse)
    every, final = scan_op.results(b, node)
    sources = [seq, *state, *weights]
    outputs = _wrap(every["c0"], sources, "StackBackward0", b)
    if time_axis != 0:
        outputs = outputs.transpose(0, 1)
    return outputs, tuple(_wrap(final[f"c{j}"], sources, "SelectBackward0", b) for j in range(len(state)))


@functools.lru_cache(maxsize=64)
def _body(step: Step, x_shape: tuple, state_shapes: tuple, weight_shapes: tuple, differentiable: bool,
          path: str, module: str) -> scan_op.Body:
    """The scan body of ``step`` for these shapes (weights: W_hh, b_hh, W_hr, None where absent),
    with its vector-Jacobian product where it is ``differentiable``; built once per shape."""
    with _StepTracer(path, module) as tracer:
        leaf = lambda name, shape: Tensor(tracer.builder.leaf("input", name, shape))  # noqa: E731
        present = iter(range(3))
        given = [None if shape is None else leaf(f"w{next(present)}", shape) for shape in weight_shapes]
        weights = Weights(None, given[0], None, given[1], given[2])
        state = step(leaf("s0", x_shape), tuple(leaf(f"c{j}", s) for j, s in enumerate(state_shapes)), weights)
    graph = tracer.graph
    graph.outputs = {f"c{j}": s.node for j, s in enumerate(state)}
    if not differentiable:
        return scan_op.Body(graph)
    extended, vjp = differentiate_step(graph)
    return scan_op.Body(extended, vjp)


class _StepTracer:
    """The tracer a step is traced with: its operations go to a Graph of its own, whose leaves
    are the step's inputs (nothing of a model: parameters come in as leaves)."""

    buffer_names: dict = {}

    def __init__(self, path: str, module: str) -> None:
        self.graph = Graph()
        self.builder = Builder(self.graph)
        self.builder.path, self.builder.module = path, module

    def __enter__(self) -> "_StepTracer":
        if not hasattr(trace._state, "stack"):
            trace._state.stack = []
        trace._state.stack.append(self)
        return self

    def __exit__(self, *exc) -> None:
        trace._state.stack.pop()

    def has_buffer(self, array) -> bool:
        return False

    def concrete(self, tensor):
        """A value the step makes itself: a constant (one value everywhere)."""
        array = np.asarray(tensor.array)
        if array.size and (array == array.flat[0]).all() and np.isfinite(array.flat[0]):
            value = array.flat[0].item()
            expr = sympy.Integer(int(value)) if float(value).is_integer() else sympy.Float(float(np.float32(value)))
            dtype = {"f": "f32", "b": "bool"}.get(array.dtype.kind, "i64")
            return self.builder.emit("pointwise", (), array.shape, dtype, name="constant", expr=expr)
        raise TraceError(f"{self.builder.where()}: a recurrent step reads a tensor of shape {list(array.shape)} "
                         "that is not one of its inputs")

    def param(self, p):
        raise TraceError(f"{self.builder.where()}: a recurrent step reads a parameter that is not one of its inputs")

    buffer = param


def zeros(like: Tensor, *shape) -> Tensor:
    """A zero state of ``shape`` (whose batch size may be symbolic) in ``like``'s graph: a
    constant broadcast, as torch.zeros."""
    return as_tensor(factories.zeros(shape[-1]), _builder(like)).expand(*shape)
