"""Models that once made the C backend differ from the numpy reference (regressions)."""
from __future__ import annotations

import numpy as np

import graphnn as gn
from graphnn import nn, optim
from graphnn.nn import functional as F


def twins(make, seed=0):
    gn.manual_seed(seed)
    a, b = make(), make()
    b.load_state_dict({k: np.array(v, copy=True) for k, v in a.state_dict().items()})
    return a, b


RNG = np.random.default_rng(0)
X = RNG.standard_normal((8, 4)).astype(np.float32)
Y = RNG.standard_normal((8, 2)).astype(np.float32)


class Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(4, 4)
        self.register_buffer("scale", np.linspace(0.5, 2.0, 4))  # float64 from numpy

    def forward(self, x):
        return self.l(x) * self.scale


def test_float64_buffers_are_stored_as_float32():
    c_model, numpy_model = twins(Scaled)
    assert c_model.scale.dtype == gn.float32
    np.testing.assert_allclose(gn.compile(c_model, backend="c")(X), gn.compile(numpy_model, backend="numpy")(X), rtol=1e-5, atol=1e-6)
    bn = nn.BatchNorm1d(3)
    bn.running_var = np.full(3, 4.0)  # assignment converts too
    assert bn.running_var.dtype == gn.float32


def test_a_fused_step_leaves_p_grad_alone():
    results = {}
    for backend in ("c", "numpy"):
        gn.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
        train = gn.compile(model, nn.MSELoss(), optim.SGD(model.parameters(), lr=0.1), backend=backend)
        train.grad(X[:4], Y[:4])
        before = model[0].weight.grad.clone()
        train.step(X[4:], Y[4:])
        np.testing.assert_array_equal(model[0].weight.grad, before)
        results[backend] = model[0].weight.data.clone()
    np.testing.assert_allclose(results["c"], results["numpy"], rtol=1e-5, atol=1e-6)


class Bilinear(nn.Module):
    """Parameters whose gradients read other parameters at offsets that are not in step."""

    def __init__(self):
        super().__init__()
        self.l = nn.Linear(4, 2)
        rng = np.random.default_rng(1)
        for name in ("a1", "a2", "b1", "b2", "c2", "c1"):
            setattr(self, name, nn.Parameter(rng.standard_normal(3).astype(np.float32), requires_grad=name[0] == "a"))

    def forward(self, x):
        return self.l(x)


def test_same_body_kernels_merge_only_when_every_slice_is_adjacent():
    c_model, numpy_model = twins(Bilinear)
    for backend, m in (("c", c_model), ("numpy", numpy_model)):
        def loss(out, target, m=m):
            return (F.mse_loss(out, target) + (m.a1 * m.b1).sum() + (m.a1 * m.c1).sum()
                    + (m.a2 * m.b2).sum() + (m.a2 * m.c2).sum())
        gn.compile(m, loss, optim.SGD(m.parameters(), lr=0.1, momentum=0.5), backend=backend).step(X, Y)
    for name in ("a1", "a2", "l.weight"):
        np.testing.assert_allclose(c_model.state_dict()[name], numpy_model.state_dict()[name], rtol=1e-5, atol=1e-6)


def run_both(make, train):
    """``train(model, backend) -> list of numbers`` on twin models; both backends agree."""
    c_model, numpy_model = twins(make)
    got, expected = train(c_model, "c"), train(numpy_model, "numpy")
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(expected, np.float64), rtol=1e-5, atol=1e-6)
    for key, value in numpy_model.state_dict().items():
        np.testing.assert_allclose(c_model.state_dict()[key], value, rtol=1e-5, atol=1e-6, err_msg=key)


def mlp():
    return nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))


class Logit(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))

    def forward(self, x):
        return self.body(x).squeeze(1)  # the output is a view of a value the loss also reads


def test_an_output_that_is_a_view_of_a_fused_value():
    labels = (X[:, 0] > 0).astype(np.float32)

    def train(model, backend):
        program = gn.compile(model, nn.BCEWithLogitsLoss(), optim.SGD(model.parameters(), lr=0.5), backend=backend)
        history = program.fit(X, labels, batch_size=4, epochs=3, shuffle=False, validation_data=(X, labels), verbose=0)
        return list(program.loss_and_output(X, labels)[1]) + history["val_accuracy"]

    run_both(Logit, train)


def test_a_second_optimizer_over_part_of_the_model():
    def train(model, backend):
        first = gn.compile(model, nn.MSELoss(), optim.SGD(model.parameters(), lr=0.1), backend=backend)
        losses = [first.step(X, Y)]
        head = gn.compile(model, nn.MSELoss(), optim.SGD(model[2].parameters(), lr=0.1), backend=backend)
        losses += [head.step(X, Y), head.step(X, Y), first.step(X, Y), first.step(X, Y)]
        return losses

    run_both(mlp, train)


def test_add_param_group_keeps_momentum_and_trains_the_new_group():
    def train(model, backend):
        opt = optim.SGD(model[0].parameters(), lr=0.1, momentum=0.9)
        program = gn.compile(model, nn.MSELoss(), opt, backend=backend)
        losses = [program.step(X, Y), program.step(X, Y)]
        opt.add_param_group({"params": model[2].parameters(), "lr": 0.01})
        return losses + [program.step(X, Y) for _ in range(3)]

    run_both(mlp, train)
    gn.manual_seed(0)
    model = mlp()
    before = model[2].weight.data.clone()
    opt = optim.SGD(model[0].parameters(), lr=0.1)
    program = gn.compile(model, nn.MSELoss(), opt, backend="c")
    program.step(X, Y)
    opt.add_param_group({"params": model[2].parameters()})
    program.step(X, Y)
    assert not np.allclose(model[2].weight.data, before)


class Clamped(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.fc_weight = nn.Parameter(np.ones(4, np.float32))  # a C name that "fc.weight" also spells

    def forward(self, x):
        return (self.fc(x) * self.fc_weight).clamp(-0.5, 0.5)


def test_clamp_and_parameter_names_that_differ_by_punctuation():
    def train(model, backend):
        program = gn.compile(model, nn.MSELoss(), optim.SGD(model.parameters(), lr=0.1), backend=backend)
        return [program.step(X, np.zeros((8, 4), np.float32)) for _ in range(3)]

    run_both(Clamped, train)


def test_clamp_gradient_passes_at_the_bounds_like_torch():
    import torch

    x = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0], requires_grad=True)
    x.clamp(-0.5, 0.5).sum().backward()
    from graphnn import pointwise as pw
    from graphnn.autodiff import gradients
    from graphnn.ir import Graph
    from graphnn.ops import Builder
    from runtime import reference

    graph = Graph()
    b = Builder(graph)
    leaf = b.leaf("param", "v", (5,))
    loss = b.reshape(b.reduce("sum", b.pointwise(pw.clamp(-0.5, 0.5), leaf), (0,)), ())
    graph, grads = gradients(graph, loss, [leaf])
    graph.outputs["g"] = grads[leaf.id]
    out, _ = reference.run(graph, {"v": x.detach().numpy()}, 1)
    np.testing.assert_array_equal(out["g"], x.grad.numpy())


class BatchAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(4, 2)

    def forward(self, x):
        h = self.l(x).tanh()
        return (h @ h.t()).softmax(1) @ h  # a B x B intermediate


def test_intermediates_quadratic_in_the_batch():
    def train(model, backend):
        program = gn.compile(model, nn.MSELoss(), optim.SGD(model.parameters(), lr=0.1), backend=backend)
        return [program.step(X[:n], Y[:n]) for n in (8, 3, 8)]

    run_both(BatchAttention, train)


def test_long_sums_keep_their_precision():
    values = np.random.default_rng(3).random((1, 1_000_000)).astype(np.float32) + 1.0

    class Total(nn.Module):
        def forward(self, v):
            return v.sum(1, keepdim=True)

    got = gn.compile(Total(), backend="c")(values)[0, 0]
    assert abs(got - values.astype(np.float64).sum()) / values.sum() < 1e-6



def two_biases(lib):
    """Two biases added alike have one gradient node (after CSE), which the fused step must
    place in both gradient slots; a broadcast state is a matmul operand of stride 0."""

    class TwoBiases(lib.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lib.nn.Linear(2, 2)
            self.second = lib.nn.Parameter(lib.zeros(2))
            self.register_buffer("state", lib.full((2,), 0.5))

        def forward(self, x):
            return self.lin(x) + self.second + self.state.expand(x.shape[0], 2) @ self.lin.weight

    return TwoBiases()


def test_equal_gradients_each_reach_p_grad_and_broadcast_operands_multiply(backend, monkeypatch):
    """Three SGD steps of the literal loop (fused: backward and update in one program) as torch's:
    both biases' .grad (one was left at zero) and the product with a broadcast operand (the plan
    interpreter could not read it)."""
    import torch

    from tests.graphnn.torch_oracle import pair

    monkeypatch.setenv("GRAPHNN_BACKEND", backend)
    models = pair(two_biases, modules=False)
    grads = []
    for lib, model in zip((gn, torch), models):
        opt = lib.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(3):  # the first step runs in the reference, the next ones compiled for the backend
            loss = (model(lib.tensor(X[:, :2])) ** 2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            grads.append([p.grad.numpy().copy() for p in model.parameters()])
    for got, expected in zip(grads[:3], grads[3:]):
        for a, b in zip(got, expected):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
