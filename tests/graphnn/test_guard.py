"""Changes to a model after its first compiled step take effect, as they do in PyTorch.

Each test runs the same sequence in torch and in graphnn (same weights, same data): a few steps,
a change to the model or the loss, more steps; the losses and the final state must agree. Without
the guard the compiled program keeps running its first trace and the comparisons fail.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import graphnn as gn
from graphnn import guard, nn, optim
from tests.conftest import assert_state_close, copy_torch_weights

RNG = np.random.default_rng(3)
X = RNG.standard_normal((16, 5)).astype(np.float32)
Y = RNG.standard_normal((16, 3)).astype(np.float32)


def nets(lib):
    return lib.Sequential(lib.Linear(5, 8), lib.BatchNorm1d(8), lib.LeakyReLU(0.01), lib.Linear(8, 3))


def run_both(change, backend, steps=3, loss=("MSELoss", {})):
    """``steps`` steps, then ``change(model, loss_fn)`` on each side, then ``steps`` more."""
    torch.manual_seed(0)
    ref, model = nets(torch.nn), nets(nn)
    copy_torch_weights(model, ref)
    ref_loss, our_loss = getattr(torch.nn, loss[0])(**loss[1]), getattr(nn, loss[0])(**loss[1])
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
    train = gn.compile(model, our_loss, optim.SGD(model.parameters(), lr=0.05, momentum=0.9), backend=backend)
    ref_losses, losses = [], []
    for k in range(2 * steps):
        if k == steps:
            change(ref, ref_loss)
            change(model, our_loss)
        ref_opt.zero_grad()
        value = ref_loss(ref(torch.from_numpy(X)), torch.from_numpy(Y))
        value.backward()
        ref_opt.step()
        ref_losses.append(value.item())
        losses.append(train.step(X, Y))
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    assert_state_close(model, ref, rtol=1e-5)
    return model, train


def freeze_first(model, loss_fn):
    model[0].requires_grad_(False)


def test_freezing_a_layer_after_steps_stops_its_updates(backend):
    model, _ = run_both(freeze_first, backend)
    assert model[0].weight.grad is None or not model[0].weight.requires_grad


@pytest.mark.parametrize("change", [
    lambda m, l: setattr(m[1], "momentum", 0.5),
    lambda m, l: setattr(m[1], "eps", 0.25),
    lambda m, l: setattr(m[2], "negative_slope", 0.3),
    lambda m, l: setattr(l, "reduction", "sum"),
    lambda m, l: m[0].requires_grad_(False) and m[0].weight.requires_grad_(True),
], ids=["bn-momentum", "bn-eps", "leaky-slope", "loss-reduction", "unfreeze-weight-only"])
@pytest.mark.parametrize("backend", ["numpy", "c"])  # the guard sits above the backends
def test_attribute_changes_after_steps_take_effect(change, backend):
    run_both(change, backend)


def test_replacing_a_submodule_retraces():
    def swap(model, loss_fn):
        model[2] = (torch.nn if isinstance(model, torch.nn.Module) else nn).Tanh()

    run_both(swap, "c")


def test_unrelated_changes_keep_the_compiled_program():
    torch.manual_seed(0)
    model = nets(nn)
    train = gn.compile(model, nn.MSELoss(), optim.SGD(model.parameters(), lr=0.05), backend="c")
    train.step(X, Y)
    graphs, executable = dict(train.graphs), next(iter(train.executables.values()))
    model.note = "epoch 3"  # an attribute the forward never reads
    model[2].negative_slope = 0.01  # set to the value it already has
    train.step(X, Y)
    assert train.graphs == graphs and next(iter(train.executables.values())) is executable
    version = guard.version
    for _ in range(3):
        train.step(X, Y)
    assert guard.version == version, "a training step must not look like a change to the model"


def test_inference_program_sees_a_changed_activation():
    model = nn.Sequential(nn.LeakyReLU(0.1))
    forward = gn.compile(model, backend="c")
    x = np.array([[-2.0, 3.0]], np.float32)
    np.testing.assert_array_equal(forward(x), np.float32([[-2.0 * np.float32(0.1), 3.0]]))
    model[0].negative_slope = 0.5
    np.testing.assert_array_equal(forward(x), [[-1.0, 3.0]])
    np.testing.assert_array_equal(model(x), [[-1.0, 3.0]])  # the eager call's cached program too


def test_assumptions_name_what_changed():
    model = nets(nn)
    with guard.Assumptions([model]) as assumed:
        gn.trace(model, X)
    assert assumed.holds()
    model[1].eps = 1e-3
    assert not assumed.holds()
    assert assumed.broken() == ["BatchNorm1d.eps"]


def test_replacing_a_submodule_keeps_its_position():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    model[1] = nn.Tanh()
    model.add_module("0", nn.Linear(2, 3))
    assert [type(m).__name__ for m in model] == ["Linear", "Tanh", "Linear"]
    assert list(dict(model.named_parameters())) == ["0.weight", "0.bias", "2.weight", "2.bias"]
