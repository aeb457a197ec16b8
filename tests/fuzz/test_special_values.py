"""NaN, +inf and -inf through every activation, pooling layer and loss, against torch.

The values under test are a Parameter ``p``: the model computes ``layer(x + p)`` with ``x`` all
zeros, so ``p.grad`` is the gradient with respect to the layer's input, one entry per value
(no matmul mixes a NaN into its neighbours). Each case compiles one program and compares the
output, the loss and the gradient with torch's: NaN where torch has NaN and nowhere else, the
same infinities, the finite values to float32 rounding.

Activations and pooling layers feed ``(output * w).sum()`` with finite weights w in [0.5, 1.5]
(the target), so the gradient that reaches them is w whatever their output is, and p.grad
shows the layer's own derivative at each special value. Losses see the special values in
their input (and, for the element-wise losses, in their target), with class targets that
include an ignored row holding NaN.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import graphnn as gn
from graphnn import nn

NAN, INF = float("nan"), float("inf")

# rows of 4 values: each special alone among finite ones, specials together, a row of -inf only
# (softmax over it is NaN), and finite rows (zero, signed zero, kinks) as controls
ROWS = np.array([
    [NAN, 1.0, -1.0, 0.0],
    [INF, 0.5, -2.0, 3.0],
    [-INF, -0.5, 2.0, 0.25],
    [NAN, INF, -INF, 1.0],
    [INF, INF, 1.0, -1.0],
    [-INF, -INF, -INF, -INF],
    [0.0, -0.0, 1e-4, -30.0],
    [-1.0, 1.0, 20.0, 25.0],
], np.float32)

ACTIVATIONS = [
    ("ReLU", (), {}), ("Tanh", (), {}), ("Sigmoid", (), {}), ("Hardtanh", (), {}), ("Hardtanh", (-0.5, 0.25), {}),
    ("LeakyReLU", (), {}), ("LeakyReLU", (0.2,), {}), ("ELU", (), {}), ("ELU", (0.5,), {}), ("GELU", (), {}),
    ("GELU", (), {"approximate": "tanh"}), ("SiLU", (), {}), ("Softplus", (), {}), ("Softplus", (2.0, 1.0), {}),
    ("Softmax", (2,), {}), ("LogSoftmax", (2,), {}), ("Softmax", (1,), {}), ("Identity", (), {}),
]


def _pool_image() -> np.ndarray:
    """(2, 4, 4): channel 0 has one special per 2x2 window and a window with +inf and -inf;
    channel 1 a window of -inf only, NaN beside +inf, exact ties and a NaN on a window border."""
    c0 = np.arange(16, dtype=np.float32).reshape(4, 4) * 0.25 - 2.0
    c0[0, 0], c0[1, 3], c0[2, 1], c0[3, 2], c0[3, 3] = NAN, INF, -INF, INF, -INF
    c1 = np.full((4, 4), 0.5, np.float32)
    c1[0:2, 0:2] = -INF
    c1[0, 2], c1[1, 3] = NAN, INF
    c1[2, 0], c1[3, 1], c1[2, 2] = 1.5, -1.0, NAN
    return np.stack([c0, c1])


POOLS = [
    ("MaxPool2d", (2,), {}), ("MaxPool2d", (3,), {"stride": 1, "padding": 1}),
    ("MaxPool2d", (2,), {"stride": 1, "dilation": 2}), ("MaxPool2d", (1,), {}),
    ("AvgPool2d", (2,), {}), ("AvgPool2d", (3,), {"stride": 1, "padding": 1}),
    ("AvgPool2d", (3,), {"stride": 1, "padding": 1, "count_include_pad": False}),
    ("AvgPool2d", (2,), {"divisor_override": 3}),
]

# (loss, kwargs, where the special values are: "input" or "target")
LOSSES = [
    ("MSELoss", {}, "input"), ("MSELoss", {"reduction": "sum"}, "target"),
    ("L1Loss", {}, "input"), ("L1Loss", {"reduction": "sum"}, "target"),
    ("BCEWithLogitsLoss", {}, "input"), ("BCEWithLogitsLoss", {"reduction": "sum"}, "target"),
    ("CrossEntropyLoss", {}, "input"), ("CrossEntropyLoss", {"reduction": "sum"}, "input"),
    ("CrossEntropyLoss", {}, "probabilities"),
    ("NLLLoss", {}, "input"), ("NLLLoss", {"reduction": "sum"}, "input"),
]
LABELS = np.array([1, 0, 2, -100, 3, 1, 0, 2], np.int64)  # row 3 (NaN, +inf, -inf) is ignored


def _probe(lib, layer, values: np.ndarray, rows: bool):
    """``layer(x + p)`` as a lib Module; with ``rows`` its output is read as (rows, columns)."""
    parameter = lib.Parameter(torch.from_numpy(values.copy()) if lib is torch.nn else values.copy())
    columns = values.shape[-1]

    class Probe(lib.Module):
        def __init__(self):
            super().__init__()
            self.layer = layer
            self.p = parameter

        def forward(self, x):
            y = x + self.p
            return self.layer(y.reshape(-1, columns) if rows else y)

    return Probe()


def _target_rows(lib, loss, classes: bool, columns: int):
    """``loss(output, target)`` with the target's leading (batch) axis folded into rows."""

    class TargetRows(lib.Module):
        def __init__(self):
            super().__init__()
            self.loss = loss

        def forward(self, input, target):
            return self.loss(input, target.reshape(-1) if classes else target.reshape(-1, columns))

    return TargetRows()


def _agrees(got: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Elementwise: both NaN, the same infinity, or both finite and equal to float32 rounding."""
    finite = np.isfinite(expected)
    scale = max(1.0, float(np.abs(expected[finite]).max())) if finite.any() else 1.0
    with np.errstate(invalid="ignore"):
        close = np.abs(got - expected) <= 1e-6 * scale + 1e-5 * np.abs(expected)
    return (np.isnan(got) & np.isnan(expected)) | (np.isinf(expected) & (got == expected)) | (
        finite & np.isfinite(got) & close)


def assert_same_values(got, expected, what: str, alternative=None) -> None:
    """NaN exactly where torch has NaN, the same infinities, finite values to float32 rounding.

    ``alternative`` is torch's float64 answer: where torch's float32 and float64 kernels
    disagree on a special value, either answer is accepted (seen: torch's vectorised float32
    GELU gives NaN at +inf, its scalar path and float64 give +inf).
    """
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    assert got.shape == expected.shape, f"{what}: shape {got.shape}, torch {expected.shape}"
    wrong = ~_agrees(got, expected)
    if alternative is not None:
        wrong &= ~_agrees(got, np.asarray(alternative, np.float64))
    if wrong.any():
        where = np.argwhere(wrong).tolist() if got.ndim else "the scalar"
        raise AssertionError(f"{what} differs from torch at {where}: graphnn {got[wrong].tolist()}, "
                             f"torch {expected[wrong].tolist()}\n graphnn {got.tolist()}\n torch   {expected.tolist()}")


def _compare(torch_model, torch_loss, model, loss, x, target, backend) -> None:
    torch64 = copy.deepcopy(torch_model).double()
    expected = []
    for reference, dtype in ((torch_model, torch.float32), (torch64, torch.float64)):
        t = torch.from_numpy(target)
        out = reference(torch.from_numpy(x).to(dtype))
        value = torch_loss(out, t.to(dtype) if t.is_floating_point() else t)
        value.backward()
        expected.append((out.detach().numpy(), value.item(), reference.p.grad.numpy()))
    (out, value, grad), (out64, value64, grad64) = expected
    train = gn.compile(model, loss, backend=backend)
    ours_loss, ours_out = train.loss_and_output(x, target)
    ours_grad_loss = train.grad(x, target)
    assert_same_values(ours_out, out, "output", out64)
    assert_same_values(ours_loss, value, "loss", value64)
    assert_same_values(ours_grad_loss, value, "loss of grad()", value64)
    assert_same_values(model.p.grad, grad, "gradient", grad64)


def _weighted_sum(lib, shape):
    """A loss whose gradient is its target: (output * target).sum(), with the target to use."""

    class WeightedSum(lib.Module):
        def forward(self, input, target):
            return (input * target).sum()

    weights = np.random.default_rng(1).uniform(0.5, 1.5, (1,) + shape).astype(np.float32)
    return WeightedSum(), weights


@pytest.mark.parametrize("backend", ["c", "numpy"])
@pytest.mark.parametrize("name,args,kwargs", ACTIVATIONS, ids=[f"{a[0]}{a[1]}{a[2]}" for a in ACTIVATIONS])
def test_activation_special_values(name, args, kwargs, backend):
    torch_model = _probe(torch.nn, getattr(torch.nn, name)(*args, **kwargs), ROWS, rows=False)
    model = _probe(nn, getattr(nn, name)(*args, **kwargs), ROWS, rows=False)
    x = np.zeros((1,) + ROWS.shape, np.float32)
    torch_loss, target = _weighted_sum(torch.nn, ROWS.shape)
    _compare(torch_model, torch_loss, model, _weighted_sum(nn, ROWS.shape)[0], x, target, backend)


@pytest.mark.parametrize("backend", ["c", "numpy"])
@pytest.mark.parametrize("name,args,kwargs", POOLS, ids=[f"{a[0]}{a[1]}{a[2]}" for a in POOLS])
def test_pooling_special_values(name, args, kwargs, backend):
    image = _pool_image()
    torch_model = _probe(torch.nn, getattr(torch.nn, name)(*args, **kwargs), image, rows=False)
    model = _probe(nn, getattr(nn, name)(*args, **kwargs), image, rows=False)
    x = np.zeros((1,) + image.shape, np.float32)
    out_shape = tuple(torch_model(torch.from_numpy(x)).shape[1:])
    torch_loss, target = _weighted_sum(torch.nn, out_shape)
    _compare(torch_model, torch_loss, model, _weighted_sum(nn, out_shape)[0], x, target, backend)


def _loss_data(name: str, where: str):
    """(values for p, target with a leading batch axis of 1)."""
    rng = np.random.default_rng(0)
    rows, columns = ROWS.shape
    if name in ("CrossEntropyLoss", "NLLLoss") and where == "input":
        return ROWS, LABELS.reshape(1, rows)
    if where == "probabilities":
        p = rng.random(ROWS.shape).astype(np.float32)
        return ROWS, (p / p.sum(1, keepdims=True)).reshape(1, rows, columns)
    finite = rng.standard_normal(ROWS.shape).astype(np.float32)
    if name == "BCEWithLogitsLoss":
        other = rng.random(ROWS.shape).astype(np.float32)
        return (ROWS, other[None]) if where == "input" else (finite, ROWS[None])
    other = rng.standard_normal(ROWS.shape).astype(np.float32)
    return (ROWS, other[None]) if where == "input" else (finite, ROWS[None])


@pytest.mark.parametrize("backend", ["c", "numpy"])
@pytest.mark.parametrize("name,kwargs,where", LOSSES, ids=[f"{a[0]}{a[1]}-{a[2]}" for a in LOSSES])
def test_loss_special_values(name, kwargs, where, backend):
    values, target = _loss_data(name, where)
    classes = target.dtype.kind == "i"
    columns = values.shape[-1]
    torch_model = _probe(torch.nn, torch.nn.Identity(), values, rows=True)
    model = _probe(nn, nn.Identity(), values, rows=True)
    torch_loss = _target_rows(torch.nn, getattr(torch.nn, name)(**kwargs), classes, columns)
    loss = _target_rows(nn, getattr(nn, name)(**kwargs), classes, columns)
    x = np.zeros((1,) + values.shape, np.float32)
    _compare(torch_model, torch_loss, model, loss, x, target, backend)
