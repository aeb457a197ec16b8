"""NaN and infinities travel through training as they do in PyTorch, on every backend.

The activation-by-activation sweep against torch is tests/graphnn/test_special_values.py; these
are the whole-network reproducers: a NaN pixel must make the same parameters NaN as in torch
(never be hidden by an activation or a pooling maximum), and gradients of maxima go to the first
NaN of max(dim) and the last NaN of a pooling window, as torch sends them.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import graphnn as gn
from graphnn import nn, optim
from graphnn.nn import functional as F
from runtime import reference
from tests.conftest import copy_torch_weights

NAN = np.float32(np.nan)


def test_relu_keeps_nan(backend):
    out = gn.compile(nn.Sequential(nn.ReLU()), backend=backend)(np.array([[np.nan, 2.0, -1.0]], np.float32))
    np.testing.assert_array_equal(out, [[np.nan, 2.0, 0.0]])


def nan_pattern(state: dict) -> dict:
    return {k: np.isnan(np.asarray(v, np.float64)) for k, v in state.items()}


def one_step_both(make, x, y, backend, loss="CrossEntropyLoss"):
    """One SGD-momentum step in torch and in graphnn from the same weights; returns both states
    and both losses."""
    torch.manual_seed(0)
    ref, model = make(torch.nn), make(nn)
    copy_torch_weights(model, ref)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    ref_opt.zero_grad()
    ref_loss = getattr(torch.nn, loss)()(ref(torch.from_numpy(x)), torch.from_numpy(y))
    ref_loss.backward()
    ref_opt.step()
    train = gn.compile(model, getattr(nn, loss)(), optim.SGD(model.parameters(), lr=0.1, momentum=0.9), backend=backend)
    ours = train.step(x, y)
    theirs = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
    return model.state_dict(), theirs, ours, ref_loss.item()


def test_nan_pixel_spreads_as_in_torch(backend):
    """The probe's case: Linear-BatchNorm-ReLU on digit-sized inputs with one NaN pixel."""
    rng = np.random.default_rng(0)
    x = rng.random((16, 64)).astype(np.float32)
    x[3, 10] = np.nan
    y = rng.integers(0, 10, 16)

    def make(lib):
        return lib.Sequential(lib.Linear(64, 32), lib.BatchNorm1d(32), lib.ReLU(), lib.Linear(32, 10))

    ours, theirs, loss, ref_loss = one_step_both(make, x, y, backend)
    assert np.isnan(loss) and np.isnan(ref_loss)
    patterns, expected = nan_pattern(ours), nan_pattern(theirs)
    for key in expected:
        np.testing.assert_array_equal(patterns[key], expected[key], err_msg=key)
    assert expected["0.weight"].any()  # the case is not vacuous: the NaN reached the parameters


def test_max_pool_gradient_goes_to_the_last_nan(backend):
    x = np.arange(2 * 1 * 4 * 4, dtype=np.float32).reshape(2, 1, 4, 4) / 7.0
    x[0, 0, 1, 1] = x[0, 0, 0, 3] = x[0, 0, 1, 2] = np.nan  # two NaNs in one window: torch's pooling takes the last
    x[1, 0, 2, 2] = np.inf

    def make(lib):
        return lib.Sequential(lib.Conv2d(1, 1, 1), lib.MaxPool2d(2))

    torch.manual_seed(0)
    ref, model = make(torch.nn), make(nn)
    with torch.no_grad():  # a positive scale keeps the maxima where the input put them
        ref[0].weight.fill_(2.0)
        ref[0].bias.fill_(0.0)
    copy_torch_weights(model, ref)
    xt = torch.from_numpy(x).requires_grad_(True)
    pooled = ref[1](ref[0](xt))
    pooled.sum().backward()
    out = gn.compile(model, backend=backend)(x)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(pooled.detach().numpy()))
    # the input gradient of sum(pool(conv(x))): a model whose only parameter sees it
    ref_grad = xt.grad.numpy()
    assert ref_grad[0, 0, 0, 3] == 0.0 and ref_grad[0, 0, 1, 2] == 2.0  # torch: the last NaN in row-major order

    class Shift(nn.Module):
        def __init__(self):
            super().__init__()
            self.shift = nn.Parameter(np.zeros((1, 1, 4, 4), np.float32))

        def forward(self, input):
            return F.max_pool2d(2.0 * (input + self.shift), 2).sum()

    shift = Shift()
    train = gn.compile(shift, lambda out, target: out, optim.SGD(shift.parameters(), lr=0.0), backend=backend)
    train.grad(x, np.zeros(2, np.float32))
    np.testing.assert_array_equal(shift.shift.grad, ref_grad.sum(0, keepdims=True))


def test_argmax_and_max_pick_the_first_nan():
    class Pick(nn.Module):
        def forward(self, input):
            values, index = input.max(1)
            return values, index, input.argmax(1)

    x = np.array([[1.0, np.nan, 3.0, np.nan], [np.inf, 1.0, np.inf, 0.0], [-np.inf] * 4], np.float32)  # first NaN
    values, index, argmax = gn.compile(Pick(), backend="c")(x)
    ref_values, ref_index = torch.from_numpy(x).max(1)
    np.testing.assert_array_equal(values, ref_values.numpy())
    np.testing.assert_array_equal(index, ref_index.numpy())
    np.testing.assert_array_equal(argmax, torch.from_numpy(x).argmax(1).numpy())


def test_max_pool_of_one_element_trains_as_in_torch():
    """MaxPool2d(kernel_size=1) is the identity; its training step once failed to compile on C."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 1, 6, 6)).astype(np.float32)
    y = np.array([0, 1, 2, 1])

    def make(lib):
        return lib.Sequential(lib.Conv2d(1, 2, 3), lib.MaxPool2d(1), lib.Flatten(), lib.Linear(32, 3))

    ours, theirs, loss, ref_loss = one_step_both(make, x, y, "c")
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    for key in theirs:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-5, atol=1e-7, err_msg=key)


def test_reference_sums_accumulate_in_double():
    """A float32 running sum of 1 followed by 100000 values of 1e-8 stays 1.0; the oracle's is
    1.001 (the float64 sum, rounded once)."""
    class Total(nn.Module):
        def forward(self, input):
            return input.sum(0, keepdim=True)

    x = np.full((100001, 2), 1e-8, np.float32)
    x[0] = 1.0
    graph = gn.trace(Total(), x)
    outputs, _ = reference.run(graph, {"input": x}, len(x))
    np.testing.assert_array_equal(outputs["output"], np.float32(x.astype(np.float64).sum(0, keepdims=True)))
    assert outputs["output"][0, 0] > np.float32(1.0009)


@pytest.mark.parametrize("backend", ["numpy", "c"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ignore_index", [2, -100])
def test_cross_entropy_ignores_a_real_class_and_selects_past_minus_infinity(backend, reduction, ignore_index):
    """A sample labelled ignore_index adds nothing (even when that index is a real class); -inf
    in a class other than the label does not make the loss NaN (a one-hot product would:
    -inf * 0); loss and gradient against torch."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 3)).astype(np.float32)
    x[1, 0] = -np.inf
    y = np.array([0, 2, 1, 2, 2, 0])

    class Logits(nn.Module):
        def __init__(self):
            super().__init__()
            self.shift = nn.Parameter(np.zeros(3, np.float32))

        def forward(self, input):
            return input + self.shift

    xt = torch.from_numpy(x)
    shift = torch.zeros(3, requires_grad=True)
    ref = torch.nn.CrossEntropyLoss(ignore_index=ignore_index, reduction=reduction)(xt + shift, torch.from_numpy(y))
    model = Logits()
    loss_fn = nn.CrossEntropyLoss(ignore_index=ignore_index, reduction=reduction)
    if reduction == "none":
        out = gn.compile(nn.Sequential(model), backend=backend)(x)
        ours = gn.compile(_LossOf(loss_fn), backend=backend)(out, y)
        np.testing.assert_allclose(ours, ref.detach().numpy(), rtol=1e-6)
        return
    (ref).backward()
    train = gn.compile(model, loss_fn, optim.SGD(model.parameters(), lr=0.0), backend=backend)
    np.testing.assert_allclose(train.grad(x, y), ref.item(), rtol=1e-6)
    np.testing.assert_allclose(model.shift.grad, shift.grad.numpy(), rtol=1e-5, atol=1e-7)


class _LossOf(nn.Module):
    """A loss with reduction='none' as a model of (logits, labels), to read its per-sample values."""

    def __init__(self, loss_fn):
        super().__init__()
        self.loss_fn = loss_fn

    def forward(self, logits, labels):
        return self.loss_fn(logits, labels)
