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
    assert c_model.scale.dtype == np.float32
    np.testing.assert_allclose(gn.compile(c_model, backend="c")(X), gn.compile(numpy_model, backend="numpy")(X), rtol=1e-5, atol=1e-6)
    bn = nn.BatchNorm1d(3)
    bn.running_var = np.full(3, 4.0)  # assignment converts too
    assert bn.running_var.dtype == np.float32


def test_a_fused_step_leaves_p_grad_alone():
    results = {}
    for backend in ("c", "numpy"):
        gn.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
        train = gn.compile(model, nn.MSELoss(), optim.SGD(model.parameters(), lr=0.1), backend=backend)
        train.grad(X[:4], Y[:4])
        before = model[0].weight.grad.copy()
        train.step(X[4:], Y[4:])
        np.testing.assert_array_equal(model[0].weight.grad, before)
        results[backend] = model[0].weight.data.copy()
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
