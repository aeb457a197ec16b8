"""Tracing: the graph a Module records, symbolic batch sizes, Tensor methods against torch, and
the errors for what a static graph cannot follow."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import graphnn as gn
from graphnn import nn
from graphnn.ir import B


def test_graph_prints_one_line_per_node_with_batch_symbol_and_path():
    model = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))
    graph = gn.trace(model, np.zeros((4, 1), np.float32), loss_fn=nn.MSELoss(), target=np.zeros((4, 1), np.float32))
    text = str(graph)
    assert "input %input:f32[B,1]" in text
    assert "param %0.weight:f32[8,1]" in text
    assert any("= matmul %input" in line and "# 0 (Linear)" in line for line in text.splitlines())
    assert any(line.startswith("%") and "f32[B,8] = tanh" in line and "# 1 (Tanh)" in line for line in text.splitlines())
    assert "mul[x0/B]" in text  # the mean divides by the symbolic batch
    assert text.splitlines()[-1].startswith("output loss")
    assert graph.outputs["output"].shape == (B, 1)


class FlattenView(nn.Module):
    """The first edition's idiom: x.view(x.size(0), -1)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 2)

    def forward(self, x):
        return self.fc(x.view(x.size(0), -1))


def test_view_with_symbolic_batch_and_one_graph_for_all_batch_sizes(backend):
    model = FlattenView()
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    graph = gn.trace(model, x)
    assert graph.outputs["output"].shape == (B, 2)
    predict = gn.compile(model, backend=backend)
    for batch in (1, 5, 64, 3):
        xb = np.resize(x, (batch, 2, 3)).astype(np.float32)
        expected = xb.reshape(batch, -1) @ model.fc.weight.data.T + model.fc.bias.data
        np.testing.assert_allclose(predict(xb), expected, rtol=1e-5, atol=1e-6)
    assert len(predict.graphs) == 1
    train = gn.compile(model, nn.MSELoss(), gn.optim.SGD(model.parameters(), lr=0.1), backend=backend)
    for batch in (1, 7, 2):
        train.step(np.ones((batch, 2, 3), np.float32), np.ones((batch, 2), np.float32))
    assert len(train.graphs) == 1


def _forward_code(x, w, v):
    """Tensor methods a user writes in forward; runs unchanged on torch and graphnn tensors."""
    a = (x @ w + v) * 0.5 - x.sum(1, keepdim=True) / 3
    b = (a ** 2 + 1).sqrt().log() + (-a).exp().tanh() + a.sigmoid() * a.relu() - a.abs()
    c = b.reshape(b.shape[0], 2, 2).transpose(1, 2).flatten(1) + b.t().t()
    d = c.unsqueeze(1).expand(-1, 3, -1).permute(0, 2, 1).mean(2) + c.max(1, keepdim=True)[0]
    e = d / (1 + d.amax(0)) + d.mean() + (2 - d.view(-1, 4).squeeze()) * d.max()
    return (e @ w.t()) * e.sum(0).mean() + e.max(1)[0].unsqueeze(1).sum()


class MethodModel:
    @staticmethod
    def build(lib, Parameter, w, v):
        class M(lib.Module):
            def __init__(self):
                super().__init__()
                self.w = Parameter(w)
                self.v = Parameter(v)

            def forward(self, x):
                return _forward_code(x, self.w, self.v)

        return M()


def test_tensor_methods_match_torch_forward_and_gradients(backend):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    w = rng.standard_normal((3, 4)).astype(np.float32)
    v = rng.standard_normal((4,)).astype(np.float32)
    ref = MethodModel.build(torch.nn, lambda a: torch.nn.Parameter(torch.from_numpy(a.copy())), w, v)
    model = MethodModel.build(nn, nn.Parameter, w, v)
    expected = ref(torch.from_numpy(x))
    np.testing.assert_allclose(gn.compile(model, backend=backend)(x), expected.detach().numpy(), rtol=1e-5, atol=1e-5)
    target = np.zeros(expected.shape, np.float32)
    torch.nn.L1Loss(reduction="sum")(expected, torch.from_numpy(target)).backward()
    gn.compile(model, nn.L1Loss(reduction="sum"), backend=backend).grad(x, target)
    np.testing.assert_allclose(model.w.grad, ref.w.grad.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.v.grad, ref.v.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_argmax_and_max_indices_match_torch(backend):
    x = np.array([[1.0, 3.0, 3.0], [0.5, -1.0, 0.5], [2.0, 2.0, 2.0]], np.float32)

    class M(nn.Module):
        def forward(self, x):
            values, indices = x.max(1)
            return indices, x.argmax(0), values

    indices, argmax0, values = gn.compile(M(), backend=backend)(x)
    t = torch.from_numpy(x)
    np.testing.assert_array_equal(indices, t.max(1).indices.numpy())
    np.testing.assert_array_equal(argmax0, t.argmax(0).numpy())
    np.testing.assert_array_equal(values, t.max(1).values.numpy())
    assert indices.dtype == np.int64


def test_calling_a_module_on_arrays_runs_it():
    gn.manual_seed(0)  # the same weights every run
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU())
    x = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    expected = np.maximum(x @ model[0].weight.data.T + model[0].bias.data, 0)
    # float32 rounding: numpy and the generated code may contract a multiply and an add differently
    np.testing.assert_allclose(model(x), expected, rtol=1e-5, atol=1e-7)
    loss = nn.MSELoss()(model(x), np.zeros((4, 2), np.float32))
    np.testing.assert_allclose(loss, np.mean(expected**2), rtol=1e-5)


# -- what a static graph cannot follow ----------------------------------------------------------
class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        y = self.fc(x)
        if y.sum() > 0:
            return y
        return -y


class Floaty(nn.Module):
    def forward(self, x):
        return x * float(x.mean())


@pytest.mark.parametrize("model", [Branchy(), Floaty()], ids=["if", "float"])
def test_control_flow_on_values_is_a_clear_error(model):
    with pytest.raises(gn.TraceError, match="static graph"):
        gn.trace(model, np.zeros((3, 2), np.float32))


class PlainList(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = [nn.Linear(2, 2), nn.Linear(2, 2)]

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class PlainDict(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(2, 2)
        self.blocks = {"a": nn.Linear(2, 2)}

    def forward(self, x):
        return self.blocks["a"](self.head(x))


def test_submodules_in_plain_containers_are_caught():
    with pytest.raises(gn.UnregisteredParameterError, match=r"layers\[0\].*plain Python list.*nn.ModuleList"):
        gn.trace(PlainList(), np.zeros((3, 2), np.float32))
    with pytest.raises(gn.UnregisteredParameterError, match=r"blocks\['a'\].*plain Python dict.*nn.ModuleDict"):
        gn.trace(PlainDict(), np.zeros((3, 2), np.float32))
    assert [n for n, _ in PlainList().named_parameters()] == []  # what the optimizer would have seen


def test_loss_must_be_a_scalar(backend):
    model = nn.Linear(2, 1)
    with pytest.raises(gn.TraceError, match="scalar"):
        gn.compile(model, nn.MSELoss(reduction="none"), gn.optim.SGD(model.parameters()), backend=backend).step(
            np.zeros((3, 2), np.float32), np.zeros((3, 1), np.float32))
