"""The recurrent layers' time loop (graphnn.scan_op): a sequence longer than
``recurrent.UNROLL_LIMIT`` (0: every sequence) runs as one ``scan`` node whose step the backends
repeat; shorter ones are unrolled into the graph.

Against torch: the flag matrix of test_recurrent.py with every sequence unrolled (numpy
reference; test_recurrent.py runs it through the loop), long sequences (100 steps) trained on C at two batch sizes, one LSTM on every
backend (plan interpreter, C, Triton's interpreter), the literal training loop with alternating
batch sizes. Against the unrolled form: the same outputs (bit for bit on the reference), the
same gradients to float32 rounding (the loop sums a weight's gradient over all steps in one
product). The
generated code does not grow with the sequence's length. The gradient of the scan itself
against float64 finite differences.
"""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch

import graphnn as gn
from graphnn import nn, optim, scan_op
from graphnn.nn import recurrent
from tests.graphnn import test_recurrent as flags
from tests.graphnn.torch_oracle import pair

RNG = np.random.default_rng(31)


def data(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


UNROLLED = 1000
"""An UNROLL_LIMIT that unrolls every sequence of these tests."""


@pytest.fixture
def looped(monkeypatch):
    """Every sequence through the time loop, whatever its length."""
    monkeypatch.setattr(recurrent, "UNROLL_LIMIT", 0)


@pytest.mark.parametrize("case", flags.CASES, ids=flags.case_id)
def test_layer_matches_torch_unrolled(case, monkeypatch):
    """Outputs, h_n (and c_n) and every gradient (input, initial states, parameters) of the
    flag matrix (layers, directions, layouts, bias, given states, projections, batch 1,
    unbatched, length 1 and 7), each sequence unrolled, on the numpy reference."""
    monkeypatch.setattr(recurrent, "UNROLL_LIMIT", UNROLLED)
    monkeypatch.setenv("GRAPHNN_BACKEND", "numpy")
    build, x, states = flags.layer_case(case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours, theirs = pair(build)
        flags.assert_results(flags.run_layer(gn, ours, x, states), flags.run_layer(torch, theirs, x, states))


def stacked(m, kind: str, **extra):
    """A two-layer bidirectional layer of ``kind`` over (N, L, 3): its last output through a
    Linear, then the last layer's reverse h_n, side by side (N, 6)."""

    m_cat = (torch if m is torch.nn else gn).cat

    class Net(m.Module):
        def __init__(self):
            super().__init__()
            self.rnn = getattr(m, kind)(3, 4, num_layers=2, batch_first=True, bidirectional=True, **extra)
            self.head = m.Linear(8, 2)

        def forward(self, x):
            out, h = self.rnn(x)
            return m_cat([self.head(out[:, -1]), (h[0] if isinstance(h, tuple) else h)[-1]], 1)

    return Net()


@pytest.mark.parametrize("kind, backend", [("LSTM", "numpy"), ("GRU", "numpy"), ("RNN", "numpy"), ("GRU", "c")])
def test_the_loop_and_the_unrolled_form_agree(kind, backend, monkeypatch):
    """One model traced both ways (UNROLL_LIMIT above and below the length): outputs and h_n
    bit for bit on the reference (on C to an ulp: the loop's step is vectorised, with glibc's
    vector math, where the unrolled steps fuse into other loops); the loss's gradients to
    float32 rounding (on the reference)."""
    x, target = data(3, 7, 3), data(3, 6)
    model = stacked(nn, kind)
    results = []
    for limit in (UNROLLED, 0):
        monkeypatch.setattr(recurrent, "UNROLL_LIMIT", limit)
        predict = gn.compile(model, backend=backend)
        grads = []
        if backend == "numpy":  # (each C program costs seconds to compile: the gradients on the reference)
            train = gn.compile(model, nn.MSELoss(), backend=backend)
            model.zero_grad()
            train.grad(x, target)
            grads = [np.asarray(p.grad).copy() for p in model.parameters()]
        results.append(([predict(x)], grads))
        assert any(n.op == "scan" for n in predict.graphs[next(iter(predict.graphs))]["forward"].nodes) == (limit == 0)
    (unrolled, grads_unrolled), (loop, grads_loop) = results
    for a, b in zip(unrolled, loop):
        if backend == "numpy":
            np.testing.assert_array_equal(a, b)
        else:  # the step's loop vectorises with glibc's vector expf and tanhf: an ulp from the scalar calls
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    for a, b in zip(grads_unrolled, grads_loop):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def long_net(m, kind: str):
    """A layer of ``kind`` over (N, 100, 2) (the LSTM projected to 2), its last output through
    a Linear."""
    extra = dict(proj_size=2) if kind == "LSTM" else {}

    class Net(m.Module):
        def __init__(self):
            super().__init__()
            self.rnn = getattr(m, kind)(2, 5, batch_first=True, **extra)
            self.head = m.Linear(2 if extra else 5, 3)

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    return Net()


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_a_hundred_steps_train_as_torch(kind):
    """gn.compile on C over 100 steps: three SGD-momentum steps at batch 3, then one at batch
    1 on the same program: losses and parameters as torch's."""
    ours, theirs = pair(lambda m: long_net(m, kind))
    x, y = data(3, 100, 2), RNG.integers(0, 3, 3)
    train = gn.compile(ours, nn.CrossEntropyLoss(), optim.SGD(ours.parameters(), lr=0.1, momentum=0.9), backend="c")
    opt = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9)
    for batch in (slice(0, 3), slice(0, 3), slice(0, 3), slice(2, 3)):
        loss = train.step(x[batch], y[batch])
        opt.zero_grad()
        expected = torch.nn.functional.cross_entropy(theirs(torch.tensor(x[batch])), torch.tensor(y[batch]))
        expected.backward()
        opt.step()
        np.testing.assert_allclose(loss, expected.item(), rtol=1e-5)
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-4, atol=1e-5, err_msg=name)
    assert len(train.graphs) == 1


@pytest.mark.parametrize("backend", ["plan", "c", "triton"])
def test_every_backend_runs_the_loop(backend, looped):
    """A two-layer bidirectional LSTM over 11 steps, batch 5: the loss and every parameter's
    gradient as torch's, on the plan interpreter (NaN-filled arena: nothing is read before it
    is written), C and Triton's interpreter."""
    ours, theirs = pair(lambda m: stacked(m, "LSTM"))
    x, y = data(5, 11, 3), RNG.integers(0, 2, 5)
    train = gn.compile(ours, lambda out, y: nn.functional.cross_entropy(out[:, :2], y), backend=backend)
    loss = train.grad(x, y)
    expected = torch.nn.functional.cross_entropy(theirs(torch.tensor(x))[:, :2], torch.tensor(y))
    expected.backward()
    np.testing.assert_allclose(loss, expected.item(), rtol=1e-5)
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        np.testing.assert_allclose(np.asarray(p.grad), q.grad.numpy(), rtol=1e-4, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("backend", ["c", "triton"])
def test_the_literal_loop_with_a_long_sequence(backend, monkeypatch):
    """PyTorch's loop over a 20-step LSTM, batch sizes 4, 3, 4, 3, 4: losses as torch's."""
    monkeypatch.setenv("GRAPHNN_BACKEND", backend)

    def build(m):
        class Net(m.nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn = m.nn.LSTM(3, 5, batch_first=True, num_layers=2)
                self.head = m.nn.Linear(5, 2)

            def forward(self, x):
                return self.head(self.rnn(x)[0][:, -1])

        return Net()

    ours, theirs = pair(build, modules=False)
    xs, ys = [data(4, 20, 3) for _ in range(5)], [RNG.integers(0, 2, 4) for _ in range(5)]

    def losses(lib, model):
        opt = lib.optim.SGD(model.parameters(), lr=0.1)
        seen = []
        for k, (x, y) in enumerate(zip(xs, ys)):
            batch = 4 if k % 2 == 0 else 3
            loss = lib.nn.functional.cross_entropy(model(lib.tensor(x[:batch])), lib.tensor(y[:batch]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen.append(loss.item())
        return seen

    np.testing.assert_allclose(losses(gn, ours), losses(torch, theirs), rtol=1e-5)


def c_source(length: int) -> str:
    model = long_net(nn, "LSTM")
    train = gn.compile(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), backend="c")
    train.step(data(2, length, 2), RNG.integers(0, 3, 2))
    return next(iter(train.executables.values())).source


def test_generated_code_does_not_grow_with_the_sequence():
    """The C of a 100-step training step is the 16-step one with another loop bound: as many
    kernels, each loop running them once per position."""
    short, long = c_source(16), c_source(100)
    functions = lambda source: re.findall(r"^(?:static )?void (\w+)\(", source, re.M)  # noqa: E731
    assert functions(short) == functions(long)
    assert len(long.splitlines()) == len(short.splitlines())
    assert re.findall(r"loop_t < (\d+);", long) == ["100", "100"]  # the forward and the backward loop


def test_the_scan_gradient_against_finite_differences():
    """A scan node built by hand (a GRU step, both directions of iteration) on the reference in
    float64: the gradient of a weighted sum of its slots with respect to the sequence, the
    initial carry and the weights, against central differences."""
    from graphnn.autodiff import gradients
    from graphnn.ir import Graph
    from graphnn.ops import Builder
    from runtime import reference

    for reverse in (False, True):
        body = recurrent._body(recurrent.gru_step, (2, 9), ((2, 3),), ((9, 3), (9,), None), True, "", "")
        graph = Graph()
        b = Builder(graph)
        seq, init = b.leaf("param", "seq", (5, 2, 9)), b.leaf("param", "init", (2, 3))
        w, bias = b.leaf("param", "w", (9, 3)), b.leaf("param", "bias", (9,))
        node = scan_op.scan(b, body, [seq], [init], [w, bias], reverse)
        every, final = scan_op.results(b, node)
        weights = b.leaf("input", "weights", every["c0"].shape)
        from graphnn import pointwise as pw

        total = b.reduce("sum", b.pointwise(pw.mul, every["c0"], weights), (0, 1, 2))
        total = b.pointwise(pw.add, b.reshape(total, ()), b.reshape(b.reduce("sum", final["c0"], (0, 1)), ()))
        graph.outputs["loss"] = total
        leaves = [seq, init, w, bias]
        backward, grads = gradients(graph, total, leaves)
        backward.outputs.update({leaf.name: grads[leaf.id] for leaf in leaves})
        rng = np.random.default_rng(5)
        feeds = {leaf.name: rng.standard_normal(leaf.shape) for leaf in leaves}
        feeds["weights"] = rng.standard_normal(weights.shape)
        outputs, _ = reference.run(backward, feeds, 2, np.float64)
        for leaf in leaves:
            numeric = np.zeros(leaf.shape)
            for index in np.ndindex(*leaf.shape):
                for sign in (1, -1):
                    moved = dict(feeds, **{leaf.name: feeds[leaf.name].copy()})
                    moved[leaf.name][index] += sign * 1e-6
                    numeric[index] += sign * reference.run(graph, moved, 2, np.float64)[0]["loss"] / 2e-6
            np.testing.assert_allclose(outputs[leaf.name], numeric, rtol=1e-5, atol=1e-7, err_msg=leaf.name)
