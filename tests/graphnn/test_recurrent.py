"""The recurrent layers against torch: ``nn.RNN`` (tanh and relu), ``nn.LSTM`` (``proj_size``),
``nn.GRU`` and the three cells, from the same weights on the same data.

Each case compares the outputs, h_n and c_n, the gradients of the input, of the initial states
and of every parameter: the flag matrix (layers, directions, layouts, bias, given states, batch
1, unbatched inputs, sequence lengths 1 and 7) on the numpy reference, and representative
models on the C and Triton (interpreter) backends, in compiled programs and in the literal
training loop. One sequence of 100 steps runs on C. Packed sequences raise a clear error.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import graphnn as gn
from graphnn import nn
from graphnn.errors import BatchAxisError
from tests.graphnn.torch_oracle import pair

RNG = np.random.default_rng(23)
LAYERS = {"RNN": "RNN", "RNN-relu": "RNN", "LSTM": "LSTM", "GRU": "GRU"}


def data(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def weighting(lib, t):
    """A fixed, uneven weighting of ``t``'s elements: a loss term that sends every element its
    own gradient."""
    return (t * lib.tensor(np.cos(np.arange(t.numel(), dtype=np.float32)).reshape(tuple(t.shape)))).sum()


def build_layer(name: str, **kwargs):
    if name == "RNN-relu":
        kwargs["nonlinearity"] = "relu"
    return lambda m: getattr(m, LAYERS[name])(**kwargs)


def run_layer(lib, module, x, states):
    """Output, final states and gradients (input, initial states, parameters) of one call and
    a weighted sum of everything it returned, as numpy arrays by name."""
    xt = lib.tensor(x, requires_grad=True)
    initial = None if states is None else tuple(lib.tensor(s, requires_grad=True) for s in states)
    module.zero_grad()
    hx = None if initial is None else (initial if len(initial) == 2 else initial[0])
    output, final = module(xt, hx)
    finals = final if isinstance(final, tuple) else (final,)
    loss = weighting(lib, output)
    for f in finals:
        loss = loss + weighting(lib, f)
    loss.backward()
    arrays = lambda t: t.detach().numpy().copy()  # noqa: E731
    got = {"output": arrays(output), "x.grad": arrays(xt.grad)}
    got.update({f"final{k}": arrays(f) for k, f in enumerate(finals)})
    if initial is not None:
        got.update({f"initial{k}.grad": arrays(s.grad) for k, s in enumerate(initial)})
    got.update({f"{n}.grad": arrays(p.grad) for n, p in module.named_parameters()})
    return got


def assert_results(ours: dict, theirs: dict, rtol=1e-4, atol=1e-5) -> None:
    assert list(ours) == list(theirs)
    for key, expected in theirs.items():
        assert ours[key].shape == expected.shape, key
        np.testing.assert_allclose(ours[key], expected, rtol=rtol, atol=atol, err_msg=key)


def inputs(size: int, length: int, batch: int | None, batch_first: bool):
    """A (length, batch, size) sequence in the layer's layout; (length, size) unbatched."""
    if batch is None:
        return data(length, size)
    return data(batch, length, size) if batch_first else data(length, batch, size)


def initial_states(name: str, layers: int, batch: int | None, hidden: int, proj: int = 0) -> tuple:
    lead = (layers,) if batch is None else (layers, batch)
    if LAYERS[name] == "LSTM":
        return data(*lead, proj or hidden), data(*lead, hidden)
    return (data(*lead, hidden),)


# -- the flag matrix, on the reference ---------------------------------------------------------------
CASES = [
    dict(name="RNN", length=7, batch=3),
    dict(name="RNN-relu", length=7, batch=1, batch_first=True),
    dict(name="RNN", length=7, batch=3, num_layers=2, bidirectional=True, states=True),
    dict(name="RNN-relu", length=1, batch=None, states=True),
    dict(name="LSTM", length=1, batch=3),
    dict(name="LSTM", length=7, batch=1, batch_first=True),
    dict(name="LSTM", length=7, batch=3, num_layers=2, bidirectional=True, proj_size=2, states=True),
    dict(name="LSTM", length=7, batch=None, bias=False, states=True),
    dict(name="LSTM", length=7, batch=5, batch_first=True, bidirectional=True, proj_size=3),
    dict(name="LSTM", length=7, batch=3, num_layers=2, bias=False),
    dict(name="GRU", length=7, batch=3, num_layers=2),
    dict(name="GRU", length=1, batch=1, batch_first=True, bidirectional=True),
    dict(name="GRU", length=7, batch=3, bias=False, states=True),
    dict(name="GRU", length=7, batch=None, num_layers=2, bidirectional=True),
]


def case_id(case: dict) -> str:
    return "-".join(f"{k}{v}" if k != "name" else v for k, v in case.items())


def layer_case(case: dict):
    """(build, x, states) of one case: 3 input features, 4 hidden units."""
    flags = {k: v for k, v in case.items() if k not in ("name", "length", "batch", "states")}
    layers = flags.get("num_layers", 1) * (2 if flags.get("bidirectional") else 1)
    x = inputs(3, case["length"], case["batch"], flags.get("batch_first", False))
    states = initial_states(case["name"], layers, case["batch"], 4, flags.get("proj_size", 0)) \
        if case.get("states") else None
    return build_layer(case["name"], input_size=3, hidden_size=4, **flags), x, states


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_layer_matches_torch(case, monkeypatch):
    """Outputs, h_n (and c_n), and the gradients of the input, the initial states and every
    parameter, recorded and run by the numpy reference."""
    monkeypatch.setenv("GRAPHNN_BACKEND", "numpy")
    build, x, states = layer_case(case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch: "LSTM with projections is not supported with oneDNN"
        ours, theirs = pair(build)
        assert_results(run_layer(gn, ours, x, states), run_layer(torch, theirs, x, states))


CELLS = {"RNNCell": dict(), "RNNCell-relu": dict(nonlinearity="relu"), "LSTMCell": dict(), "GRUCell": dict(),
         "LSTMCell-no-bias": dict(bias=False)}


def run_cell(lib, cell, xs, state):
    """The cell over the steps of ``xs`` in a Python loop (as torch's docs use it): every
    step's h (and c) and the gradients."""
    xt = lib.tensor(xs, requires_grad=True)
    hx = None if state is None else tuple(lib.tensor(s, requires_grad=True) for s in state)
    given = hx
    if hx is not None and len(hx) == 1:
        hx = hx[0]
    cell.zero_grad()
    loss, seen = 0, []
    for t in range(xs.shape[0]):
        hx = cell(xt[t], hx)
        for s in (hx if isinstance(hx, tuple) else (hx,)):
            loss = loss + weighting(lib, s)
            seen.append(s)
    loss.backward()
    got = {f"step{k}": s.detach().numpy().copy() for k, s in enumerate(seen)}
    got["x.grad"] = xt.grad.numpy().copy()
    if given is not None:
        got.update({f"initial{k}.grad": s.grad.numpy().copy() for k, s in enumerate(given)})
    got.update({f"{n}.grad": p.grad.numpy().copy() for n, p in cell.named_parameters()})
    return got


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("given", [False, True], ids=["zero-state", "given-state"])
@pytest.mark.parametrize("name", list(CELLS))
def test_cell_matches_torch(name, given, batched, monkeypatch):
    monkeypatch.setenv("GRAPHNN_BACKEND", "numpy")
    kind = name.split("-")[0]
    ours, theirs = pair(lambda m: getattr(m, kind)(3, 4, **CELLS[name]))
    batch = (2,) if batched else ()
    xs = data(3, *batch, 3)
    state = None
    if given:
        state = tuple(data(*batch, 4) for _ in range(2 if kind == "LSTMCell" else 1))
    assert_results(run_cell(gn, ours, xs, state), run_cell(torch, theirs, xs, state))


# -- every backend: the literal training loop and compiled programs ---------------------------------------
def recurrent_trio(lib):
    """An LSTM (two layers, both directions, projected), a GRU on time-major data (given initial
    state, no bias), a tanh RNN, and the three cells (an LSTMCell over every step, a ReLU RNNCell
    and a GRUCell over the first two) in forward, on one (N, L, 3) batch."""
    m = lib.nn

    class Trio(m.Module):
        def __init__(self):
            super().__init__()
            self.lstm = m.LSTM(3, 4, num_layers=2, batch_first=True, bidirectional=True, proj_size=2)
            self.gru = m.GRU(3, 3, bias=False)
            self.rnn = m.RNN(3, 2, batch_first=True)
            self.lstm_cell = m.LSTMCell(3, 2)
            self.rnn_cell = m.RNNCell(3, 2, nonlinearity="relu")
            self.gru_cell = m.GRUCell(3, 2)
            self.head = m.Linear(4 + 3 + 2 + 3 * 2, 2)

        def forward(self, x, h0):
            out, (h, c) = self.lstm(x)
            seq, g = self.gru(x.transpose(0, 1), h0.transpose(0, 1).contiguous())
            r, _ = self.rnn(x)
            state = h_rnn = h_gru = None
            for t in range(x.shape[1]):
                state = self.lstm_cell(x[:, t], state)
            for t in range(2):
                h_rnn, h_gru = self.rnn_cell(x[:, t], h_rnn), self.gru_cell(x[:, t], h_gru)
            features = lib.cat([out[:, -1], seq[-1], r[:, 0], state[1], h_rnn, h_gru], 1)
            return self.head(features), h, c, g

    return Trio()


def trio_losses(lib, model, x, h0, y, steps: int):
    """``steps`` SGD steps of the literal loop; per step the loss, every output, the input
    gradient and every parameter's gradient."""
    opt = lib.optim.SGD(model.parameters(), lr=0.1)
    seen = []
    for _ in range(steps):
        xt = lib.tensor(x, requires_grad=True)
        logits, h, c, g = model(xt, lib.tensor(h0))
        loss = lib.nn.functional.cross_entropy(logits, lib.tensor(y)) + weighting(lib, h) + weighting(lib, c) \
            + weighting(lib, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        got = {"loss": np.float32(loss.item())}
        got.update({name: t.detach().numpy().copy() for name, t in zip(("logits", "h", "c", "g"), (logits, h, c, g))})
        got["x.grad"] = xt.grad.numpy().copy()
        got.update({f"{n}.grad": p.grad.numpy().copy() for n, p in model.named_parameters()})
        seen.append(got)
    return seen


@pytest.mark.parametrize("backend", ["numpy", "c", "triton"])
def test_the_literal_training_loop_matches_torch(backend, monkeypatch):
    """SGD steps (the first in the reference, then compiled for the backend; the third takes the
    module calls over from the second): losses, outputs, h_n, c_n, the input's and every
    parameter's gradient, on an odd batch. Two steps in Triton's (slow) interpreter."""
    monkeypatch.setenv("GRAPHNN_BACKEND", backend)
    ours, theirs = pair(recurrent_trio, modules=False)
    x, h0, y = data(3, 5, 3), data(3, 1, 3), RNG.integers(0, 2, 3)
    steps = 2 if backend == "triton" else 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = trio_losses(torch, theirs, x, h0, y, steps)
    for got, want in zip(trio_losses(gn, ours, x, h0, y, steps), expected):
        assert_results(got, want)


def classifier(m):
    """A GRU over sequences given batch first and read time-major (the batch, symbolic in a
    program, on the second axis), its last output through a Linear."""

    class Classifier(m.Module):
        def __init__(self):
            super().__init__()
            self.gru = m.GRU(3, 5, num_layers=2)
            self.head = m.Linear(5, 3)

        def forward(self, x):
            return self.head(self.gru(x.transpose(0, 1))[0][-1])

    return Classifier()


@pytest.mark.parametrize("backend", ["numpy", "triton"])
def test_a_compiled_program_serves_every_batch_size(backend):
    """gn.compile: the batch stays symbolic (batch 5, then 1, on one program): loss and every
    parameter's gradient as torch's (on C, the next test's program is compiled for every batch
    size too)."""
    ours, theirs = pair(classifier)
    x, y = data(5, 4, 3), RNG.integers(0, 3, 5)
    train = gn.compile(ours, nn.CrossEntropyLoss(), backend=backend)
    for batch in (slice(0, 5), slice(2, 3)):
        ours.zero_grad()
        loss = train.grad(x[batch], y[batch])
        theirs.zero_grad()
        expected = torch.nn.functional.cross_entropy(theirs(torch.tensor(x[batch])), torch.tensor(y[batch]))
        expected.backward()
        np.testing.assert_allclose(loss, expected.item(), rtol=1e-5)
        for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
            np.testing.assert_allclose(np.asarray(p.grad), q.grad.numpy(), rtol=1e-4, atol=1e-6, err_msg=name)
    assert len(train.graphs) == 1


def test_a_hundred_steps_on_c():
    """A sequence of 100 steps compiles and runs on C (as a time loop): output and h_n
    as torch's, for a batch of 2 and of 1."""
    ours, theirs = pair(lambda m: m.GRU(2, 3, batch_first=True))
    x = data(2, 100, 2)
    predict = gn.compile(ours, backend="c")
    for batch in (slice(0, 2), slice(1, 2)):
        output, h = predict(x[batch])
        t_output, t_h = theirs(torch.tensor(x[batch]))
        np.testing.assert_allclose(output, t_output.detach().numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(h, t_h.detach().numpy(), rtol=1e-4, atol=1e-5)


# -- eager calls, dropout, structure and errors ------------------------------------------------------------
def test_calls_without_grad_run_a_program_for_the_exact_shape():
    """A time-major (L, N, H_in) call outside a traced forward cannot take its leading axis as
    the batch: it runs through a program traced for its exact shape, results nested as torch's."""
    ours, theirs = pair(lambda m: m.LSTM(3, 4, num_layers=2))
    for x in (data(5, 2, 3), data(5, 3)):
        with gn.no_grad():
            output, (h, c) = ours(gn.tensor(x))
        with torch.no_grad():
            t_output, (t_h, t_c) = theirs(torch.tensor(x))
        for got, want in ((output, t_output), (h, t_h), (c, t_c)):
            assert tuple(got.shape) == tuple(want.shape)
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)


def test_a_compiled_program_needs_the_sequence_length_fixed():
    with pytest.raises(BatchAxisError, match="sequence length .* batch_first=True"):
        gn.compile(nn.GRU(3, 4), backend="numpy")(data(5, 2, 3))


def test_dropout_between_layers_in_training_only():
    """dropout=1 zeroes the second layer's input (as torch's); in eval mode there is none."""
    ours, theirs = pair(lambda m: m.LSTM(3, 4, num_layers=2, dropout=1.0, batch_first=True))
    x = data(2, 5, 3)
    for training in (True, False):
        ours.train(training)
        theirs.train(training)
        got = gn.compile(ours, backend="numpy")(x)[0]
        np.testing.assert_allclose(got, theirs(torch.tensor(x))[0].detach().numpy(), rtol=1e-5, atol=1e-6)
    ours, _ = pair(lambda m: m.GRU(3, 4, num_layers=2, dropout=0.5, batch_first=True))
    predict = gn.compile(ours, backend="numpy")
    dropped = predict(x)[0]
    ours.eval()
    assert np.isfinite(dropped).all() and not np.allclose(dropped, predict(x)[0])


@pytest.mark.parametrize("build", [
    lambda m: m.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2, batch_first=True, dropout=0.25),
    lambda m: m.GRU(3, 5, bias=False),
    lambda m: m.RNN(3, 5, 2, "relu"),
    lambda m: m.RNNCell(3, 5, nonlinearity="relu"),
    lambda m: m.LSTMCell(3, 5, bias=False),
    lambda m: m.GRUCell(3, 5),
], ids=["LSTM", "GRU", "RNN", "RNNCell", "LSTMCell", "GRUCell"])
def test_structure_and_initialisation_as_torch(build):
    """repr, parameter names, order and shapes, state_dict keys, and the initial values:
    uniform in +-1/sqrt(hidden_size)."""
    gn.manual_seed(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours, theirs = build(nn), build(torch.nn)
    assert repr(ours) == repr(theirs)
    assert [(n, tuple(p.shape)) for n, p in ours.named_parameters()] == \
        [(n, tuple(p.shape)) for n, p in theirs.named_parameters()]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    bound = 1 / np.sqrt(ours.hidden_size)
    values = np.concatenate([np.asarray(p.data).ravel() for p in ours.parameters()])
    assert np.abs(values).max() <= bound and np.abs(values).max() > 0.9 * bound and values.std() > bound / 3
    if isinstance(ours, nn.RNNBase):
        assert [[tuple(p.shape) for p in ws] for ws in ours.all_weights] == \
            [[tuple(p.shape) for p in ws] for ws in theirs.all_weights]


CONSTRUCTOR_ERRORS = [
    (lambda m: m.LSTM(3, 4, proj_size=4), ValueError),
    (lambda m: m.LSTM(3, 4, proj_size=-1), ValueError),
    (lambda m: m.GRU(3, 4, proj_size=2), ValueError),
    (lambda m: m.RNN(3, 4, nonlinearity="gelu"), ValueError),
    (lambda m: m.RNN(3, 4, dropout=1.5), ValueError),
    (lambda m: m.LSTM(3, 0), ValueError),
    (lambda m: m.LSTM(3, 4, num_layers=0), ValueError),
    (lambda m: m.LSTM(3.0, 4), TypeError),
    (lambda m: m.LSTM(3, 4, bias=1), TypeError),
]


@pytest.mark.parametrize("build, error", CONSTRUCTOR_ERRORS)
def test_constructor_errors_as_torch(build, error):
    with pytest.raises(error) as theirs:
        build(torch.nn)
    with pytest.raises(error) as ours:
        build(nn)
    assert str(ours.value) == str(theirs.value)


def test_dropout_on_one_layer_warns_as_torch():
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        nn.GRU(3, 4, dropout=0.5)


LSTM, GRU_CELL = (lambda m: m.LSTM(3, 4)), (lambda m: m.GRUCell(3, 4))
FORWARD_ERRORS = [
    (LSTM, lambda m, lib: m(lib.zeros(2, 3, 4, 3)), ValueError),
    (LSTM, lambda m, lib: m(lib.zeros(5, 2, 4)), RuntimeError),
    (LSTM, lambda m, lib: m(lib.zeros(5, 2, 3), (lib.zeros(2, 4), lib.zeros(1, 2, 4))), RuntimeError),
    (LSTM, lambda m, lib: m(lib.zeros(5, 3), (lib.zeros(1, 1, 4), lib.zeros(1, 1, 4))), RuntimeError),
    (LSTM, lambda m, lib: m(lib.zeros(5, 2, 3), (lib.zeros(1, 3, 4), lib.zeros(1, 2, 4))), RuntimeError),
    (LSTM, lambda m, lib: m(lib.zeros(5, 2, 3), (lib.zeros(1, 2, 4), lib.zeros(2, 2, 4))), RuntimeError),
    (LSTM, lambda m, lib: m(lib.zeros(5, 2, 3, dtype=lib.int64)), ValueError),
    (GRU_CELL, lambda m, lib: m(lib.zeros(1, 2, 3)), ValueError),
    (GRU_CELL, lambda m, lib: m(lib.zeros(2, 3), lib.zeros(1, 2, 4)), ValueError),
]


@pytest.mark.parametrize("build, call, error", FORWARD_ERRORS)
def test_forward_errors_as_torch(build, call, error):
    """Input ranks and sizes, state ranks and shapes, the input's dtype: torch's error types and
    messages, in the recorded loop."""
    ours, theirs = pair(build)
    with pytest.raises(error) as expected:
        call(theirs, torch)
    with pytest.raises(error) as got:
        call(ours, gn)
    assert str(got.value) == str(expected.value)


def test_packed_sequences_are_refused():
    """pack_padded_sequence (and its kin) and a PackedSequence given to a layer raise
    NotImplementedError saying packed sequences are not supported."""
    x = gn.tensor(data(5, 2, 3))
    with pytest.raises(NotImplementedError, match="packed sequences are not supported"):
        gn.nn.utils.rnn.pack_padded_sequence(x, [5, 3])
    with pytest.raises(NotImplementedError, match="packed sequences are not supported"):
        gn.nn.utils.rnn.pack_sequence([x[:, 0], x[:3, 1]])
    packed = gn.nn.utils.rnn.PackedSequence(x, gn.tensor(np.array([2, 2, 2, 1, 1])))
    with pytest.raises(NotImplementedError, match="LSTM: packed sequences are not supported"):
        nn.LSTM(3, 4)(packed)
